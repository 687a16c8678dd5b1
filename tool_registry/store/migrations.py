"""Versioned schema of the core component (accounts, records, audit, idempotency, policy data)."""

from __future__ import annotations

from tool_registry.store.database import Migration

CORE_MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        "core",
        1,
        "accounts-records-audit",
        """
        CREATE TABLE users (
            id TEXT PRIMARY KEY,
            email TEXT NOT NULL UNIQUE COLLATE NOCASE,
            name TEXT NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('human', 'persona', 'system')),
            tier TEXT NOT NULL DEFAULT 'free' CHECK (tier IN ('free', 'plus', 'pro')),
            password_hash TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE TABLE spaces (
            id TEXT PRIMARY KEY,
            slug TEXT NOT NULL UNIQUE,
            name TEXT NOT NULL,
            type TEXT NOT NULL
                CHECK (type IN ('personal', 'brand', 'club', 'family', 'team', 'practice')),
            created_by TEXT REFERENCES users(id) ON DELETE SET NULL,
            created_at TEXT NOT NULL
        );
        CREATE TABLE memberships (
            space_id TEXT NOT NULL REFERENCES spaces(id) ON DELETE CASCADE,
            user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            role TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
            created_at TEXT NOT NULL,
            PRIMARY KEY (space_id, user_id)
        ) WITHOUT ROWID;
        CREATE INDEX memberships_by_user ON memberships (user_id);
        CREATE TABLE records (
            id TEXT PRIMARY KEY,
            space_id TEXT NOT NULL REFERENCES spaces(id) ON DELETE CASCADE,
            collection TEXT NOT NULL,
            author_id TEXT NOT NULL,
            data TEXT NOT NULL,
            field_updated_at TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            deleted_at TEXT
        );
        CREATE INDEX records_by_space ON records (space_id, collection, created_at);
        CREATE INDEX records_by_author ON records (author_id);
        CREATE TABLE audit_log (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            request_id TEXT NOT NULL,
            user_id TEXT,
            space_id TEXT,
            tool TEXT NOT NULL,
            invoker TEXT NOT NULL,
            input_hash TEXT,
            outcome TEXT NOT NULL CHECK (outcome IN ('ok', 'invalid-input', 'denied', 'error')),
            reason TEXT,
            latency_ms REAL NOT NULL
        );
        CREATE INDEX audit_by_space ON audit_log (space_id, at);
        CREATE INDEX audit_by_user_tool ON audit_log (user_id, tool, at);
        CREATE TABLE idempotency_keys (
            user_id TEXT NOT NULL,
            key TEXT NOT NULL,
            tool TEXT NOT NULL,
            space_id TEXT,
            input_hash TEXT NOT NULL,
            outcome TEXT NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (user_id, key)
        ) WITHOUT ROWID;
        CREATE TABLE space_destructive_allowlist (
            space_id TEXT NOT NULL REFERENCES spaces(id) ON DELETE CASCADE,
            tool TEXT NOT NULL,
            added_by TEXT,
            added_at TEXT NOT NULL,
            PRIMARY KEY (space_id, tool)
        ) WITHOUT ROWID;
        CREATE TABLE space_policy_audit (
            id INTEGER PRIMARY KEY,
            space_id TEXT NOT NULL REFERENCES spaces(id) ON DELETE CASCADE,
            actor_id TEXT NOT NULL,
            action TEXT NOT NULL CHECK (action IN ('allow', 'revoke')),
            tool TEXT NOT NULL,
            at TEXT NOT NULL
        );
        CREATE INDEX space_policy_audit_by_space ON space_policy_audit (space_id, at);
        """,
        postgres="""
        -- SQLite's instr() and the store's mana_fold() (case folding for search), so store SQL
        -- reads the same on both backends. lower() is PostgreSQL's closest fold.
        CREATE FUNCTION instr(text, text) RETURNS integer
            LANGUAGE sql IMMUTABLE PARALLEL SAFE AS 'SELECT strpos($1, $2)';
        CREATE FUNCTION mana_fold(text) RETURNS text
            LANGUAGE sql IMMUTABLE PARALLEL SAFE AS 'SELECT lower($1)';
        CREATE TABLE users (
            id TEXT PRIMARY KEY,
            email TEXT NOT NULL,
            name TEXT NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('human', 'persona', 'system')),
            tier TEXT NOT NULL DEFAULT 'free' CHECK (tier IN ('free', 'plus', 'pro')),
            password_hash TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        -- SQLite's `UNIQUE COLLATE NOCASE`: emails are unique whatever their case.
        CREATE UNIQUE INDEX users_email_nocase ON users (lower(email));
        CREATE TABLE spaces (
            id TEXT PRIMARY KEY,
            slug TEXT NOT NULL UNIQUE,
            name TEXT NOT NULL,
            type TEXT NOT NULL
                CHECK (type IN ('personal', 'brand', 'club', 'family', 'team', 'practice')),
            created_by TEXT REFERENCES users(id) ON DELETE SET NULL,
            created_at TEXT NOT NULL
        );
        CREATE TABLE memberships (
            space_id TEXT NOT NULL REFERENCES spaces(id) ON DELETE CASCADE,
            user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            role TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
            created_at TEXT NOT NULL,
            PRIMARY KEY (space_id, user_id)
        );
        CREATE INDEX memberships_by_user ON memberships (user_id);
        CREATE TABLE records (
            id TEXT PRIMARY KEY,
            space_id TEXT NOT NULL REFERENCES spaces(id) ON DELETE CASCADE,
            collection TEXT NOT NULL,
            author_id TEXT NOT NULL,
            data TEXT NOT NULL,
            field_updated_at TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            deleted_at TEXT
        );
        CREATE INDEX records_by_space ON records (space_id, collection, created_at);
        CREATE INDEX records_by_author ON records (author_id);
        CREATE TABLE audit_log (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            at TEXT NOT NULL,
            request_id TEXT NOT NULL,
            user_id TEXT,
            space_id TEXT,
            tool TEXT NOT NULL,
            invoker TEXT NOT NULL,
            input_hash TEXT,
            outcome TEXT NOT NULL CHECK (outcome IN ('ok', 'invalid-input', 'denied', 'error')),
            reason TEXT,
            latency_ms DOUBLE PRECISION NOT NULL
        );
        CREATE INDEX audit_by_space ON audit_log (space_id, at);
        CREATE INDEX audit_by_user_tool ON audit_log (user_id, tool, at);
        CREATE TABLE idempotency_keys (
            user_id TEXT NOT NULL,
            key TEXT NOT NULL,
            tool TEXT NOT NULL,
            space_id TEXT,
            input_hash TEXT NOT NULL,
            outcome TEXT NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (user_id, key)
        );
        CREATE TABLE space_destructive_allowlist (
            space_id TEXT NOT NULL REFERENCES spaces(id) ON DELETE CASCADE,
            tool TEXT NOT NULL,
            added_by TEXT,
            added_at TEXT NOT NULL,
            PRIMARY KEY (space_id, tool)
        );
        CREATE TABLE space_policy_audit (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            space_id TEXT NOT NULL REFERENCES spaces(id) ON DELETE CASCADE,
            actor_id TEXT NOT NULL,
            action TEXT NOT NULL CHECK (action IN ('allow', 'revoke')),
            tool TEXT NOT NULL,
            at TEXT NOT NULL
        );
        CREATE INDEX space_policy_audit_by_space ON space_policy_audit (space_id, at);
        """,
    ),
    Migration(
        "core",
        2,
        "email-lookup-and-unicode-fold",
        # Email lookups read `lower(email) = lower(?)` on both backends: index that on SQLite.
        """
        CREATE INDEX users_by_lower_email ON users (lower(email));
        """,
        # PostgreSQL's unique index is already on lower(email). lower() under the C locale folds
        # ASCII only: fold with ICU's root locale when the server has it, so a search for
        # "éclair" finds "Éclair" whatever the database's locale.
        postgres="""
        DO $mana$
        BEGIN
            IF EXISTS (SELECT 1 FROM pg_collation WHERE collname = 'und-x-icu') THEN
                EXECUTE 'CREATE OR REPLACE FUNCTION mana_fold(text) RETURNS text '
                    'LANGUAGE sql IMMUTABLE PARALLEL SAFE '
                    'AS ''SELECT lower($1 COLLATE "und-x-icu")''';
            END IF;
        END
        $mana$;
        """,
    ),
    Migration(
        "core",
        3,
        "confirmations-and-destructive-mode-audit",
        # Each space's destructive mode (`space_destructive_mode`, one row per space that chose
        # one; no row: `deny`), beside its allowlist; the user's answer when a call asked for a
        # confirmation (`audit_log.confirmation`); and changes of the mode in the policy change
        # log (action `destructive-mode` with the new `mode` and no tool). SQLite cannot change
        # a CHECK in place: the change log is rebuilt with its rows.
        """
        CREATE TABLE space_destructive_mode (
            space_id TEXT PRIMARY KEY REFERENCES spaces(id) ON DELETE CASCADE,
            mode TEXT NOT NULL CHECK (mode IN ('deny', 'confirm', 'allow')),
            set_by TEXT,
            set_at TEXT NOT NULL
        );
        ALTER TABLE audit_log ADD COLUMN confirmation TEXT
            CHECK (confirmation IN ('accept', 'decline', 'cancel', 'unavailable'));
        CREATE TABLE space_policy_audit_v3 (
            id INTEGER PRIMARY KEY,
            space_id TEXT NOT NULL REFERENCES spaces(id) ON DELETE CASCADE,
            actor_id TEXT NOT NULL,
            action TEXT NOT NULL CHECK (action IN ('allow', 'revoke', 'destructive-mode')),
            tool TEXT,
            at TEXT NOT NULL,
            mode TEXT CHECK (mode IN ('deny', 'confirm', 'allow')),
            CHECK ((action = 'destructive-mode') = (mode IS NOT NULL AND tool IS NULL)),
            CHECK (action = 'destructive-mode' OR tool IS NOT NULL)
        );
        INSERT INTO space_policy_audit_v3 (id, space_id, actor_id, action, tool, at)
            SELECT id, space_id, actor_id, action, tool, at FROM space_policy_audit;
        DROP TABLE space_policy_audit;
        ALTER TABLE space_policy_audit_v3 RENAME TO space_policy_audit;
        CREATE INDEX space_policy_audit_by_space ON space_policy_audit (space_id, at);
        """,
        postgres="""
        CREATE TABLE space_destructive_mode (
            space_id TEXT PRIMARY KEY REFERENCES spaces(id) ON DELETE CASCADE,
            mode TEXT NOT NULL CHECK (mode IN ('deny', 'confirm', 'allow')),
            set_by TEXT,
            set_at TEXT NOT NULL
        );
        ALTER TABLE audit_log ADD COLUMN confirmation TEXT
            CHECK (confirmation IN ('accept', 'decline', 'cancel', 'unavailable'));
        ALTER TABLE space_policy_audit DROP CONSTRAINT space_policy_audit_action_check;
        ALTER TABLE space_policy_audit ALTER COLUMN tool DROP NOT NULL;
        ALTER TABLE space_policy_audit ADD COLUMN mode TEXT
            CHECK (mode IN ('deny', 'confirm', 'allow'));
        ALTER TABLE space_policy_audit ADD CONSTRAINT space_policy_audit_action_check
            CHECK (action IN ('allow', 'revoke', 'destructive-mode'));
        ALTER TABLE space_policy_audit ADD CONSTRAINT space_policy_audit_subject_check
            CHECK ((action = 'destructive-mode') = (mode IS NOT NULL AND tool IS NULL)
                AND (action = 'destructive-mode' OR tool IS NOT NULL));
        """,
    ),
)
