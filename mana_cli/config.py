"""Settings: flags, then environment (`MANA_*`), then defaults that work on a fresh machine."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tool_registry.errors import ValidationFailed

ENVIRONMENTS = ("development", "test", "production")


def _int(name: str, raw: str, *, low: int, high: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ValidationFailed(f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise ValidationFailed(f"{name} must be between {low} and {high}, got {value}")
    return value


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path(".mana")
    db_path: Path = Path(".mana/mana.db")
    host: str = "127.0.0.1"
    port: int = 3069
    env: str = "development"
    log_level: str = "INFO"
    log_json: bool | None = None
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
        host = pick("host", "MANA_HOST", "127.0.0.1")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            if host != "localhost":
                raise ValidationFailed(
                    f"MANA_HOST must be an IP address or localhost, got {host!r}"
                ) from None
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
        return cls(
            data_dir=data_dir,
            db_path=db_path,
            host=host,
            port=port,
            env=mode,
            log_level=level,
            log_json=log_json,
            environ=env,
        )

    @property
    def production(self) -> bool:
        return self.env == "production"
