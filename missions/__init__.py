"""Missions: agents pursue objectives on a cadence, in one space, through the agent loop.

- `missions.schema`: `MISSIONS_MIGRATIONS` (component `missions`);
- `missions.models`: `Agent`, `Mission`, `Iteration`, `PlanStep`, `Proposal`, `Skip`;
- `missions.cadence`: cadences (`manual`, `interval`, `daily`, `weekly`, `cron`) and the pure
  `next_run(cadence, after, now)`;
- `missions.store`: `MissionStore`, the repository (space-filtered queries), and the SQL of the
  scheduler (`missions.store.scheduling`) and of proposals (`missions.store.proposals`);
- `missions.service`: `MissionsService`, the `missions` backend of the tools and the CLI;
- `missions.scheduler`: `Scheduler` (claim with leases, recover, finish, backoff);
- `missions.runner`: `MissionRunner`, `run_mission`, `MissionTools`;
- `missions.proposals`: `fingerprint`, `ProposalService` (human approve / reject), expiry;
- `missions.daemon`: `Daemon` (ticks, concurrency, SIGTERM drain, `/health`, `/metrics`);
- `missions.tools`: the MCP-facing tools `missions.list|create|pause|iterations` and
  `proposals.list` (`TOOLS`).
"""

from missions.schema import MISSIONS_MIGRATIONS

__all__ = ["MISSIONS_MIGRATIONS"]
