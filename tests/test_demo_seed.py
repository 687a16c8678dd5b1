"""The demo seed: idempotent, and `me.listReferenceImages` visibly filters on it (on both
backends)."""

from __future__ import annotations

from mana_cli.config import Settings
from mana_cli.demo import BRAND_SLUG, DEMO_EMAIL, REFERENCE_IMAGE_SEED, seed_demo
from mana_cli.runtime import open_runtime
from tool_registry.context import CallContext
from tool_registry.store.postgres import is_postgres_url


def _settings(target: str) -> Settings:
    """Settings for the test's database: a SQLite file or a PostgreSQL URL."""
    key = "database_url" if is_postgres_url(target) else "db"
    return Settings.load({key: target}, environ={})


async def _snapshot(target: str) -> list[tuple[str, ...]]:
    async with open_runtime(_settings(target)) as rt:
        rows = await rt.db.read(
            lambda c: c.execute(
                "SELECT id, space_id, data, deleted_at FROM records ORDER BY id"
            ).fetchall()
        )
        users = await rt.db.read(lambda c: c.execute("SELECT id FROM users ORDER BY id").fetchall())
    return [tuple(str(v) for v in r) for r in rows] + [tuple(u) for u in users]


async def test_seed_is_idempotent(database_target: str) -> None:
    db = database_target
    settings = _settings(db)
    async with open_runtime(settings, create=True) as rt:
        first = await seed_demo(rt)
    before = await _snapshot(db)
    async with open_runtime(settings) as rt:
        second = await seed_demo(rt)
    after = await _snapshot(db)
    assert first.created and not second.created
    assert before == after


async def test_reference_images_filter_by_space_opt_in_and_deletion(database_target: str) -> None:
    settings = _settings(database_target)
    async with open_runtime(settings, create=True) as rt:
        await seed_demo(rt)
        user = await rt.accounts.require_user(DEMO_EMAIL)
        personal = await rt.accounts.personal_space(user.id)
        extra = await rt.accounts.create_space(user.id, type_="family", name="Empty family")

        async def listed(space: str, **args: str) -> list[str]:
            out = await rt.pipeline.invoke(
                "me.listReferenceImages", args, CallContext(user_id=user.id, space=space)
            )
            assert out.ok, out.public()
            assert out.result is not None
            return [i["id"] for i in out.result["images"]]

        expected = {
            key: [
                i
                for i, where, spec, deleted in REFERENCE_IMAGE_SEED
                if where == key and spec["aiReference"] and not deleted
            ]
            for key in ("personal", "brand")
        }
        assert await listed(personal.id) == expected["personal"]
        assert await listed(BRAND_SLUG) == expected["brand"]
        assert await listed(personal.id, kind="fullbody") == ["ref_demo_full"]
        assert await listed(extra.id) == []  # no fallback to the personal space
    assert "ref_demo_old" not in expected["personal"]  # soft-deleted
    assert "ref_demo_hands" not in expected["personal"]  # not opted in
