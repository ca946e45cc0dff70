"""Writer signatures: pure signing and verification, and every append sealed by the store (both backends)."""

from __future__ import annotations

import base64
import hashlib
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from shared import canonical
from shared.db import Database
from shared.eventstore import EventStore, NewEvent
from shared.eventstore.tables import events
from shared.eventstore.writer import (
    WriterKeyError,
    WriterSigner,
    batch_digests,
    canonical_event,
    check_seal,
    event_digest,
    load_or_create_seed,
    parse_public_key,
    public_key_text,
    seal_form,
)
from tests.strategies import json_values

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SIGNER = WriterSigner(hashlib.sha256(b"writer tests").digest())
OTHER = WriterSigner(hashlib.sha256(b"another writer").digest())
KNOWN = {SIGNER.key_id: SIGNER.public_key}


def _digest(version: int, data: dict[str, object], meta: dict[str, object] | None = None) -> bytes:
    return event_digest(canonical_event("e1", "order-1", version, "test.fact", 1, data, meta or {}, T0))


def test_a_batch_seal_verifies_each_event_alone() -> None:
    digests = [_digest(v, {"n": v}) for v in (1, 2, 3, 4)]
    seals = SIGNER.seal(digests)
    assert len({s["sig"] for s in seals}) == 1  # one signature per append call
    for digest, seal in zip(digests, seals, strict=True):
        assert check_seal(seal, digest, KNOWN) is None


@pytest.mark.parametrize(
    "change, reason",
    [
        ("data", "forged"),
        ("meta", "forged"),
        ("index", "forged"),
        ("signature", "forged"),
        ("batch", "forged"),
        ("missing", "missing"),
        ("unknown key", "unknown key"),
    ],
)
def test_a_changed_event_or_seal_is_refused(change: str, reason: str) -> None:
    digests = [_digest(1, {"n": 1}), _digest(2, {"n": 2})]
    seal = SIGNER.seal(digests)[0]
    digest = digests[0]
    if change == "data":
        digest = _digest(1, {"n": 9})
    elif change == "meta":
        digest = _digest(1, {"n": 1}, {"actor": "intruder"})
    elif change == "index":
        seal = {**seal, "i": 1}
    elif change == "signature":
        raw = bytearray(base64.b64decode(seal["sig"]))
        raw[0] ^= 1
        seal = {**seal, "sig": base64.b64encode(bytes(raw)).decode()}
    elif change == "batch":
        forged = _digest(1, {"n": 9})
        seal = {**seal, "batch": [base64.b64encode(forged).decode(), seal["batch"][1]]}
        digest = forged
    elif change == "missing":
        seal = None
    else:
        seal = OTHER.seal(digests)[0]
    assert check_seal(seal, digest, KNOWN) == reason


def test_the_canonical_form_is_rfc8785_and_refuses_naive_times() -> None:
    one = canonical_event("e", "s", 1, "t", 1, {"b": 1.0, "a": "x"}, {}, T0)
    assert one == canonical_event("e", "s", 1, "t", 1, {"a": "x", "b": 1}, {}, T0)
    assert b'"recorded_at":"2026-03-02T09:00:00.000000Z"' in one and b'"meta":{}' in one
    with pytest.raises(ValueError):
        canonical_event("e", "s", 1, "t", 1, {}, {}, datetime(2026, 3, 2, 9, 0))


@given(
    event_id=st.text(),
    stream_id=st.text(),
    version=st.integers(min_value=1),
    type_=st.text(),
    data=st.dictionaries(st.text(), json_values, max_size=4),
    meta=st.dictionaries(st.text(), json_values, max_size=3),
    microsecond=st.integers(0, 999_999),
)
def test_the_envelope_is_the_canonical_form_of_the_whole_event(
    event_id: str, stream_id: str, version: int, type_: str, data: dict, meta: dict, microsecond: int
) -> None:
    at = T0.replace(microsecond=microsecond)
    whole = {
        "event_id": event_id,
        "stream_id": stream_id,
        "version": version,
        "type": type_,
        "schema_version": 1,
        "data": data,
        "meta": meta,
        "recorded_at": at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }
    try:
        expected = canonical.dumps(whole)
    except Exception as refused:  # noqa: BLE001 - a lone surrogate has no UTF-8 form: both paths refuse it
        with pytest.raises(type(refused)):
            canonical_event(event_id, stream_id, version, type_, 1, data, meta, at)
        return
    assert canonical_event(event_id, stream_id, version, type_, 1, data, meta, at) == expected
    fields = (event_id, stream_id, version, type_, 1, data, meta)
    assert batch_digests([fields, fields], at) == [hashlib.sha256(expected).digest()] * 2


