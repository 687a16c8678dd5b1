"""`Registry`: the set of tool specs one process serves. Built in the composition root."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from tool_registry.spec import ToolSpec, ToolSpecError

AnySpec = ToolSpec[Any, Any]


class DuplicateToolError(ToolSpecError):
    """Two modules declared the same tool name."""


class Registry:
    """Holds tool specs by name. No module-level instance exists: create one and pass it in."""

    def __init__(self, specs: Iterable[AnySpec] = ()) -> None:
        self._specs: dict[str, AnySpec] = {}
        for spec in specs:
            self.register(spec)

    def register(self, spec: AnySpec) -> AnySpec:
        existing = self._specs.get(spec.name)
        if existing is not None:
            raise DuplicateToolError(
                f"tool {spec.name!r} is declared twice: by module {existing.module!r} "
                f"and by module {spec.module!r}"
            )
        self._specs[spec.name] = spec
        return spec

    def get(self, name: str) -> AnySpec | None:
        return self._specs.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._specs

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
        """The public surface as written to `catalogs/tools.json`."""
        return {"tools": [s.describe() for s in self.all()]}
