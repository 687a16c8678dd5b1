"""The persona catalog (`catalogs/personas.json`): JSON Schema first, then the checks a schema
cannot express (registered modules, weight sums, duplicate emails, space memberships), then
pydantic models. Every problem is reported at once, each naming the persona (or shared space)
and the field:

    persona "Maya Chen" (#3): field moduleMix: weights sum to 0.80, expected 1 ± 0.01

Module names are checked against the registry the caller passes in (no global registry).
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, get_args

import jsonschema
from jsonschema import Draft202012Validator
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from policy.agent_policy import AGENT_EXCLUDED_MODULES
from tool_registry.errors import ValidationFailed
from tool_registry.registry import Registry
from tool_registry.space_types import CATALOG_DIR
from tool_registry.store.accounts import slug_problem

PERSONAS_CATALOG: Path = CATALOG_DIR / "personas.json"
PERSONAS_SCHEMA: Path = CATALOG_DIR / "personas.schema.json"

Archetype = Literal[
    "adhd-student",
    "ceo-busy",
    "creative-parent",
    "solo-dev",
    "researcher",
    "freelancer",
    "overwhelmed-newbie",
]
Cadence = Literal["daily", "weekdays", "hourly"]
SharedSpaceType = Literal["brand", "club", "family", "team", "practice"]
MemberRole = Literal["owner", "admin", "member"]

ARCHETYPES: tuple[str, ...] = get_args(Archetype)
CADENCES: tuple[str, ...] = get_args(Cadence)
EMAIL_DOMAIN = "@mana.test"
WEIGHT_TOLERANCE = 0.01

# Modules a persona tick must never be offered: agents' missions and the approval queue are not
# something a simulated user should drive (they would run or approve work on someone's behalf).
# Personas follow the agents' rule: never the missions or proposals modules.
FORBIDDEN_MODULES: frozenset[str] = AGENT_EXCLUDED_MODULES


class CatalogError(ValidationFailed):
    """The catalog is invalid; `problems` holds one line per problem."""

    reason = "invalid-catalog"

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = list(problems)
        super().__init__(f"invalid persona catalog {source}:\n  " + "\n  ".join(self.problems))


class Persona(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str
    email: str
    archetype: Archetype
    system_prompt: str = Field(alias="systemPrompt")
    module_mix: dict[str, float] = Field(alias="moduleMix")
    cadence: Cadence

    @property
    def modules(self) -> list[str]:
        """The modules of the mix, heaviest first (ties by name)."""
        return sorted(self.module_mix, key=lambda m: (-self.module_mix[m], m))

    def mix_json(self) -> str:
        """Canonical JSON of the mix (sorted keys) as stored in the `personas` table."""
        return json.dumps(dict(sorted(self.module_mix.items())), separators=(",", ":"))


class SpaceMember(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    email: str
    role: MemberRole


class SharedSpace(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    slug: str
    name: str
    type: SharedSpaceType
    members: list[SpaceMember]

    @property
    def owner(self) -> str:
        return next(m.email for m in self.members if m.role == "owner")


class PersonaCatalog(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_ref: str | None = Field(default=None, alias="$schema")
    comment: str | None = Field(default=None, alias="$comment")
    version: Literal[1] = 1
    personas: list[Persona]
    shared_spaces: list[SharedSpace] = Field(alias="sharedSpaces")

    def by_email(self, email: str) -> Persona | None:
        key = email.strip().lower()
        return next((p for p in self.personas if p.email == key), None)

    def spaces_of(self, email: str) -> list[SharedSpace]:
        key = email.strip().lower()
        return [s for s in self.shared_spaces if any(m.email == key for m in s.members)]


def persona_modules(registry: Registry) -> list[str]:
    """Modules a persona may use: registered, with at least one user-space tool, and not one of
    the modules a persona tick is never offered (missions, proposals)."""
    return sorted(
        {s.module for s in registry.exposable() if s.module not in FORBIDDEN_MODULES},
    )


# -- loading ------------------------------------------------------------------------------------


def load_schema(path: Path = PERSONAS_SCHEMA) -> dict[str, Any]:
    try:
        schema: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValidationFailed(f"cannot read persona catalog schema {path}: {exc}") from exc
    Draft202012Validator.check_schema(schema)
    return schema


def load_catalog(
    registry: Registry,
    path: Path = PERSONAS_CATALOG,
    *,
    schema: Mapping[str, Any] | None = None,
) -> PersonaCatalog:
    """Read, validate and parse a catalog file. Raises `CatalogError` listing every problem."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValidationFailed(f"cannot read persona catalog {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise CatalogError(str(path), [f"not valid JSON: {exc.msg} at line {exc.lineno}"]) from None
    return parse_catalog(raw, registry, source=str(path), schema=schema)


def parse_catalog(
    raw: Any,
    registry: Registry | Collection[str],
    *,
    source: str = "catalog",
    schema: Mapping[str, Any] | None = None,
) -> PersonaCatalog:
    """Validate decoded catalog data. `registry` is a `Registry` (its persona-usable modules are
    allowed) or an explicit collection of module names."""
    allowed = persona_modules(registry) if isinstance(registry, Registry) else sorted(registry)
    registered = registry.modules() if isinstance(registry, Registry) else allowed
    validator = Draft202012Validator(dict(schema) if schema is not None else load_schema())
    errors = list(validator.iter_errors(raw))
    found = [(_order(e.absolute_path), _describe_schema_error(raw, e)) for e in errors]
    if _shape_ok(raw):
        broken = {(str(e.absolute_path[0]), e.absolute_path[1]) for e in errors if _item_error(e)}
        found += _semantic_problems(raw, allowed, registered, broken)
    if found:
        found.sort(key=lambda item: item[0])  # stable: per entry, schema problems first
        raise CatalogError(source, _unique(line for _, line in found))
    try:
        return PersonaCatalog.model_validate(raw)
    except ValidationError as exc:  # the schema should have caught these; keep the names anyway
        raise CatalogError(source, [_describe_pydantic(raw, e) for e in exc.errors()]) from None


# -- messages -----------------------------------------------------------------------------------


def _label(raw: Any, section: str, index: int) -> str:
    items = raw.get(section) if isinstance(raw, dict) else None
    item = items[index] if isinstance(items, list) and index < len(items) else None
    if section == "personas":
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str) or not name.strip():
            email = item.get("email") if isinstance(item, dict) else None
            name = email if isinstance(email, str) else "?"
        return f'persona "{name}" (#{index + 1})'
    slug = item.get("slug") if isinstance(item, dict) else None
    return f'shared space "{slug if isinstance(slug, str) else "?"}" (#{index + 1})'


