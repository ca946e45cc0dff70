"""The feeder admits only what the writer signed, in stream order and on time: the checks alone (no database), then
rows forged as a database superuser on both backends, refused, alarmed, named by verify, and quarantined."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import Connection, text
from typer.testing import CliRunner

from services.cli import cli
from services.ledger import bundle as bundles
from services.ledger.admission import (
    BACKDATED,
    FORGED,
    GAP,
    MISSING,
    UNKNOWN_KEY,
    Decision,
    decision_leaf,
    decision_text,
    refusal,
)
from services.ledger.errors import NotQuarantinable, PositionNotFound
from services.ledger.leaf import V1, V2, leaf_hash
from shared.eventstore import RecordedEvent
from shared.eventstore.sequencer import Sequencer
from shared.eventstore.writer import WriterSigner, canonical_event, event_digest
from shared.tlog import merkle
from tests.builders import T0
from tests.ledger.conftest import writer
from tests.logcapture import json_logs
from tests.support import Api, make_api

LAG = timedelta(seconds=300)
KEY = WriterSigner(hashlib.sha256(b"admission writer").digest())
OTHER = WriterSigner(hashlib.sha256(b"someone else").digest())
KNOWN = {KEY.key_id: KEY.public_key}


def _event(version: int = 1, at: datetime = T0, **data: Any) -> RecordedEvent:
    return RecordedEvent("e-1", "order-1", version, "test.fact", 1, data or {"n": 1}, {"actor": "x"}, at, 1)


def _seal(event: RecordedEvent, signer: WriterSigner = KEY) -> dict[str, Any]:
    form = canonical_event(
        event.event_id,
        event.stream_id,
        event.version,
        event.type,
        event.schema_version,
        event.data,
        event.meta,
        event.recorded_at,
    )
    return signer.seal([event_digest(form)])[0]


# ----------------------------------------------------------------------------------------------- the checks alone


def test_a_sealed_event_next_in_its_stream_and_on_time_is_admitted() -> None:
    first, second = _event(1), _event(2)
    assert refusal(first, _seal(first), 0, KNOWN, None, LAG) is None
    assert refusal(second, _seal(second), 1, KNOWN, T0, LAG) is None


def test_the_seal_is_checked_first() -> None:
    event = _event(1)
    assert refusal(event, None, 0, KNOWN, None, LAG) == MISSING
    assert refusal(event, _seal(_event(1, n=2)), 0, KNOWN, None, LAG) == FORGED  # another event's seal
    assert refusal(event, _seal(event, OTHER), 0, KNOWN, None, LAG) == UNKNOWN_KEY
    assert refusal(event, {"kid": KEY.key_id}, 0, KNOWN, None, LAG) == FORGED  # malformed
    # A forged seal on an event that is also out of order and late is refused as forged.
    late = _event(5, at=T0 - timedelta(hours=1))
    assert refusal(late, _seal(late, OTHER), 0, KNOWN, T0, LAG) == UNKNOWN_KEY
    assert refusal(event, _seal(event), 0, {}, None, LAG) == UNKNOWN_KEY  # a ledger that trusts no key


@pytest.mark.parametrize("version, previous", [(2, 0), (3, 1), (1, 1), (2, 2)])
def test_a_version_not_the_previous_plus_one_is_a_gap(version: int, previous: int) -> None:
    event = _event(version)
    assert refusal(event, _seal(event), previous, KNOWN, None, LAG) == GAP


def test_an_event_older_than_the_last_checkpoint_minus_the_lag_is_backdated() -> None:
    at_limit, beyond = _event(1, at=T0 - LAG), _event(1, at=T0 - LAG - timedelta(microseconds=1))
    assert refusal(at_limit, _seal(at_limit), 0, KNOWN, T0, LAG) is None
    assert refusal(beyond, _seal(beyond), 0, KNOWN, T0, LAG) == BACKDATED
    assert refusal(beyond, _seal(beyond), 0, KNOWN, None, LAG) is None  # before any checkpoint: nothing to lag


def test_a_decisions_leaf_is_never_an_events_and_its_text_names_every_field() -> None:
    event = _event(1)
    decision = Decision(1, event.event_id, leaf_hash(event, V2), FORGED, "forged by\nsomeone", T0)
    assert decision_leaf(decision) not in {leaf_hash(event, V1), leaf_hash(event, V2)}
    text_ = decision_text("ledger.test/takedown", decision)
    assert text_.startswith("takedown-ledger-quarantine/1\nledger.test/takedown\n{") and text_.count("\n") == 3
    assert all(str(v) in text_ for v in ("forged by\\nsomeone", "2026-03-02T09:00:00.000000Z", event.event_id))


# ----------------------------------------------------------------------------------------------- forged in the database


STREAM = "forged-stream"


@pytest.fixture
def api_cli(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    """The app over the database, and `takedown` commands (CliRunner) on the same database and keys."""
    monkeypatch.setenv("TAKEDOWN_DATABASE_URL", db_url)
    with make_api(db_url) as running:
        yield running


def _takedown(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output + (result.stderr if result.stderr_bytes is not None else "")


def _json_verify() -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(cli, ["ledger", "verify", "--json"])
    return result.exit_code, json.loads(result.stdout)


def _insert_raw(api: Api, conn: Connection, event: RecordedEvent, seal: dict[str, Any] | None) -> None:
    """What an intruder with the database's keys does: a row straight into `events`, and a position for it."""
    pg = conn.dialect.name == "postgresql"
    as_json = "CAST({} AS json)" if pg else "{}"
    conn.execute(
        text(
            "INSERT INTO events (event_id, stream_id, version, type, schema_version, data, meta, recorded_at, seal) "
            f"VALUES (:event_id, :stream_id, :version, :type, 1, {as_json.format(':data')}, "
            f"{as_json.format(':meta')}, :at, {as_json.format(':seal')})"
        ),
        {
            "event_id": event.event_id,
            "stream_id": event.stream_id,
            "version": event.version,
            "type": event.type,
            "data": json.dumps(event.data),
            "meta": json.dumps(event.meta),
            "at": event.recorded_at,
            "seal": None if seal is None else json.dumps(seal),
        },
    )
    if not pg:  # SQLite numbers inline: the intruder gives the row the next position; PostgreSQL's sequencer will
        pk = conn.execute(text("SELECT id FROM events WHERE event_id = :e"), {"e": event.event_id}).scalar_one()
        conn.execute(
            text("INSERT INTO event_positions (position, event_pk) SELECT max(position) + 1, :pk FROM event_positions"),
            {"pk": pk},
        )


