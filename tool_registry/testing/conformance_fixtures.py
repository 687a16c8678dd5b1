"""Test-only fixtures of the official MCP conformance suite (npm `@modelcontextprotocol/conformance`,
server mode): the tools, resources and prompts its scenarios call by fixed names
(`test_simple_text`, `test://static-text`, `test_simple_prompt`, ...), declared as ordinary
`ToolSpec`, `ResourceSpec` and `PromptSpec` of a `conformance` module, so every call goes through
the real registry, pipeline (membership, module allowlist, policy, audit) and MCP adapter.

They are registered only when the composition root is told to (`MANA_TEST_FIXTURES=conformance`,
see `mana_cli.runtime`); each spec is a `fixture`, exposed under the suite's name
(`exposed_name`), and never exported to `catalogs/`. Behaviour follows each scenario's
description in the suite's source: what a tool returns, which notifications it sends and what it
asks the client (through `ToolContext.channel`, the client channel contract).
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tool_registry.client_channel import (
    Attachment,
    ClientCannotAsk,
    ElicitQuestion,
    RootsQuestion,
    SampleQuestion,
    SamplingMessage,
)
from tool_registry.context import ToolContext
from tool_registry.errors import ToolError
from tool_registry.prompts import PromptArgument, PromptMessage, PromptSpec
from tool_registry.registry import AnySpec, Registry
from tool_registry.resources import ResourceBody, ResourceEntry, ResourceSpec
from tool_registry.spec import ToolSpec
from tool_registry.views import ViewContext

MODULE = "conformance"
# A 1x1 red PNG and an 8-sample 8 kHz mono WAV: the smallest valid media the scenarios accept.
RED_PIXEL_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"
)
SILENT_WAV = base64.b64decode(
    "UklGRiwAAABXQVZFZm10IBAAAAABAAEAQB8AAEAfAAABAAgAZGF0YQgAAACAgICAgICAgA=="
)
# The scenarios pace their notifications "about 50 ms" apart.
STEP_SECONDS = 0.05


# -- tools -------------------------------------------------------------------------------------


class NoInput(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextOutput(BaseModel):
    """What a fixture tool answers: one text (the structured result and its JSON text block)."""

    text: str


class MessageInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: str = Field(description="The message to show the user")


class PromptInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(description="The prompt to send to the LLM")


class address(BaseModel):  # lower-case: the suite looks for the `$defs` key "address"
    street: str | None = None
    city: str | None = None


class SchemaFeaturesInput(BaseModel):
    """JSON Schema 2020-12 keywords the listing must keep: `$schema`, `$defs`,
    `additionalProperties: false` (SEP-1613)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"$schema": "https://json-schema.org/draft/2020-12/schema"},
    )

    name: str | None = None
    # aliased: a field named like its type would shadow the type inside the class body
    location: address | None = Field(default=None, alias="address")


async def simple_text(args: NoInput, ctx: ToolContext) -> TextOutput:
    return TextOutput(text="This is a simple text response for testing.")


async def image_content(args: NoInput, ctx: ToolContext) -> TextOutput:
    ctx.attach(Attachment(kind="image", mime_type="image/png", data=RED_PIXEL_PNG))
    return TextOutput(text="A 1x1 red pixel.")


async def audio_content(args: NoInput, ctx: ToolContext) -> TextOutput:
    ctx.attach(Attachment(kind="audio", mime_type="audio/wav", data=SILENT_WAV))
    return TextOutput(text="A short silent clip.")


async def embedded_resource(args: NoInput, ctx: ToolContext) -> TextOutput:
    ctx.attach(
        Attachment(
            kind="resource",
            mime_type="text/plain",
            uri="test://embedded-resource",
            text="This is an embedded resource content.",
        )
    )
    return TextOutput(text="An embedded resource.")


async def multiple_content_types(args: NoInput, ctx: ToolContext) -> TextOutput:
    ctx.attach(Attachment(kind="image", mime_type="image/png", data=RED_PIXEL_PNG))
    ctx.attach(
        Attachment(
            kind="resource",
            mime_type="application/json",
            uri="test://mixed-content-resource",
            text=json.dumps({"test": "data", "value": 123}),
        )
    )
    return TextOutput(text="Multiple content types test:")


async def with_logging(args: NoInput, ctx: ToolContext) -> TextOutput:
    await ctx.channel.log("info", "Tool execution started", logger=MODULE)
    await asyncio.sleep(STEP_SECONDS)
    await ctx.channel.log("info", "Tool processing data", logger=MODULE)
    await asyncio.sleep(STEP_SECONDS)
    await ctx.channel.log("info", "Tool execution completed", logger=MODULE)
    return TextOutput(text="Tool with logging executed successfully.")


