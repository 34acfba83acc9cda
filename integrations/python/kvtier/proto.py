"""Message classes for the kvtier wire protocol (proto/kvtier.proto).

Built at import time from the committed serialized descriptor
(kvtier/_descriptor.py) in a private descriptor pool, so the package works with
Debian's python3-protobuf 3.21 (runtime 4.21) as well as current 5.x/6.x
runtimes, and never collides with another copy of kvtier.proto loaded into the
default pool. Use the classes as `proto.Envelope`, `proto.Lookup`, ...

Type checkers read kvtier/proto.pyi instead of this file: the classes are made
at run time (the globals().update below), so the stub, generated from the same
descriptor by tools/gen_descriptor.py, declares each one with its fields.
"""
from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool

from ._descriptor import FILE_DESCRIPTOR
from .constants import PROTOCOL_VERSION  # noqa: F401 (proto.PROTOCOL_VERSION, from the shared table)

PACKAGE = "kvtier.v1"

_pool = descriptor_pool.DescriptorPool()
_file = descriptor_pb2.FileDescriptorProto.FromString(FILE_DESCRIPTOR)
_pool.Add(_file)


def _message_class(name: str) -> Any:
    """Returns the generated class for kvtier.v1.<name> on any runtime."""
    desc = _pool.FindMessageTypeByName(f"{PACKAGE}.{name}")
    try:
        from google.protobuf.message_factory import GetMessageClass  # runtime >= 4.21.?
    except ImportError:  # pragma: no cover - older runtimes
        GetMessageClass = None
    if GetMessageClass is not None:
        return GetMessageClass(desc)
    from google.protobuf import message_factory  # pragma: no cover

    return message_factory.MessageFactory(_pool).GetPrototype(desc)  # pragma: no cover


MESSAGE_NAMES = [m.name for m in _file.message_type]
_classes = {name: _message_class(name) for name in MESSAGE_NAMES}
globals().update(_classes)

Envelope: Any = _classes["Envelope"]
NamespaceFingerprint: Any = _classes["NamespaceFingerprint"]

# Envelope body field name for each message class name ("LookupOk" -> "lookup_ok").
BODY_FIELDS = {f.message_type.name: f.name for f in _pool.FindMessageTypeByName(
    f"{PACKAGE}.Envelope").fields if f.message_type is not None}


def envelope(request_id: int, body: Any) -> Any:
    """Wraps a message into an Envelope under the body field its type maps to."""
    env = Envelope(id=request_id)
    getattr(env, BODY_FIELDS[type(body).DESCRIPTOR.name]).CopyFrom(body)
    return env


def body_of(env: Any) -> tuple[str, Any]:
    """Returns (field name, message) of an Envelope's body; ('', None) when empty."""
    which = env.WhichOneof("body")
    return (which, getattr(env, which)) if which else ("", None)
