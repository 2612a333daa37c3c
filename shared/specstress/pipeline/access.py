"""Postgres roles: one per service, one for the CLI, a read-only one for dashboards.

`TABLE_ACCESS` is the one list of which component may do what to which table; `apply_access`
turns it into roles and grants, and is run by `specstress ops grant` after the migrations, as
the schema owner (the migrate job). Roles get no DDL: they own nothing, may not create in the
schema, and may not create temporary tables. Append-only facts get no UPDATE or DELETE; only
the tables in `MUTABLE` may be changed after they are written.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from specstress.errors import InputError
from specstress.pipeline.stages import (
    APPEND,
    GATEWAY_TABLES,
    REPLACE,
    STAGE_NAMES,
    STAGES,
    UPSERT,
    Privilege,
)

__all__ = [
    "CLI",
    "COMPONENTS",
    "DASHBOARDS",
    "MUTABLE",
    "OWNER_WRITES",
    "READS_EVERYTHING",
    "TABLE_ACCESS",
    "apply_access",
    "password_env",
    "passwords_from_env",
    "relations",
    "role_name",
]

CLI = "cli"
DASHBOARDS = "grafana"
COMPONENTS: tuple[str, ...] = (*STAGE_NAMES, CLI, DASHBOARDS)
# SELECT on every table and view, whatever is added later: status, reports and dashboards
READS_EVERYTHING = frozenset({CLI, DASHBOARDS})

TABLE_ACCESS: dict[str, dict[str, frozenset[Privilege]]] = {
    **{stage.name: stage.tables for stage in STAGES},
    # `specstress run` stores pairs, `models add` activates a model, `report` mirrors the
    # config's model sets, vendors and settings for the analysis views, `select` embeds
    # scenarios (through the gateway) and stores diversity selections
    CLI: {
        **GATEWAY_TABLES,
        "value_pairs": APPEND,
        "models": UPSERT,
        # `models add --discovered` registers a proposed model
        "discovered_models": UPSERT,
        "model_set_rules": REPLACE,
        "model_vendors": REPLACE,
        "analysis_settings": UPSERT,
        "spec_sections": UPSERT,
        # `specstress providers resume` lifts a pause
        "llm_provider_pauses": REPLACE,
        "scenario_embeddings": APPEND,
        "embedding_cache": APPEND,
        "selections": UPSERT,
        "selection_members": REPLACE,
        # `specstress map-values` stores each distinctive value's nearest category
        "value_categories": APPEND,
        # `specstress dead-letters replay` marks the dead letters it published again
        "dead_letters": UPSERT,
    },
    DASHBOARDS: {},
}

# Tables whose rows change after they are written, and why; every other table is append-only.
MUTABLE: dict[str, str] = {
    "disagreement": "recomputed from the classifications whenever a scenario gains answers",
    "models": "a model is activated by `models add` or the watcher, retired by the watcher",
    "discovered_models": "seen times and status follow the providers' model lists",
    "model_comparisons": "a release report, recomputed when asked for again",
    "model_set_rules": "a mirror of the config, replaced when the config changes",
    "model_vendors": "a mirror of the config, replaced when the config changes",
    "analysis_settings": "a mirror of the config, replaced when the config changes",
    "spec_sections": "a mirror of the configured specs, refreshed when a spec changes",
    "llm_rate_limits": "the fleet's request and token buckets, refilled as calls are made",
    "llm_provider_pauses": "set on a terminal quota error, lifted when the pause ends",
    "llm_spend": "running cost and token totals checked against the budget",
    "message_deferrals": "a count per deferred message, removed once it is handled",
    "llm_batch_jobs": "a provider batch job, updated as it is sent, polled and settled",
    "llm_batch_requests": "a request queued for a batch, updated as its job is sent and settled",
    "selections": "a named selection's settings, replaced when it is computed again",
    "selection_members": "a named selection's scenarios, replaced when it is computed again",
    "dead_letters": "marked replayed by `specstress dead-letters replay`",
}
# Tables only `specstress init` writes, as the schema owner (nobody else needs INSERT on them).
OWNER_WRITES: frozenset[str] = frozenset({"values"})

_SAFE_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")


def role_name(component: str) -> str:
    return f"specstress_{component}"


def password_env(component: str) -> str:
    """The environment variable that holds `component`'s Postgres password."""
    return f"SPECSTRESS_DB_PASSWORD_{component.upper()}"