@given(st.integers(1, 5), json_values)
def test_a_seals_form_is_its_canonical_json_whatever_its_shape(size: int, odd: object) -> None:
    seals = SIGNER.seal([hashlib.sha256(bytes([n])).digest() for n in range(size)])
    # The seals the writer makes, and values a tampered row may hold instead: each has one canonical form.
    tampered = [
        None,
        odd,
        seals[0] | {"i": True},
        seals[0] | {"extra": odd},
        seals[0] | {"batch": [*seals[0]["batch"], odd]},
        {k: v for k, v in seals[0].items() if k != "kid"},
    ]
    for seal in [*seals, *tampered]:
        try:
            expected = canonical.dumps(seal)
        except Exception as refused:  # noqa: BLE001 - what has no canonical form is refused by both
            with pytest.raises(type(refused)):
                seal_form(seal)
            continue
        assert seal_form(seal) == expected


def test_the_public_key_text_round_trips_and_names_its_id() -> None:
    text = public_key_text(SIGNER.public_key)
    assert text.startswith(f"{SIGNER.key_id}+") and parse_public_key(text) == SIGNER.public_key
    with pytest.raises(WriterKeyError):
        parse_public_key(f"{OTHER.key_id}+{text.split('+')[1]}")


def test_the_key_file_is_made_once_with_owner_only_permissions(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "writer.key"
    seed = load_or_create_seed(path)
    assert len(seed) == 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_seed(path) == seed
    (tmp_path / "bad.key").write_text("c2hvcnQ=\n")
    with pytest.raises(WriterKeyError):
        load_or_create_seed(tmp_path / "bad.key")


def test_every_appended_event_is_sealed_by_the_writer(db: Database) -> None:
    store = EventStore(db.dialect, SIGNER)
    with db.transaction() as conn:
        store.append(
            conn,
            "order-1",
            0,
            [NewEvent(type="test.fact", data={"n": n, "r": n / 7}, meta={"actor": "a"}) for n in range(4)],
            T0,
        )
        store.append_many(
            conn,
            [("order-2", 0, [NewEvent(type="test.fact", data={"n": 9})]), ("order-3", 0, [NewEvent("x", {})])],
            T0,
        )
    with db.read() as conn:
        rows = conn.execute(select(events).order_by(events.c.id)).all()
    assert len(rows) == 6
    for row in rows:
        digest = event_digest(
            canonical_event(
                row.event_id,
                row.stream_id,
                row.version,
                row.type,
                row.schema_version,
                row.data,
                row.meta,
                row.recorded_at,
            )
        )
        assert check_seal(row.seal, digest, KNOWN) is None, row
    assert len({r.seal["sig"] for r in rows}) == 2  # one signature per append call


def test_a_store_without_a_writer_leaves_events_unsealed(db: Database) -> None:
    store = EventStore(db.dialect)
    with db.transaction() as conn:
        store.append(conn, "order-1", 0, [NewEvent(type="test.fact", data={})], T0)
    with db.read() as conn:
        assert conn.execute(select(events.c.seal)).scalar_one() is None


def test_init_ledger_makes_the_key_file_and_public_key_prints_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from services.cli import cli

    path = tmp_path / "w" / "writer.key"
    monkeypatch.setenv("TAKEDOWN_WRITER_KEY_FILE", str(path))
    made = CliRunner().invoke(cli, ["keys", "init-ledger"])
    assert made.exit_code == 0, made.output
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    printed = made.output.strip()
    assert parse_public_key(printed) == WriterSigner(load_or_create_seed(path)).public_key
    assert CliRunner().invoke(cli, ["keys", "init-ledger"]).output.strip() == printed  # made once
