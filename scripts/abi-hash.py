#!/usr/bin/env python3
"""Print (or with --write, update) PYLON_ABI_HEADER_HASH: FNV-1a 32 of pylon_plugin.h
without the line that carries the hash. Tests/PylonHostTests checks it."""
import re, sys, pathlib
p = pathlib.Path(__file__).resolve().parent.parent / "Sources/PylonPluginABI/include/pylon_plugin.h"
lines = p.read_text().splitlines(keepends=True)
body = "".join(l for l in lines if "/* abi_header_hash */" not in l).encode()
h = 0x811C9DC5
for b in body:
    h ^= b
    h = (h * 0x01000193) & 0xFFFFFFFF
print(f"0x{h:08x}")
if "--write" in sys.argv:
    out = "".join(re.sub(r"0x[0-9a-f]{8}u /\* abi_header_hash \*/", f"0x{h:08x}u /* abi_header_hash */", l) for l in lines)
    p.write_text(out)