def _forgery(fault: str, after: RecordedEvent) -> tuple[RecordedEvent, dict[str, Any] | None]:
    """The next event of the stream, forged to fail with `fault`."""
    base = dict(event_id="00000000-0000-7000-8000-00000000f0f0", stream_id=STREAM, type="order.acknowledged")
    at = after.recorded_at
    if fault == GAP:
        event = RecordedEvent(**base, version=after.version + 2, schema_version=1, data={"x": 1}, meta={},
                              recorded_at=at, position=None)  # fmt: skip
        return event, _seal(event, writer())  # the writer's own key (stolen, or a bug): the order still fails
    if fault == BACKDATED:
        event = RecordedEvent(**base, version=after.version + 1, schema_version=1, data={"x": 1}, meta={},
                              recorded_at=at - timedelta(hours=1), position=None)  # fmt: skip
        return event, _seal(event, writer())
    event = RecordedEvent(**base, version=after.version + 1, schema_version=1, data={"x": 1}, meta={},
                          recorded_at=at, position=None)  # fmt: skip
    seals = {FORGED: _seal(after, writer()), MISSING: None, UNKNOWN_KEY: _seal(event, OTHER)}
    return event, seals[fault]


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels or None) or 0.0


@pytest.mark.parametrize("fault", [FORGED, MISSING, GAP, BACKDATED, UNKNOWN_KEY])
def test_a_row_forged_in_the_database_is_refused_alarmed_named_and_quarantined(api_cli: Api, fault: str) -> None:
    api, c = api_cli, api_cli.container
    with c.db.transaction() as conn:
        good = c.store.append(conn, STREAM, 0, [_new(1), _new(2)], T0)
    assert api.issue().status_code == 201
    c.sequencer.catch_up()
    c.ledger.checkpoint()
    fed = c.ledger.head().size
    assert _takedown("ledger", "verify")[0] == 0

    forged, seal = _forgery(fault, good[-1])
    with c.db.transaction() as conn:
        _insert_raw(api, conn, forged, seal)
    c.sequencer.catch_up()
    position = fed + 1
    with c.db.read() as conn:
        assert c.store.read_all(conn, after=fed, limit=1)[0].event_id == forged.event_id

    # Commands keep working; their events wait behind the forged one (fail closed).
    later = api.issue(issuer_reference="later-order")
    assert later.status_code == 201, later.text
    c.sequencer.catch_up()
    refused_before = _sample("takedown_ledger_refused_total", reason=fault)
    with json_logs() as lines:
        assert c.ledger.feed() == 0
        c.ledger.feed()  # again: one alarm line per refusal, not one per pass
    assert c.ledger.head().size == fed
    alarms = lines.where(message="ledger feeder refused an event: it waits at this position until it is quarantined")
    assert [(a["position"], a["reason"], a["level"]) for a in alarms] == [(position, fault, "error")]
    assert _sample("takedown_ledger_refused_total", reason=fault) == refused_before + 1
    assert _sample("takedown_ledger_blocked") == 1 and _sample("takedown_ledger_blocked_position") == position
    ready = api.call("GET", "/readyz", None)
    assert ready.status_code == 200
    assert ready.json()["ledger"] == {"status": "blocked", "position": position, "reason": fault}

    code, report = _json_verify()
    assert code == 1
    assert [(b["position"], b["reason"]) for b in report["bad_positions"]] == [(position, fault)]
    code, output = _takedown("ledger", "verify")
    assert code == 1 and f"position {position}: {fault}:" in output, output

    # Only the position the feeder waits at, and only with a reason.
    assert _takedown("ledger", "quarantine", str(position + 1), "--reason", "x")[0] == 1
    with pytest.raises(NotQuarantinable):
        c.ledger.quarantine(position, "  ")
    code, output = _takedown("ledger", "quarantine", str(position), "--reason", "forged by an intruder (INC-7)")
    assert code == 0 and f"quarantined position {position}" in output, output
    assert _takedown("ledger", "quarantine", str(position), "--reason", "again")[0] == 1

    c.ledger.feed()
    size = c.ledger.head().size
    with c.db.read() as conn:
        assert size == c.store.head(conn) > position  # the later events are in the tree
    # The CLI fed past it: this process's feeder, which found nothing left, clears its alarm too.
    assert c.ledger.feeder.blocked is None and _sample("takedown_ledger_blocked") == 0
    assert api.call("GET", "/readyz", None).json()["ledger"] == {"status": "ok"}
    code, report = _json_verify()
    assert code == 0, report
    assert report["bad_positions"] == []
    [q] = report["quarantined"]
    assert (q["position"], q["event_id"], q["fault"], q["signed"]) == (position, forged.event_id, fault, True)
    assert q["reason"] == "forged by an intruder (INC-7)"

    # The other events' proofs and bundles verify; the quarantined position proves no event.
    checkpoint = c.ledger.checkpoint()
    assert checkpoint.tree_size == size
    for p in (1, position - 1, position + 1, size):
        proof = c.ledger.inclusion(p, size)
        merkle.verify_inclusion(proof.index, size, proof.leaf_hash, proof.proof, checkpoint.root)
    with pytest.raises(PositionNotFound):
        c.ledger.inclusion(position, size)
    raw = api.call("GET", f"/v1/orders/{later.json()['id']}/evidence", "platform_a")
    assert raw.status_code == 200, raw.text
    key = api.call("GET", "/v1/ledger/public-key", None).json()["verifier_key"]
    assert bundles.verify_bundle(raw.content, key).ok


