"""Errors of the Python client, with the daemon's stable codes.

`KvtierError.code` is the same string the daemon sends in Error frames
(src/errors.ts). Connection-level failures get client-side codes so that the
vLLM/SGLang integrations can tell "the daemon is away" (recompute, warn once)
from "the daemon refused this" (a bug or a namespace mismatch).
"""
from __future__ import annotations


class KvtierError(Exception):
    """Any failure reported by, or while talking to, kvtierd."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class DaemonUnavailable(KvtierError):
    """The socket is missing, refused, or the connection dropped mid-request."""

    def __init__(self, message: str) -> None:
        super().__init__("KVT_CONNECTION_CLOSED", message)


class RequestTimeout(KvtierError):
    """No answer within the request's timeout; the connection is dropped."""

    def __init__(self, message: str) -> None:
        super().__init__("KVT_TIMEOUT", message)


class ProtocolError(KvtierError):
    """The daemon answered something this client cannot make sense of."""

    def __init__(self, message: str) -> None:
        super().__init__("KVT_BAD_FRAME", message)


class Forbidden(KvtierError):
    """RegisterKv named memory the daemon will not open for this client: a
    shm file owned by another uid, a symlink anywhere in the path, a
    non-regular file or a path outside /dev/shm (docs/architecture.md)."""

    def __init__(self, message: str) -> None:
        super().__init__("KVT_FORBIDDEN", message)


def error_from_daemon(code: str, message: str) -> KvtierError:
    """The typed error for an Error frame the daemon sent."""
    if code == "KVT_FORBIDDEN":
        return Forbidden(message)
    return KvtierError(code or "KVT_INTERNAL", message)