async def with_progress(args: NoInput, ctx: ToolContext) -> TextOutput:
    for step in (0, 50, 100):
        if step:
            await asyncio.sleep(STEP_SECONDS)
        await ctx.channel.progress(step, 100)
    return TextOutput(text="Tool with progress executed successfully.")


async def error_handling(args: NoInput, ctx: ToolContext) -> TextOutput:
    raise ToolError("This tool intentionally returns an error for testing")


async def sampling(args: PromptInput, ctx: ToolContext) -> TextOutput:
    try:
        answer = await ctx.channel.sample(
            "conformance.sampling", [SamplingMessage(role="user", text=args.prompt)], max_tokens=100
        )
    except ClientCannotAsk as exc:
        raise ToolError(f"Sampling is not available: {exc}") from None
    return TextOutput(text=f"LLM response: {answer.text}")


async def _elicit(ctx: ToolContext, key: str, message: str, schema: Mapping[str, Any]) -> str:
    try:
        answer = await ctx.channel.elicit(key, message, schema)
    except ClientCannotAsk as exc:
        raise ToolError(f"Elicitation is not available: {exc}") from None
    content = json.dumps(dict(answer.content or {}), sort_keys=True)
    return f"action={answer.action}, content={content}"


ELICITATION_SCHEMA: Mapping[str, Any] = {
    "type": "object",
    "properties": {
        "username": {"type": "string", "description": "User's response"},
        "email": {"type": "string", "description": "User's email address"},
    },
    "required": ["username", "email"],
}

DEFAULTS_SCHEMA: Mapping[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "default": "John Doe"},
        "age": {"type": "integer", "default": 30},
        "score": {"type": "number", "default": 95.5},
        "status": {
            "type": "string",
            "enum": ["active", "inactive", "pending"],
            "default": "active",
        },
        "verified": {"type": "boolean", "default": True},
    },
}

ENUMS_SCHEMA: Mapping[str, Any] = {
    "type": "object",
    "properties": {
        "untitledSingle": {"type": "string", "enum": ["option1", "option2", "option3"]},
        "titledSingle": {
            "type": "string",
            "oneOf": [
                {"const": "value1", "title": "First Option"},
                {"const": "value2", "title": "Second Option"},
                {"const": "value3", "title": "Third Option"},
            ],
        },
        "legacyEnum": {
            "type": "string",
            "enum": ["opt1", "opt2", "opt3"],
            "enumNames": ["Option One", "Option Two", "Option Three"],
        },
        "untitledMulti": {
            "type": "array",
            "items": {"type": "string", "enum": ["option1", "option2", "option3"]},
        },
        "titledMulti": {
            "type": "array",
            "items": {
                "anyOf": [
                    {"const": "value1", "title": "First Choice"},
                    {"const": "value2", "title": "Second Choice"},
                    {"const": "value3", "title": "Third Choice"},
                ]
            },
        },
    },
}


async def elicitation(args: MessageInput, ctx: ToolContext) -> TextOutput:
    answer = await _elicit(ctx, "conformance.elicitation", args.message, ELICITATION_SCHEMA)
    return TextOutput(text=f"User response: {answer}")


async def elicitation_defaults(args: NoInput, ctx: ToolContext) -> TextOutput:
    message = "Please review and update the form fields with defaults"
    answer = await _elicit(ctx, "conformance.elicitationDefaults", message, DEFAULTS_SCHEMA)
    return TextOutput(text=f"Elicitation completed: {answer}")


async def elicitation_enums(args: NoInput, ctx: ToolContext) -> TextOutput:
    message = "Please select options from the enum fields"
    answer = await _elicit(ctx, "conformance.elicitationEnums", message, ENUMS_SCHEMA)
    return TextOutput(text=f"Elicitation completed: {answer}")


# -- 2026-07-28 input-required rounds (suite 0.2: SEP-2322) ------------------------------------
# The question keys are the suite's `inputRequests` keys: the channel asks under the key and, on
# 2026-07-28, finds the answer under it on the client's retry (its signed requestState checked).


def _form(field: str, kind: str = "string") -> Mapping[str, Any]:
    return {"type": "object", "properties": {field: {"type": kind}}, "required": [field]}


