"""Settings: flags, then environment (`MANA_*`), then defaults that work on a fresh machine."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tool_registry.errors import ValidationFailed

ENVIRONMENTS = ("development", "test", "production")
DEFAULT_ALLOWED_ORIGINS = "http://127.0.0.1:*,http://localhost:*,http://[::1]:*"
_ORIGIN = re.compile(r"^https?://(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+)(:(\d{1,5}|\*))?$")
_AUDIENCE = re.compile(r"^[\x21-\x7e]{1,200}$")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass(frozen=True)
class Raw:
    """One setting's text and where it came from (`--flag`, `MANA_VAR` or the default), so a
    bad value's error names what the user has to change."""

    text: str
    source: str
    flag: bool = False

    @property
    def origin(self) -> str:
        """How the user wrote it: `--port 99999` or `MANA_PORT='99999'`."""
        if self.flag:
            return f"{self.source} {shlex.quote(self.text)}"
        return f"{self.source}={self.text!r}"

    def invalid(self, problem: str) -> ValidationFailed:
        return ValidationFailed(f"{self.origin} {problem}")

    def integer(self, *, low: int, high: int) -> int:
        try:
            value = int(self.text)
        except ValueError:
            raise self.invalid(f"is not an integer ({low}-{high})") from None
        if not low <= value <= high:
            raise self.invalid(f"is out of range ({low}-{high})")
        return value


def validate_host(raw: Raw) -> str:
    try:
        ipaddress.ip_address(raw.text)
    except ValueError:
        if raw.text != "localhost":
            raise raw.invalid("is not an IP address or localhost") from None
    return raw.text


def log_level(raw: Raw) -> str:
    """The stdlib level name for `raw` (any case)."""
    level = raw.text.strip().upper()
    if level not in LOG_LEVELS:
        raise raw.invalid(f"is not a log level ({', '.join(x.lower() for x in LOG_LEVELS)})")
    return level


def _origins(raw: Raw) -> tuple[str, ...]:
    items = tuple(o.strip().rstrip("/") for o in raw.text.split(",") if o.strip())
    bad = [o for o in items if not _ORIGIN.match(o)]
    if bad:
        raise ValidationFailed(
            f"{raw.source} must be a comma-separated list of origins like "
            f"http://localhost:6274 or https://app.example.com (port * = any); bad: {', '.join(bad)}"
        )
    return items


def _optional(raw: str | None) -> str | None:
    return raw.strip() if raw is not None and raw.strip() else None


