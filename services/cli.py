"""The `takedown` command: run the all-in-one service or one part of it, migrate, and manage API keys."""

from __future__ import annotations

import asyncio
import ctypes
import functools
import gc
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Protocol

import typer
import uvicorn
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from services.bootstrap import Container, bootstrap
from services.http.app import create_app
from services.keys.errors import KeysError
from services.keys.service import KEY_STATUSES, KeyStatus
from services.ledger.verify import VerifyReport
from services.metrics import scrape
from services.metrics.server import MetricsServer
from services.receipts.service import ReceiptsKit
from services.registry.errors import SecretsKeyError
from services.registry.kek import Keyring, keyring_from_settings, load_kek
from services.registry.service import reseal
from shared import roles
from shared.auth import ROLES, Role
from shared.db import make_engine
from shared.logs import configure_logging
from shared.migrate import upgrade
from shared.projections import rebuild as rebuild_projection
from shared.settings import Settings
from shared.tlog.policy import PolicyError, WitnessPolicy, parse_policy

log = logging.getLogger("takedown.cli")
cli = typer.Typer(help="Takedown orders: intake, notification, SLA and ledger.", no_args_is_help=True)
keys = typer.Typer(help="API keys.", no_args_is_help=True)
cli.add_typer(keys, name="keys")
projections_cli = typer.Typer(
    help="Projections derived from the event store (the SLA status, the registry).", no_args_is_help=True
)
cli.add_typer(projections_cli, name="projections")
secrets_cli = typer.Typer(help="The platforms' webhook signing secrets, sealed at rest.", no_args_is_help=True)
cli.add_typer(secrets_cli, name="secrets")


def _settings() -> Settings:
    """This process's settings, with logging configured from them (once per command, at start-up)."""
    settings = Settings()
    configure_logging(settings)
    return settings


def _container() -> Container:
    return bootstrap(_settings())


def _seal_plaintext(container: Container) -> None:
    """Seal any secret stored in plaintext (before sealing existed): at the start of each process holding the KEK."""
    sealed = container.registry.seal_stored()
    if sealed:
        log.warning("sealed %d platform secrets stored in plaintext or under a retired KEK", sealed)


def _starting(settings: Settings, process: str) -> None:
    """One line at a long-running process's start: what it is and every setting it runs with, secrets redacted."""
    log.info("starting %s", process, extra={"service": process, "settings": settings.redacted()})


def _serve(container: Container, run_workers: bool, host: str, port: int, demo: bool = False) -> None:
    """Serve the API with uvicorn, its own loggers routed through ours (no access log: ours has the request id)."""
    _starting(container.settings, "run" if run_workers else "api")
    _seal_plaintext(container)
    app = create_app(container, run_workers=run_workers, demo=demo)
    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False)


def _metrics(container: Container, process: str) -> MetricsServer | None:
    """This process's own /metrics on TAKEDOWN_METRICS_PORT, its gauges read at each scrape (None: off)."""
    settings = container.settings
    if not settings.metrics_port:
        return None
    if settings.production and settings.metrics_key is None:
        log.warning("TAKEDOWN_METRICS_PORT is set without TAKEDOWN_METRICS_KEY: metrics stay off in production")
        return None
    server = MetricsServer(
        settings.host,
        settings.metrics_port,
        settings.metrics_key,
        settings.production,
        lambda: scrape.refresh(container, [process]),
    )
    server.start()
    return server


class _Worker(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...


def _run_alone(process: str, part: Callable[[Container], _Worker]) -> None:
    """Run one background part of the service alone until SIGTERM or Ctrl-C."""
    # Blocked first, then waited for: a stop that comes during start-up stays pending instead of being lost, and
    # no handler runs inside the main thread's own wait (a handler setting a threading.Event can deadlock on the
    # lock the interrupted wait holds: seen once as a sequencer that never exited on SIGTERM).
    stops = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stops)
    container = _container()
    _starting(container.settings, process)
    part(container).start()
    metrics = _metrics(container, process)  # its thread inherits the blocked mask: no signal lands there
    signal.sigwait(stops)
    if metrics is not None:
        metrics.stop()
    container.close()


@cli.command()
def migrate() -> None:
    """Bring the database to the newest schema."""
    settings = _settings()
    engine = make_engine(settings.migrate_database_url or settings.database_url)
    passwords = {
        role: secret.get_secret_value()
        for role, secret in ((roles.APP, settings.app_role_password), (roles.READ, settings.read_role_password))
        if secret is not None
    }
    upgrade(engine, role_passwords=passwords)
    typer.echo(f"migrated {engine.url.render_as_string(hide_password=True)} to head")
    engine.dispose()


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}
_MAX_LIFETIME = timedelta(days=10 * 366)


def parse_duration(text: str) -> timedelta:
    """A positive duration such as 30d, 12h, 90m, 45s or 2w (at most ten years)."""
    found = re.fullmatch(r"\s*([0-9]{1,9})\s*([smhdw])\s*", text.lower())
    if found is None or int(found[1]) == 0:
        raise typer.BadParameter(f"{text!r}: a positive whole number and a unit, s m h d or w (e.g. 30d, 12h)")
    lifetime = timedelta(seconds=int(found[1]) * _UNITS[found[2]])
    if lifetime > _MAX_LIFETIME:
        raise typer.BadParameter(f"{text!r}: at most ten years")
    return lifetime


def _refused(exc: KeysError) -> typer.Exit:
    """Print a refusal; exit 1 for a key that is missing or not active, 2 for a request that cannot be met."""
    typer.echo(f"error: {exc.reason}", err=True)
    return typer.Exit(1 if exc.code in ("not-found", "key-not-active") else 2)


@keys.command("create")
def keys_create(
    role: Annotated[str, typer.Option(help=f"one of {', '.join(ROLES)}")],
    authority: Annotated[str | None, typer.Option(help="issuer keys: the authority id, e.g. mci")] = None,
    authority_name: Annotated[str | None, typer.Option(help="issuer keys: the authority's full name")] = None,
    platform: Annotated[str | None, typer.Option(help="platform keys: the platform id")] = None,
    label: Annotated[str | None, typer.Option(help="a note on who holds the key")] = None,
    expires_in: Annotated[str | None, typer.Option(help="the key expires after this long: 30d, 12h, 90m, 2w")] = None,
) -> None:
    """Create an API key and print it (it is stored hashed and cannot be shown again)."""
    lifetime = parse_duration(expires_in) if expires_in is not None else None
    container = _container()
    try:
        plaintext, _ = container.keys.create(
            role,
            actor="cli",
            authority_id=authority,
            authority_name=authority_name,
            platform_id=platform,
            label=label,
            expires_in=lifetime,
        )
    except KeysError as exc:
        raise _refused(exc) from exc
    finally:
        container.close()
    typer.echo(plaintext)


