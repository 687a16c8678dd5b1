"""Personas: simulated users who use Mana every day through the MCP server and rate each module
they used (design §10).

- `personas.catalog`: `catalogs/personas.json` validated by its JSON Schema, then checked
  against the registry passed in (`load_catalog(registry)`), as pydantic models;
- `personas.schema`: `PERSONAS_MIGRATIONS` (personas, persona_actions, persona_feedback,
  persona_ticks);
- `personas.passwords`: `persona_secret(environ, env=...)`, `derive_password(secret, email)`;
- `personas.seed`: `Seeder(db, accounts, secret).seed(catalog, dry_run=...)`, `cleanup(...)`;
- `personas.schedule`: cadences, tick ids and `is_due` on an injected clock;
- `personas.runner`: `PersonaRunner` (login over HTTP, MCP session, `run_loop`, ratings);
- `personas.llm`: `--llm anthropic|scripted:PATH`;
- `personas.store`: reads and writes of the tables; `personas.report`: table and PNG chart.

CLI: `mana personas seed|cleanup|list|show|run|report` (`mana_cli/commands/personas.py`).
"""
