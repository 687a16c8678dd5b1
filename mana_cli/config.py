"""Settings: flags, then environment (`MANA_*`), then defaults that work on a fresh machine."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tool_registry.errors import ValidationFailed

ENVIRONMENTS = ("development", "test", "production")
DEFAULT_ALLOWED_ORIGINS = "http://127.0.0.1:*,http://localhost:*,http://[::1]:*"
_ORIGIN = re.compile(r"^https?://(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+)(:(\d{1,5}|\*))?$")
_AUDIENCE = re.compile(r"^[\x21-\x7e]{1,200}$")


def _int(name: str, raw: str, *, low: int, high: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ValidationFailed(f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise ValidationFailed(f"{name} must be between {low} and {high}, got {value}")
    return value


def validate_host(raw: str) -> str:
    try:
        ipaddress.ip_address(raw)
    except ValueError:
        if raw != "localhost":
            raise ValidationFailed(
                f"MANA_HOST must be an IP address or localhost, got {raw!r}"
            ) from None
    return raw


def _origins(raw: str) -> tuple[str, ...]:
    items = tuple(o.strip().rstrip("/") for o in raw.split(",") if o.strip())
    bad = [o for o in items if not _ORIGIN.match(o)]
    if bad:
        raise ValidationFailed(
            "MANA_ALLOWED_ORIGINS must be a comma-separated list of origins like "
            f"http://localhost:6274 or https://app.example.com (port * = any); bad: {', '.join(bad)}"
        )
    return items


def _optional(raw: str | None) -> str | None:
    return raw.strip() if raw is not None and raw.strip() else None


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path(".mana")
    db_path: Path = Path(".mana/mana.db")
    host: str = "127.0.0.1"
    port: int = 3069
    env: str = "development"
    log_level: str = "INFO"
    log_json: bool | None = None
    # MCP server (HTTP): token checks, browser origins, sessions, shutdown
    jwt_audience: str = "mana"
    jwt_issuer: str | None = None
    jwks_url: str | None = None
    allowed_origins: tuple[str, ...] = tuple(DEFAULT_ALLOWED_ORIGINS.split(","))
    session_idle_seconds: int = 1800
    sessions_per_user: int = 16
    shutdown_grace_seconds: int = 10
    # MCP server (stdio): who and where
    user: str | None = None
    space: str | None = None
    environ: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def load(
        cls, flags: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
    ) -> Settings:
        """Build settings; a bad value raises `ValidationFailed` naming the setting."""
        env = dict(os.environ if environ is None else environ)
        flags = {k: v for k, v in (flags or {}).items() if v is not None}

        def pick(flag: str, var: str, default: str) -> str:
            if flag in flags:
                return str(flags[flag])
            return env.get(var, default)

        data_dir = Path(pick("data_dir", "MANA_DATA_DIR", ".mana")).expanduser()
        db_path = Path(pick("db", "MANA_DB", str(data_dir / "mana.db"))).expanduser()
        host = validate_host(pick("host", "MANA_HOST", "127.0.0.1"))
        port = _int("MANA_PORT", pick("port", "MANA_PORT", "3069"), low=1, high=65535)
        mode = pick("env", "MANA_ENV", "development")
        if mode not in ENVIRONMENTS:
            raise ValidationFailed(
                f"MANA_ENV must be one of {', '.join(ENVIRONMENTS)}, got {mode!r}"
            )
        level = pick("log_level", "MANA_LOG_LEVEL", "INFO").upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValidationFailed(
                f"MANA_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {level!r}"
            )
        json_raw = env.get("MANA_LOG_JSON")
        log_json = None if json_raw is None else json_raw.lower() in ("1", "true", "yes")
        audience = pick("jwt_audience", "MANA_JWT_AUDIENCE", "mana").strip()
        if not _AUDIENCE.match(audience):
            raise ValidationFailed(
                f"MANA_JWT_AUDIENCE must be 1-200 printable characters without spaces, "
                f"got {audience!r}"
            )
        jwks_url = _optional(env.get("MANA_JWKS_URL"))
        if jwks_url is not None:
            from mana_auth.remote import check_jwks_url

            try:
                check_jwks_url(jwks_url)
            except ValueError as exc:
                raise ValidationFailed(f"MANA_JWKS_URL: {exc}") from None
        return cls(
            data_dir=data_dir,
            db_path=db_path,
            host=host,
            port=port,
            env=mode,
            log_level=level,
            log_json=log_json,
            jwt_audience=audience,
            jwt_issuer=_optional(env.get("MANA_JWT_ISSUER")),
            jwks_url=jwks_url,
            allowed_origins=_origins(
                pick("allowed_origins", "MANA_ALLOWED_ORIGINS", DEFAULT_ALLOWED_ORIGINS)
            ),
            session_idle_seconds=_int(
                "MANA_SESSION_IDLE_SECONDS",
                pick("session_idle_seconds", "MANA_SESSION_IDLE_SECONDS", "1800"),
                low=1,
                high=7 * 86400,
            ),
            sessions_per_user=_int(
                "MANA_SESSIONS_PER_USER",
                pick("sessions_per_user", "MANA_SESSIONS_PER_USER", "16"),
                low=1,
                high=10_000,
            ),
            shutdown_grace_seconds=_int(
                "MANA_SHUTDOWN_GRACE_SECONDS",
                pick("shutdown_grace_seconds", "MANA_SHUTDOWN_GRACE_SECONDS", "10"),
                low=1,
                high=600,
            ),
            user=_optional(pick("user", "MANA_USER", "")),
            space=_optional(pick("space", "MANA_SPACE", "")),
            environ=env,
        )

    def with_flags(
        self,
        *,
        host: str | None = None,
        port: int | None = None,
        user: str | None = None,
        space: str | None = None,
    ) -> Settings:
        """These settings with command flags applied on top (flags beat the environment)."""
        changes: dict[str, object] = {}
        if host is not None:
            changes["host"] = validate_host(host)
        if port is not None:
            changes["port"] = _int("--port", str(port), low=1, high=65535)
        if user is not None:
            changes["user"] = _optional(user)
        if space is not None:
            changes["space"] = _optional(space)
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @property
    def production(self) -> bool:
        return self.env == "production"