def _when(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%SZ") if at is not None else "-"


@keys.command("list")
def keys_list(
    status: Annotated[str | None, typer.Option(help=f"only keys that are {', '.join(KEY_STATUSES)}")] = None,
    role: Annotated[str | None, typer.Option(help=f"only keys of this role: {', '.join(ROLES)}")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON array instead of a table")] = False,
) -> None:
    """Every API key, newest first: id, role, tenant, status, expiry, last use. Never a key itself."""
    wanted_status: KeyStatus | None = next((k for k in KEY_STATUSES if k == status), None)
    wanted_role: Role | None = next((r for r in ROLES if r == role), None)
    if (status is not None and wanted_status is None) or (role is not None and wanted_role is None):
        typer.echo(f"error: --status is one of {', '.join(KEY_STATUSES)}; --role one of {', '.join(ROLES)}", err=True)
        raise typer.Exit(2)
    container = _container()
    try:
        found = container.keys.list(status=wanted_status, role=wanted_role)
    finally:
        container.close()
    if as_json:
        rows = [{k: v.isoformat() if isinstance(v, datetime) else v for k, v in vars(r).items()} for r in found]
        typer.echo(json.dumps(rows, indent=2))
        return
    header = ("ID", "ROLE", "TENANT", "STATUS", "CREATED", "EXPIRES", "LAST USED", "LABEL")
    table: list[tuple[str, ...]] = [header]
    for r in found:
        tenant = r.authority_id or r.platform_id or "-"
        when = (_when(r.created_at), _when(r.expires_at), _when(r.last_used_at))
        table.append((r.id, r.role, tenant, r.status, *when, r.label or "-"))
    widths = [max(len(row[n]) for row in table) for n in range(len(header))]
    for row in table:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


@keys.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="the key's id (from `takedown keys list`)")]) -> None:
    """Revoke an API key: running API processes refuse it within TAKEDOWN_AUTH_CACHE_S seconds."""
    container = _container()
    try:
        revoked = container.keys.revoke(key_id, "cli")
    except KeysError as exc:
        raise _refused(exc) from exc
    finally:
        container.close()
    bound = container.settings.auth_cache_s
    typer.echo(
        f"revoked {revoked.id} at {_when(revoked.revoked_at)}; running API processes refuse it within {bound:g} s"
    )


@keys.command("rotate")
def keys_rotate(
    key_id: Annotated[str, typer.Argument(help="the key's id (from `takedown keys list`)")],
    expires_in: Annotated[
        str | None, typer.Option(help="the new key's lifetime (default: the old key's): 30d, 12h")
    ] = None,
    overlap: Annotated[
        str | None, typer.Option(help="the old key keeps working this long (default: revoked at once): 1h")
    ] = None,
) -> None:
    """Replace a key by a new one of the same role, tenant and label; print the new key (shown only now)."""
    lifetime = parse_duration(expires_in) if expires_in is not None else None
    grace = parse_duration(overlap) if overlap is not None else timedelta(0)
    container = _container()
    try:
        plaintext, made = container.keys.rotate(key_id, "cli", expires_in=lifetime, overlap=grace)
    except KeysError as exc:
        raise _refused(exc) from exc
    finally:
        container.close()
    old = f"works until {_when(made.created_at + grace)}" if grace else "is revoked"
    typer.echo(f"{key_id} {old}; its replacement is {made.id}:", err=True)
    typer.echo(plaintext)


# ------------------------------------------------------------------------------------------------ the demo

DEMO_AUTHORITY = {"authority_id": "mci", "authority_name": "Ministry of Culture and Information"}


def demo_keys_file(settings: Settings) -> Path:
    """Where the demo keeps its keys' plaintexts: beside the SQLite database, else in the working directory."""
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        database = Path(url.database)
        return database.with_name(database.stem + ".demo-keys.json")
    return Path("demo-keys.json")


def _read_demo_keys(path: Path) -> tuple[dict[str, str], bool]:
    """The saved plaintexts by role, and whether the file was private (no access for group or others)."""
    try:
        private = path.stat().st_mode & 0o077 == 0
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}, True
    if not isinstance(saved, dict):
        return {}, True
    return {k: v for k, v in saved.items() if isinstance(k, str) and isinstance(v, str)}, private


