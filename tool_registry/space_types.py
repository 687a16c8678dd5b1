"""The module allowlist per space type, loaded from `catalogs/space-types.json`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tool_registry.errors import ValidationFailed
from tool_registry.spec import MODULE_NAME_PATTERN
from tool_registry.store.accounts import SPACE_TYPES

CATALOG_DIR = Path(__file__).resolve().parent.parent / "catalogs"
DEFAULT_PATH = CATALOG_DIR / "space-types.json"


class SpaceTypeEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str = ""
    modules: Literal["*"] | list[str] = Field(min_length=1)

    @field_validator("modules")
    @classmethod
    def _names(cls, value: Literal["*"] | list[str]) -> Literal["*"] | list[str]:
        if value != "*":
            bad = [m for m in value if not MODULE_NAME_PATTERN.match(m)]
            if bad:
                raise ValueError(f"invalid module names: {', '.join(bad)}")
        return value


class SpaceTypeCatalogFile(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    comment: str | None = Field(default=None, alias="$comment")
    space_types: dict[str, SpaceTypeEntry] = Field(alias="spaceTypes")


class SpaceTypeCatalog:
    """Answers "may a space of type T use module M?" — the one place that rule lives."""

    def __init__(self, entries: dict[str, SpaceTypeEntry]) -> None:
        missing = [t for t in SPACE_TYPES if t not in entries]
        unknown = [t for t in entries if t not in SPACE_TYPES]
        if missing or unknown:
            raise ValidationFailed(
                "space-types catalog must list exactly the six space types"
                + (f"; missing: {', '.join(missing)}" if missing else "")
                + (f"; unknown: {', '.join(unknown)}" if unknown else "")
            )
        self._entries = entries

    @classmethod
    def load(cls, path: Path = DEFAULT_PATH) -> SpaceTypeCatalog:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValidationFailed(f"cannot read space-types catalog {path}: {exc}") from exc
        try:
            parsed = SpaceTypeCatalogFile.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            raise ValidationFailed(f"invalid space-types catalog {path}: {problems}") from exc
        return cls(parsed.space_types)

    def allows(self, space_type: str, module: str) -> bool:
        entry = self._entries.get(space_type)
        if entry is None:
            return False
        return entry.modules == "*" or module in entry.modules

    def modules_for(self, space_type: str) -> Literal["*"] | list[str]:
        return self._entries[space_type].modules

    def types(self) -> list[str]:
        return list(self._entries)
