#!/usr/bin/env python3
"""Regenerates kvtier/_descriptor.py and kvtier/proto.pyi from proto/kvtier.proto with protoc.

Why a serialized descriptor instead of a protoc-generated *_pb2.py: generated
modules are tied to the protobuf runtime that matches the protoc that wrote
them (3.21 gencode warns or fails on 5.x/6.x runtimes, and 6.x gencode refuses
4.21). A FileDescriptorProto is a stable wire format every runtime can load
into a descriptor pool, so one committed file serves them all. The pytest
suite re-runs protoc (when present) and fails if the committed bytes drift.

kvtier/proto.pyi is written from the same descriptor: kvtier.proto builds its
classes at import time, so without stubs every message is Any to a type
checker. The stubs name each message with its fields, their Python types and
a keyword-only constructor (the shape of protoc's --pyi_out), plus the
module's helpers. Committed and drift-checked like the descriptor.

Usage: /usr/bin/python3 integrations/python/tools/gen_descriptor.py [--check]
"""
from __future__ import annotations

import keyword
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
PROTO_DIR = os.path.join(REPO, "proto")
OUT = os.path.join(HERE, "..", "kvtier", "_descriptor.py")
STUB_OUT = os.path.join(HERE, "..", "kvtier", "proto.pyi")

HEADER = '''"""Serialized FileDescriptorProto of proto/kvtier.proto (generated, do not edit).

Written by integrations/python/tools/gen_descriptor.py with protoc; loaded by
kvtier.proto into a private descriptor pool so that any protobuf runtime
(3.20+, 4.x, 5.x, 6.x) can build the message classes without gencode.
"""

FILE_DESCRIPTOR = (
'''


def descriptor_bytes() -> bytes:
    """Runs protoc and returns the serialized FileDescriptorProto of kvtier.proto."""
    from google.protobuf import descriptor_pb2

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "kvtier.desc")
        subprocess.run(["protoc", f"-I{PROTO_DIR}", f"--descriptor_set_out={out}", "kvtier.proto"],
                       check=True)
        with open(out, "rb") as f:
            fds = descriptor_pb2.FileDescriptorSet.FromString(f.read())
    (fd,) = fds.file
    fd.ClearField("source_code_info")
    return fd.SerializeToString(deterministic=True)


def render(data: bytes) -> str:
    lines = [HEADER]
    for i in range(0, len(data), 64):
        lines.append(f"    {data[i:i + 64]!r}\n")
    lines.append(")\n")
    return "".join(lines)


STUB_HEADER = '''"""Type stubs of kvtier.proto (generated from proto/kvtier.proto, do not edit).

Written by integrations/python/tools/gen_descriptor.py from the same descriptor
as kvtier/_descriptor.py. kvtier.proto builds these classes at import time;
this file is what type checkers see of them.
"""
from collections.abc import Iterable
from typing import Any, Optional

from google.protobuf.internal.containers import RepeatedCompositeFieldContainer, RepeatedScalarFieldContainer
from google.protobuf.message import Message

PACKAGE: str
PROTOCOL_VERSION: int
MESSAGE_NAMES: list[str]
BODY_FIELDS: dict[str, str]

def envelope(request_id: int, body: Message) -> Envelope: ...
def body_of(env: Envelope) -> tuple[str, Any]: ...
'''

# FieldDescriptorProto.Type -> Python type of the field's values.
_SCALAR_TYPES = {
    1: "float", 2: "float",                                  # double, float
    3: "int", 4: "int", 5: "int", 6: "int", 7: "int", 13: "int",  # int64 uint64 int32 fixed64 fixed32 uint32
    15: "int", 16: "int", 17: "int", 18: "int", 14: "int",   # sfixed32 sfixed64 sint32 sint64 enum
    8: "bool", 9: "str", 12: "bytes",
}
_MESSAGE, _REPEATED = 11, 3


def render_stub(data: bytes) -> str:
    """kvtier/proto.pyi for the serialized FileDescriptorProto `data`."""
    from google.protobuf import descriptor_pb2

    fd = descriptor_pb2.FileDescriptorProto.FromString(data)
    prefix = f".{fd.package}."
    out = [STUB_HEADER]
    for msg in fd.message_type:
        if msg.nested_type or msg.enum_type:
            raise SystemExit(f"gen_descriptor: nested types in {msg.name} are not handled by the stub writer")
        out.append(f"\nclass {msg.name}(Message):\n")
        params = []
        for f in msg.field:
            if keyword.iskeyword(f.name):
                raise SystemExit(f"gen_descriptor: field {msg.name}.{f.name} is a Python keyword")
            if f.type == _MESSAGE:
                if not f.type_name.startswith(prefix):
                    raise SystemExit(f"gen_descriptor: {msg.name}.{f.name} has a foreign type {f.type_name}")
                value = f.type_name[len(prefix):]
            else:
                value = _SCALAR_TYPES[f.type]
            if f.label == _REPEATED:
                container = "RepeatedCompositeFieldContainer" if f.type == _MESSAGE else "RepeatedScalarFieldContainer"
                out.append(f"    @property\n    def {f.name}(self) -> {container}[{value}]: ...\n")
                params.append(f"{f.name}: Optional[Iterable[{value}]] = ...")
            elif f.type == _MESSAGE:
                out.append(f"    @property\n    def {f.name}(self) -> {value}: ...\n")
                params.append(f"{f.name}: Optional[{value}] = ...")
            else:
                out.append(f"    {f.name}: {value}\n")
                params.append(f"{f.name}: {value} = ...")
        if params:
            out.append("    def __init__(\n        self,\n        *,\n")
            out.extend(f"        {p},\n" for p in params)
            out.append("    ) -> None: ...\n")
        else:
            out.append("    def __init__(self) -> None: ...\n")
    return "".join(out)


def main() -> int:
    data = descriptor_bytes()
    outputs = {OUT: render(data), STUB_OUT: render_stub(data)}
    if "--check" in sys.argv:
        stale = []
        for path, text in outputs.items():
            try:
                with open(path) as f:
                    if f.read() != text:
                        stale.append(path)
            except FileNotFoundError:
                stale.append(path)
        for path in stale:
            print(f"{os.path.normpath(path)} is stale: run {__file__}", file=sys.stderr)
        return 1 if stale else 0
    for path, text in outputs.items():
        with open(path, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
