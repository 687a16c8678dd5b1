"""`POST /auth/token` throttling through the real ASGI app: attempts are reserved before the
password is checked (so simultaneous guesses cannot all reach the check), limits are keyed by
(client address, account) with a higher per-account ceiling, and a success keeps the evidence
of other addresses' failures."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx2
import pytest

from mana_auth import LoginThrottle, PasswordLogin
from mana_http.app import AuthSetup, ManaHttpApp, build_http_app
from tool_registry.store.accounts import User
from tool_registry.testing import ToolKit

EMAIL = "ann@kit.test"
PASSWORD = "correct-horse-battery"
BASE_URL = "http://127.0.0.1:3069"


class CountingCheck:
    """The real password check, counted; `hold` keeps every started check waiting until the
    test lets them go, so all concurrent requests are in flight at once."""

    def __init__(self, kit: ToolKit) -> None:
        self.kit = kit
        self.emails: list[str] = []
        self.hold: asyncio.Event | None = None

    async def __call__(self, email: str, password: str) -> User | None:
        self.emails.append(email)
        if self.hold is not None:
            await self.hold.wait()
        return await self.kit.accounts.check_password(email, password)


def _app(
    kit: ToolKit, tmp_path: Path, throttle: LoginThrottle, check: CountingCheck
) -> ManaHttpApp:
    auth = AuthSetup.local(tmp_path / "keys")
    assert auth.issuer is not None
    # No cap on simultaneous checks here: every request that passes the throttle may overlap.
    login = PasswordLogin(kit.accounts, auth.issuer, throttle, check=check, concurrency=64)
    return build_http_app(kit.pipeline, auth, login=login)


@asynccontextmanager
async def _from(app: ManaHttpApp, address: str) -> AsyncIterator[httpx2.AsyncClient]:
    transport = httpx2.ASGITransport(app=app.asgi, client=(address, 50000))
    async with httpx2.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        yield client


async def _login(client: httpx2.AsyncClient, password: str) -> httpx2.Response:
    return await client.post("/auth/token", json={"email": EMAIL, "password": password})


async def test_simultaneous_wrong_guesses_check_at_most_the_limit(
    mana_kit: ToolKit, tmp_path: Path
) -> None:
    await mana_kit.user(EMAIL, password=PASSWORD)
    throttle = LoginThrottle(per_client=5, per_account=20, window=300)
    check = CountingCheck(mana_kit)
    check.hold = asyncio.Event()
    app = _app(mana_kit, tmp_path, throttle, check)
    total = 40
    answered = 0

    def maybe_release() -> None:
        # Every request has either reached the password check or been answered.
        if len(check.emails) + answered == total and check.hold is not None:
            check.hold.set()

    async with _from(app, "203.0.113.7") as client:

        async def guess(n: int) -> httpx2.Response:
            nonlocal answered
            task = asyncio.create_task(_login(client, f"wrong-{n}"))
            while not task.done():
                maybe_release()
                await asyncio.sleep(0.005)
            answered += 1
            maybe_release()
            return task.result()

        responses = await asyncio.gather(*(guess(n) for n in range(total)))

    statuses = [r.status_code for r in responses]
    assert len(check.emails) <= throttle.per_client
    assert statuses.count(401) == len(check.emails)
    assert statuses.count(429) == total - len(check.emails)
    for r in responses:
        if r.status_code == 429:
            assert int(r.headers["retry-after"]) >= 1
            assert r.headers["cache-control"] == "no-store"


async def test_limit_is_per_address_and_a_success_keeps_the_evidence(
    mana_kit: ToolKit, tmp_path: Path
) -> None:
    await mana_kit.user(EMAIL, password=PASSWORD)
    throttle = LoginThrottle(per_client=3, per_account=8, window=300)
    check = CountingCheck(mana_kit)
    app = _app(mana_kit, tmp_path, throttle, check)
    attacker, owner = "203.0.113.7", "198.51.100.20"

    async with _from(app, attacker) as a, _from(app, owner) as o:
        assert [(await _login(a, f"guess-{n}")).status_code for n in range(3)] == [401] * 3
        blocked = await _login(a, PASSWORD)  # the limit holds even for the right password
        assert blocked.status_code == 429 and "retry-after" in blocked.headers
        checks_before = len(check.emails)

        # The owner, elsewhere, is not locked out by the stranger.
        assert (await _login(o, "typo")).status_code == 401
        assert (await _login(o, PASSWORD)).status_code == 200

        # The success cleared only the owner's own pair; the attacker's failures still count,
        # at its address and towards the account's ceiling.
        assert throttle.failures(owner, EMAIL) == (0, 4)
        assert throttle.failures(attacker, EMAIL) == (3, 4)
        assert (await _login(a, PASSWORD)).status_code == 429
        assert len(check.emails) == checks_before + 2

    # Guessing spread over addresses reaches the per-account ceiling, which then holds for
    # every address (the owner's too) without a single further password check.
    spread = [f"192.0.2.{n}" for n in range(1, 10)]
    answers: list[int] = []
    for address in spread:
        async with _from(app, address) as c:
            answers.append((await _login(c, "spread-guess")).status_code)
    assert answers.count(401) == throttle.per_account - 4
    assert set(answers[answers.index(429) :]) == {429}
    checks_at_ceiling = len(check.emails)
    async with _from(app, owner) as o:
        capped = await _login(o, PASSWORD)
    assert capped.status_code == 429 and int(capped.headers["retry-after"]) >= 1
    assert len(check.emails) == checks_at_ceiling


async def test_a_failed_check_gives_its_attempt_back_and_a_cancelled_one_counts(
    mana_kit: ToolKit, tmp_path: Path
) -> None:
    await mana_kit.user(EMAIL, password=PASSWORD)
    throttle = LoginThrottle(per_client=2, per_account=4, window=300)
    auth = AuthSetup.local(tmp_path / "keys")
    assert auth.issuer is not None
    started = asyncio.Event()

    async def broken(email: str, password: str) -> User | None:
        raise OSError("database unavailable")

    async def stuck(email: str, password: str) -> User | None:
        started.set()
        await asyncio.Event().wait()
        return None

    with pytest.raises(OSError, match="database unavailable"):
        await PasswordLogin(mana_kit.accounts, auth.issuer, throttle, check=broken).login(
            EMAIL, "whatever", client="a"
        )
    assert throttle.failures("a", EMAIL) == (0, 0)  # no guess was made

    login = PasswordLogin(mana_kit.accounts, auth.issuer, throttle, check=stuck)
    task = asyncio.create_task(login.login(EMAIL, "guess", client="a"))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert throttle.failures("a", EMAIL) == (1, 1)  # an abandoned guess still counts


async def test_a_body_nested_too_deep_is_refused_without_a_password_check(
    mana_kit: ToolKit, tmp_path: Path
) -> None:
    check = CountingCheck(mana_kit)
    app = _app(mana_kit, tmp_path, LoginThrottle(), check)
    async with _from(app, "10.0.0.9") as client:
        for depth in (100, 5000):
            body = "[" * depth + "]" * depth
            response = await client.post(
                "/auth/token", content=body, headers={"content-type": "application/json"}
            )
            assert response.status_code == 400, response.text
            assert "Traceback" not in response.text
    assert check.emails == []
