"""Sortable, prefixed identifiers (time-ordered like ULIDs, readable in logs).

Record ids come from an `IdSource` bound to the injected clock (`Clock.new_id`): the time part is
the clock's millisecond and, within one source, ids are strictly increasing (a call in the same
millisecond as the previous one, or after the clock moved back, increments the random part, as a
monotonic ULID does). So rows stamped with equal `created_at` by one clock sort by `id` in the
order they were made, and a test's fixed clock fully decides both. `new_id` (wall clock, no
ordering promise) is for ids nothing sorts by, such as request ids.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_TIME_CHARS = 10
_RANDOM_CHARS = 16
_RANDOM_BITS = 5 * _RANDOM_CHARS
_RANDOM_MAX = (1 << _RANDOM_BITS) - 1
# Fresh randomness for a new millisecond leaves this much headroom below the maximum, so the
# increments of one millisecond can never overflow into the time part.
_RANDOM_HEADROOM = 1 << 64
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)


def _b32(value: int, width: int) -> str:
    out = []
    for _ in range(width):
        out.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(out))


def format_id(prefix: str, millis: int, random_part: int) -> str:
    """`prefix_` + 10 chars of milliseconds + 16 chars of the random part (Crockford base32)."""
    return f"{prefix}_{_b32(millis, _TIME_CHARS)}{_b32(random_part, _RANDOM_CHARS)}"


def new_id(prefix: str) -> str:
    """An id from the wall clock and fresh randomness; no order among ids of one millisecond."""
    return format_id(prefix, time.time_ns() // 1_000_000, secrets.randbits(_RANDOM_BITS))


def new_request_id() -> str:
    return new_id("req")


class IdSource:
    """Monotonic ids from a clock's `now`: strictly increasing for this source, whatever the
    clock does (a fixed clock, a clock set back). Thread-safe: stores mint ids on the writer
    thread as well as on the event loop."""

    def __init__(self, now: Callable[[], datetime]) -> None:
        self._now = now
        self._lock = threading.Lock()
        self._millis = -1
        self._random = 0

    def new(self, prefix: str) -> str:
        millis = (self._now() - _EPOCH) // _MILLISECOND
        with self._lock:
            if millis > self._millis:
                self._millis = millis
                self._random = secrets.randbelow(_RANDOM_MAX - _RANDOM_HEADROOM)
            else:
                self._random += 1 + secrets.randbelow(1 << 16)
            return format_id(prefix, self._millis, self._random)


# What `new_id` makes, with `-` accepted for `_` as people retype ids: a lower-case prefix, the
# separator and 26 characters of the alphabet.
_ID_SHAPE = re.compile(f"[a-z]{{2,8}}[-_][{_ALPHABET}]{{26}}")


def looks_like_id(text: str) -> bool:
    """True when `text` has the shape of an id (e.g. `spc_01jc…` or `spc-01jc…`): names that
    people choose (space slugs) must not, so an id and a name are never confused."""
    return _ID_SHAPE.fullmatch(text) is not None
