"""Backends by typed keys: `Backends.set/get` with a `BackendKey[T]` need no cast, a handler
reaches a backend only through `ctx.backend(key)`, and the names tools `require` (tool lists,
the "not configured" error) are unchanged."""

from __future__ import annotations

import pytest

from tool_registry.context import BackendKey, Backends, ScopedBackendKey, ToolContext
from tool_registry.models import ToolInput, ToolOutput
from tool_registry.modules import build_registry
from tool_registry.modules.me import IMAGE_GENERATOR, GeneratedImage, ReferenceImage
from tool_registry.spec import ToolSpec
from tool_registry.store.accounts import Space
from tool_registry.testing import tool_kit


class FakeGenerator:
    async def generate(
        self, prompt: str, references: list[ReferenceImage], size: str
    ) -> GeneratedImage:
        return GeneratedImage(url="https://img.test/1.png", width=8, height=8)


class Counter:
    def __init__(self) -> None:
        self.calls = 0


class Bound:
    """What a handler gets for `COUNTER`: the counter's calls, bound to one user and space."""

    def __init__(self, counter: Counter, user_id: str, space: Space) -> None:
        self.counter = counter
        self.user_id = user_id
        self.space_id = space.id


COUNTER: ScopedBackendKey[Counter, Bound] = ScopedBackendKey("counter", Bound, Counter)
PLAIN: BackendKey[Counter] = BackendKey("plain-counter")


def test_set_and_get_by_key() -> None:
    backends = Backends()
    generator = FakeGenerator()
    backends.set(IMAGE_GENERATOR, generator)
    assert backends.get(IMAGE_GENERATOR) is generator
    assert backends.configured("image-generator") and backends.names() == ["image-generator"]
    counter = Counter()
    backends.set(COUNTER, counter)
    assert backends.get(COUNTER) is counter  # the composition root reads the unscoped service
    assert backends.names() == ["counter", "image-generator"]


def test_missing_backend_answers_as_before() -> None:
    with pytest.raises(LookupError, match=r"^backend 'image-generator' is not configured$"):
        Backends().get(IMAGE_GENERATOR)


def test_wrong_type_at_registration_is_refused() -> None:
    backends = Backends()
    # mypy refuses this line (the ignore is needed: warn_unused_ignores keeps that honest)
    with pytest.raises(TypeError, match="backend 'image-generator' must be a ImageGenerator"):
        backends.set(IMAGE_GENERATOR, object())  # type: ignore[misc]
    with pytest.raises(TypeError, match="backend 'counter' must be a Counter, got str"):
        backends.set(COUNTER, "not a counter")  # type: ignore[misc]
    assert backends.names() == []


def test_a_key_spelled_the_same_does_not_reach_the_backend() -> None:
    backends = Backends()
    backends.set(COUNTER, Counter())
    forged: BackendKey[Counter] = BackendKey("counter")
    with pytest.raises(LookupError, match="registered under another key"):
        backends.get(forged)


class Empty(ToolInput):
    pass


class Seen(ToolOutput):
    calls: int
    user_id: str
    space_id: str
    plain_calls: int
    forged: str
    has_backends: bool


async def _probe(inp: Empty, ctx: ToolContext) -> Seen:
    bound = ctx.backend(COUNTER)  # typed: Bound, no cast
    bound.counter.calls += 1
    plain = ctx.backend(PLAIN)  # typed: Counter
    try:
        ctx.backend(BackendKey[Counter]("counter"))
        forged = "reached"
    except LookupError as exc:
        forged = str(exc)
    return Seen(
        calls=bound.counter.calls,
        user_id=bound.user_id,
        space_id=bound.space_id,
        plain_calls=plain.calls,
        forged=forged,
        has_backends=hasattr(ctx, "backends"),
    )


PROBE = ToolSpec(
    name="test.probe",
    title="Probe",
    description="Reports what the handler's backends look like.",
    module="test",
    scope="user-space",
    policy_hint="read",
    requires=(COUNTER.name, PLAIN.name),
    input=Empty,
    output=Seen,
    handler=_probe,
)


async def test_a_handler_gets_the_bound_view_not_the_service(database_target: str) -> None:
    backends = Backends()
    async with tool_kit(
        database_target, registry=build_registry([PROBE]), backends=backends
    ) as kit:
        user = await kit.user()
        missing = await kit.call_as(user, None, "test.probe")
        assert missing.error is not None and missing.error.reason == "not-configured"
        assert missing.error.message == (
            "test.probe needs the counter, plain-counter backend, which is not configured on "
            "this server"
        )
        backends.set(COUNTER, Counter())
        backends.set(PLAIN, Counter())
        personal = await kit.accounts.personal_space(user.id)
        seen = await kit.call_ok(user, None, "test.probe")
        assert seen == {
            "calls": 1,
            "userId": user.id,
            "spaceId": personal.id,
            "plainCalls": 0,
            "forged": "backend 'counter' is registered under another key",
            "hasBackends": False,
        }