def _database_url(raw: Raw) -> str | None:
    text = raw.text.strip()
    if not text:
        return None
    from tool_registry.store.postgres import is_postgres_url

    if not is_postgres_url(text):
        # The value is not echoed: a URL may carry a password.
        raise ValidationFailed(
            f"{raw.source} is not a PostgreSQL URL (postgresql://user:password@host:port/db)"
        )
    return text


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path(".mana")
    db_path: Path = Path(".mana/mana.db")
    # PostgreSQL instead of the embedded file (`--database-url`, env MANA_DATABASE_URL).
    database_url: str | None = field(default=None, repr=False)
    host: str = "127.0.0.1"
    port: int = 3069
    env: str = "development"
    log_level: str = "INFO"
    log_json: bool | None = None
    # MCP server (HTTP): token checks, browser origins, sessions, shutdown
    jwt_audience: str = "mana"
    jwt_issuer: str | None = None
    jwks_url: str | None = None
    # the externally visible base URL (MANA_PUBLIC_URL); None: the server's loopback URL
    public_url: str | None = None
    # the external authorization server the resource metadata names (MANA_OAUTH_ISSUER)
    oauth_issuer: str | None = None
    # origins (loopback only) whose client metadata documents the built-in authorization
    # server may fetch from loopback (MANA_OAUTH_LOOPBACK_CLIENTS; development and tests)
    oauth_loopback_clients: frozenset[str] = frozenset()
    allowed_origins: tuple[str, ...] = tuple(DEFAULT_ALLOWED_ORIGINS.split(","))
    session_idle_seconds: int = 1800
    sessions_per_user: int = 16
    session_protect_seconds: int = 600
    shutdown_grace_seconds: int = 10
    # MCP server (stdio): who and where
    user: str | None = None
    space: str | None = None
    environ: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def database(self) -> str:
        """What `open_database` opens: the PostgreSQL URL when one is set, else the file."""
        return self.database_url if self.database_url is not None else str(self.db_path)

    @property
    def database_label(self) -> str:
        """The database for messages and logs: host:port/name or the file path, no password."""
        if self.database_url is not None:
            from tool_registry.store.postgres import describe_url

            return "postgresql://" + describe_url(self.database_url)
        return str(self.db_path)

    @classmethod
    def load(
        cls,
        flags: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
        *,
        default_log_level: str = "INFO",
    ) -> Settings:
        """Build settings: a flag beats its `MANA_*` variable, which beats the default. A bad
        value raises `ValidationFailed` naming the flag or variable it came from."""
        env = dict(os.environ if environ is None else environ)
        flags = {k: v for k, v in (flags or {}).items() if v is not None}

        def get(flag: str, var: str, default: str) -> Raw:
            if flag in flags:
                return Raw(str(flags[flag]), "--" + flag.replace("_", "-"), flag=True)
            if var in env:
                return Raw(env[var], var)
            return Raw(default, f"{var} (default)")

        def pick(flag: str, var: str, default: str) -> str:
            return get(flag, var, default).text

        data_dir = Path(pick("data_dir", "MANA_DATA_DIR", ".mana")).expanduser()
        db_path = Path(pick("db", "MANA_DB", str(data_dir / "mana.db"))).expanduser()
        database_url = _database_url(get("database_url", "MANA_DATABASE_URL", ""))
        host = validate_host(get("host", "MANA_HOST", "127.0.0.1"))
        port = get("port", "MANA_PORT", "3069").integer(low=1, high=65535)
        mode = get("env", "MANA_ENV", "development")
        if mode.text not in ENVIRONMENTS:
            raise mode.invalid(f"is not an environment ({', '.join(ENVIRONMENTS)})")
        level = log_level(get("log_level", "MANA_LOG_LEVEL", default_log_level))
        json_raw = env.get("MANA_LOG_JSON")
        log_json = None if json_raw is None else json_raw.lower() in ("1", "true", "yes")
        audience_raw = get("jwt_audience", "MANA_JWT_AUDIENCE", "mana")
        audience = audience_raw.text.strip()
        if not _AUDIENCE.match(audience):
            raise audience_raw.invalid("is not 1-200 printable characters without spaces")
        jwks_url = _optional(env.get("MANA_JWKS_URL"))
        if jwks_url is not None:
            from mana_auth.remote import check_jwks_url

            try:
                check_jwks_url(jwks_url)
            except ValueError as exc:
                raise ValidationFailed(f"MANA_JWKS_URL: {exc}") from None
        public_url = _optional(env.get("MANA_PUBLIC_URL"))
        if public_url is not None:
            from mana_http.resource_metadata import check_public_url

            try:
                public_url = check_public_url(public_url)
            except ValueError as exc:
                raise ValidationFailed(f"MANA_PUBLIC_URL: {exc}") from None
        loopback_clients = env.get("MANA_OAUTH_LOOPBACK_CLIENTS", "")
        from mana_oauth.cimd import parse_loopback_origins

        try:
            oauth_loopback_clients = parse_loopback_origins(loopback_clients)
        except ValueError as exc:
            raise ValidationFailed(f"MANA_OAUTH_LOOPBACK_CLIENTS: {exc}") from None
        return cls(
            data_dir=data_dir,
            db_path=db_path,
            database_url=database_url,
            host=host,
            port=port,
            env=mode.text,
            log_level=level,
            log_json=log_json,
            jwt_audience=audience,
            jwt_issuer=_optional(env.get("MANA_JWT_ISSUER")),
            jwks_url=jwks_url,
            public_url=public_url,
            oauth_issuer=_optional(env.get("MANA_OAUTH_ISSUER")),
            oauth_loopback_clients=oauth_loopback_clients,
            allowed_origins=_origins(
                get("allowed_origins", "MANA_ALLOWED_ORIGINS", DEFAULT_ALLOWED_ORIGINS)
            ),
            session_idle_seconds=get(
                "session_idle_seconds", "MANA_SESSION_IDLE_SECONDS", "1800"
            ).integer(low=1, high=7 * 86400),
            sessions_per_user=get("sessions_per_user", "MANA_SESSIONS_PER_USER", "16").integer(
                low=1, high=10_000
            ),
            session_protect_seconds=get(
                "session_protect_seconds", "MANA_SESSION_PROTECT_SECONDS", "600"
            ).integer(low=0, high=7 * 86400),
            shutdown_grace_seconds=get(
                "shutdown_grace_seconds", "MANA_SHUTDOWN_GRACE_SECONDS", "10"
            ).integer(low=1, high=600),
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
            changes["host"] = validate_host(Raw(host, "--host", flag=True))
        if port is not None:
            changes["port"] = Raw(str(port), "--port", flag=True).integer(low=1, high=65535)
        if user is not None:
            changes["user"] = _optional(user)
        if space is not None:
            changes["space"] = _optional(space)
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @property
    def production(self) -> bool:
        return self.env == "production"
