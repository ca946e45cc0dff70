"""The `takedown` command: run the all-in-one service or one part of it, migrate, and make API keys."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import gc
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Protocol

import typer
import uvicorn

from services.bootstrap import Container, bootstrap
from services.http.app import create_app
from services.ledger.verify import VerifyReport
from shared.auth import ROLES, Role, create_key
from shared.logs import configure_logging
from shared.migrate import upgrade
from shared.projections import rebuild as rebuild_projection
from shared.settings import Settings

cli = typer.Typer(help="Takedown orders: intake, notification, SLA and ledger.", no_args_is_help=True)
keys = typer.Typer(help="API keys.", no_args_is_help=True)
cli.add_typer(keys, name="keys")
projections_cli = typer.Typer(
    help="Projections derived from the event store (the SLA status, the registry).", no_args_is_help=True
)
cli.add_typer(projections_cli, name="projections")


def _settings() -> Settings:
    """This process's settings, with logging configured from them (once per command, at start-up)."""
    settings = Settings()
    configure_logging(settings)
    return settings


def _container() -> Container:
    return bootstrap(_settings())


def _serve(container: Container, run_workers: bool, host: str, port: int) -> None:
    """Serve the API with uvicorn, its own loggers routed through ours (no access log: ours has the request id)."""
    app = create_app(container, run_workers=run_workers)
    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False)


