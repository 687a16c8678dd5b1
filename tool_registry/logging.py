"""Structured logging: JSON lines when stderr is not a terminal, readable text when it is.
Logs always go to stderr (stdout belongs to command output and the stdio MCP transport), and
known secret-bearing keys are masked before rendering.

One renderer for everything a process writes to stderr: structlog's own loggers, the standard
library's (asyncio's "Task exception was never retrieved", uvicorn's, the `mcp` SDK's, httpx's)
through `structlog.stdlib.ProcessorFormatter` on the root logger, `warnings` through logging,
and uncaught exceptions (main thread and other threads) through the same formatter, so a log
collector reading JSON never meets a bare traceback line."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import MutableMapping
from types import TracebackType
from typing import Any

import structlog

SECRET_KEYS = frozenset(
    {
        "password",
        "token",
        "authorization",
        "api_key",
        "apikey",
        "secret",
        "access_token",
        "refresh_token",
        "x-api-key",
    }
)


def _mask_secrets(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event):
        if key.lower() in SECRET_KEYS:
            event[key] = "***"
    return event


class _CurrentStderr:
    """Writes to whatever `sys.stderr` is at write time (it may be swapped after set-up)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


class _StderrHandler(logging.StreamHandler[_CurrentStderr]):
    """The root handler `configure_logging` installs (and replaces when called again), leaving
    other handlers (pytest's capture, a host application's) in place."""


def stderr_is_json(json: bool | None = None) -> bool:
    """Whether logs render as JSON: `json` when given, else when stderr is not a terminal."""
    return (not sys.stderr.isatty()) if json is None else json


def configure_logging(level: str = "INFO", *, json: bool | None = None) -> None:
    """Route structlog and the standard library's logging to stderr through one renderer.
    `level` applies to Mana's own (structlog) loggers; other libraries log WARNING and up."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    renderer: Any = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if stderr_is_json(json)
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _mask_secrets,
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
    handler = _StderrHandler(_CurrentStderr())
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(max(numeric, logging.WARNING))
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_thread_uncaught


_uncaught = logging.getLogger("mana.uncaught")


def _log_uncaught(
    kind: type[BaseException], value: BaseException, tb: TracebackType | None
) -> None:
    """An exception nobody caught: logged once, traceback included, in the log's format."""
    _uncaught.critical("uncaught exception", exc_info=(kind, value, tb))


def _log_thread_uncaught(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit or args.exc_value is None:
        return
    name = args.thread.name if args.thread is not None else "?"
    _uncaught.critical(
        f"uncaught exception in thread {name}",
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )
