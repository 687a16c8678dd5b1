"""`Registry`: the set of tool specs one process serves. Built in the composition root."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from tool_registry.prompts import PromptSpec
from tool_registry.resources import ResourceSpec
from tool_registry.spec import ToolSpec, ToolSpecError

AnySpec = ToolSpec[Any, Any]


class DuplicateToolError(ToolSpecError):
    """Two modules declared the same tool name."""


class Registry:
    """Holds tool, resource and prompt specs by name. No module-level instance exists: create
    one and pass it in.

    A test fixture may be exposed to MCP clients under another name (`exposed_name`); lookups
    (`get`, `prompt`) accept both names, so every consumer finds a fixture by the name a client
    used, and no exposed name may equal another spec's name. Every list is in one stable order
    (by registry name); fixtures are never exported to `catalogs/`."""

    def __init__(
        self,
        specs: Iterable[AnySpec] = (),
        *,
        resources: Iterable[ResourceSpec] = (),
        prompts: Iterable[PromptSpec] = (),
    ) -> None:
        self._specs: dict[str, AnySpec] = {}
        self._resources: dict[str, ResourceSpec] = {}
        self._prompts: dict[str, PromptSpec] = {}
        # exposed name -> registry name, for fixtures shown under another name
        self._tool_aliases: dict[str, str] = {}
        self._prompt_aliases: dict[str, str] = {}
        for spec in specs:
            self.register(spec)
        for resource in resources:
            self.register_resource(resource)
        for prompt in prompts:
            self.register_prompt(prompt)

    def register(self, spec: AnySpec) -> AnySpec:
        existing = self.get(spec.name)
        if existing is not None:
            raise DuplicateToolError(
                f"tool {spec.name!r} is declared twice: by module {existing.module!r} "
                f"and by module {spec.module!r}"
            )
        if spec.exposed_name is not None:
            _claim_alias(self._tool_aliases, self._specs, "tool", spec.name, spec.exposed_name)
        self._specs[spec.name] = spec
        return spec

    def register_resource(self, spec: ResourceSpec) -> ResourceSpec:
        if spec.name in self._resources:
            raise DuplicateToolError(f"resource {spec.name!r} is declared twice")
        clash = next(
            (r for r in self._resources.values() if r.uri_template == spec.uri_template), None
        )
        if clash is not None:
            raise DuplicateToolError(
                f"resources {clash.name!r} and {spec.name!r} declare the same URI "
                f"{spec.uri_template!r}"
            )
        self._resources[spec.name] = spec
        return spec

    def register_prompt(self, spec: PromptSpec) -> PromptSpec:
        if self.prompt(spec.name) is not None:
            raise DuplicateToolError(f"prompt {spec.name!r} is declared twice")
        if spec.exposed_name is not None:
            _claim_alias(
                self._prompt_aliases, self._prompts, "prompt", spec.name, spec.exposed_name
            )
        self._prompts[spec.name] = spec
        return spec

    def resources(self) -> list[ResourceSpec]:
        """Every resource spec, in name order."""
        return sorted(self._resources.values(), key=lambda s: s.name)

    def resource_for(self, uri: str) -> tuple[ResourceSpec, dict[str, str]] | None:
        """The spec whose URI template `uri` matches, with the parameters it carries."""
        for spec in self.resources():
            params = spec.match(uri)
            if params is not None:
                return spec, params
        return None

    def prompts(self) -> list[PromptSpec]:
        """Every prompt spec, in name order."""
        return sorted(self._prompts.values(), key=lambda s: s.name)

    def prompt(self, name: str) -> PromptSpec | None:
        """The prompt of this registry name or exposed name."""
        return self._prompts.get(self._prompt_aliases.get(name, name))

    def get(self, name: str) -> AnySpec | None:
        """The tool of this registry name or exposed name."""
        return self._specs.get(self._tool_aliases.get(name, name))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[AnySpec]:
        return iter(self.all())

    def __len__(self) -> int:
        return len(self._specs)

    def all(self) -> list[AnySpec]:
        return sorted(self._specs.values(), key=lambda s: s.name)

    def by_module(self, module: str) -> list[AnySpec]:
        return [s for s in self.all() if s.module == module]

    def modules(self) -> list[str]:
        return sorted({s.module for s in self._specs.values()})

    def exposable(self) -> list[AnySpec]:
        """User-space tools only: admin tools are never shown to MCP clients or agents."""
        return [s for s in self.all() if s.exposable]

    def export(self) -> dict[str, Any]:
        """The public surface as written to `catalogs/tools.json` (test fixtures never are)."""
        return {"tools": [s.describe() for s in self.all() if not s.fixture]}

    def export_resources(self) -> dict[str, Any]:
        """The resources as written to `catalogs/resources.json`."""
        return {"resources": [s.describe() for s in self.resources() if not s.fixture]}

    def export_prompts(self) -> dict[str, Any]:
        """The prompts as written to `catalogs/prompts.json`."""
        return {"prompts": [s.describe() for s in self.prompts() if not s.fixture]}


def _claim_alias(
    aliases: dict[str, str], specs: Mapping[str, object], kind: str, name: str, exposed: str
) -> None:
    """Record `exposed` as the MCP name of `name`, refusing one another spec already uses."""
    if exposed in specs or exposed in aliases:
        raise DuplicateToolError(f"{kind} {name!r}: exposed name {exposed!r} is already in use")
    aliases[exposed] = name
