"""The tool list an MCP client sees: `Tool` descriptions derived from the specs (with flattened
schemas), cached per space type and configured backends; and the caching hints every
2026-07-28 list result carries (`CACHE_HINTS`)."""

from __future__ import annotations

import json
from typing import Any

import mcp_types as types
from mcp.server.caching import CacheableMethod, CacheHint

from tool_registry.access_scopes import scope_allows
from tool_registry.pipeline import Pipeline
from tool_registry.registry import AnySpec

# Keywords that constrain only values of their own JSON type, so `{"type": T, ...}` or null can
# be written `{"type": [T, "null"], ...}` without changing what validates.
_TYPE_SCOPED = frozenset(
    {
        "type",
        "title",
        "description",
        "default",
        "examples",
        "format",
        "minLength",
        "maxLength",
        "pattern",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "items",
        "prefixItems",
        "minItems",
        "maxItems",
        "uniqueItems",
        "contains",
        "properties",
        "required",
        "additionalProperties",
        "patternProperties",
        "propertyNames",
        "minProperties",
        "maxProperties",
        "enum",
    }
)
_NULL = {"type": "null"}

# How long a 2026-07-28 client may reuse a result, and with whom. Every list depends on the
# credential (its user, space, space type and access scopes), so each is `private` (never
# shared across users). Tool, prompt and template lists change only with the configured
# backends or a new deployment: 60 s, the longest a client keeps an old list (there is no
# `subscriptions/listen` to tell it sooner). The resources of a space and their contents change
# with every write, so `resources/list` and `resources/read` are stale at once (0). The
# discover result is the same for every caller of this server and changes only with a
# deployment: `public`, 5 minutes.
LIST_TTL_MS = 60_000
DISCOVER_TTL_MS = 300_000
CACHE_HINTS: dict[CacheableMethod, CacheHint] = {
    "tools/list": CacheHint(ttl_ms=LIST_TTL_MS, scope="private"),
    "prompts/list": CacheHint(ttl_ms=LIST_TTL_MS, scope="private"),
    "resources/templates/list": CacheHint(ttl_ms=LIST_TTL_MS, scope="private"),
    "resources/list": CacheHint(ttl_ms=0, scope="private"),
    "resources/read": CacheHint(ttl_ms=0, scope="private"),
    "server/discover": CacheHint(ttl_ms=DISCOVER_TTL_MS, scope="public"),
}


def flat_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """An equivalent JSON Schema that is cheaper to validate: local `$defs` references inlined
    (unless recursive) and `anyOf [T, null]` written as `type: [T, "null"]`. Clients validate
    every structured result against the output schema (the `mcp` client does, per call), and a
    `$ref` per list item makes that several times slower for a 100-row result."""
    defs = schema.get("$defs", {})
    recursive = False

    def walk(node: Any, seen: tuple[str, ...]) -> Any:
        nonlocal recursive
        if isinstance(node, list):
            return [walk(item, seen) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/") and len(node) == 1:
            name = ref.removeprefix("#/$defs/")
            if name in seen or name not in defs:
                recursive = True
                return node
            return walk(defs[name], (*seen, name))
        out = {k: walk(v, seen) for k, v in node.items() if k != "$defs"}
        branches = out.get("anyOf")
        if isinstance(branches, list) and len(branches) == 2 and _NULL in branches:
            other = branches[0] if branches[1] == _NULL else branches[1]
            if (
                isinstance(other, dict)
                and isinstance(other.get("type"), str)
                and set(other) <= _TYPE_SCOPED
                and not set(other) & (set(out) - {"anyOf"})
            ):
                merged = {k: v for k, v in out.items() if k != "anyOf"}
                merged.update(other)
                merged["type"] = [other["type"], "null"]
                if "enum" in other:
                    merged["enum"] = [*other["enum"], None]
                return merged
        return out

    flat: dict[str, Any] = walk(schema, ())
    if recursive or '"$ref"' in json.dumps(flat):
        return schema  # something could not be inlined: keep the original with its $defs
    return flat


def tool_of(spec: AnySpec) -> types.Tool:
    """The MCP description of one tool, derived from its spec."""
    ann = spec.annotations()
    return types.Tool(
        name=spec.mcp_name,
        title=spec.title,
        description=spec.description,
        input_schema=spec.input_schema(),
        output_schema=flat_schema(spec.output_schema()),
        annotations=types.ToolAnnotations(
            title=ann["title"],
            read_only_hint=ann["readOnlyHint"],
            destructive_hint=ann["destructiveHint"],
            idempotent_hint=ann["idempotentHint"],
            open_world_hint=ann["openWorldHint"],
        ),
    )


class ToolCatalog:
    """Tool lists per (space type, configured backends), built once and reused. A change in the
    configured backends changes the key, so stale lists are never served."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self._lists: dict[tuple[str, tuple[str, ...]], tuple[list[types.Tool], frozenset[str]]]
        self._lists = {}
        self._tools: dict[str, types.Tool] = {}

    def _entry(self, space_type: str) -> tuple[list[types.Tool], frozenset[str]]:
        key = (space_type, tuple(self.pipeline.backends.names()))
        entry = self._lists.get(key)
        if entry is None:
            specs = self.pipeline.visible_tools(space_type)
            tools = [self._tool(s) for s in specs]
            entry = (tools, frozenset(t.name for t in tools))
            self._lists[key] = entry
        return entry

    def _tool(self, spec: AnySpec) -> types.Tool:
        tool = self._tools.get(spec.name)
        if tool is None:
            tool = self._tools[spec.name] = tool_of(spec)
        return tool

    def tools(
        self,
        space_type: str,
        invoker: str | None = None,
        scopes: frozenset[str] | None = None,
    ) -> list[types.Tool]:
        """The list for this space type; given `invoker`, without the tools the pipeline's offer
        hook refuses to that kind of caller (persona users never see the missions modules);
        given `scopes`, without the tools they do not cover (a read-only connection is listed
        read tools only)."""
        tools = self._entry(space_type)[0]
        if invoker is None and scopes is None:
            return tools
        registry, offered = self.pipeline.registry, self.pipeline.offered
        return [
            t
            for t in tools
            if (spec := registry.get(t.name)) is not None
            and (invoker is None or offered(spec, invoker))
            and scope_allows(spec, scopes)
        ]

    def names(self, space_type: str) -> frozenset[str]:
        """The names a connection's list_changed bookkeeping compares: every tool of the space
        type, whatever the caller's invoker or scopes. Those narrow a list by a rule that never
        changes for a connection, so a change of this set is the only way its list can change
        (a narrowed connection may hear of a change outside its own subset; it never misses
        one), and the one view per space type is what every replica stores and compares."""
        return self._entry(space_type)[1]

    def input_schema(self, name: str) -> dict[str, Any] | None:
        spec = self.pipeline.registry.get(name)
        if spec is None or not spec.exposable:
            return None
        return spec.input_schema()
