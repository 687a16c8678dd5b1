"""`ResourceSpec`: a declared, read-only MCP resource of one module, beside `ToolSpec`.

A spec names one URI template (`mana://notes/{id}`, or a fixed URI such as `mana://space`), how
to read the resource it names in the active space, how to enumerate the concrete resources of
the space for `resources/list` (optional), completers for the template's parameters, and
which tool results change which of its resources (`changed_by`, for
`notifications/resources/updated` to subscribed clients). Reads go through `Pipeline.view`, so a
resource obeys the same membership, module and scope rules as a read tool and every read is
audited.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tool_registry.spec import (
    MANA_SCHEME,
    MODULE_NAME_PATTERN,
    ToolSpecError,
    check_resource_uri,
)
from tool_registry.views import Completer, ViewContext

RESOURCE_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9]*\.[a-z][a-zA-Z0-9]*$")
_PARAM = re.compile(r"\{([a-zA-Z][a-zA-Z0-9]*)\}")
SCHEME = MANA_SCHEME


@dataclass(frozen=True)
class ResourceBody:
    """One content item of a read: `text` (e.g. markdown) or `blob` (raw bytes, sent base64)."""

    uri: str
    mime_type: str
    text: str | None = None
    blob: bytes | None = None

    def __post_init__(self) -> None:
        if (self.text is None) == (self.blob is None):
            raise ValueError("a resource body carries exactly one of text and blob")


@dataclass(frozen=True)
class ResourceEntry:
    """One concrete resource of the space, as `resources/list` shows it."""

    uri: str
    name: str
    title: str
    mime_type: str
    description: str | None = None


Reader = Callable[[Mapping[str, str], ViewContext], Awaitable[list[ResourceBody]]]
Enumerator = Callable[[ViewContext], Awaitable[list[ResourceEntry]]]
# (tool name, its structured result) of a successful write in a space -> the URIs of this
# spec's resources in that space the write changed (none: an empty iterable).
ChangeRule = Callable[[str, Mapping[str, Any]], Iterable[str]]


@dataclass(frozen=True)
class ResourceSpec:
    """One kind of resource: `name` is `module.noun`; `uri_template` has `{param}` parts (none
    for a fixed resource); `read` answers the resource a URI names in the active space or raises
    `ViewError` (`not-found`); `enumerate` lists the space's concrete resources; `complete`
    holds a completer per template parameter; `changed_by` says which resources of the space a
    successful write changed (evaluated for every successful non-read tool call). Only a test
    `fixture` may use a URI scheme other than `mana://` (`check_resource_uri`)."""

    name: str
    title: str
    description: str
    module: str
    uri_template: str
    mime_type: str
    read: Reader
    enumerate: Enumerator | None = None
    complete: Mapping[str, Completer] = field(default_factory=dict)
    changed_by: ChangeRule | None = None
    fixture: bool = False
    _pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not RESOURCE_NAME_PATTERN.match(self.name):
            raise ToolSpecError(f"resource name {self.name!r} must look like 'module.noun'")
        if not MODULE_NAME_PATTERN.match(self.module) or not self.name.startswith(
            f"{self.module}."
        ):
            raise ToolSpecError(
                f"resource {self.name!r} is declared in module {self.module!r}; "
                f"its name must start with '{self.module}.'"
            )
        check_resource_uri(self.name, self.uri_template, self.fixture)
        if not self.title.strip() or not self.description.strip():
            raise ToolSpecError(f"resource {self.name!r} needs a title and a description")
        unknown = set(self.complete) - set(self.parameters)
        if unknown:
            raise ToolSpecError(
                f"resource {self.name!r} completes unknown parameters: {', '.join(sorted(unknown))}"
            )
        pattern = ""
        last = 0
        for m in _PARAM.finditer(self.uri_template):
            pattern += re.escape(self.uri_template[last : m.start()])
            pattern += f"(?P<{m.group(1)}>[^/?#]+)"
            last = m.end()
        pattern += re.escape(self.uri_template[last:])
        object.__setattr__(self, "_pattern", re.compile(f"^{pattern}$"))

    @property
    def parameters(self) -> tuple[str, ...]:
        return tuple(_PARAM.findall(self.uri_template))

    @property
    def is_template(self) -> bool:
        return bool(self.parameters)

    def match(self, uri: str) -> dict[str, str] | None:
        """The template's parameters in `uri`, or None when `uri` is not one of this spec's."""
        m = self._pattern.match(uri)
        return None if m is None else m.groupdict()

    def changed(self, tool: str, result: Mapping[str, Any]) -> list[str]:
        """The URIs of this spec's resources that a successful write of `tool` changed: only
        URIs the spec itself answers (a rule's typo cannot notify about another resource)."""
        if self.changed_by is None:
            return []
        return [uri for uri in self.changed_by(tool, result) if self.match(uri) is not None]

    def describe(self) -> dict[str, Any]:
        """The exported public description (one entry of `catalogs/resources.json`)."""
        entry: dict[str, Any] = {
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "module": self.module,
            "uriTemplate": self.uri_template,
            "mimeType": self.mime_type,
            "listed": self.enumerate is not None,
        }
        if self.complete:
            entry["completes"] = sorted(self.complete)
        return entry