async def _answer(
    ctx: ToolContext, key: str, message: str, field: str, kind: str = "string"
) -> Any:
    try:
        answer = await ctx.channel.elicit(key, message, _form(field, kind))
    except ClientCannotAsk as exc:
        raise ToolError(f"Elicitation is not available: {exc}") from None
    if not answer.accepted:
        raise ToolError(f"The user did not answer ({answer.action})")
    return (answer.content or {}).get(field)


async def _sampled(ctx: ToolContext, key: str, prompt: str, max_tokens: int) -> str:
    try:
        answer = await ctx.channel.sample(
            key, [SamplingMessage(role="user", text=prompt)], max_tokens=max_tokens
        )
    except ClientCannotAsk as exc:
        raise ToolError(f"Sampling is not available: {exc}") from None
    return answer.text


async def input_required_elicitation(args: NoInput, ctx: ToolContext) -> TextOutput:
    name = await _answer(ctx, "user_name", "What is your name?", "name")
    return TextOutput(text=f"Hello, {name}!")


async def input_required_sampling(args: NoInput, ctx: ToolContext) -> TextOutput:
    text = await _sampled(ctx, "capital_question", "What is the capital of France?", 100)
    return TextOutput(text=f"The model answered: {text}")


async def input_required_request_state(args: NoInput, ctx: ToolContext) -> TextOutput:
    # The channel hands out an answer only with a requestState whose signature checked out.
    ok = await _answer(ctx, "confirm", "Please confirm", "ok", "boolean")
    return TextOutput(text=f"state-ok: confirmed={ok}")


async def input_required_multi_round(args: NoInput, ctx: ToolContext) -> TextOutput:
    name = await _answer(ctx, "step1", "Step 1: What is your name?", "name")
    color = await _answer(ctx, "step2", "Step 2: What is your favorite color?", "color")
    return TextOutput(text=f"{name} likes {color}.")


async def input_required_capabilities(args: NoInput, ctx: ToolContext) -> TextOutput:
    """Asks only what the client declared it can answer (sampling, elicitation or both)."""
    parts = []
    if ctx.channel.can_sample:
        parts.append(await _sampled(ctx, "capability_sampling", "Say hello", 50))
    if ctx.channel.can_elicit:
        parts.append(str(await _answer(ctx, "capability_elicitation", "Your name?", "name")))
    if not parts:
        raise ToolError("The client can answer no question (neither sampling nor elicitation)")
    return TextOutput(text="; ".join(parts))


async def input_required_list_roots(args: NoInput, ctx: ToolContext) -> TextOutput:
    try:
        roots = await ctx.channel.roots("client_roots")
    except ClientCannotAsk as exc:
        raise ToolError(f"Roots are not available: {exc}") from None
    return TextOutput(text=f"The client offers {len(roots)} root(s): {', '.join(roots)}")


async def input_required_multiple_inputs(args: NoInput, ctx: ToolContext) -> TextOutput:
    """Three independent questions (a form, the model, the roots) asked together: one round."""
    try:
        answers = await ctx.channel.ask_all(
            [
                ElicitQuestion("user_name", "What is your name?", _form("name")),
                SampleQuestion(
                    "greeting", [SamplingMessage(role="user", text="Generate a greeting")], 50
                ),
                RootsQuestion("client_roots"),
            ]
        )
    except ClientCannotAsk as exc:
        raise ToolError(f"The client cannot answer every question: {exc}") from None
    name = (answers.elicited("user_name").content or {}).get("name")
    greeting = answers.sampled("greeting").text
    roots = answers.roots("client_roots")
    return TextOutput(text=f"{greeting} {name} ({len(roots)} root(s))")


async def missing_capability(args: NoInput, ctx: ToolContext) -> TextOutput:
    """Needs the client's model and does not do without it: a client that did not declare
    `sampling` gets the pipeline's `client-cannot-ask` outcome (2026-07-28: error -32021)."""
    answer = await ctx.channel.sample(
        "capability_probe", [SamplingMessage(role="user", text="Say hello")], max_tokens=20
    )
    return TextOutput(text=f"The model answered: {answer.text}")


async def schema_features(args: SchemaFeaturesInput, ctx: ToolContext) -> TextOutput:
    return TextOutput(text=f"Received: {args.model_dump_json(exclude_none=True)}")


def _tool(
    verb: str,
    exposed: str,
    title: str,
    handler: Any,
    input_model: type[BaseModel] = NoInput,
) -> AnySpec:
    spec: AnySpec = ToolSpec(
        name=f"{MODULE}.{verb}",
        title=title,
        description=f"Conformance suite fixture: {title.lower()}.",
        module=MODULE,
        scope="user-space",
        policy_hint="read",
        input=input_model,
        output=TextOutput,
        handler=handler,
        fixture=True,
        exposed_name=exposed,
    )
    return spec


