"""`PromptSpec`: a declared MCP prompt of one module, built from the active space's data.

A prompt has named string arguments (each optionally completed from the space), and a `render`
that turns the arguments and the space's data into messages. Rendering goes through
`Pipeline.view` like a resource read: same membership, module and scope rules, audited.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from tool_registry.client_channel import Attachment
from tool_registry.spec import MODULE_NAME_PATTERN, ToolSpecError, check_exposed_name
from tool_registry.views import Completer, ViewContext, ViewError

PROMPT_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


@dataclass(frozen=True)
class PromptArgument:
    name: str
    description: str
    required: bool = False
    complete: Completer | None = None


@dataclass(frozen=True)
class PromptMessage:
    """One message of a rendered prompt: `text`, or one content part (`attachment`: an image,
    audio clip or embedded resource, the same parts a tool attaches to its result)."""

    role: Literal["user", "assistant"]
    text: str | None = None
    attachment: Attachment | None = None

    def __post_init__(self) -> None:
        if (self.text is None) == (self.attachment is None):
            raise ValueError("a prompt message carries exactly one of text and attachment")


Renderer = Callable[[Mapping[str, str], ViewContext], Awaitable[list[PromptMessage]]]


@dataclass(frozen=True)
class PromptSpec:
    """One prompt: a kebab-case `name` (what a client shows in its menu), texts, its module
    (the space type must allow it), arguments and the renderer. The renderer receives only
    declared arguments; required ones are present (checked before it runs). `fixture` and
    `exposed_name` follow the tool rule (`check_exposed_name`): a test fixture may be shown
    to clients under a name outside the kebab-case rule."""

    name: str
    title: str
    description: str
    module: str
    arguments: tuple[PromptArgument, ...]
    render: Renderer
    fixture: bool = False
    exposed_name: str | None = None

    def __post_init__(self) -> None:
        if not PROMPT_NAME_PATTERN.match(self.name):
            raise ToolSpecError(f"prompt name {self.name!r} must be kebab-case")
        if not MODULE_NAME_PATTERN.match(self.module):
            raise ToolSpecError(f"prompt {self.name!r}: bad module name {self.module!r}")
        if not self.title.strip() or not self.description.strip():
            raise ToolSpecError(f"prompt {self.name!r} needs a title and a description")
        names = [a.name for a in self.arguments]
        if len(set(names)) != len(names):
            raise ToolSpecError(f"prompt {self.name!r} declares an argument twice")
        check_exposed_name("prompt", self.name, self.exposed_name, self.fixture)

    @property
    def mcp_name(self) -> str:
        """The name MCP clients list and get: `exposed_name` for a fixture, else `name`."""
        return self.exposed_name or self.name

    def checked_arguments(self, args: Mapping[str, str]) -> dict[str, str]:
        """`args` when they name declared arguments only and include every required one;
        otherwise a `ViewError` (`invalid-input`) naming what is wrong."""
        unknown = sorted(set(args) - {a.name for a in self.arguments})
        missing = [a.name for a in self.arguments if a.required and not args.get(a.name)]
        problems = []
        if unknown:
            problems.append(f"unknown arguments: {', '.join(unknown)}")
        if missing:
            problems.append(f"missing required arguments: {', '.join(missing)}")
        if problems:
            raise ViewError(
                f"prompt {self.name}: {'; '.join(problems)}",
                reason="invalid-input",
                status="invalid-input",
            )
        return dict(args)

    def argument(self, name: str) -> PromptArgument | None:
        return next((a for a in self.arguments if a.name == name), None)

    def describe(self) -> dict[str, Any]:
        """The exported public description (one entry of `catalogs/prompts.json`)."""
        return {
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "module": self.module,
            "arguments": [
                {
                    "name": a.name,
                    "description": a.description,
                    "required": a.required,
                    "completed": a.complete is not None,
                }
                for a in self.arguments
            ],
        }
