#!/usr/bin/env python3
"""Regenerates kvtier/_descriptor.py from proto/kvtier.proto with protoc.

Why a serialized descriptor instead of a protoc-generated *_pb2.py: generated
modules are tied to the protobuf runtime that matches the protoc that wrote
them (3.21 gencode warns or fails on 5.x/6.x runtimes, and 6.x gencode refuses
4.21). A FileDescriptorProto is a stable wire format every runtime can load
into a descriptor pool, so one committed file serves them all. The pytest
suite re-runs protoc (when present) and fails if the committed bytes drift.

Usage: /usr/bin/python3 integrations/python/tools/gen_descriptor.py [--check]
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
PROTO_DIR = os.path.join(REPO, "proto")
OUT = os.path.join(HERE, "..", "kvtier", "_descriptor.py")

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


def main() -> int:
    text = render(descriptor_bytes())
    if "--check" in sys.argv:
        with open(OUT) as f:
            if f.read() != text:
                print(f"{OUT} is stale: run {__file__}", file=sys.stderr)
                return 1
        return 0
    with open(OUT, "w") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