def _write_private(path: Path, text: str) -> None:
    """Write a file that only its owner can read (mode 0600), replacing any old one whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # O_CREAT's mode does not apply to a leftover file
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(partial, path)


@keys.command("init-ledger")
def keys_init_ledger() -> None:
    """Make the writer key file (mode 0600) if it is missing, and print the writer public key to publish."""
    from shared.eventstore.writer import WriterSigner, load_or_create_seed, public_key_text

    settings = _settings()
    signer = WriterSigner(load_or_create_seed(settings.writer_key_file))
    typer.echo(public_key_text(signer.public_key))


def _demo(container: Container, receiver: str | None = None) -> dict[str, Any]:
    """A demo platform and one key per role, printed at start-up. The keys of the last start are reused while they
    are valid and speak for the same tenant: their plaintexts are kept in a 0600 file (`demo_keys_file`).

    On a database that can take them, the sample orders of `services/demo.py` too; `receiver`: this process's base
    URL, whose demo receiver the present samples are pushed to."""
    from services import demo as samples
    from services.registry import service as registry

    now = container.clock.now()
    refusal = samples.seeding_refusal(container)
    with container.db.transaction() as conn:
        platform = next((p for p in registry.list_all(conn) if p.name == samples.PLATFORM_NAME), None)
        if platform is None:
            platform, _ = container.registry.register_in(
                conn,
                {
                    "name": samples.PLATFORM_NAME,
                    "monthly_users": 250_000,
                    "representative": {"name": "Aigerim Demo", "citizenship": "KZ", "email": "rep@demo.example"},
                    "webhook_url": None,
                },
                # Before the sample history, so that the representative is on record when its orders notify it.
                samples.history_start(now) if refusal is None else now,
            )
    wanted: dict[Role, dict[str, str]] = {
        "admin": {},
        "issuer": DEMO_AUTHORITY,
        "platform": {"platform_id": platform.id},
        "auditor": {},
    }
    path = demo_keys_file(container.settings)
    saved, private = _read_demo_keys(path)
    made: dict[str, str] = {}
    reused: list[str] = []
    for role, tenant in wanted.items():
        plaintext = saved.get(role)
        principal = container.keys.valid(plaintext) if plaintext else None
        if principal is not None and not private:
            # Others could read the file, so its keys may have leaked: they end here and new ones are made.
            container.keys.revoke(principal.key_id, "demo")
            principal = None
        same_tenant = principal is not None and (principal.authority_id, principal.platform_id) == (
            tenant.get("authority_id"),
            tenant.get("platform_id"),
        )
        if plaintext is not None and principal is not None and principal.role == role and same_tenant:
            made[role] = plaintext
            reused.append(role)
        else:
            made[role], _ = container.keys.create(
                role,
                actor="demo",
                label="demo",
                authority_id=tenant.get("authority_id"),
                authority_name=tenant.get("authority_name"),
                platform_id=tenant.get("platform_id"),
            )
    if made != saved or not private:
        _write_private(path, json.dumps(made, indent=2) + "\n")
    info: dict[str, Any] = {"platform_id": platform.id, "keys": made, "reused": reused, "file": str(path)}
    if refusal is None:
        seeded = samples.seed(container, samples.principals(container, made), receiver)
        info["seeded"], info["webhook"] = seeded.orders, seeded.webhook
    else:
        info["seeded"], info["not_seeded"] = 0, refusal
    return info


@cli.command()
def run(
    host: Annotated[str | None, typer.Option(help="bind address")] = None,
    port: Annotated[int | None, typer.Option(help="port")] = None,
    demo: Annotated[
        bool, typer.Option(help="register a demo platform, seed sample orders and print demo keys")
    ] = False,
) -> None:
    """The all-in-one service: migrate, then serve the API with the sequencer and notifier in-process."""
    settings = _settings()
    container = bootstrap(settings)
    upgrade(container.db.engine)
    if demo:
        # The demo receiver is called on this process's own address (0.0.0.0 and :: listen on loopback too).
        bound = host or settings.host
        own = "127.0.0.1" if bound in ("0.0.0.0", "::", "") else f"[{bound}]" if ":" in bound else bound
        info = _demo(container, f"http://{own}:{port or settings.port}")
        typer.echo(f"demo platform id: {info['platform_id']}")
        for role, key in info["keys"].items():
            typer.echo(f"demo {role:<8} key: {key}")
        typer.echo(f"demo keys kept in {info['file']} (reused: {', '.join(info['reused']) or 'none'})")
        if info["seeded"]:
            typer.echo(f"demo sample orders: {info['seeded']} issued, see /dashboard with the auditor key")
            typer.echo(f"demo webhook: {info['webhook']}")
        else:
            typer.echo(f"demo sample orders: not seeded, {info['not_seeded']}")
    typer.echo(f"API docs: http://{host or settings.host}:{port or settings.port}/docs")
    _serve(container, True, host or settings.host, port or settings.port, demo=demo)
    container.close()


@cli.command()
def api(
    host: Annotated[str | None, typer.Option(help="bind address")] = None,
    port: Annotated[int | None, typer.Option(help="port")] = None,
) -> None:
    """The API alone (run any number of copies against PostgreSQL; workers run separately)."""
    settings = _settings()
    container = bootstrap(settings)
    _serve(container, False, host or settings.host, port or settings.port)
    container.close()


@cli.command()
def sequencer() -> None:
    """The sequencer alone: gives committed events their global positions (safe to run in many copies)."""
    _run_alone("sequencer", lambda c: c.sequencer)


@projections_cli.command("rebuild")
def projections_rebuild() -> None:
    """Drop every projection's rows and replay it from position 0 (the same tables the live reader keeps)."""
    container = _container()
    container.sequencer.catch_up()
    for projection in container.rebuildable():
        applied = rebuild_projection(container.db, container.store, projection)
        typer.echo(f"{projection.name}: rebuilt from {applied} events")
    container.close()


@cli.command()
def scheduler(
    once: Annotated[bool, typer.Option(help="sweep once and exit (for cron or a test)")] = False,
) -> None:
    """The sweep alone: escalates what fell due and moves SLA statuses by time (safe to run in many copies)."""
    if once:
        container = _container()
        typer.echo(f"swept {container.sweep.run_once()} due orders")
        container.close()
        return
    _run_alone("scheduler", lambda c: c.scheduler)


@projections_cli.command("run")
def projections_run() -> None:
    """Keep the projections caught up (run any number of copies: one applies a batch at a time)."""
    _run_alone("projections", lambda c: c.projections)


# ----------------------------------------------------------------------------------------------- secrets


@secrets_cli.command("seal")
def secrets_seal() -> None:
    """Seal every secret still stored in plaintext (or under a retired KEK) with the current KEK."""
    container = _container()
    try:
        count = container.registry.seal_stored()
    except SecretsKeyError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    finally:
        container.close()
    typer.echo(f"sealed {count} platform secrets")


@secrets_cli.command("rotate-kek")
def secrets_rotate_kek(
    new_file: Annotated[str, typer.Option("--new-file", help="the new KEK's file (made, mode 0600, if missing)")],
    old_file: Annotated[
        list[str] | None,
        typer.Option("--old-file", help="a KEK the secrets are sealed with now (default: the configured ones)"),
    ] = None,
) -> None:
    """Re-seal every webhook secret under a new KEK, in one transaction; then point the processes at the new file.

    Keys are read from files, never from the command line (which other users of the host can see).
    """
    settings = _settings()
    container = bootstrap(settings)
    try:
        if old_file:
            known = [load_kek(None, path, create=False) for path in old_file]
        else:
            configured = keyring_from_settings(settings)
            known = [configured.current, *configured.retired]
        new = load_kek(None, new_file, create=True)
        ring = Keyring(new).with_retired(known)
        count = container.db.run(lambda conn: reseal(conn, ring))
    except SecretsKeyError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    finally:
        container.close()
    typer.echo(f"re-sealed {count} platform secrets under KEK {new.id}")
    typer.echo(f"now set TAKEDOWN_SECRETS_KEK_FILE={new_file} in every process (and keep the old file until then)")