def _refused_row(api: Api) -> tuple[RecordedEvent, int]:
    """A good event, then a row forged after it without a seal, sequenced: the feeder stops at its position."""
    c = api.container
    with c.db.transaction() as conn:
        good = c.store.append(conn, STREAM, 0, [_new(1)], T0)
    forged, _ = _forgery(MISSING, good[-1])
    with c.db.transaction() as conn:
        _insert_raw(api, conn, forged, None)
    c.sequencer.catch_up()
    c.ledger.feed()
    return forged, c.ledger.head().size + 1


def _write_decision(conn: Connection, decision: Decision, note: str) -> None:
    """A quarantine row written straight into the table, as an intruder would."""
    conn.execute(
        text(
            "INSERT INTO ledger_quarantine (position, event_id, event_leaf, fault, reason, decided_at, note) "
            "VALUES (:p, :e, :l, :f, :r, :t, :n)"
        ),
        {"p": decision.position, "e": decision.event_id, "l": decision.event_leaf, "f": decision.fault,
         "r": decision.reason, "t": decision.decided_at, "n": note},
    )  # fmt: skip


def test_a_quarantine_row_the_ledger_did_not_sign_sets_nothing_aside(api_cli: Api) -> None:
    """An intruder who writes the decision too: the feeder ignores it and verify names it."""
    c = api_cli.container
    forged, position = _refused_row(api_cli)
    decision = Decision(position, forged.event_id, leaf_hash(forged, V2), MISSING, "trust me", T0)
    unsigned = decision_text(c.ledger.origin, decision) + "\n— the intruder\n"  # the origin before the write lock
    with c.db.transaction() as conn:
        _write_decision(conn, decision, unsigned)
    assert c.ledger.feed() == 0
    code, report = _json_verify()
    assert code == 1
    assert [q["signed"] for q in report["quarantined"]] == [False]
    assert [(b["position"], b["reason"]) for b in report["bad_positions"]] == [(position, MISSING)]