TOOLS: tuple[AnySpec, ...] = (
    _tool("simpleText", "test_simple_text", "Simple text", simple_text),
    _tool("imageContent", "test_image_content", "Image content", image_content),
    _tool("audioContent", "test_audio_content", "Audio content", audio_content),
    _tool("embeddedResource", "test_embedded_resource", "Embedded resource", embedded_resource),
    _tool(
        "multipleContentTypes",
        "test_multiple_content_types",
        "Multiple content types",
        multiple_content_types,
    ),
    _tool("withLogging", "test_tool_with_logging", "Log messages while running", with_logging),
    _tool("withProgress", "test_tool_with_progress", "Progress while running", with_progress),
    _tool("errorHandling", "test_error_handling", "Always fails", error_handling),
    _tool("sampling", "test_sampling", "Ask the client's model", sampling, PromptInput),
    _tool("elicitation", "test_elicitation", "Ask the user", elicitation, MessageInput),
    _tool(
        "elicitationDefaults",
        "test_elicitation_sep1034_defaults",
        "Ask with default values",
        elicitation_defaults,
    ),
    _tool(
        "elicitationEnums",
        "test_elicitation_sep1330_enums",
        "Ask with enum choices",
        elicitation_enums,
    ),
    _tool(
        "inputRequiredElicitation",
        "test_input_required_result_elicitation",
        "Ask the user over input-required rounds",
        input_required_elicitation,
    ),
    _tool(
        "inputRequiredSampling",
        "test_input_required_result_sampling",
        "Ask the model over input-required rounds",
        input_required_sampling,
    ),
    _tool(
        "inputRequiredRequestState",
        "test_input_required_result_request_state",
        "Round-trip the request state",
        input_required_request_state,
    ),
    _tool(
        "inputRequiredTamperedState",
        "test_input_required_result_tampered_state",
        "Refuse a tampered request state",
        input_required_request_state,
    ),
    _tool(
        "inputRequiredMultiRound",
        "test_input_required_result_multi_round",
        "Ask in two rounds",
        input_required_multi_round,
    ),
    _tool(
        "inputRequiredCapabilities",
        "test_input_required_result_capabilities",
        "Ask only what the client can answer",
        input_required_capabilities,
    ),
    _tool(
        "inputRequiredListRoots",
        "test_input_required_result_list_roots",
        "Ask for the client's roots",
        input_required_list_roots,
    ),
    _tool(
        "inputRequiredMultipleInputs",
        "test_input_required_result_multiple_inputs",
        "Ask three questions in one round",
        input_required_multiple_inputs,
    ),
    _tool(
        "missingCapability",
        "test_missing_capability",
        "Needs the client's sampling capability",
        missing_capability,
    ),
    _tool(
        "schemaFeatures",
        "json_schema_2020_12_tool",
        "Tool with JSON Schema 2020-12 features",
        schema_features,
        SchemaFeaturesInput,
    ),
)


# -- resources ---------------------------------------------------------------------------------


def _fixed(noun: str, uri: str, title: str, mime_type: str, body: str | bytes) -> ResourceSpec:
    """A resource with one fixed URI and content, listed by `resources/list`."""

    async def read(params: Mapping[str, str], view: ViewContext) -> list[ResourceBody]:
        if isinstance(body, bytes):
            return [ResourceBody(uri=uri, mime_type=mime_type, blob=body)]
        return [ResourceBody(uri=uri, mime_type=mime_type, text=body)]

    async def enumerate_one(view: ViewContext) -> list[ResourceEntry]:
        description = f"Conformance suite fixture: {title.lower()}."
        return [ResourceEntry(uri, noun, title, mime_type, description)]

    return ResourceSpec(
        name=f"{MODULE}.{noun}",
        title=title,
        description=f"Conformance suite fixture: {title.lower()}.",
        module=MODULE,
        uri_template=uri,
        mime_type=mime_type,
        read=read,
        enumerate=enumerate_one,
        fixture=True,
    )


async def _template_data(params: Mapping[str, str], view: ViewContext) -> list[ResourceBody]:
    item = params["id"]
    text = json.dumps({"id": item, "templateTest": True, "data": f"Data for ID: {item}"})
    uri = f"test://template/{item}/data"
    return [ResourceBody(uri=uri, mime_type="application/json", text=text)]


