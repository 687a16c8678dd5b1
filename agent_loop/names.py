"""Reversible mapping between tool names and the characters a vendor allows in tool names.

Anthropic accepts `^[a-zA-Z0-9_-]{1,64}$`; our tools are called `module.verb`, and MCP servers
may use any string. The encoding keeps the common case readable for the model
(`habits.create` <-> `habits_create`) and is a bijection on all strings:

- ASCII letters and digits stay as they are;
- `.` becomes `_` (so an unescaped `_` always means a dot);
- `-` starts an escape: `--` is `-`, `-_` is `_`, `-xHH`, `-uHHHH`, `-UHHHHHH` are any other
  character by code point.

Names whose encoding would exceed the length limit get a readable prefix plus a hash suffix;
`ToolNameMap` remembers those so the mapping stays reversible for every name it encoded.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

MAX_WIRE_LENGTH = 64
WIRE_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


def encode_tool_name(name: str) -> str:
    """`module.verb` -> `module_verb`; reversible by `decode_tool_name` for any string."""
    out: list[str] = []
    for ch in name:
        if ch in _PLAIN:
            out.append(ch)
        elif ch == ".":
            out.append("_")
        elif ch == "-":
            out.append("--")
        elif ch == "_":
            out.append("-_")
        else:
            code = ord(ch)
            if code < 0x100:
                out.append(f"-x{code:02x}")
            elif code < 0x10000:
                out.append(f"-u{code:04x}")
            else:
                out.append(f"-U{code:06x}")
    return "".join(out)


def decode_tool_name(wire: str) -> str:
    """Inverse of `encode_tool_name`. Raises `ValueError` for text it could not have made."""
    out: list[str] = []
    i = 0
    n = len(wire)
    while i < n:
        ch = wire[i]
        if ch == "_":
            out.append(".")
            i += 1
        elif ch == "-":
            if i + 1 >= n:
                raise ValueError(f"dangling escape in tool name {wire!r}")
            kind = wire[i + 1]
            if kind == "-":
                out.append("-")
                i += 2
            elif kind == "_":
                out.append("_")
                i += 2
            elif kind in "xuU":
                width = {"x": 2, "u": 4, "U": 6}[kind]
                digits = wire[i + 2 : i + 2 + width]
                if len(digits) != width or not all(c in "0123456789abcdef" for c in digits):
                    raise ValueError(f"bad escape in tool name {wire!r}")
                out.append(chr(int(digits, 16)))
                i += 2 + width
            else:
                raise ValueError(f"bad escape in tool name {wire!r}")
        else:
            out.append(ch)
            i += 1
    return "".join(out)


class ToolNameMap:
    """Encodes names for the wire and decodes what the model sends back.

    Short names use `encode_tool_name` (stateless, so a name seen only in old history still maps
    the same way). Names whose encoding is too long are shortened to a prefix plus an 8-hex hash
    and remembered here; a wire name this map never produced and cannot decode is returned as is,
    so the dispatcher answers "unknown tool" instead of the client crashing.
    """

    def __init__(self, names: Iterable[str] = ()) -> None:
        self._long: dict[str, str] = {}
        for name in names:
            self.to_wire(name)

    def to_wire(self, name: str) -> str:
        wire = encode_tool_name(name)
        if len(wire) <= MAX_WIRE_LENGTH and wire:
            return wire
        digest = hashlib.sha256(name.encode()).hexdigest()[:8]
        # "-h" is never produced by encode_tool_name, so shortened names cannot collide with
        # plain ones; the digest separates long names that share a prefix.
        short = f"{_safe_prefix(wire, MAX_WIRE_LENGTH - 10)}-h{digest}"
        self._long[short] = name
        return short

    def from_wire(self, wire: str) -> str:
        if wire in self._long:
            return self._long[wire]
        try:
            return decode_tool_name(wire)
        except ValueError:
            return wire


def _safe_prefix(wire: str, limit: int) -> str:
    """Cut `wire` to at most `limit` characters without splitting an escape sequence."""
    i = 0
    while i < len(wire):
        width = 1
        if wire[i] == "-" and i + 1 < len(wire):
            width = {"x": 4, "u": 6, "U": 8}.get(wire[i + 1], 2)
        if i + width > limit:
            break
        i += width
    return wire[:i]
