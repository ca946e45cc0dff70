"""`takedown ledger ...`: the verifier key, a checkpoint now, whole-store verification, the feeder alone."""

from __future__ import annotations

import contextlib
import signal
import threading

import typer

from services.bootstrap import Container, bootstrap
from services.ledger.verify import VerifyReport
from shared.settings import Settings

ledger_cli = typer.Typer(
    help="The tamper-evident ledger (RFC 9162 Merkle tree, signed checkpoints).", no_args_is_help=True
)


def _ledger() -> Container:
    return bootstrap(Settings())


@ledger_cli.command("public-key")
def public_key() -> None:
    """Print the checkpoint verifier key (made with the signing key on first use)."""
    container = _ledger()
    try:
        typer.echo(container.ledger.public_key())
    finally:
        container.close()


@ledger_cli.command("checkpoint")
def checkpoint() -> None:
    """Feed every sequenced event, then sign and store a checkpoint now; print its note."""
    container = _ledger()
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
    container = _ledger()
    try:
        report = container.ledger.verify()
    finally:
        container.close()
    print_report(report)
    if not report.ok:
        raise typer.Exit(1)


@ledger_cli.command("feeder")
def feeder() -> None:
    """The feeder alone: appends sequenced events to the tree and signs checkpoints on schedule (many copies are safe)."""
    container = _ledger()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    container.ledger.start()
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    container.close()