# ------------------------------------------------------------------------------------------------ ledger

ledger_cli = typer.Typer(
    help="The tamper-evident ledger (RFC 9162 Merkle tree, signed checkpoints).", no_args_is_help=True
)


@ledger_cli.command("public-key")
def public_key(
    chain: Annotated[bool, typer.Option("--chain", help="also print every key of the chain and its rotation")] = False,
) -> None:
    """Print the checkpoint verifier key in force (made with the signing key on first use), then the writer key.

    The key's name and the origin are the ones stored when the ledger was created, whatever PUBLIC_BASE_URL says.
    """
    from shared.eventstore.writer import public_key_text

    container = _container()
    try:
        stored = container.ledger.stored_keys()
        typer.echo(stored[-1].verifier.verifier_key)
        if container.store.writer is not None:
            typer.echo(f"writer {public_key_text(container.store.writer.public_key)}")
        if chain:
            for key in stored:
                typer.echo(f"key {key.seq} from tree size {key.from_size}: {key.verifier.verifier_key}")
                if key.statement is not None:
                    typer.echo(key.statement, nl=False)
    finally:
        container.close()


@ledger_cli.command("identity")
def identity() -> None:
    """Store the ledger's identity if it has none yet (origin, key name, first key), and print it."""
    container = _container()
    try:
        ledger = container.ledger
        stored = ledger.stored_keys()
        typer.echo(f"origin {ledger.origin}")
        typer.echo(f"key name {ledger.identity().key_name}")
        typer.echo(f"first key {stored[0].verifier.verifier_key}")
        typer.echo(f"key in force {stored[-1].verifier.verifier_key} (from tree size {stored[-1].from_size})")
    finally:
        container.close()


@ledger_cli.command("rotate-key")
def rotate_key() -> None:
    """Make a new checkpoint key; the old one signs a last checkpoint and a statement naming the new key.

    The new key replaces the key file (TAKEDOWN_LEDGER_KEY_FILE); the old file is kept as "<file>.retired-<size>"
    for its owner to destroy. Running processes pick the new key up at their next checkpoint.
    """
    from services.ledger.checkpoints import promote_staged_seed, stage_new_seed

    settings = _settings()
    if settings.ledger_key is not None:
        typer.echo("refused: the key is given in TAKEDOWN_LEDGER_KEY; rotation replaces a key file", err=True)
        raise typer.Exit(2)
    container = bootstrap(settings)
    try:
        container.sequencer.catch_up()
        rotated = container.ledger.rotate_key(stage_new_seed(settings.ledger_key_file))
    finally:
        container.close()
    retired = promote_staged_seed(settings.ledger_key_file, rotated.from_size)
    typer.echo(f"rotated: {rotated.old.verifier_key} -> {rotated.new.verifier_key}")
    typer.echo(f"the new key signs checkpoints from tree size {rotated.from_size}; old key file kept as {retired}")
    typer.echo(rotated.statement, nl=False)


@ledger_cli.command("checkpoint")
def checkpoint() -> None:
    """Feed every sequenced event, sign and store a checkpoint now, ask the witnesses to cosign it; print its note.

    A witness that does not answer within its timeout is left for the next checkpoint (and its backoff).
    """
    from services.ledger.witnessing import Cosigned

    container = _container()
    try:
        container.sequencer.catch_up()
        made = container.ledger.checkpoint()
        for name, outcome in container.ledger.witnessing.run_once().items():
            if outcome is not None and not isinstance(outcome, Cosigned):
                typer.echo(f"witness {name} did not cosign: {outcome}", err=True)
        made = container.ledger.cosigned_checkpoint(made)
    finally:
        container.close()
    typer.echo(made.note, nl=False)


WitnessOption = Annotated[
    list[str] | None,
    typer.Option(
        "--witness",
        help="a witness you trust, NAME=VKEY (its cosignature/v1 verifier key); repeatable",
    ),
]
QuorumOption = Annotated[
    int | None,
    typer.Option(
        "--quorum",
        help="how many of the witnesses given must have cosigned a checkpoint for it to count (default: all)",
    ),
]


def _policy(witness: list[str] | None, quorum: int | None) -> WitnessPolicy:
    """The witness policy from --witness and --quorum (a usage error if they do not make one)."""
    try:
        return parse_policy(witness or [], quorum)
    except PolicyError as exc:
        raise typer.BadParameter(str(exc)) from exc


def print_report(report: VerifyReport) -> None:
    """Print a verification report: the verdict, every bad position with its reason, every problem, the quarantined."""
    for q in report.quarantined:
        signed = "signed" if q.signed else "NOT SIGNED by the ledger key"
        typer.echo(
            f"quarantined: position {q.position} (event {q.event_id}, {q.fault}) on {q.decided_at}: {q.reason} [{signed}]"
        )
    if report.ok:
        typer.echo(
            f"ok: {report.events_checked} events, {report.nodes_checked} tree nodes and {report.checkpoints_checked}"
            f" checkpoints verified (tree size {report.tree_size}; {report.pending_events} events not yet in the ledger)"
        )
        if report.trusted_key is not None:
            typer.echo(f"key chain: {report.keys_followed} keys followed from {report.trusted_key}")
        if report.quorum:
            typer.echo(f"witnessed: up to tree size {report.witnessed_size} (quorum {report.quorum})")
        return
    where = report.first_bad_position
    typer.echo(f"FAILED: first bad position {where}" if where is not None else "FAILED", err=True)
    for problem in report.problems:
        typer.echo(f"  {problem}", err=True)


