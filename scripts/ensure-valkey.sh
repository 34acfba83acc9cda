#!/usr/bin/env bash
# Installs valkey-server and valkey-tools from Debian bookworm-backports when
# they are missing. Idempotent: a machine that already has them is left as is.
set -euo pipefail

if command -v valkey-server >/dev/null 2>&1 && command -v valkey-cli >/dev/null 2>&1 \
   && command -v valkey-benchmark >/dev/null 2>&1; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "ensure-valkey: valkey-server is missing and installing it needs root" >&2
  exit 1
fi

codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
list=/etc/apt/sources.list.d/kvtier-backports.list
if ! grep -rqs "${codename}-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
  # Reuse the mirror the machine already uses for its main suite (one-line
  # or deb822 format; comment lines are skipped).
  mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
    | grep -v '^[[:space:]]*#' \
    | grep -oE '(^deb +(\[[^]]*\] +)?|^URIs: *)https?://[^ ]+/debian/?( |$)' \
    | grep -oE 'https?://[^ ]+' | grep -v security | head -n 1 || true)
  [ -n "$mirror" ] || { echo "ensure-valkey: cannot find the Debian mirror in apt sources" >&2; exit 1; }
  echo "deb ${mirror%/} ${codename}-backports main" > "$list"
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq -t "${codename}-backports" valkey-server valkey-tools >/dev/null
# The package starts a system service on port 6379; tests start their own servers.
if command -v systemctl >/dev/null 2>&1; then systemctl disable --now valkey-server >/dev/null 2>&1 || true; fi
pkill -x valkey-server >/dev/null 2>&1 || true
valkey-server --version
