"""The client address the login throttle keys on is the connection's, not a header's."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from .support import DEMO_EMAIL, ServerProcess, seeded_world


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, database_backend: str, request: pytest.FixtureRequest
) -> Iterator[ServerProcess]:
    data_dir = tmp_path_factory.mktemp("forwarded")
    with (
        seeded_world(request, database_backend, data_dir) as world,
        ServerProcess(world.installation) as proc,
    ):
        yield proc


def test_x_forwarded_for_does_not_give_a_guesser_fresh_addresses(server: ServerProcess) -> None:
    statuses = []
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for n in range(11):
            response = client.post(
                "/auth/token",
                json={"email": DEMO_EMAIL, "password": f"wrong-guess-{n}"},
                headers={"X-Forwarded-For": f"203.0.113.{n + 1}"},
            )
            statuses.append(response.status_code)
    # 10 failures per (address, account) are checked; the 11th is throttled because every
    # request came from the same connection address, whatever the header claimed.
    assert statuses[:10] == [401] * 10
    assert statuses[10] == 429
