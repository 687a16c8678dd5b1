"""`ToolSpec`: the one declaration of an operation an agent or client may perform.

Everything a consumer needs (JSON Schemas, MCP annotations, visibility rules) is derived
from the spec, so no consumer ever re-describes a tool.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from pydantic import BaseModel

if TYPE_CHECKING:
    from tool_registry.confirm import ConfirmText
    from tool_registry.context import ToolContext

Scope = Literal["user-space", "admin"]
PolicyHint = Literal["read", "write", "destructive"]

TOOL_NAME_PATTERN = re.compile(r"^[a-z][a-zA-Z0-9]*\.[a-z][a-zA-Z0-9]*$")
MODULE_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9]*$")
# What an MCP client may be shown as a tool or prompt name (the spec's tool-name characters).
EXPOSED_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")

InT = TypeVar("InT", bound=BaseModel)
OutT = TypeVar("OutT", bound=BaseModel)

Handler = Callable[[InT, "ToolContext"], Awaitable[OutT]]


class ToolSpecError(ValueError):
    """A tool declaration breaks the registry's rules (bad name, module mismatch, ...)."""


def check_exposed_name(kind: str, name: str, exposed_name: str | None, fixture: bool) -> None:
    """The one rule for a spec that is shown to MCP clients under another name than its own:
    only a test fixture may (the conformance suite calls fixed names such as `test_simple_text`,
    which the registry's naming rules do not allow), and the name must be a valid MCP name.
    Production specs are always exposed under their registry name."""
    if exposed_name is None:
        return
    if not fixture:
        raise ToolSpecError(
            f"{kind} {name!r}: exposed_name is reserved for test fixtures (fixture=True); "
            "a production spec is exposed under its own name"
        )
    if not EXPOSED_NAME_PATTERN.match(exposed_name):
        raise ToolSpecError(
            f"{kind} {name!r}: exposed_name {exposed_name!r} must be 1-128 letters, digits, "
            "'_', '-' or '.'"
        )


MANA_SCHEME = "mana://"
_URI_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://")


def check_resource_uri(name: str, uri_template: str, fixture: bool) -> None:
    """The same rule for resource URIs: Mana's resources live under `mana://`; only a test
    fixture may declare another scheme (the conformance suite reads `test://static-text`)."""
    if uri_template.startswith(MANA_SCHEME):
        return
    if not fixture:
        raise ToolSpecError(f"resource {name!r}: its URI must start with {MANA_SCHEME}")
    if not _URI_SCHEME.match(uri_template):
        raise ToolSpecError(f"resource {name!r}: {uri_template!r} is not an absolute URI")


@dataclass(frozen=True)
class EncryptedFields:
    """Declares which stored fields of a table are encrypted at rest (used by later backends)."""

    table: str
    fields: tuple[str, ...]


@dataclass(frozen=True)
class ToolSpec(Generic[InT, OutT]):
    """One tool: `module.verb` name, texts for the model, scope, policy hint, typed I/O, handler.

    `idempotent` defaults to True for reads and False otherwise; `requires` names backends
    that must be configured for the tool to be listed or callable; `open_world` marks tools
    that reach services outside Mana (it drives `openWorldHint`). `fixture` marks a test-only
    spec (never bundled, never exported); only a fixture may set `exposed_name`, the name MCP
    clients see and call instead of `name` (see `check_exposed_name`).
    """

    name: str
    title: str
    description: str
    module: str
    scope: Scope
    policy_hint: PolicyHint
    input: type[InT]
    output: type[OutT]
    handler: Handler[InT, OutT]
    idempotent: bool | None = None
    requires: tuple[str, ...] = ()
    encrypted_fields: EncryptedFields | None = None
    open_world: bool = False
    # Destructive tools: the question a person confirms, naming the record
    # (`tool_registry.confirm`); without it the pipeline asks a generic one.
    confirmation: ConfirmText | None = None
    # A write tool whose handler writes only through services that commit their own short
    # transactions (and may ask its client questions, which must not happen inside a write
    # transaction): the pipeline runs it like a read, on a read-only store, with no surrounding
    # transaction and no idempotency replay (such a tool must be idempotent by itself).
    own_transactions: bool = False
    fixture: bool = False
    exposed_name: str | None = None
    _schemas: dict[str, dict[str, Any]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if not TOOL_NAME_PATTERN.match(self.name):
            raise ToolSpecError(
                f"tool name {self.name!r} must look like 'module.verb' (letters and digits, "
                "lower-case first letter on both sides)"
            )
        module_part = self.name.split(".", 1)[0]
        if module_part != self.module:
            raise ToolSpecError(
                f"tool {self.name!r} is declared in module {self.module!r}; "
                f"its name must start with '{self.module}.'"
            )
        if not MODULE_NAME_PATTERN.match(self.module):
            raise ToolSpecError(f"module name {self.module!r} must be lower-case letters/digits")
        if self.scope not in ("user-space", "admin"):
            raise ToolSpecError(f"tool {self.name!r}: unknown scope {self.scope!r}")
        if self.policy_hint not in ("read", "write", "destructive"):
            raise ToolSpecError(f"tool {self.name!r}: unknown policy hint {self.policy_hint!r}")
        if not self.title.strip() or not self.description.strip():
            raise ToolSpecError(f"tool {self.name!r} needs a title and a description")
        for model in (self.input, self.output):
            if not (isinstance(model, type) and issubclass(model, BaseModel)):
                raise ToolSpecError(f"tool {self.name!r}: input and output must be pydantic models")
        check_exposed_name("tool", self.name, self.exposed_name, self.fixture)

    @property
    def mcp_name(self) -> str:
        """The name MCP clients list and call: `exposed_name` for a fixture, else `name`."""
        return self.exposed_name or self.name

    @property
    def verb(self) -> str:
        return self.name.split(".", 1)[1]

    @property
    def is_idempotent(self) -> bool:
        return self.policy_hint == "read" if self.idempotent is None else self.idempotent

    @property
    def read_only(self) -> bool:
        return self.policy_hint == "read"

    @property
    def exposable(self) -> bool:
        """Only user-space tools are ever shown to MCP clients or agents."""
        return self.scope == "user-space"

    def input_schema(self) -> dict[str, Any]:
        return self._schema("input", self.input)

    def output_schema(self) -> dict[str, Any]:
        return self._schema("output", self.output)

    def _schema(self, key: str, model: type[BaseModel]) -> dict[str, Any]:
        cached = self._schemas.get(key)
        if cached is None:
            cached = model.model_json_schema(by_alias=True, mode="validation")
            self._schemas[key] = cached
        return cached

    def annotations(self) -> dict[str, Any]:
        """MCP tool annotations, derived from the spec (never hand-written)."""
        return {
            "title": self.title,
            "readOnlyHint": self.policy_hint == "read",
            "destructiveHint": self.policy_hint == "destructive",
            "idempotentHint": self.is_idempotent,
            "openWorldHint": self.open_world,
        }

    def describe(self) -> dict[str, Any]:
        """The exported public description of this tool (one entry of `catalogs/tools.json`)."""
        entry: dict[str, Any] = {
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "module": self.module,
            "scope": self.scope,
            "policyHint": self.policy_hint,
            "annotations": self.annotations(),
            "inputSchema": self.input_schema(),
            "outputSchema": self.output_schema(),
        }
        if self.requires:
            entry["requires"] = list(self.requires)
        return entry