async def _complete_id(prefix: str, view: ViewContext) -> list[str]:
    return [v for v in ("123", "456", "789") if v.startswith(prefix)]


RESOURCES: tuple[ResourceSpec, ...] = (
    _fixed(
        "staticText",
        "test://static-text",
        "Static text",
        "text/plain",
        "This is the content of the static text resource.",
    ),
    _fixed("staticBinary", "test://static-binary", "Static binary", "image/png", RED_PIXEL_PNG),
    _fixed(
        "watched",
        "test://watched-resource",
        "Watched resource",
        "text/plain",
        "A resource clients subscribe to.",
    ),
    ResourceSpec(
        name=f"{MODULE}.templateData",
        title="Template data",
        description="Conformance suite fixture: data for the id in the URI.",
        module=MODULE,
        uri_template="test://template/{id}/data",
        mime_type="application/json",
        read=_template_data,
        complete={"id": _complete_id},
        fixture=True,
    ),
)


# -- prompts -----------------------------------------------------------------------------------


async def _simple(args: Mapping[str, str], view: ViewContext) -> list[PromptMessage]:
    return [PromptMessage(role="user", text="This is a simple prompt for testing.")]


async def _with_arguments(args: Mapping[str, str], view: ViewContext) -> list[PromptMessage]:
    text = f"Prompt with arguments: arg1='{args['arg1']}', arg2='{args['arg2']}'"
    return [PromptMessage(role="user", text=text)]


async def _with_embedded_resource(
    args: Mapping[str, str], view: ViewContext
) -> list[PromptMessage]:
    resource = Attachment(
        kind="resource",
        mime_type="text/plain",
        uri=args["resourceUri"],
        text="Embedded resource content for testing.",
    )
    return [
        PromptMessage(role="user", attachment=resource),
        PromptMessage(role="user", text="Please process the embedded resource above."),
    ]


async def _with_image(args: Mapping[str, str], view: ViewContext) -> list[PromptMessage]:
    image = Attachment(kind="image", mime_type="image/png", data=RED_PIXEL_PNG)
    return [
        PromptMessage(role="user", attachment=image),
        PromptMessage(role="user", text="Please analyze the image above."),
    ]


async def _asks_for_context(args: Mapping[str, str], view: ViewContext) -> list[PromptMessage]:
    """Asks the user for the prompt's context first (an input-required round on 2026-07-28; a
    client without elicitation gets the pipeline's `client-cannot-ask`)."""
    answer = await view.tool.channel.elicit(
        "user_context", "What context should the prompt use?", _form("context")
    )
    context = (answer.content or {}).get("context") if answer.accepted else None
    return [PromptMessage(role="user", text=f"Work in this context: {context or 'none given'}.")]


async def _complete_arg1(prefix: str, view: ViewContext) -> list[str]:
    return [v for v in ("paris", "park", "party") if v.startswith(prefix.lower())]


def _prompt(
    name: str,
    exposed: str,
    title: str,
    render: Any,
    arguments: tuple[PromptArgument, ...] = (),
) -> PromptSpec:
    return PromptSpec(
        name=name,
        title=title,
        description=f"Conformance suite fixture: {title.lower()}.",
        module=MODULE,
        arguments=arguments,
        render=render,
        fixture=True,
        exposed_name=exposed,
    )


PROMPTS: tuple[PromptSpec, ...] = (
    _prompt("simple-prompt", "test_simple_prompt", "Simple prompt", _simple),
    _prompt(
        "prompt-with-arguments",
        "test_prompt_with_arguments",
        "Prompt with arguments",
        _with_arguments,
        (
            PromptArgument("arg1", "First test argument", required=True, complete=_complete_arg1),
            PromptArgument("arg2", "Second test argument", required=True),
        ),
    ),
    _prompt(
        "prompt-with-embedded-resource",
        "test_prompt_with_embedded_resource",
        "Prompt with an embedded resource",
        _with_embedded_resource,
        (PromptArgument("resourceUri", "URI of the resource to embed", required=True),),
    ),
    _prompt("prompt-with-image", "test_prompt_with_image", "Prompt with an image", _with_image),
    _prompt(
        "input-required-prompt",
        "test_input_required_result_prompt",
        "Prompt that asks the user first",
        _asks_for_context,
    ),
)


def register(registry: Registry) -> None:
    """Add every conformance fixture to `registry` (the composition root does, under the test
    flag only)."""
    for tool in TOOLS:
        registry.register(tool)
    for resource in RESOURCES:
        registry.register_resource(resource)
    for prompt in PROMPTS:
        registry.register_prompt(prompt)