class _Worker(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...


def _run_alone(part: Callable[[Container], _Worker]) -> None:
    """Run one background part of the service alone until SIGTERM or Ctrl-C."""
    container = _container()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    part(container).start()
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    container.close()


@cli.command()
def migrate() -> None:
    """Bring the database to the newest schema."""
    container = _container()
    upgrade(container.db.engine)
    typer.echo(f"migrated {container.db.engine.url.render_as_string(hide_password=True)} to head")
    container.close()


@keys.command("create")
def keys_create(
    role: Annotated[str, typer.Option(help=f"one of {', '.join(ROLES)}")],
    authority: Annotated[str | None, typer.Option(help="issuer keys: the authority id, e.g. mci")] = None,
    authority_name: Annotated[str | None, typer.Option(help="issuer keys: the authority's full name")] = None,
    platform: Annotated[str | None, typer.Option(help="platform keys: the platform id")] = None,
    label: Annotated[str | None, typer.Option(help="a note on who holds the key")] = None,
) -> None:
    """Create an API key and print it (it is stored hashed and cannot be shown again)."""
    known: Role | None = next((r for r in ROLES if r == role), None)
    if known is None:
        typer.echo(f"error: role must be one of {', '.join(ROLES)}", err=True)
        raise typer.Exit(2)
    container = _container()
    try:
        with container.db.transaction() as conn:
            plaintext, _ = create_key(
                conn,
                known,
                container.clock.now(),
                authority_id=authority,
                authority_name=authority_name,
                platform_id=platform,
                label=label,
            )
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    finally:
        container.close()
    typer.echo(plaintext)


@keys.command("init-ledger")
def keys_init_ledger() -> None:
    """Make the writer key file (mode 0600) if it is missing, and print the writer public key to publish."""
    from shared.eventstore.writer import WriterSigner, load_or_create_seed, public_key_text

    settings = _settings()
    signer = WriterSigner(load_or_create_seed(settings.writer_key_file))
    typer.echo(public_key_text(signer.public_key))


def _demo(container: Container) -> dict[str, Any]:
    """A demo platform and one key per role, printed at start-up."""
    from services.registry import service as registry

    now = container.clock.now()
    with container.db.transaction() as conn:
        platform = next((p for p in registry.list_all(conn) if p.name == "Demo Platform"), None)
        if platform is None:
            platform, _ = container.registry.register_in(
                conn,
                {
                    "name": "Demo Platform",
                    "monthly_users": 250_000,
                    "representative": {"name": "Aigerim Demo", "citizenship": "KZ", "email": "rep@demo.example"},
                    "webhook_url": None,
                },
                now,
            )
        made = {
            "admin": create_key(conn, "admin", now, label="demo")[0],
            "issuer": create_key(
                conn,
                "issuer",
                now,
                authority_id="mci",
                authority_name="Ministry of Culture and Information",
                label="demo",
            )[0],
            "platform": create_key(conn, "platform", now, platform_id=platform.id, label="demo")[0],
            "auditor": create_key(conn, "auditor", now, label="demo")[0],
        }
    return {"platform_id": platform.id, "keys": made}


@cli.command()
def run(
    host: Annotated[str | None, typer.Option(help="bind address")] = None,
    port: Annotated[int | None, typer.Option(help="port")] = None,
    demo: Annotated[bool, typer.Option(help="register a demo platform and print demo keys")] = False,
) -> None:
    """The all-in-one service: migrate, then serve the API with the sequencer and notifier in-process."""
    settings = _settings()
    container = bootstrap(settings)
    upgrade(container.db.engine)
    if demo:
        info = _demo(container)
        typer.echo(f"demo platform id: {info['platform_id']}")
        for role, key in info["keys"].items():
            typer.echo(f"demo {role:<8} key: {key}")
    typer.echo(f"API docs: http://{host or settings.host}:{port or settings.port}/docs")
    _serve(container, True, host or settings.host, port or settings.port)
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
    _run_alone(lambda c: c.sequencer)


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
    _run_alone(lambda c: c.scheduler)


@projections_cli.command("run")
def projections_run() -> None:
    """Keep the projections caught up (run any number of copies: one applies a batch at a time)."""
    _run_alone(lambda c: c.projections)


# ------------------------------------------------------------------------------------------------ ledger

ledger_cli = typer.Typer(
    help="The tamper-evident ledger (RFC 9162 Merkle tree, signed checkpoints).", no_args_is_help=True
)


@ledger_cli.command("public-key")
def public_key() -> None:
    """Print the checkpoint verifier key (made with the signing key on first use), then the writer key."""
    from shared.eventstore.writer import public_key_text

    container = _container()
    try:
        typer.echo(container.ledger.public_key())
        if container.store.writer is not None:
            typer.echo(f"writer {public_key_text(container.store.writer.public_key)}")
    finally:
        container.close()


@ledger_cli.command("checkpoint")
def checkpoint() -> None:
    """Feed every sequenced event, then sign and store a checkpoint now; print its note."""
    container = _container()
    try:
        container.sequencer.catch_up()
        made = container.ledger.checkpoint()
    finally:
        container.close()
    typer.echo(made.note, nl=False)


def print_report(report: VerifyReport) -> None:
    """Print a verification report: the verdict, the first bad position and every problem."""
    if report.ok:
        typer.echo(
            f"ok: {report.events_checked} events, {report.nodes_checked} tree nodes and {report.checkpoints_checked}"
            f" checkpoints verified (tree size {report.tree_size}; {report.pending_events} events not yet in the ledger)"
        )
        return
    where = report.first_bad_position
    typer.echo(f"FAILED: first bad position {where}" if where is not None else "FAILED", err=True)
    for problem in report.problems:
        typer.echo(f"  {problem}", err=True)


@ledger_cli.command("verify")
def verify() -> None:
    """Recompute every leaf from the stored events, rebuild the tree, check every checkpoint; exit 1 on any fault."""
    container = _container()
    try:
        report = container.ledger.verify()
    finally:
        container.close()
    print_report(report)
    if not report.ok:
        raise typer.Exit(1)


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
    key: Annotated[str, typer.Option("--key", help="the ledger's verifier key, or a file holding it")],
) -> None:
    """Check an evidence bundle offline with only the verifier key; exit 1 naming every check that failed."""
    from services.ledger.bundle import verify_bundle as check_bundle

    if file == "-":
        raw = sys.stdin.buffer.read()
    else:
        try:
            with open(file, "rb") as handle:
                raw = handle.read()
        except OSError as exc:
            raise typer.BadParameter(f"cannot read {file}: {exc}") from exc
    report = check_bundle(raw, _verifier_key(key))
    if report.ok:
        typer.echo(
            f"ok: order {report.order_id}: {report.events_checked} events proven against the signed checkpoint"
            f" of tree size {report.tree_size}; on record, deliveries and attestation verified"
        )
        return
    typer.echo(f"FAILED: evidence bundle of order {report.order_id or '?'}", err=True)
    for problem in report.problems:
        typer.echo(f"  {problem}", err=True)
    raise typer.Exit(1)