def _where(raw: Any, path: Sequence[Any]) -> tuple[str, list[str]]:
    """(who, field path) for a location in the raw catalog."""
    parts = list(path)
    if len(parts) >= 2 and parts[0] in ("personas", "sharedSpaces") and isinstance(parts[1], int):
        return _label(raw, parts[0], parts[1]), [str(p) for p in parts[2:]]
    return "catalog", [str(p) for p in parts]


def _line(who: str, field: Sequence[str], message: str) -> str:
    name = ".".join(field)
    return f"{who}: field {name}: {message}" if name else f"{who}: {message}"


_SECTIONS = {"personas": 1, "sharedSpaces": 2}
Order = tuple[int, int]


def _order(path: Iterable[Any]) -> Order:
    """Sort key: catalog-level problems, then personas by index, then shared spaces."""
    parts = list(path)
    if len(parts) >= 2 and parts[0] in _SECTIONS and isinstance(parts[1], int):
        return _SECTIONS[parts[0]], parts[1]
    return 0, 0


def _unique(lines: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(lines))


def _describe_schema_error(raw: Any, err: jsonschema.ValidationError) -> str:
    who, field = _where(raw, list(err.absolute_path))
    validator = err.validator
    value: Any = err.instance
    rule: Any = err.validator_value
    schema: Any = err.schema
    leaf = field[-1] if field else ""
    if validator == "required":
        missing = str(err.message).split("'")[1] if "'" in err.message else err.message
        return _line(who, [*field, missing], "missing (required)")
    if validator == "additionalProperties" and leaf != "moduleMix":
        known = schema.get("properties", {}) if isinstance(schema, dict) else {}
        extra = sorted(set(value) - set(known))
        return _line(who, field, f"unknown field(s) {', '.join(extra)}")
    if validator == "pattern" and leaf == "slug" and isinstance(value, str):
        return _line(who, field, slug_problem(value) or err.message)
    if validator == "pattern" and leaf == "email":
        return _line(who, field, f"{value!r} must be a lower-case address ending in {EMAIL_DOMAIN}")
    if validator == "enum":
        options = ", ".join(str(o) for o in rule)
        return _line(who, field, f"{value!r} is not one of {options}")
    if validator == "propertyNames":
        return _line(who, field, f"invalid module name {value!r}")
    return _line(who, field, err.message)