def _ident(name: str) -> str:
    # Identifiers here come from this module and the catalog; quote them all the same.
    if not _SAFE_NAME.fullmatch(name):
        raise InputError(f"unexpected Postgres identifier {name!r}")
    return f'"{name}"'


async def relations(conn: AsyncConnection) -> dict[str, str]:
    """Tables and views of the `public` schema: name -> 'table' or 'view' (Alembic's own
    version table left out)."""
    rows = await conn.execute(
        text(
            "SELECT table_name, table_type FROM information_schema.tables "
            "WHERE table_schema = 'public' AND table_name <> 'alembic_version'"
        )
    )
    return {r.table_name: "view" if r.table_type == "VIEW" else "table" for r in rows}


async def _ensure_role(conn: AsyncConnection, role: str, password: str | None) -> None:
    exists = await conn.scalar(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role})
    if exists is None:
        await conn.execute(text(f"CREATE ROLE {_ident(role)} LOGIN"))
    await conn.execute(
        text(
            f"ALTER ROLE {_ident(role)} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE "
            "NOREPLICATION NOBYPASSRLS NOINHERIT"
        )
    )
    if password is not None:
        # ALTER ROLE takes no bind parameters: Postgres quotes the literal itself.
        statement = await conn.scalar(
            text("SELECT format('ALTER ROLE %I PASSWORD %L', CAST(:r AS text), CAST(:p AS text))"),
            {"r": role, "p": password},
        )
        await conn.execute(text(str(statement)))


async def _owned_sequences(conn: AsyncConnection, table: str) -> list[str]:
    rows = await conn.execute(
        text(
            "SELECT s.relname FROM pg_class s JOIN pg_depend d ON d.objid = s.oid "
            "JOIN pg_class t ON t.oid = d.refobjid "
            "WHERE s.relkind = 'S' AND t.relname = :t AND d.deptype IN ('a', 'i')"
        ),
        {"t": table},
    )
    return [r.relname for r in rows]


async def apply_access(engine: AsyncEngine, passwords: Mapping[str, str] | None = None) -> None:
    """Create or refresh every component's role and grants in the engine's database; safe to
    run again (after each migration: new tables get their grants). `passwords` maps a
    component to its password; a role without one keeps the password it had (or none)."""
    passwords = passwords or {}
    async with engine.begin() as conn:
        database = await conn.scalar(text("SELECT current_database()"))
        present = await relations(conn)
        # no DDL for anyone but the owner: nothing in the schema, no temporary tables
        await conn.execute(text("REVOKE CREATE ON SCHEMA public FROM PUBLIC"))
        await conn.execute(text(f"REVOKE ALL ON DATABASE {_ident(str(database))} FROM PUBLIC"))
        for component in COMPONENTS:
            role = _ident(role_name(component))
            await _ensure_role(conn, role_name(component), passwords.get(component))
            await conn.execute(text(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}"))
            await conn.execute(text(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {role}"))
            await conn.execute(text(f"REVOKE ALL ON SCHEMA public FROM {role}"))
            await conn.execute(text(f"GRANT CONNECT ON DATABASE {_ident(str(database))} TO {role}"))
            await conn.execute(text(f"GRANT USAGE ON SCHEMA public TO {role}"))
            if component in READS_EVERYTHING:
                await conn.execute(text(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}"))
            for table, privileges in TABLE_ACCESS[component].items():
                if table not in present:
                    raise InputError(
                        f"TABLE_ACCESS names {table!r} for {component}, but the database has "
                        "no such table: run the migrations first"
                    )
                listed = ", ".join(sorted(privileges))
                await conn.execute(text(f"GRANT {listed} ON {_ident(table)} TO {role}"))
                if "INSERT" in privileges:
                    for sequence in await _owned_sequences(conn, table):
                        await conn.execute(
                            text(f"GRANT USAGE ON SEQUENCE {_ident(sequence)} TO {role}")
                        )


def passwords_from_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The Postgres passwords set in `environ`, by component."""
    return {c: environ[password_env(c)] for c in COMPONENTS if environ.get(password_env(c))}