def test_verify_names_every_bad_position_not_only_the_first(api_cli: Api) -> None:
    c = api_cli.container
    with c.db.transaction() as conn:
        c.store.append(conn, STREAM, 0, [_new(1), _new(2), _new(3)], T0)
    c.sequencer.catch_up()
    c.ledger.checkpoint()
    with c.db.read() as conn:
        first, _, third = (e.position for e in c.store.read_stream(conn, STREAM))
    with c.db.transaction() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("ALTER TABLE events DISABLE TRIGGER USER"))
        else:
            conn.execute(text("DROP TRIGGER events_no_update"))
        conn.execute(text("UPDATE events SET type = 'changed.1' WHERE stream_id = :s AND version = 1"), {"s": STREAM})
        conn.execute(text("UPDATE events SET seal = NULL WHERE stream_id = :s AND version = 3"), {"s": STREAM})
    code, report = _json_verify()
    assert code == 1
    found = {(b["position"], b["reason"]) for b in report["bad_positions"]}
    assert {(first, "changed"), (third, MISSING)} <= found, report
    assert report["first_bad_position"] == first


def _new(n: int) -> Any:
    from shared.eventstore import NewEvent

    return NewEvent(type="test.fact", data={"n": n})


def test_the_sequencer_numbers_a_raw_row_on_postgresql(pg_db: Any) -> None:
    """How the intruder's row gets a position on PostgreSQL: the sequencer numbers any committed row."""
    from shared.eventstore import EventStore

    store = EventStore("postgresql")
    with pg_db.transaction() as conn:
        conn.execute(
            text(
                "INSERT INTO events (event_id, stream_id, version, type, schema_version, data, meta, recorded_at) "
                "VALUES ('00000000-0000-7000-8000-0000000000aa', 's', 1, 't', 1, '{}', '{}', :t)"
            ),
            {"t": T0},
        )
    Sequencer(pg_db, store).catch_up()
    with pg_db.read() as conn:
        assert [e.position for e in store.read_all(conn)] == [1]


