"""JSON from outside (CLI flags, HTTP bodies, tool arguments), bounded in depth.

Python's parsers and encoders recurse once per nesting level, so a hostile `[[[[…]]]]` of a few
thousand levels raises `RecursionError` deep inside them instead of a clear answer. Every
boundary parses with `loads_json` and the pipeline refuses arguments deeper than
`MAX_INPUT_DEPTH`, so such input is an ordinary invalid-input error everywhere.
"""

from __future__ import annotations

import json
from typing import Any

# No tool input comes near this; deep enough for any honest nested object, shallow enough that
# validation, hashing and storing never approach the interpreter's recursion limit.
MAX_INPUT_DEPTH = 64


class JsonInputError(ValueError):
    """The text is not JSON this runtime accepts; the message says why, for the user."""


def loads_json(text: str | bytes) -> Any:
    """Parse JSON text, or raise `JsonInputError` saying what is wrong (bad syntax with its
    position, or nesting deeper than `MAX_INPUT_DEPTH`)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise JsonInputError(f"not valid JSON: {exc.msg} at position {exc.pos}") from None
    except RecursionError:
        raise JsonInputError(too_deep_message()) from None
    except UnicodeDecodeError:
        raise JsonInputError("not valid JSON: the text is not UTF-8") from None
    if exceeds_depth(value):
        raise JsonInputError(too_deep_message())
    return value


def exceeds_depth(value: Any, limit: int = MAX_INPUT_DEPTH) -> bool:
    """Whether lists and objects nest deeper than `limit` levels (walked with a stack, so the
    check itself cannot hit the recursion limit)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def too_deep_message() -> str:
    return f"lists and objects nest deeper than {MAX_INPUT_DEPTH} levels"
