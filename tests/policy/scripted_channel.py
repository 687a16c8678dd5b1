"""A scripted client channel for tests of what a call asks its client: answers questions from
a script (or raises the scripted exception) and records what it was asked."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tool_registry.client_channel import (
    Answers,
    ClientCannotAsk,
    ElicitAnswer,
    ElicitQuestion,
    LogLevel,
    SampledText,
    SamplingMessage,
)
from tool_registry.client_channel import Question as ChannelQuestion


@dataclass
class Question:
    key: str
    message: str
    schema: Mapping[str, Any]


@dataclass
class ScriptedChannel:
    """A client that answers each question with the next scripted answer (an `ElicitAnswer`, or
    an exception to raise), recording what it was asked."""

    answers: list[ElicitAnswer | BaseException]
    asked: list[Question] = field(default_factory=list)
    can_elicit: bool = True
    can_sample: bool = False
    can_list_roots: bool = False

    async def progress(
        self, progress: float, total: float | None = None, message: str | None = None
    ) -> None:
        return None

    async def log(self, level: LogLevel, data: Any, logger: str | None = None) -> None:
        return None

    async def elicit(self, key: str, message: str, schema: Mapping[str, Any]) -> ElicitAnswer:
        self.asked.append(Question(key, message, schema))
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    async def sample(
        self,
        key: str,
        messages: Sequence[SamplingMessage],
        *,
        max_tokens: int,
        system: str | None = None,
    ) -> SampledText:
        raise ClientCannotAsk("no sampling in this test")

    async def roots(self, key: str = "roots") -> list[str]:
        raise ClientCannotAsk("no roots in this test")

    async def ask_all(self, questions: Sequence[ChannelQuestion]) -> Answers:
        """Forms only, each answered like `elicit` (a confirmation is asked this way)."""
        answers: dict[str, ElicitAnswer] = {}
        for question in questions:
            if not isinstance(question, ElicitQuestion):
                raise ClientCannotAsk("only forms in this test")
            answers[question.key] = await self.elicit(
                question.key, question.message, question.schema
            )
        return Answers(answers)
