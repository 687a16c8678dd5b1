"""Versioned schema of the `missions` component: agents, missions, iterations, proposals and
recorded skips, in the same database as the core (appended to the runtime's migrations).

Times are canonical UTC text (`tool_registry.clock.iso`: fixed width, so text order is time
order). The daemon's hot query, "due missions", is served by the partial index `missions_due`
(`next_run_at, id` of active missions only), so its cost grows with the number of due missions,
not with the number of missions.

Each step has one version for both backends; where SQLite's text is not PostgreSQL's, the step
carries its `postgres=` text (agents' case-insensitive names become a unique index on
`lower(name)`, the due order's columns sort bytewise with `COLLATE "C"` like SQLite's BINARY).
"""

from __future__ import annotations

from tool_registry.store.database import Migration

COMPONENT = "missions"

MISSIONS_MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        COMPONENT,
        1,
        "agents-missions-iterations-proposals",
        """
        CREATE TABLE agents (
            id TEXT PRIMARY KEY,
            space_id TEXT NOT NULL REFERENCES spaces(id) ON DELETE CASCADE,
            name TEXT NOT NULL COLLATE NOCASE,
            role TEXT NOT NULL DEFAULT '',
            system_prompt TEXT NOT NULL DEFAULT '',
            memory TEXT NOT NULL DEFAULT '',
            tool_policy TEXT NOT NULL,
            max_tokens_per_day INTEGER
                CHECK (max_tokens_per_day IS NULL OR max_tokens_per_day >= 0),
            max_concurrent INTEGER NOT NULL DEFAULT 1 CHECK (max_concurrent >= 1),
            state TEXT NOT NULL DEFAULT 'active'
                CHECK (state IN ('active', 'paused', 'archived')),
            created_by TEXT REFERENCES users(id) ON DELETE SET NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            UNIQUE (space_id, name)
        );
        CREATE TABLE missions (
            id TEXT PRIMARY KEY,
            space_id TEXT NOT NULL REFERENCES spaces(id) ON DELETE CASCADE,
            owner_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            agent_id TEXT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
            title TEXT NOT NULL,
            objective TEXT NOT NULL,
            concept TEXT NOT NULL DEFAULT '',
            cadence TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'active'
                CHECK (state IN ('active', 'paused', 'done', 'archived')),
            next_run_at TEXT,
            window_at TEXT,
            failures INTEGER NOT NULL DEFAULT 0,
            backoff_until TEXT,
            last_error TEXT,
            last_run_at TEXT,
            last_status TEXT,
            skip_reason TEXT,
            skipped_at TEXT,
            lease_owner TEXT,
            lease_expires_at TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX missions_due ON missions (next_run_at) WHERE state = 'active';
        CREATE INDEX missions_by_space ON missions (space_id, created_at);
        CREATE INDEX missions_by_agent ON missions (agent_id);
        CREATE INDEX missions_by_lease ON missions (lease_owner) WHERE lease_owner IS NOT NULL;
        CREATE TABLE iterations (
            id TEXT PRIMARY KEY,
            mission_id TEXT NOT NULL REFERENCES missions(id) ON DELETE CASCADE,
            space_id TEXT NOT NULL,
            agent_id TEXT NOT NULL,
            trigger TEXT NOT NULL CHECK (trigger IN ('schedule', 'manual')),
            window_at TEXT,
            run_key TEXT NOT NULL,
            attempt INTEGER NOT NULL DEFAULT 1,
            runner TEXT,
            status TEXT NOT NULL CHECK (status IN
                ('running', 'awaiting-review', 'completed', 'failed', 'cancelled')),
            phase TEXT NOT NULL,
            round INTEGER NOT NULL DEFAULT 0,
            plan TEXT NOT NULL DEFAULT '[]',
            summary TEXT,
            stop_reason TEXT,
            input_tokens INTEGER NOT NULL DEFAULT 0,
            output_tokens INTEGER NOT NULL DEFAULT 0,
            total_tokens INTEGER NOT NULL DEFAULT 0,
            error_name TEXT,
            error_message TEXT,
            error_phase TEXT,
            transcript TEXT,
            cancel_requested INTEGER NOT NULL DEFAULT 0,
            started_at TEXT NOT NULL,
            finished_at TEXT
        );
        CREATE INDEX iterations_by_mission ON iterations (mission_id, started_at);
        CREATE INDEX iterations_by_agent ON iterations (agent_id, started_at);
        CREATE INDEX iterations_running ON iterations (agent_id) WHERE status = 'running';
        CREATE TABLE proposals (
            id TEXT PRIMARY KEY,
            iteration_id TEXT NOT NULL REFERENCES iterations(id) ON DELETE CASCADE,
            mission_id TEXT NOT NULL,
            space_id TEXT NOT NULL,
            agent_id TEXT NOT NULL,
            call_id TEXT NOT NULL,
            tool TEXT NOT NULL,
            arguments TEXT NOT NULL,
            rationale TEXT NOT NULL DEFAULT '',
            reason TEXT NOT NULL DEFAULT 'policy' CHECK (reason IN ('policy', 'tainted')),
            fingerprint TEXT NOT NULL,
            call_key TEXT UNIQUE,
            status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN
                ('pending', 'approved', 'rejected', 'executed', 'failed', 'expired')),
            decided_by TEXT,
            decided_at TEXT,
            result TEXT,
            created_at TEXT NOT NULL,
            expires_at TEXT NOT NULL
        );
        CREATE INDEX proposals_by_space ON proposals (space_id, status, created_at);
        CREATE INDEX proposals_by_iteration ON proposals (iteration_id);
        CREATE INDEX proposals_expiring ON proposals (expires_at) WHERE status = 'pending';
        CREATE TABLE mission_skips (
            mission_id TEXT NOT NULL REFERENCES missions(id) ON DELETE CASCADE,
            window_at TEXT NOT NULL,
            reason TEXT NOT NULL,
            detail TEXT,
            first_at TEXT NOT NULL,
            last_at TEXT NOT NULL,
            count INTEGER NOT NULL DEFAULT 1,
            PRIMARY KEY (mission_id, window_at, reason)
        ) WITHOUT ROWID;
        """,
        postgres="""
        CREATE TABLE agents (
            id TEXT PRIMARY KEY,
            space_id TEXT NOT NULL REFERENCES spaces(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            role TEXT NOT NULL DEFAULT '',
            system_prompt TEXT NOT NULL DEFAULT '',
            memory TEXT NOT NULL DEFAULT '',
            tool_policy TEXT NOT NULL,
            max_tokens_per_day INTEGER
                CHECK (max_tokens_per_day IS NULL OR max_tokens_per_day >= 0),
            max_concurrent INTEGER NOT NULL DEFAULT 1 CHECK (max_concurrent >= 1),
            state TEXT NOT NULL DEFAULT 'active'
                CHECK (state IN ('active', 'paused', 'archived')),
            created_by TEXT REFERENCES users(id) ON DELETE SET NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        -- SQLite's `name COLLATE NOCASE` + UNIQUE (space_id, name): one name per space whatever
        -- its case (`missions.store.AGENT_NAME_IS` matches names the same way).
        CREATE UNIQUE INDEX agents_name_nocase ON agents (space_id, lower(name));
        -- COLLATE "C" on the due order's columns: byte order, as SQLite's BINARY.
        CREATE TABLE missions (
            id TEXT COLLATE "C" PRIMARY KEY,
            space_id TEXT NOT NULL REFERENCES spaces(id) ON DELETE CASCADE,
            owner_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            agent_id TEXT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
            title TEXT NOT NULL,
            objective TEXT NOT NULL,
            concept TEXT NOT NULL DEFAULT '',
            cadence TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'active'
                CHECK (state IN ('active', 'paused', 'done', 'archived')),
            next_run_at TEXT COLLATE "C",
            window_at TEXT,
            failures INTEGER NOT NULL DEFAULT 0,
            backoff_until TEXT,
            last_error TEXT,
            last_run_at TEXT,
            last_status TEXT,
            skip_reason TEXT,
            skipped_at TEXT,
            lease_owner TEXT,
            lease_expires_at TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX missions_due ON missions (next_run_at) WHERE state = 'active';
        CREATE INDEX missions_by_space ON missions (space_id, created_at);
        CREATE INDEX missions_by_agent ON missions (agent_id);
        CREATE INDEX missions_by_lease ON missions (lease_owner) WHERE lease_owner IS NOT NULL;
        CREATE TABLE iterations (
            id TEXT PRIMARY KEY,
            mission_id TEXT NOT NULL REFERENCES missions(id) ON DELETE CASCADE,
            space_id TEXT NOT NULL,
            agent_id TEXT NOT NULL,
            trigger TEXT NOT NULL CHECK (trigger IN ('schedule', 'manual')),
            window_at TEXT,
            run_key TEXT NOT NULL,
            attempt INTEGER NOT NULL DEFAULT 1,
            runner TEXT,
            status TEXT NOT NULL CHECK (status IN
                ('running', 'awaiting-review', 'completed', 'failed', 'cancelled')),
            phase TEXT NOT NULL,
            round INTEGER NOT NULL DEFAULT 0,
            plan TEXT NOT NULL DEFAULT '[]',
            summary TEXT,
            stop_reason TEXT,
            input_tokens INTEGER NOT NULL DEFAULT 0,
            output_tokens INTEGER NOT NULL DEFAULT 0,
            total_tokens INTEGER NOT NULL DEFAULT 0,
            error_name TEXT,
            error_message TEXT,
            error_phase TEXT,
            transcript TEXT,
            cancel_requested INTEGER NOT NULL DEFAULT 0,
            started_at TEXT NOT NULL,
            finished_at TEXT
        );
        CREATE INDEX iterations_by_mission ON iterations (mission_id, started_at);
        CREATE INDEX iterations_by_agent ON iterations (agent_id, started_at);
        CREATE INDEX iterations_running ON iterations (agent_id) WHERE status = 'running';
        CREATE TABLE proposals (
            id TEXT PRIMARY KEY,
            iteration_id TEXT NOT NULL REFERENCES iterations(id) ON DELETE CASCADE,
            mission_id TEXT NOT NULL,
            space_id TEXT NOT NULL,
            agent_id TEXT NOT NULL,
            call_id TEXT NOT NULL,
            tool TEXT NOT NULL,
            arguments TEXT NOT NULL,
            rationale TEXT NOT NULL DEFAULT '',
            reason TEXT NOT NULL DEFAULT 'policy' CHECK (reason IN ('policy', 'tainted')),
            fingerprint TEXT NOT NULL,
            call_key TEXT UNIQUE,
            status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN
                ('pending', 'approved', 'rejected', 'executed', 'failed', 'expired')),
            decided_by TEXT,
            decided_at TEXT,
            result TEXT,
            created_at TEXT NOT NULL,
            expires_at TEXT NOT NULL
        );
        CREATE INDEX proposals_by_space ON proposals (space_id, status, created_at);
        CREATE INDEX proposals_by_iteration ON proposals (iteration_id);
        CREATE INDEX proposals_expiring ON proposals (expires_at) WHERE status = 'pending';
        CREATE TABLE mission_skips (
            mission_id TEXT NOT NULL REFERENCES missions(id) ON DELETE CASCADE,
            window_at TEXT NOT NULL,
            reason TEXT NOT NULL,
            detail TEXT,
            first_at TEXT NOT NULL,
            last_at TEXT NOT NULL,
            count INTEGER NOT NULL DEFAULT 1,
            PRIMARY KEY (mission_id, window_at, reason)
        );
        """,
    ),
    Migration(
        COMPONENT,
        2,
        "proposal-claims",
        # An approval claims a proposal (`pending` -> `approved`) before running its call and
        # stores who runs it (`decided_by`), the idempotency key it runs under (`exec_key`,
        # derived from the proposal id) and a claim token (`claim_id`, `claimed_at`), so a later
        # approval can finish a crashed one with the same key. Claims made before this version
        # used the key `proposal:<id>`.
        """
        ALTER TABLE proposals ADD COLUMN exec_key TEXT;
        ALTER TABLE proposals ADD COLUMN claim_id TEXT;
        ALTER TABLE proposals ADD COLUMN claimed_at TEXT;
        UPDATE proposals SET exec_key = 'proposal:' || id, claimed_at = decided_at
            WHERE status = 'approved';
        """,
    ),
    Migration(
        COMPONENT,
        3,
        "lease-epochs",
        # Fencing: `lease_epoch` on a mission goes up with every claim and every takeover of its
        # lease; an iteration stores the epoch it was claimed under, and each of its writes
        # checks that the mission still carries it (`missions.leases`). The due order gets an
        # explicit tie-breaker (`id`, the same order on both backends) in its partial index.
        """
        ALTER TABLE missions ADD COLUMN lease_epoch INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE iterations ADD COLUMN lease_epoch INTEGER NOT NULL DEFAULT 0;
        DROP INDEX missions_due;
        CREATE INDEX missions_due ON missions (next_run_at, id) WHERE state = 'active';
        """,
    ),
)
