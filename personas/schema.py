"""Schema of the `personas` component: the persona table (one row per persona user), the actions
a persona took (one row per tool call), the ratings it gave, and one row per tick.

Rows of a tick have deterministic ids (see `personas.store`), so re-running a tick upserts the
same rows instead of adding new ones. Everything hangs off `personas.user_id`, which cascades
from `users`: deleting a persona user deletes all of it.

The PostgreSQL text of each step has the same tables, columns and constraints; it differs only
where the dialects do: no `WITHOUT ROWID`, and `DOUBLE PRECISION` for SQLite's 8-byte `REAL`
(PostgreSQL's `REAL` is 4 bytes, which would round latencies).
"""

from __future__ import annotations

from tool_registry.store.database import Migration

COMPONENT = "personas"

PERSONAS_MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        COMPONENT,
        1,
        "personas-actions-feedback-ticks",
        """
        CREATE TABLE personas (
            user_id TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
            archetype TEXT NOT NULL,
            system_prompt TEXT NOT NULL,
            module_mix TEXT NOT NULL,
            cadence TEXT NOT NULL CHECK (cadence IN ('daily', 'weekdays', 'hourly')),
            last_active_at TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        ) WITHOUT ROWID;
        CREATE TABLE persona_actions (
            id TEXT PRIMARY KEY,
            tick_id TEXT NOT NULL,
            persona_id TEXT NOT NULL REFERENCES personas(user_id) ON DELETE CASCADE,
            call_index INTEGER NOT NULL,
            space_id TEXT REFERENCES spaces(id) ON DELETE SET NULL,
            tool TEXT NOT NULL,
            module TEXT NOT NULL,
            input_hash TEXT NOT NULL,
            result TEXT NOT NULL CHECK (result IN ('ok', 'error')),
            error_message TEXT,
            latency_ms REAL NOT NULL,
            at TEXT NOT NULL,
            UNIQUE (tick_id, persona_id, call_index)
        );
        CREATE INDEX persona_actions_by_persona ON persona_actions (persona_id, at);
        CREATE INDEX persona_actions_by_time ON persona_actions (at, module);
        CREATE TABLE persona_feedback (
            id TEXT PRIMARY KEY,
            tick_id TEXT NOT NULL,
            persona_id TEXT NOT NULL REFERENCES personas(user_id) ON DELETE CASCADE,
            module TEXT NOT NULL,
            rating INTEGER CHECK (rating BETWEEN 1 AND 5),
            notes TEXT,
            at TEXT NOT NULL,
            UNIQUE (tick_id, persona_id, module),
            CHECK ((module = 'failed-rating') = (rating IS NULL))
        );
        CREATE INDEX persona_feedback_by_persona ON persona_feedback (persona_id, at);
        CREATE INDEX persona_feedback_by_time ON persona_feedback (at, module);
        CREATE TABLE persona_ticks (
            tick_id TEXT NOT NULL,
            persona_id TEXT NOT NULL REFERENCES personas(user_id) ON DELETE CASCADE,
            space_id TEXT REFERENCES spaces(id) ON DELETE SET NULL,
            focus_module TEXT,
            status TEXT NOT NULL CHECK (status IN ('running', 'ok', 'failed', 'timeout')),
            stop_reason TEXT,
            error TEXT,
            calls INTEGER NOT NULL DEFAULT 0,
            input_tokens INTEGER NOT NULL DEFAULT 0,
            output_tokens INTEGER NOT NULL DEFAULT 0,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            PRIMARY KEY (tick_id, persona_id)
        ) WITHOUT ROWID;
        CREATE INDEX persona_ticks_by_persona ON persona_ticks (persona_id, started_at);
        """,
        postgres="""
        CREATE TABLE personas (
            user_id TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
            archetype TEXT NOT NULL,
            system_prompt TEXT NOT NULL,
            module_mix TEXT NOT NULL,
            cadence TEXT NOT NULL CHECK (cadence IN ('daily', 'weekdays', 'hourly')),
            last_active_at TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE TABLE persona_actions (
            id TEXT PRIMARY KEY,
            tick_id TEXT NOT NULL,
            persona_id TEXT NOT NULL REFERENCES personas(user_id) ON DELETE CASCADE,
            call_index INTEGER NOT NULL,
            space_id TEXT REFERENCES spaces(id) ON DELETE SET NULL,
            tool TEXT NOT NULL,
            module TEXT NOT NULL,
            input_hash TEXT NOT NULL,
            result TEXT NOT NULL CHECK (result IN ('ok', 'error')),
            error_message TEXT,
            latency_ms DOUBLE PRECISION NOT NULL,
            at TEXT NOT NULL,
            UNIQUE (tick_id, persona_id, call_index)
        );
        CREATE INDEX persona_actions_by_persona ON persona_actions (persona_id, at);
        CREATE INDEX persona_actions_by_time ON persona_actions (at, module);
        CREATE TABLE persona_feedback (
            id TEXT PRIMARY KEY,
            tick_id TEXT NOT NULL,
            persona_id TEXT NOT NULL REFERENCES personas(user_id) ON DELETE CASCADE,
            module TEXT NOT NULL,
            rating INTEGER CHECK (rating BETWEEN 1 AND 5),
            notes TEXT,
            at TEXT NOT NULL,
            UNIQUE (tick_id, persona_id, module),
            CHECK ((module = 'failed-rating') = (rating IS NULL))
        );
        CREATE INDEX persona_feedback_by_persona ON persona_feedback (persona_id, at);
        CREATE INDEX persona_feedback_by_time ON persona_feedback (at, module);
        CREATE TABLE persona_ticks (
            tick_id TEXT NOT NULL,
            persona_id TEXT NOT NULL REFERENCES personas(user_id) ON DELETE CASCADE,
            space_id TEXT REFERENCES spaces(id) ON DELETE SET NULL,
            focus_module TEXT,
            status TEXT NOT NULL CHECK (status IN ('running', 'ok', 'failed', 'timeout')),
            stop_reason TEXT,
            error TEXT,
            calls INTEGER NOT NULL DEFAULT 0,
            input_tokens INTEGER NOT NULL DEFAULT 0,
            output_tokens INTEGER NOT NULL DEFAULT 0,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            PRIMARY KEY (tick_id, persona_id)
        );
        CREATE INDEX persona_ticks_by_persona ON persona_ticks (persona_id, started_at);
        """,
    ),
)

__all__ = ["COMPONENT", "PERSONAS_MIGRATIONS"]