@ledger_cli.command("verify")
def verify(
    key: Annotated[
        str | None,
        typer.Option(
            "--key",
            help="the key you trust (the ledger's first, or a later one), or a file holding it; default: the stored"
            " first key, which is only the database's word",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as one JSON object")] = False,
    witness: WitnessOption = None,
    quorum: QuorumOption = None,
) -> None:
    """Recompute every leaf, rebuild the tree, screen every event, check every checkpoint; exit 1 on any fault.

    With --witness, the newest checkpoint must carry --quorum valid cosignatures of those witnesses, and an event
    recorded before a checkpoint that does not hold it was cosigned (minus LEDGER_MAX_LAG_S) is backdated.
    """
    from shared.tlog.note import NoteError, parse_verifier_key

    policy = _policy(witness, quorum)
    trusted = None
    if key is not None:
        try:
            trusted = parse_verifier_key(_verifier_key(key))
        except NoteError as exc:
            raise typer.BadParameter(f"--key: {exc}") from exc
    container = _container()
    try:
        report = container.ledger.verify(trusted, policy)
    finally:
        container.close()
    if as_json:
        typer.echo(json.dumps(report.as_json(), indent=2))
    else:
        print_report(report)
    if not report.ok:
        raise typer.Exit(1)


@ledger_cli.command("quarantine")
def quarantine(
    position: Annotated[int, typer.Argument(help="the position the feeder refuses (the one after the tree)")],
    reason: Annotated[str, typer.Option("--reason", help="why this event is set aside (kept in the decision)")],
) -> None:
    """Set aside the event the feeder refuses, as a decision signed by the checkpoint key; the feeder moves on."""
    from services.ledger.errors import NotQuarantinable

    container = _container()
    try:
        decision = container.ledger.quarantine(position, reason)
        fed = container.ledger.feed()  # at once, not at the next pass of a feeder (any number may run)
        blocked = container.ledger.blocked()
    except NotQuarantinable as exc:
        typer.echo(f"refused: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        container.close()
    typer.echo(f"quarantined position {decision.position} (event {decision.event_id}, {decision.fault}); {fed} fed")
    if blocked is not None:
        typer.echo(f"the feeder now refuses position {blocked.position}: {blocked.reason}")


def _verifier_key(key: str) -> str:
    """A verifier key given as itself or as the path of a file holding it."""
    if "+" not in key or os.path.isfile(key):
        try:
            with open(key, encoding="utf-8") as handle:
                return handle.read().strip()
        except OSError as exc:
            raise typer.BadParameter(f"neither a verifier key nor a readable file: {key}") from exc
    return key.strip()


@ledger_cli.command("verify-bundle")
def verify_bundle(
    file: Annotated[str, typer.Argument(help="the evidence bundle (JSON), '-' for standard input")],
    key: Annotated[
        str,
        typer.Option("--key", help="the ledger's verifier key you trust (its first, or later), or a file holding it"),
    ],
    writer_key: Annotated[
        list[str] | None,
        typer.Option("--writer-key", help="a writer key ('<key id>+<base64>') whose seals to check; repeatable"),
    ] = None,
    witness: WitnessOption = None,
    quorum: QuorumOption = None,
    max_lag_s: Annotated[
        float | None,
        typer.Option("--max-lag-s", help="the feeder's maximum lag (default: TAKEDOWN_LEDGER_MAX_LAG_S, 300)"),
    ] = None,
) -> None:
    """Check an evidence bundle offline with only the verifier key; exit 1 naming every check that failed.

    The bundle's key rotations are followed from the key given. With --writer-key, every event's seal must be a
    valid signature by one of those writer keys; without, a seal must at least name its event's digest. With
    --witness, the checkpoint must carry --quorum valid cosignatures of those witnesses, and no event may be recorded
    before an earlier cosigned checkpoint that does not hold it was cosigned (minus the maximum lag).
    """
    from services.ledger.bundle import verify_bundle as check_bundle
    from shared.eventstore.writer import WriterKeyError, key_id, parse_public_key

    policy = _policy(witness, quorum)
    lag = max_lag_s if max_lag_s is not None else Settings().ledger_max_lag_s
    writers: dict[str, bytes] | None = None
    if writer_key:
        try:
            writers = {key_id(raw): raw for raw in map(parse_public_key, writer_key)}
        except WriterKeyError as exc:
            raise typer.BadParameter(str(exc)) from exc

    if file == "-":
        raw = sys.stdin.buffer.read()
    else:
        try:
            with open(file, "rb") as handle:
                raw = handle.read()
        except OSError as exc:
            raise typer.BadParameter(f"cannot read {file}: {exc}") from exc
    report = check_bundle(raw, _verifier_key(key), writers, policy, lag)
    _verdict(
        report.problems,
        f"ok: order {report.order_id}: {report.events_checked} events proven against the signed checkpoint"
        f" of tree size {report.tree_size}; on record, deliveries and attestation verified",
        f"FAILED: evidence bundle of order {report.order_id or '?'}",
        report.cosigned_by,
        policy.quorum,
    )


def _verdict(problems: Sequence[str], ok: str, failed: str, cosigned_by: Sequence[str], quorum: int) -> None:
    """An offline check's answer: its ok line (and who cosigned), or every problem on stderr and exit 1."""
    if not problems:
        typer.echo(ok)
        if quorum:
            typer.echo(f"witnessed: cosigned by {', '.join(cosigned_by)} (quorum {quorum})")
        return
    typer.echo(failed, err=True)
    for problem in problems:
        typer.echo(f"  {problem}", err=True)
    raise typer.Exit(1)


@ledger_cli.command("feeder")
def feeder() -> None:
    """The feeder alone: appends sequenced events to the tree and signs checkpoints on schedule (many copies are safe)."""
    _run_alone("ledger feeder", lambda c: c.ledger)


cli.add_typer(ledger_cli, name="ledger")


# ------------------------------------------------------------------------------------------------ witness

witness_cli = typer.Typer(
    help="A C2SP tlog-witness on its own database: cosigns the checkpoints of the logs it is given.",
    no_args_is_help=True,
)


def _witness_settings(name: str | None, key_file: str | None, db_url: str | None, logs: list[str]) -> Settings:
    """The settings with the command line's witness options over them (`--log ORIGIN=VKEY` adds to WITNESS_LOGS)."""
    settings = _settings()
    trusted = dict(settings.witness_logs)
    for entry in logs:
        origin, equals, vkey = entry.partition("=")  # origins have no '='; a vkey's base64 may end with some
        if not equals:
            raise typer.BadParameter(f"--log is ORIGIN=VKEY, not {entry!r}")
        trusted[origin] = vkey
    changes: dict[str, Any] = {"witness_logs": trusted}
    for field, value in (("witness_name", name), ("witness_key_file", key_file), ("witness_database_url", db_url)):
        if value is not None:
            changes[field] = value
    return settings.model_copy(update=changes)


_WitnessName = Annotated[str | None, typer.Option("--name", help="its key name (default: WITNESS_NAME)")]
_WitnessKey = Annotated[str | None, typer.Option("--key-file", help="its Ed25519 seed (made 0600 on first use)")]


@witness_cli.command("serve")
def witness_serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8090,
    db_url: Annotated[str | None, typer.Option("--db-url", help="default: WITNESS_DATABASE_URL")] = None,
    key_file: _WitnessKey = None,
    name: _WitnessName = None,
    log_: Annotated[
        list[str] | None, typer.Option("--log", help="a log to witness, ORIGIN=VKEY (its note key); repeatable")
    ] = None,
) -> None:
    """Serve POST /add-checkpoint, GET /vkey and GET /refusals."""
    from services.bootstrap import witness_from_settings
    from services.http.witness import create_witness_app

    settings = _witness_settings(name, key_file, db_url, log_ or [])
    try:
        witness = witness_from_settings(settings)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    if not witness.logs:
        raise typer.BadParameter("no log to witness: give --log ORIGIN=VKEY or TAKEDOWN_WITNESS_LOGS")
    _starting(settings, "witness")
    log.info("witness %s for %s", witness.vkey, ", ".join(sorted(witness.logs)))
    uvicorn.run(create_witness_app(witness), host=host, port=port, log_config=None, access_log=False)


@witness_cli.command("vkey")
def witness_vkey(key_file: _WitnessKey = None, name: _WitnessName = None) -> None:
    """Print the witness's cosignature/v1 verifier key (its seed made on first use)."""
    from services.bootstrap import witness_cosigner

    typer.echo(witness_cosigner(_witness_settings(name, key_file, None, [])).verifier.vkey)


cli.add_typer(witness_cli, name="witness")


# ------------------------------------------------------------------------------------------------ receipts

receipts_cli = typer.Typer(
    help="A platform's receipts kit: keeps the service's webhooks, checks the log, writes statements for a court.",
    no_args_is_help=True,
)
_ReceiptsDb = Annotated[str | None, typer.Option("--db-url", help="its SQLite file (default: RECEIPTS_DATABASE_URL)")]


def _receipts_settings(**given: Any) -> Settings:
    """The settings with the command line's receipts options over them (None: the setting as configured)."""
    settings = _settings()
    changes = {f"receipts_{k}": v for k, v in given.items() if v}  # None or [] : as configured
    if "receipts_api_key" in changes:
        changes["receipts_api_key"] = SecretStr(changes["receipts_api_key"])
    if "receipts_webhook_secrets" in changes:
        changes["receipts_webhook_secrets"] = [SecretStr(s) for s in changes["receipts_webhook_secrets"]]
    return settings.model_copy(update=changes)


def _receipts_kit(settings: Settings, receiving: bool = True) -> ReceiptsKit:
    from services.bootstrap import receipts_from_settings

    try:
        return receipts_from_settings(settings, receiving=receiving)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


@receipts_cli.command("serve")
def receipts_serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8095,
    db_url: _ReceiptsDb = None,
    service_url: Annotated[str | None, typer.Option("--service-url", help="the service's API base URL")] = None,
    api_key: Annotated[str | None, typer.Option("--api-key", help="the platform's API key")] = None,
    secret: Annotated[
        list[str] | None, typer.Option("--secret", help="the platform's webhook secret (whsec_...); repeatable")
    ] = None,
    log_key: Annotated[str | None, typer.Option("--log-key", help="the log's note verifier key, or a file")] = None,
    forward_url: Annotated[str | None, typer.Option("--forward-url", help="where to forward each order")] = None,
) -> None:
    """Serve POST /webhook and GET /status; follow every order received into the log in the background."""
    from services.http.receipts import create_receipts_app

    settings = _receipts_settings(
        database_url=db_url,
        service_url=service_url,
        api_key=api_key,
        webhook_secrets=secret,
        log_key=_verifier_key(log_key) if log_key else None,
        forward_url=forward_url,
    )
    kit = _receipts_kit(settings)
    _starting(settings, "receipts")
    log.info("receipts kit for the log %s, following %s", kit.verifier.name, settings.receipts_service_url)
    kit.start()
    try:
        uvicorn.run(create_receipts_app(kit), host=host, port=port, log_config=None, access_log=False)
    finally:
        kit.stop()


@receipts_cli.command("statement")
def receipts_statement(
    platform: Annotated[str, typer.Option("--platform", help="the platform's id")],
    start: Annotated[datetime, typer.Option("--from", help="first instant (UTC unless a zone is given)")],
    end: Annotated[datetime, typer.Option("--to", help="the instant after the last (UTC unless a zone is given)")],
    out: Annotated[str | None, typer.Option("--out", help="write it here (default: standard output)")] = None,
    sla_hours: Annotated[float, typer.Option("--sla-hours", help="hours allowed from notification")] = 24.0,
    db_url: _ReceiptsDb = None,
    log_key: Annotated[str | None, typer.Option("--log-key", help="the log's note verifier key, or a file")] = None,
) -> None:
    """Write, from the kit's SQLite file alone (no network), the statement of the orders first received in the period."""
    settings = _receipts_settings(database_url=db_url, log_key=_verifier_key(log_key) if log_key else None)
    kit = _receipts_kit(settings, receiving=False)  # the store and the log's key; no network, no secret
    try:
        document = kit.statement(platform, _utc(start), _utc(end), sla_hours)
    finally:
        kit.stop()
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if out is None:
        typer.echo(text, nl=False)
        return
    Path(out).write_text(text, encoding="utf-8")
    typer.echo(f"{len(document['orders'])} orders, {len(document['checkpoints'])} checkpoints: {out}", err=True)


def _utc(moment: datetime) -> datetime:
    from datetime import UTC

    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


@receipts_cli.command("verify")
def receipts_verify(
    file: Annotated[str, typer.Argument(help="the statement (JSON), '-' for standard input")],
    key: Annotated[str, typer.Option("--key", help="the log's note verifier key you trust, or a file holding it")],
    witness: WitnessOption = None,
    quorum: QuorumOption = None,
    max_skew_s: Annotated[
        float, typer.Option("--max-skew-s", help="how far the kit's clock may be from the service's")
    ] = 300.0,
) -> None:
    """Check a statement offline; exit 1 naming every check that failed.

    With --witness, the statement's latest checkpoint must carry --quorum valid cosignatures of those witnesses
    (every earlier one is joined to it by consistency proofs).
    """
    from services.receipts.domain import verify_statement
    from shared.tlog.note import NoteError, parse_verifier_key

    policy = _policy(witness, quorum)
    try:
        trusted = parse_verifier_key(_verifier_key(key))
    except NoteError as exc:
        raise typer.BadParameter(f"--key: {exc}") from exc
    try:
        raw = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {file}: {exc}") from exc
    report = verify_statement(raw, trusted, policy, max_skew_s)
    _verdict(
        report.problems,
        f"ok: platform {report.platform_id}: {report.orders_checked} orders, {report.events_checked} events proven,"
        f" {report.checkpoints_checked} checkpoints consistent up to tree size {report.head_size}",
        f"FAILED: statement of platform {report.platform_id or '?'}",
        report.cosigned_by,
        policy.quorum,
    )


cli.add_typer(receipts_cli, name="receipts")


@cli.command("report")
def report(
    start: Annotated[datetime, typer.Option("--from", formats=["%Y-%m-%d"], help="first day")],
    end: Annotated[datetime, typer.Option("--to", formats=["%Y-%m-%d"], help="last day, inclusive")],
    period: Annotated[str, typer.Option(help="month or day")] = "month",
    group_by: Annotated[str | None, typer.Option(help="authority, category, legal_basis or platform")] = None,
    csv: Annotated[str | None, typer.Option("--csv", help="also write the report as CSV to this file")] = None,
) -> None:
    """The public transparency report as a table (small cells suppressed, as on /v1/transparency/report)."""
    from services.transparency.errors import ReportError
    from services.transparency.render import to_csv, to_table
    from services.transparency.report import DIMENSIONS
    from services.transparency.service import make_report

    if period not in ("month", "day") or (group_by is not None and group_by not in DIMENSIONS):
        typer.echo("error: --period is month or day; --group-by one of " + ", ".join(DIMENSIONS), err=True)
        raise typer.Exit(2)
    container = _container()
    try:
        with container.read_db.read() as conn:
            made = make_report(
                conn,
                today=container.clock.now().date(),
                start=start.date(),
                end=end.date(),
                period=period,  # type: ignore[arg-type]  # checked above
                group_by=group_by,  # type: ignore[arg-type]
                min_cell=container.settings.transparency_min_cell,
            )
    except ReportError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    finally:
        container.close()
    typer.echo(to_table(made), nl=False)
    if csv:
        with open(csv, "w", encoding="utf-8", newline="") as out:
            out.write(to_csv(made))
        typer.echo(f"CSV written to {csv}")


transparency_cli = typer.Typer(
    help="Published months of the transparency report: fixed in the ledger, checked, amended.", no_args_is_help=True
)
_Period = Annotated[str, typer.Argument(help="the month, YYYY-MM")]


def _month(text: str) -> date:
    """The month a YYYY-MM names, or a usage error."""
    from services.transparency.errors import ReportError
    from services.transparency.publication import parse_period

    try:
        return parse_period(text)
    except ReportError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


def _published_line(p: Any) -> str:
    return f"{p.period} revision {p.revision} published (stream {p.stream_id}, version {p.version})"


@transparency_cli.command("publish")
def transparency_publish(
    period: Annotated[
        str | None,
        typer.Option(
            help="this finished month (YYYY-MM), even before its settle time; default: every "
            "finished, settled, unpublished month, as the scheduler does"
        ),
    ] = None,
) -> None:
    """Publish now: the month's report documents and their hashes as one event in the ledger."""
    from services.transparency.errors import MonthNotFinished

    month = _month(period) if period is not None else None
    container = _container()
    try:
        if month is None:
            made = container.publisher.run_once()
            for p in made:
                typer.echo(_published_line(p))
            if not made:
                typer.echo("nothing to publish: every finished, settled month is published")
            return
        try:
            found = container.publisher.publish(month, actor="cli")
        except MonthNotFinished as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from exc
        typer.echo(_published_line(found) if found else f"{period} is published already (see `amend`)")
    finally:
        container.close()


@transparency_cli.command("check")
def transparency_check(period: _Period) -> None:
    """Recompute the month's report from the projections and compare each document's hash with the published one."""
    from services.transparency.errors import NotPublished

    month = _month(period)
    container = _container()
    try:
        published, differ = container.publisher.check(month)
    except NotPublished as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    finally:
        container.close()
    if differ:
        typer.echo(f"{period} revision {published.revision}: differs from the published report in: {', '.join(differ)}")
        raise typer.Exit(1)
    typer.echo(f"{period} revision {published.revision}: the {len(published.sha256)} documents match their hashes")


@transparency_cli.command("amend")
def transparency_amend(
    period: _Period,
    reason: Annotated[str, typer.Option(help="why the published figures are replaced (published with them)")],
) -> None:
    """Publish a new revision of a published month, recomputed now, superseding the newest one."""
    from services.transparency.errors import AmendmentRefused, NotPublished

    month = _month(period)
    container = _container()
    try:
        made = container.publisher.amend(month, reason)
    except (NotPublished, AmendmentRefused) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    finally:
        container.close()
    typer.echo(f"{_published_line(made)}, superseding revision {made.supersedes}")


cli.add_typer(transparency_cli, name="transparency")


@cli.command()
def notifier(
    processes: Annotated[
        int | None,
        typer.Option(min=0, help="worker processes (default TAKEDOWN_NOTIFIER_PROCESSES; 0: one per CPU)"),
    ] = None,
) -> None:
    """The notifier alone: delivers webhooks from the outbox (safe to run in many copies on PostgreSQL)."""
    settings = _settings()
    count = settings.notifier_processes if processes is None else processes
    if not count:  # one per CPU this process may run on (not all the host's, in a container with a CPU set)
        count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if count > 1 and settings.database_url.startswith("sqlite"):
        typer.echo("SQLite: one notifier process (several need PostgreSQL's row locks)", err=True)
        count = 1
    # The per-platform cap is counted in PostgreSQL, fleet-wide; each child takes its share of it (so that each does
    # a share of the work), and of the total: each needs one of both.
    cap = min(settings.webhook_per_platform, settings.webhook_concurrency)
    if count > cap:
        typer.echo(f"{count} processes asked for; {cap}, as each needs one of the per-platform limit", err=True)
        count = cap
    if count == 1:
        _notifier_process(settings)
        return
    raise typer.Exit(_supervise(settings, count))


def _notifier_process(settings: Settings) -> None:
    _starting(settings, "notifier")
    container = bootstrap(settings)
    _seal_plaintext(container)
    # Every delivery leaves cyclic garbage (httpx's response streams); with the default thresholds the collector
    # ran ~500 times in 3,000 deliveries, each pass walking every long-lived object. Freezing what start-up made
    # and collecting less often cut the collector's time by five (about 0.1 ms per delivery), in 5 ms pauses.
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
    metrics = _metrics(container, "notifier")

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await container.notifier.run(stop)

    asyncio.run(serve())
    if metrics is not None:
        metrics.stop()
    container.close()


def _child_of(supervisor: int, stops: set[signal.Signals]) -> None:
    """In a child, before exec: take signals again, and ask Linux to SIGTERM it when its parent dies."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, stops)  # the supervisor's blocked mask would survive the exec
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
        if os.getppid() != supervisor:  # the supervisor died before the request was in place
            os._exit(1)


def notifier_drain_s(settings: Settings) -> float:
    """How long a stopping notifier waits for its in-flight attempts (a container's stop grace must be longer)."""
    return settings.webhook_timeout_s + 10  # each attempt gets its full timeout, and its recording some slack


def _supervise(settings: Settings, count: int) -> int:
    """Run `count` single notifier processes sharing the limits; stop them all when one stops or on a signal.

    Processes rather than threads because one Python process is bound to one CPU by its interpreter lock, and
    the notifier is CPU-bound (HTTP client and recording) well before the network is.
    """

    def share(limit: int, n: int) -> str:
        # The limits are the whole notifier's: split exactly, the remainder to the first processes (the per-platform
        # cap itself stays whole in each child: every process counts the fleet's leases against it).
        return str(limit // count + (1 if n < limit % count else 0))

    # Blocked before the children start, so a stop is never lost, and waited for with sigtimedwait, so no handler
    # runs inside a wait that holds a lock (as in _run_alone).
    stops = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stops)
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "services.cli", "notifier"],
            env={
                **os.environ,
                "TAKEDOWN_NOTIFIER_PROCESSES": "1",
                "TAKEDOWN_WEBHOOK_CONCURRENCY": share(settings.webhook_concurrency, n),
                "TAKEDOWN_WEBHOOK_PER_PLATFORM_PER_PROCESS": share(settings.webhook_per_platform, n),
                # Each child serves its own figures (the supervisor sends nothing): port, port + 1, ...
                "TAKEDOWN_METRICS_PORT": str(settings.metrics_port + n if settings.metrics_port else 0),
            },
            preexec_fn=functools.partial(_child_of, os.getpid(), stops),
        )
        for n in range(count)
    ]
    stopping = False
    while not stopping and all(c.poll() is None for c in children):
        stopping = signal.sigtimedwait(stops, 0.2) is not None
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    codes = []
    deadline = time.monotonic() + notifier_drain_s(settings)
    for child in children:
        try:
            codes.append(child.wait(max(0.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            child.kill()  # hangs beyond it: killed; its leases expire and another worker takes its deliveries
            codes.append(child.wait())
    # A child stopped by our SIGTERM before it set its handler stopped cleanly too; killed by signal N: 128 + N.
    clean = {0, -signal.SIGTERM, -signal.SIGINT} if stopping else {0}
    failed = [128 - c if c < 0 else c for c in codes if c not in clean]
    if stopping:
        return failed[0] if failed else 0
    return failed[0] if failed else 1  # a child stopped on its own: that is a failure of the whole


@cli.command()
def healthcheck(
    http: Annotated[str | None, typer.Option("--http", help="also GET this URL and want a 200 (e.g. /readyz)")] = None,
) -> None:
    """Exit 0 when the database answers and is at the newest migration (and --http answers 200): a HEALTHCHECK."""
    from sqlalchemy import text

    from shared.migrate import current_revision, head_revision

    settings = Settings()
    engine = make_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        current, head = current_revision(engine), head_revision(engine)
    except Exception as exc:  # noqa: BLE001 - any failure is "unhealthy", said in one line
        typer.echo(f"unhealthy: database unreachable ({type(exc).__name__})", err=True)
        raise typer.Exit(1) from None
    finally:
        engine.dispose()
    if current != head:
        typer.echo(f"unhealthy: database at migration {current}, the code at {head}", err=True)
        raise typer.Exit(1)
    if http is not None:
        import httpx

        try:
            status = httpx.get(http, timeout=5).status_code
        except httpx.HTTPError as exc:
            typer.echo(f"unhealthy: {http}: {type(exc).__name__}", err=True)
            raise typer.Exit(1) from None
        if status != 200:
            typer.echo(f"unhealthy: {http} answered {status}", err=True)
            raise typer.Exit(1)
    typer.echo("healthy")


@cli.command("demo-receiver")
def demo_receiver(
    host: Annotated[str, typer.Option(help="bind address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 9000,
    secret_file: Annotated[
        str | None, typer.Option(help="the platform's webhook secret (whsec_...), to check each signature")
    ] = None,
) -> None:
    """A demo platform's webhook endpoint: logs every delivery and answers 204 (401 to a bad signature)."""
    from services.webhooks.receiver import make_server

    stops = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stops)  # waited for below, as in _run_alone: no handler runs
    configure_logging(Settings())
    secret = Path(secret_file).read_text(encoding="utf-8").strip() if secret_file else None
    server = make_server(host, port, secret)
    log.info("demo receiver on %s:%d (signatures %s)", host, port, "checked" if secret else "not checked")
    serving = threading.Thread(target=server.serve_forever, name="demo-receiver")
    serving.start()
    signal.sigwait(stops)
    server.shutdown()
    serving.join()
    server.server_close()


def main() -> None:
    """Entry point of the `takedown` command."""
    cli()


if __name__ == "__main__":
    main()
