"""The demo seed: idempotent, and `me.listReferenceImages` visibly filters on it."""

from __future__ import annotations

from pathlib import Path

from mana_cli.config import Settings
from mana_cli.demo import BRAND_SLUG, DEMO_EMAIL, REFERENCE_IMAGE_SEED, seed_demo
from mana_cli.runtime import open_runtime
from tool_registry.context import CallContext


async def _snapshot(db_path: Path) -> list[tuple[str, ...]]:
    async with open_runtime(Settings.load({"db": str(db_path)}, environ={})) as rt:
        rows = await rt.db.read(
            lambda c: c.execute(
                "SELECT id, space_id, data, deleted_at FROM records ORDER BY id"
            ).fetchall()
        )
        users = await rt.db.read(lambda c: c.execute("SELECT id FROM users").fetchall())
    return [tuple(str(v) for v in r) for r in rows] + [tuple(u) for u in users]


async def test_seed_is_idempotent(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    settings = Settings.load({"db": str(db)}, environ={})
    async with open_runtime(settings, create=True) as rt:
        first = await seed_demo(rt)
    before = await _snapshot(db)
    async with open_runtime(settings) as rt:
        second = await seed_demo(rt)
    after = await _snapshot(db)
    assert first.created and not second.created
    assert before == after


async def test_reference_images_filter_by_space_opt_in_and_deletion(tmp_path: Path) -> None:
    settings = Settings.load({"db": str(tmp_path / "demo.db")}, environ={})
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