def test_an_orders_bundle_leaves_out_its_quarantined_event_and_verifies(api_cli: Api) -> None:
    api, c = api_cli, api_cli.container
    issued = api.issue()
    assert issued.status_code == 201, issued.text
    order_id = issued.json()["id"]
    c.sequencer.catch_up()
    c.ledger.checkpoint()
    with c.db.read() as conn:
        last = c.store.read_stream(conn, order_id)[-1]
    forged = last._replace(event_id="00000000-0000-7000-8000-00000000f0f2", version=last.version + 1, position=None)
    with c.db.transaction() as conn:
        _insert_raw(api, conn, forged, _seal(forged, OTHER))
    c.sequencer.catch_up()
    c.ledger.feed()
    position = c.ledger.head().size + 1
    assert _takedown("ledger", "quarantine", str(position), "--reason", "not ours")[0] == 0
    raw = api.call("GET", f"/v1/orders/{order_id}/evidence", "platform_a")
    assert raw.status_code == 200, raw.text
    assert forged.event_id not in [e["envelope"]["event_id"] for e in json.loads(raw.content)["events"]]
    key = api.call("GET", "/v1/ledger/public-key", None).json()["verifier_key"]
    assert bundles.verify_bundle(raw.content, key).ok


def test_each_event_of_a_batch_is_checked_alone_though_the_signature_is_verified_once() -> None:
    events = [_event(v) for v in (1, 2, 3)]
    forms = [
        canonical_event(e.event_id, e.stream_id, e.version, e.type, 1, e.data, e.meta, e.recorded_at) for e in events
    ]
    seals = KEY.seal([event_digest(f) for f in forms])
    for previous, (event, seal) in enumerate(zip(events, seals, strict=True)):
        assert refusal(event, seal, previous, KNOWN, None, LAG) is None
    # The same (cached) signature does not vouch for another index, a changed event, or a changed batch.
    assert refusal(events[1], seals[0], 1, KNOWN, None, LAG) == FORGED
    assert refusal(_event(2, n=9), seals[1], 1, KNOWN, None, LAG) == FORGED
    tampered = seals[2] | {"batch": [*seals[2]["batch"][:2], seals[2]["batch"][2], seals[2]["batch"][0]]}
    assert refusal(events[0], tampered | {"i": 3}, 0, KNOWN, None, LAG) == FORGED
    assert refusal(events[0], seals[0] | {"batch": ["!!", *seals[0]["batch"][1:]]}, 0, KNOWN, None, LAG) == FORGED
    assert refusal(events[0], seals[0] | {"sig": seals[1]["sig"][:-4] + "AAA="}, 0, KNOWN, None, LAG) == FORGED


def test_a_decision_signed_by_a_key_slipped_into_the_chain_sets_nothing_aside(api_cli: Api) -> None:
    """An intruder who adds a key of their own to `ledger_keys` (no rotation statement names it) and signs a
    decision with it: the feeder still refuses the row, and verify names both."""
    from services.ledger.tables import ledger_keys
    from shared.tlog.note import NoteSigner

    c = api_cli.container
    forged, position = _refused_row(api_cli)
    origin, name = c.ledger.origin, c.ledger.identity().key_name
    intruder = NoteSigner(name, hashlib.sha256(b"intruder").digest())
    decision = Decision(position, forged.event_id, leaf_hash(forged, V2), MISSING, "trust me", T0)
    with c.db.transaction() as conn:
        conn.execute(
            ledger_keys.insert().values(
                seq=1, verifier_key=intruder.verifier.verifier_key, from_size=0, statement=None, created_at=T0
            )
        )
        _write_decision(conn, decision, intruder.sign(decision_text(origin, decision)))
    assert c.ledger.feed() == 0 and c.ledger.head().size == position - 1
    code, report = _json_verify()
    assert code == 1
    assert [q["signed"] for q in report["quarantined"]] == [False]
    assert any("ledger_keys row 1" in p for p in report["problems"]), report["problems"]