def _describe_pydantic(raw: Any, err: Mapping[str, Any]) -> str:
    loc = [p for p in err["loc"]]
    section = (
        {"personas": "personas", "sharedSpaces": "sharedSpaces"}.get(str(loc[0])) if loc else None
    )
    if section and len(loc) > 1 and isinstance(loc[1], int):
        who, field = _label(raw, section, loc[1]), [str(p) for p in loc[2:]]
    else:
        who, field = "catalog", [str(p) for p in loc]
    return _line(who, field, str(err["msg"]))


def _shape_ok(raw: Any) -> bool:
    return (
        isinstance(raw, dict)
        and isinstance(raw.get("personas"), list)
        and isinstance(raw.get("sharedSpaces"), list)
    )


def _item_error(err: jsonschema.ValidationError) -> bool:
    path = list(err.absolute_path)
    return len(path) >= 2 and path[0] in ("personas", "sharedSpaces") and isinstance(path[1], int)


def _semantic_problems(
    raw: dict[str, Any],
    allowed: Sequence[str],
    registered: Sequence[str],
    broken: set[tuple[str, Any]],
) -> list[tuple[Order, str]]:
    """Checks a schema cannot express, on the items whose shape is valid (so one bad entry
    does not hide the problems of the others)."""
    return list(_semantic(raw, allowed, registered, broken))


def _semantic(
    raw: dict[str, Any],
    allowed: Sequence[str],
    registered: Sequence[str],
    broken: set[tuple[str, Any]],
) -> Iterable[tuple[Order, str]]:
    personas: list[Any] = raw["personas"]
    first_seen: dict[str, int] = {}
    for i, p in enumerate(personas):
        if ("personas", i) in broken or not isinstance(p, dict):
            continue
        key, who = (1, i), _label(raw, "personas", i)
        email = p["email"]
        if email in first_seen:
            other = _label(raw, "personas", first_seen[email])
            yield key, _line(who, ["email"], f"duplicate email {email} (also used by {other})")
        else:
            first_seen[email] = i
        mix: dict[str, float] = p["moduleMix"]
        for module in sorted(mix):
            if module in FORBIDDEN_MODULES:
                why = f"module {module!r} is never offered to a persona tick"
            elif module not in registered:
                why = f"unknown module {module!r} (registered: {', '.join(allowed)})"
            elif module not in allowed:
                why = f"module {module!r} has no tools a persona can use"
            else:
                continue
            yield key, _line(who, ["moduleMix"], why)
        total = math.fsum(mix.values())
        if abs(total - 1.0) > WEIGHT_TOLERANCE:
            why = f"weights sum to {total:.2f}, expected 1 ± {WEIGHT_TOLERANCE:g}"
            yield key, _line(who, ["moduleMix"], why)
    emails = {p.get("email") for p in personas if isinstance(p, dict)}
    slugs: dict[str, int] = {}
    for i, s in enumerate(raw["sharedSpaces"]):
        if ("sharedSpaces", i) in broken or not isinstance(s, dict):
            continue
        key, who = (2, i), _label(raw, "sharedSpaces", i)
        problem = slug_problem(s["slug"])  # the rule the schema's pattern cannot say all of
        if problem is not None:
            yield key, _line(who, ["slug"], problem)
        if s["slug"] in slugs:
            other = _label(raw, "sharedSpaces", slugs[s["slug"]])
            yield key, _line(who, ["slug"], f"duplicate slug (also used by {other})")
        else:
            slugs[s["slug"]] = i
        members: list[dict[str, str]] = s["members"]
        seen: set[str] = set()
        for j, m in enumerate(members):
            field = ["members", str(j), "email"]
            if m["email"] not in emails:
                yield key, _line(who, field, f"{m['email']} is not a persona of this catalog")
            if m["email"] in seen:
                yield key, _line(who, field, f"{m['email']} is listed twice")
            seen.add(m["email"])
        owners = sum(1 for m in members if m["role"] == "owner")
        if owners != 1:
            yield key, _line(who, ["members"], f"needs exactly one owner, found {owners}")


__all__ = [
    "ARCHETYPES",
    "CADENCES",
    "EMAIL_DOMAIN",
    "FORBIDDEN_MODULES",
    "PERSONAS_CATALOG",
    "PERSONAS_SCHEMA",
    "Archetype",
    "Cadence",
    "CatalogError",
    "Persona",
    "PersonaCatalog",
    "SharedSpace",
    "SpaceMember",
    "load_catalog",
    "load_schema",
    "parse_catalog",
    "persona_modules",
]
