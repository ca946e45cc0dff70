"""Least privilege on PostgreSQL: three roles and, in one table, what the service's role may do to each table.

- `takedown_owner` owns every table, sequence and trigger function; only `takedown migrate` connects as it (or as
  a superuser that is a member). Owning a table is what lets a role `ALTER TABLE ... DISABLE TRIGGER`, so the
  service never runs as the owner.
- `takedown_app` is what the API, notifier, sequencer, scheduler, projections and feeder connect as: history
  tables take INSERT and SELECT only (the privilege check refuses UPDATE, DELETE and TRUNCATE before a trigger
  would), state tables add UPDATE, projections add DELETE for a rebuild. It is not a superuser, so it cannot
  `SET session_replication_role` to switch the append-only triggers off either.
- `takedown_read` selects from everything: dashboards, reports, replicas.

Roles belong to the cluster, not the database: created once, if missing (several databases of one cluster share
them); the grants are per database and applied again after every migration, so a new table is never left out
(tests/store/test_roles.py fails when a table has no row here).
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import Connection, text

OWNER, APP, READ = "takedown_owner", "takedown_app", "takedown_read"
ROLES = (OWNER, APP, READ)

HISTORY = "SELECT, INSERT"  # facts: written once, never changed
STATE = "SELECT, INSERT, UPDATE"  # rows the service moves along (a delivery's state, a key's revocation)
PROJECTION = "SELECT, INSERT, UPDATE, DELETE"  # derived rows, dropped and replayed by a rebuild

APP_PRIVILEGES: dict[str, str] = {
    "alembic_version": "SELECT",  # /readyz compares it with the code's head; only `takedown migrate` moves it
    "events": HISTORY,
    "event_positions": HISTORY,
    "ledger_nodes": HISTORY,
    "ledger_checkpoints": HISTORY,
    "ledger_identity": HISTORY,
    "ledger_keys": HISTORY,
    "ledger_leaf_formats": HISTORY,
    "ledger_quarantine": HISTORY,
    "ledger_cosignatures": HISTORY,
    "delivery_attempts": HISTORY,
    "escalations": HISTORY,
    "idempotency_keys": HISTORY,
    "ledger_head": STATE,
    "ledger_witness_state": STATE,
    "deliveries": STATE,
    "orders": STATE,
    "api_keys": STATE,
    "platform_secrets": STATE,
    "projection_positions": STATE,
    "platforms": PROJECTION,
    "sla_orders": PROJECTION,
    "sla_counts": PROJECTION,
    "sla_answer_histogram": PROJECTION,
}


def _create_role(conn: Connection, role: str, login: bool) -> None:
    # Two databases migrating at once may both find the role missing: the loser's duplicate is not an error.
    conn.execute(
        text(
            f"""
            DO $$ BEGIN
                IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
                    CREATE ROLE {role} {"LOGIN" if login else "NOLOGIN"} NOSUPERUSER NOCREATEDB NOCREATEROLE
                        NOREPLICATION NOBYPASSRLS;
                END IF;
            EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
            END $$
            """
        )
    )


def apply(conn: Connection, passwords: Mapping[str, str] | None = None) -> None:
    """Create the roles if missing, give the owner every object, and grant the app and read roles their rows.

    `passwords` (role -> password) sets their login passwords; without one a role keeps what it has (on a server
    with trust or peer authentication, none is needed).
    """
    if conn.dialect.name != "postgresql":
        return  # SQLite has no roles: the embedded default trusts its one process and file permissions
    for role in ROLES:
        _create_role(conn, role, login=True)
    for role, password in (passwords or {}).items():
        # A utility statement takes no bound parameters: a literal, quotes doubled (standard_conforming_strings).
        escaped = password.replace("'", "''")
        conn.exec_driver_sql(f"ALTER ROLE {role} PASSWORD '{escaped}'")
    # The migrating user must be able to hand objects over to the owner (a superuser is; a member of it is too).
    tables = set(conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars())
    for table in sorted(tables):
        conn.execute(text(f'ALTER TABLE "{table}" OWNER TO {OWNER}'))
    for function in conn.execute(
        text(
            "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = 'public'"
        )
    ).scalars():
        conn.execute(text(f"ALTER FUNCTION {function} OWNER TO {OWNER}"))
    database = conn.execute(text("SELECT current_database()")).scalar_one()
    conn.execute(text(f'GRANT CONNECT ON DATABASE "{database}" TO {APP}, {READ}'))
    conn.execute(text(f"GRANT USAGE ON SCHEMA public TO {APP}, {READ}"))
    conn.execute(text(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {APP}"))
    for table, privileges in APP_PRIVILEGES.items():
        if table in tables:
            conn.execute(text(f'GRANT {privileges} ON "{table}" TO {APP}'))
    conn.execute(text(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {READ}"))
    # Sequences behind identity and serial keys: the app draws from them when it inserts.
    conn.execute(text(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {APP}"))
