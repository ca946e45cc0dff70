"""A platform's receipts kit end to end: a real service pushes orders to it, the platform answers through the API,
the kit follows the orders into the log, and its statement verifies offline, and fails once tampered with."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from typer.testing import CliRunner

from services.cli import cli
from services.ledger.bundle import b64
from services.ledger.leaf import rfc3339_utc
from services.receipts.domain import parse_time, verify_statement
from shared.tlog import merkle
from shared.tlog.note import (
    CheckpointBody,
    NoteError,
    NoteSigner,
    open_checkpoint,
    parse_checkpoint,
    parse_verifier_key,
    sign_checkpoint,
    split_note,
)
from shared.tlog.policy import parse_policy

from .conftest import NOW, Platform, running_platform

Statement = dict[str, Any]


@pytest.fixture(scope="module")
def journey(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[tuple[Platform, Statement]]:
    """One order issued, pushed to the kit, acknowledged and answered; the kit synced twice, the log's key rotated
    in between; its statement."""
    tmp = tmp_path_factory.mktemp("journey")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("TAKEDOWN_LEDGER_KEY_FILE", str(tmp / "ledger.key"))
        env.setenv("TAKEDOWN_WRITER_KEY_FILE", str(tmp / "writer.key"))
        env.delenv("TAKEDOWN_LEDGER_KEY", raising=False)
        with running_platform(tmp, sqlite_template) as p:
            order = p.api.issue().json()
            assert p.push() == 1  # order.issued, to the kit, which answers once it has stored it
            p.advance(minutes=1)
            p.checkpoint()
            first = p.kit.sync()
            assert first.alerts == [] and first.proven == 2, first  # order.issued and order.delivered
            p.advance(minutes=30)
            p.rotate_log_key()  # the kit pinned the first key and follows the rotation the log signed
            p.answer(order)
            p.advance(minutes=1)
            p.checkpoint()
            second = p.kit.sync()
            assert second.alerts == [] and second.errors == [], second
            assert second.proven == 4  # acknowledged, two item outcomes, closed
            assert p.kit.forward_pending() == 1
            statement = p.kit.statement(p.api.platform_a, NOW - timedelta(days=1), NOW + timedelta(days=1))
            yield p, statement


def policy(p: Platform, quorum: int = 2) -> Any:
    return parse_policy([f"{w.name}={w.vkey}" for w in p.witnesses], quorum)


def check(p: Platform, statement: Statement, quorum: int = 2) -> list[str]:
    report = verify_statement(json.dumps(statement), parse_verifier_key(p.vkey), policy(p, quorum))
    return report.problems


def test_the_statement_verifies_offline_and_says_the_order_was_answered_in_time(
    journey: tuple[Platform, Statement],
) -> None:
    p, statement = journey
    assert check(p, statement) == []
    [order] = statement["orders"]
    assert [e["envelope"]["type"] for e in order["events"]] == [
        "order.issued",
        "order.delivered",
        "order.acknowledged",
        "order.item_outcome_reported",
        "order.item_outcome_reported",
        "order.closed",
    ]
    # Two syncs, two checkpoints (by the first key and by the second), joined by a consistency proof; the latest
    # cosigned by both witnesses; the rotation between the keys, signed by the first.
    assert len(statement["checkpoints"]) == 2 and len(statement["consistency"]) == 1
    assert len(statement["key_rotations"]) == 1
    first_key = parse_verifier_key(p.vkey)
    open_checkpoint(statement["checkpoints"][0], first_key, first_key.name)
    with pytest.raises(NoteError):  # the latest is the second key's: only the followed rotation makes it count
        open_checkpoint(statement["checkpoints"][1], first_key, first_key.name)
    summary = order["summary"]
    assert summary["met"] is True
    notified, answered = parse_time(summary["notified_at"]), parse_time(summary["answered_at"])
    assert timedelta(hours=2) < answered - notified < timedelta(hours=3)
    assert parse_time(summary["received_at"]) == NOW  # the kit's clock when the push came
    [receipt] = order["receipts"]
    assert receipt["webhook_type"] == "order.issued"
    # The platform's own system got the order as it came, signature and all.
    [forwarded] = p.system.requests("/orders")
    assert forwarded.body.decode() == receipt["body"]
    assert forwarded.headers["webhook-id"] == receipt["webhook_id"]


def test_the_commands_write_the_statement_from_the_file_alone_and_verify_it(
    journey: tuple[Platform, Statement], tmp_path: Path
) -> None:
    p, _ = journey
    out = tmp_path / "statement.json"
    runner = CliRunner()
    day = timedelta(days=1)
    written = runner.invoke(
        cli,
        [
            "receipts",
            "statement",
            "--platform",
            p.api.platform_a,
            "--from",
            (NOW - day).strftime("%Y-%m-%d %H:%M:%S"),
            "--to",
            (NOW + day).strftime("%Y-%m-%d %H:%M:%S"),
            "--out",
            str(out),
            "--db-url",
            p.kit_db_url,
            "--log-key",
            p.vkey,
        ],
    )
    assert written.exit_code == 0, written.output
    assert len(json.loads(out.read_text())["orders"]) == 1
    flags = [arg for w in p.witnesses for arg in ("--witness", f"{w.name}={w.vkey}")]
    verified = runner.invoke(cli, ["receipts", "verify", str(out), "--key", p.vkey, *flags, "--quorum", "2"])
    assert verified.exit_code == 0, verified.output
    assert "ok: platform" in verified.output and "cosigned by witness.test/a, witness.test/b" in verified.output
    tampered = json.loads(out.read_text())
    tampered["orders"][0]["events"][1]["proof"].pop()
    out.write_text(json.dumps(tampered))
    refused = runner.invoke(cli, ["receipts", "verify", str(out), "--key", p.vkey, *flags])
    assert refused.exit_code == 1
    assert "events[1]: not in the checkpoint's tree" in refused.output


# ----------------------------------------------------------------------------------------------- tampering


def _later_receipt(s: Statement) -> None:
    order = s["orders"][0]
    later = rfc3339_utc(parse_time(order["receipts"][0]["received_at"]) + timedelta(hours=3))
    order["receipts"][0]["received_at"] = later
    order["summary"]["received_at"] = later  # the summary made to agree: the log still bounds it


def _earlier_receipt(s: Statement) -> None:
    order = s["orders"][0]
    earlier = rfc3339_utc(parse_time(order["receipts"][0]["received_at"]) - timedelta(hours=3))
    order["receipts"][0]["received_at"] = earlier
    order["summary"]["received_at"] = earlier


def _event_data(s: Statement) -> None:
    s["orders"][0]["events"][3]["envelope"]["data"]["outcome"] = "restricted"


def _event_data_rehashed(s: Statement) -> None:
    # The changed event with its leaf and leaf hash made to match: it is no longer the leaf the tree holds.
    entry = s["orders"][0]["events"][1]
    entry["envelope"]["recorded_at"] = rfc3339_utc(parse_time(entry["envelope"]["recorded_at"]) + timedelta(hours=5))
    entry["leaf"] = rfc8785.dumps(entry["envelope"]).decode()
    entry["leaf_hash"] = b64(merkle.leaf_hash(entry["leaf"].encode()))


def _dropped_proof_line(s: Statement) -> None:
    s["orders"][0]["events"][0]["proof"].pop()


def _dropped_event(s: Statement) -> None:
    del s["orders"][0]["events"][2]  # the acknowledgement


def _forged_checkpoint(s: Statement) -> None:
    # Another key under the log's name signs a checkpoint of the same size and root.
    text, _ = split_note(s["checkpoints"][-1])
    forger = NoteSigner(text.split("\n")[0], hashlib.sha256(b"forger").digest())
    s["checkpoints"][-1] = sign_checkpoint(parse_checkpoint(text), forger)


def _altered_root(s: Statement) -> None:
    note = s["checkpoints"][0]
    text, _ = split_note(note)
    body = parse_checkpoint(text)
    altered = CheckpointBody(body.origin, body.size, hashlib.sha256(b"other").digest()).text()
    s["checkpoints"][0] = note.replace(text, altered)


def _stripped_cosignature(s: Statement) -> None:
    lines = s["checkpoints"][-1].splitlines(keepends=True)
    s["checkpoints"][-1] = "".join(lines[:-1])  # the last witness's line


def _flipped_summary(s: Statement) -> None:
    s["orders"][0]["summary"]["answered_at"] = s["orders"][0]["summary"]["notified_at"]


def _dropped_rotation(s: Statement) -> None:
    s["key_rotations"].clear()


def _dropped_consistency(s: Statement) -> None:
    s["consistency"][0]["proof"].pop()


TAMPERINGS: dict[str, tuple[Callable[[Statement], None], str]] = {
    "received_at later": (_later_receipt, "is after the log recorded this webhook's delivery"),
    "received_at earlier": (_earlier_receipt, "is before the log recorded its event"),
    "event data": (_event_data, "the leaf is not the canonical form of its envelope"),
    "event data rehashed": (_event_data_rehashed, "events[1]: not in the checkpoint's tree"),
    "dropped proof line": (_dropped_proof_line, "events[0]: not in the checkpoint's tree"),
    "dropped event": (_dropped_event, "version 4, not 3 (an event is missing)"),
    "forged checkpoint": (_forged_checkpoint, "checkpoints[1]: not signed by the log's key"),
    "altered root": (_altered_root, "checkpoints[0]: not signed by the log's key"),
    "fewer cosignatures than the quorum": (_stripped_cosignature, "1 valid cosignatures of the 2 required"),
    "summary": (_flipped_summary, "the summary is not what its receipts and events say (['answered_at'])"),
    "consistency proof": (_dropped_consistency, "consistency[0]: tree"),
    "dropped key rotation": (_dropped_rotation, "checkpoints[1]: not signed by the log's key"),
}


@pytest.mark.parametrize("name", sorted(TAMPERINGS))
def test_a_tampered_statement_fails(journey: tuple[Platform, Statement], name: str) -> None:
    p, statement = journey
    tamper, expected = TAMPERINGS[name]
    changed = copy.deepcopy(statement)
    tamper(changed)
    problems = check(p, changed)
    assert any(expected in problem for problem in problems), problems


def test_without_a_quorum_the_stripped_statement_still_verifies(journey: tuple[Platform, Statement]) -> None:
    # The quorum is what refuses it: with one witness required, the one line left is enough.
    p, statement = journey
    changed = copy.deepcopy(statement)
    _stripped_cosignature(changed)
    assert check(p, changed, quorum=1) == []
