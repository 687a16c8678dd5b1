"""Derived passwords (and the production refusal of the development secret); due logic."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest

from personas.passwords import (
    DEVELOPMENT_SECRET,
    SECRET_ENV,
    PersonaSecretError,
    derive_password,
    persona_secret,
)
from personas.schedule import is_due, next_tick, tick_id

STRONG = "k3Jd9s0-private-production-secret-value-x"


def test_password_is_base64url_of_hmac_sha256_of_the_email() -> None:
    expected = (
        base64.urlsafe_b64encode(
            hmac.new(b"s3cret", b"maya.chen@mana.test", hashlib.sha256).digest()
        )
        .decode()
        .rstrip("=")
    )
    assert derive_password(b"s3cret", " Maya.Chen@mana.test ") == expected
    assert len(expected) == 43 and "=" not in expected
    assert derive_password(b"other", "maya.chen@mana.test") != expected


def test_secret_comes_from_the_environment() -> None:
    secret = persona_secret({SECRET_ENV: STRONG}, env="production")
    assert secret.value == STRONG.encode() and not secret.is_development
    assert STRONG not in repr(secret)


def test_development_secret_is_the_default_outside_production() -> None:
    for env in ("development", "test"):
        secret = persona_secret({}, env=env)
        assert secret.is_development and secret.source == "built-in development secret"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({SECRET_ENV: DEVELOPMENT_SECRET}, "is the built-in development secret"),
        ({}, "is not set, and with MANA_ENV=production the built-in development secret"),
        ({SECRET_ENV: "   "}, "is not set"),
        ({SECRET_ENV: "short"}, "too short"),
    ],
)
def test_production_refuses_the_development_secret(environ: dict[str, str], message: str) -> None:
    with pytest.raises(PersonaSecretError, match=message) as info:
        persona_secret(environ, env="production")
    assert DEVELOPMENT_SECRET not in str(info.value)


# -- schedule ---------------------------------------------------------------------------------------

MON = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
SAT = datetime(2026, 11, 28, 9, 30, tzinfo=UTC)


def test_tick_ids() -> None:
    assert tick_id("daily", MON) == "2026-11-23"
    assert tick_id("weekdays", MON) == "2026-11-23"
    assert tick_id("hourly", MON) == "2026-11-23T09"


def test_daily_is_due_once_per_day() -> None:
    assert is_due("daily", None, MON).due
    assert not is_due("daily", MON - timedelta(minutes=5), MON).due
    assert not is_due("daily", MON.replace(hour=0, minute=0), MON).due
    assert is_due("daily", MON - timedelta(days=1), MON).due
    assert is_due("daily", SAT - timedelta(days=1), SAT).due


def test_weekdays_skips_saturday_and_sunday() -> None:
    assert is_due("weekdays", MON - timedelta(days=3), MON).due
    sat = is_due("weekdays", None, SAT)
    sun = is_due("weekdays", None, SAT + timedelta(days=1))
    assert not sat.due and not sun.due and "weekend" in sat.reason
    assert next_tick("weekdays", SAT) == datetime(2026, 11, 30, tzinfo=UTC)


def test_hourly_is_due_once_per_hour() -> None:
    assert not is_due("hourly", MON.replace(minute=1), MON).due
    assert is_due("hourly", MON - timedelta(hours=1), MON).due
    assert next_tick("hourly", MON) == MON.replace(hour=10, minute=0)


def test_activity_in_the_future_is_not_due() -> None:
    assert not is_due("daily", MON + timedelta(hours=3), MON).due
