#!/usr/bin/env bash
# Starts a Valkey tuned for kvtier's KV chunks on one port: a cache, not a
# database. Big values (MiB), many of them, evicted by LRU when memory is
# full, no persistence by default (a lost chunk is only a recompute).
#
#   scripts/start-valkey.sh [--port 6379] [--bind 127.0.0.1] [--maxmemory 8gb]
#       [--policy allkeys-lru] [--io-threads N] [--persist] [--dir DIR]
#       [--daemonize] [--dry-run]
#   VALKEY_PASSWORD=...  sets requirepass (written to a 0600 config file,
#                        never on the command line where ps shows it)
#
# docs/valkey.md says why each setting matters.
set -euo pipefail

port=6379
bind=127.0.0.1
maxmemory=8gb
policy=allkeys-lru
cores=$(nproc 2>/dev/null || echo 2)
io_threads=$(( cores >= 8 ? 4 : (cores >= 4 ? 2 : 1) ))
persist=no
daemonize=no
dry_run=no
dir=""

while [ $# -gt 0 ]; do
  case "$1" in
    --port) port=$2; shift 2 ;;
    --bind) bind=$2; shift 2 ;;
    --maxmemory) maxmemory=$2; shift 2 ;;
    --policy) policy=$2; shift 2 ;;
    --io-threads) io_threads=$2; shift 2 ;;
    --persist) persist=yes; shift ;;
    --dir) dir=$2; shift 2 ;;
    --daemonize) daemonize=yes; shift ;;
    --dry-run) dry_run=yes; shift ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "start-valkey: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

case "$port" in ''|*[!0-9]*) echo "start-valkey: --port must be a number, got '$port'" >&2; exit 2 ;; esac
command -v valkey-server >/dev/null 2>&1 || { echo "start-valkey: valkey-server not found; run scripts/ensure-valkey.sh" >&2; exit 1; }

dir=${dir:-"${TMPDIR:-/tmp}/kvtier-valkey-$port"}
mkdir -p "$dir"
conf="$dir/valkey.conf"
umask 077
{
  echo "port $port"
  echo "bind $bind"
  echo "dir $dir"
  echo "daemonize $daemonize"
  echo "pidfile $dir/valkey.pid"
  [ "$daemonize" = yes ] && echo "logfile $dir/valkey.log"
  # 256-token chunks are 10-32 MiB before segmenting; leave room above that.
  echo "proto-max-bulk-len 1gb"
  echo "client-query-buffer-limit 1gb"
  # A cache: full memory evicts the least recently used chunk, never refuses a write.
  echo "maxmemory $maxmemory"
  echo "maxmemory-policy $policy"
  # Freeing a multi-MiB value in the main thread stalls every client.
  echo "lazyfree-lazy-eviction yes"
  echo "lazyfree-lazy-expire yes"
  echo "lazyfree-lazy-server-del yes"
  echo "lazyfree-lazy-user-del yes"
  echo "io-threads $io_threads"
  echo "tcp-keepalive 60"
  if [ "$persist" = yes ]; then
    echo "appendonly yes"
    echo "appendfsync everysec"
    echo "save \"\""
  else
    echo "appendonly no"
    echo "save \"\""
  fi
  if [ -n "${VALKEY_PASSWORD:-}" ]; then echo "requirepass \"${VALKEY_PASSWORD//\"/\\\"}\""; fi
} > "$conf"

if [ "$dry_run" = yes ]; then
  grep -v '^requirepass' "$conf"
  exit 0
fi
echo "start-valkey: valkey-server on $bind:$port (maxmemory $maxmemory, $policy, io-threads $io_threads, persist $persist), config $conf" >&2
exec valkey-server "$conf"