@ledger_cli.command("feeder")
def feeder() -> None:
    """The feeder alone: appends sequenced events to the tree and signs checkpoints on schedule (many copies are safe)."""
    _run_alone(lambda c: c.ledger)


cli.add_typer(ledger_cli, name="ledger")


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
        with container.db.read() as conn:
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
    # Each process needs at least one request of each limit, so that the limits hold for all of them together.
    cap = min(settings.webhook_per_platform, settings.webhook_concurrency)
    if count > cap:
        typer.echo(f"{count} processes asked for; {cap}, as each needs one of the per-platform limit", err=True)
        count = cap
    if count == 1:
        _notifier_process(settings)
        return
    raise typer.Exit(_supervise(settings, count))


def _notifier_process(settings: Settings) -> None:
    container = bootstrap(settings)
    # Every delivery leaves cyclic garbage (httpx's response streams); with the default thresholds the collector
    # ran ~500 times in 3,000 deliveries, each pass walking every long-lived object. Freezing what start-up made
    # and collecting less often cut the collector's time by five (about 0.1 ms per delivery), in 5 ms pauses.
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await container.notifier.run(stop)

    asyncio.run(serve())
    container.close()


def _die_with_parent(supervisor: int) -> None:
    """In a child, before exec: ask Linux to SIGTERM it when its parent dies, so a killed supervisor leaves none."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
        if os.getppid() != supervisor:  # the supervisor died before the request was in place
            os._exit(1)


def _supervise(settings: Settings, count: int) -> int:
    """Run `count` single notifier processes sharing the limits; stop them all when one stops or on a signal.

    Processes rather than threads because one Python process is bound to one CPU by its interpreter lock, and
    the notifier is CPU-bound (HTTP client and recording) well before the network is.
    """

    def share(limit: int, n: int) -> str:
        # The configured limits are the whole notifier's: split exactly, the remainder to the first processes.
        return str(limit // count + (1 if n < limit % count else 0))

    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):  # before the children start: a stop must never be lost
        signal.signal(sig, lambda *_: stopping.set())
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "services.cli", "notifier"],
            env={
                **os.environ,
                "TAKEDOWN_NOTIFIER_PROCESSES": "1",
                "TAKEDOWN_WEBHOOK_CONCURRENCY": share(settings.webhook_concurrency, n),
                "TAKEDOWN_WEBHOOK_PER_PLATFORM": share(settings.webhook_per_platform, n),
            },
            preexec_fn=functools.partial(_die_with_parent, os.getpid()),
        )
        for n in range(count)
    ]
    while not stopping.is_set() and all(c.poll() is None for c in children):
        stopping.wait(0.2)
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    codes = []
    deadline = time.monotonic() + settings.webhook_timeout_s + 10  # in-flight attempts get their full timeout
    for child in children:
        try:
            codes.append(child.wait(max(0.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            child.kill()  # hangs beyond it: killed; its leases expire and another worker takes its deliveries
            codes.append(child.wait())
    # A child stopped by our SIGTERM before it set its handler stopped cleanly too; killed by signal N: 128 + N.
    clean = {0, -signal.SIGTERM, -signal.SIGINT} if stopping.is_set() else {0}
    failed = [128 - c if c < 0 else c for c in codes if c not in clean]
    if stopping.is_set():
        return failed[0] if failed else 0
    return failed[0] if failed else 1  # a child stopped on its own: that is a failure of the whole


def main() -> None:
    """Entry point of the `takedown` command."""
    cli()


if __name__ == "__main__":
    main()
