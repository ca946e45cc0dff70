"""Leaf format 2 (meta and seal in the leaf), the stored identity and key rotation, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Connection, delete, insert, text
from typer.testing import CliRunner

from services.cli import cli
from services.ledger import bundle as bundles
from services.ledger.errors import LedgerIdentityError
from services.ledger.leaf import V1, V2, envelope, leaf_bytes, leaf_hash
from services.ledger.rotation import KeyChain, RotationError, follow, parse_rotation, sign_rotation
from services.ledger.service import Ledger
from services.ledger.tables import ledger_checkpoints, ledger_keys, ledger_leaf_formats
from shared import canonical
from shared.clock import FrozenClock
from shared.db import Database
from shared.eventstore import EventStore, NewEvent, RecordedEvent
from shared.eventstore.sequencer import Sequencer
from shared.eventstore.writer import WriterSigner, public_key_text
from shared.tlog.note import NoteError, NoteSigner, open_checkpoint, parse_verifier_key
from tests.ledger.conftest import ORIGIN, SEED, T0, signed_store
from tests.strategies import json_values
from tests.support import Api

from . import offline_verify

SEED_B = hashlib.sha256(b"second key").digest()
SEED_C = hashlib.sha256(b"third key").digest()


def sealed_events(db: Database, count: int, start: int = 0, at: datetime = T0) -> None:
    """Append `count` sealed events with meta, one transaction each, recorded from `at` on, and number them."""
    store = signed_store(db)
    for n in range(start, start + count):
        with db.transaction() as conn:
            stream = f"order-{n % 3}"
            version = store.stream_version(conn, stream)
            event = NewEvent(type="test.fact", data={"n": n}, meta={"actor": "authority:mci", "request_id": f"r{n}"})
            store.append(conn, stream, version, [event], at + timedelta(seconds=n))
    Sequencer(db, store).catch_up()


def _unprotect(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(text("ALTER TABLE events DISABLE TRIGGER USER"))
    else:
        for action in ("update", "delete"):
            conn.execute(text(f"DROP TRIGGER IF EXISTS events_no_{action}"))


def _set_json(conn: Connection, column: str, position: int, value: object) -> None:
    cast = "CAST(:v AS json)" if conn.dialect.name == "postgresql" else ":v"
    conn.execute(
        text(
            f"UPDATE events SET {column} = {cast} WHERE id = (SELECT event_pk FROM event_positions WHERE position = :p)"
        ),
        {"v": json.dumps(value), "p": position},
    )


def v1_then_v2(db: Database, ledger: Ledger) -> None:
    """A ledger whose first 6 leaves were fed in format 1 (before migration 0013), the next 6 in format 2."""
    with db.transaction() as conn:
        conn.execute(delete(ledger_leaf_formats))  # as before the migration: format 1 throughout
    sealed_events(db, 6)
    ledger.checkpoint()
    with db.transaction() as conn:
        conn.execute(insert(ledger_leaf_formats).values(format=V2, from_size=6))  # what 0013 records
    sealed_events(db, 6, start=6)
    ledger.checkpoint()


# ----------------------------------------------------------------------------------------------- leaf format 2


def test_a_ledger_of_format_1_then_format_2_leaves_verifies(db: Database, ledger: Ledger) -> None:
    v1_then_v2(db, ledger)
    report = ledger.verify()
    assert report.ok, report.problems
    assert report.events_checked == 12 and report.checkpoints_checked == 2
    with db.read() as conn:
        events = EventStore(db.dialect).read_all(conn, limit=100, seals=True)
    for event in events:
        assert event.position is not None and event.seal is not None
        proved = ledger.inclusion(event.position, 12).leaf_hash
        fmt = V1 if event.position <= 6 else V2
        assert proved == leaf_hash(event, fmt) != leaf_hash(event, V2 if fmt == V1 else V1)


@pytest.mark.parametrize("column", ["meta", "seal"])
def test_changing_meta_or_seal_of_a_format_2_event_is_found(db: Database, ledger: Ledger, column: str) -> None:
    v1_then_v2(db, ledger)
    with db.read() as conn:
        [event] = [e for e in EventStore(db.dialect).read_all(conn, after=8, limit=1, seals=True)]
    changed = {**event.meta, "actor": "authority:other"} if column == "meta" else {**(event.seal or {}), "i": 1}
    with db.transaction() as conn:
        _unprotect(conn)
        _set_json(conn, column, 9, changed)
    report = ledger.verify()
    assert not report.ok and report.first_bad_position == 9, report.problems


def test_meta_of_a_format_1_event_was_never_covered(db: Database, ledger: Ledger) -> None:
    """What format 2 adds: a format 1 leaf does not commit to meta, and the admission checks (the seal among them)
    hold from format 2 on, so changing a format 1 event's meta still verifies."""
    v1_then_v2(db, ledger)
    with db.transaction() as conn:
        _unprotect(conn)
        _set_json(conn, "meta", 2, {"actor": "authority:other"})
    assert ledger.verify().ok


# ----------------------------------------------------------------------------------------------- rotation, pure


def test_a_rotation_chain_is_followed_from_the_first_key_and_forgeries_refused() -> None:
    a, b, c = NoteSigner(ORIGIN, SEED), NoteSigner(ORIGIN, SEED_B), NoteSigner(ORIGIN, SEED_C)
    ab = sign_rotation(a, ORIGIN, b.verifier, 11)
    bc = sign_rotation(b, ORIGIN, c.verifier, 20)
    assert parse_rotation(open_note_text(ab, a)).from_size == 11
    chain = follow(a.verifier, ORIGIN, [ab, bc])
    assert [(s, k) for s, k in chain.keys] == [(0, a.verifier), (11, b.verifier), (20, c.verifier)]
    assert chain.key_for(10) == a.verifier and chain.key_for(11) == b.verifier and chain.key_for(99) == c.verifier
    # Trusting a later key: the chain starts there, and earlier tree sizes have no key.
    later = follow(b.verifier, ORIGIN, [ab, bc])
    assert later.keys == ((11, b.verifier), (20, c.verifier)) and later.key_for(10) is None
    intruder = NoteSigner(ORIGIN, bytes(32))
    for statements, why in (
        ([sign_rotation(intruder, ORIGIN, b.verifier, 11)], "no signature by"),  # not signed by the key in force
        ([ab, sign_rotation(a, ORIGIN, c.verifier, 20)], "no signature by"),  # signed by a retired key
        ([ab, sign_rotation(b, ORIGIN, c.verifier, 11)], "is not after"),  # not after the key before
        ([sign_rotation(a, "other.test/log", b.verifier, 11)], "not 'ledger.test/takedown'"),
        ([ab.replace("\n11\n", "\n12\n")], "does not verify"),  # the from size changed after signing
    ):
        with pytest.raises(RotationError, match=why):
            follow(a.verifier, ORIGIN, statements)
    with pytest.raises(NoteError):
        parse_rotation(f"{ORIGIN}\n12\n{bundles.b64(bytes(32))}\n")  # a checkpoint is never a rotation


def open_note_text(note: str, signer: NoteSigner) -> str:
    from shared.tlog.note import open_note

    return open_note(note, signer.verifier)


# ----------------------------------------------------------------------------------------------- rotation, stored


def _ledger(db: Database, seeds: list[bytes], origin: str = ORIGIN, pinned: bool = True) -> Ledger:
    """A ledger whose key 'file' is `seeds` (a rotation by another process replaces it)."""
    return Ledger(
        db,
        signed_store(db),
        FrozenClock(T0),
        origin=origin,
        origin_pinned=pinned,
        seed=lambda: list(seeds),
        stream_visible=lambda principal, stream_id: False,
    )


def test_rotation_signs_later_checkpoints_with_the_new_key_and_verify_follows_the_chain(db: Database) -> None:
    key_file = [SEED]
    here, elsewhere = _ledger(db, key_file), _ledger(db, key_file)
    sealed_events(db, 5)
    first = here.checkpoint()
    elsewhere.checkpoint()  # another process, holding the first key
    a = NoteSigner(ORIGIN, SEED).verifier
    rotated = here.rotate_key(SEED_B)
    key_file[:] = [SEED_B]  # the key file now holds the new key
    assert rotated.old == a and rotated.from_size == 6 and here.public_key() == rotated.new.verifier_key
    with pytest.raises(LedgerIdentityError, match="has not reached"):
        here.rotate_key(SEED_C)  # no leaf since the rotation: the new key has no tree size of its own yet
    sealed_events(db, 3, start=5)
    made = elsewhere.checkpoint()  # notices the rotation: signs with the key in force at its size
    assert made.tree_size == 8
    open_checkpoint(made.note, rotated.new, ORIGIN)
    with pytest.raises(NoteError):
        open_checkpoint(made.note, a, ORIGIN)
    open_checkpoint(first.note, a, ORIGIN)
    report = here.verify(trusted=a)
    assert report.ok and report.keys_followed == 2 and report.checkpoints_checked == 2, report.problems
    assert here.verify().ok  # from the stored first key
    with pytest.raises(LedgerIdentityError, match="already in the chain"):
        here.rotate_key(SEED)


def test_a_forged_rotation_or_a_checkpoint_by_a_foreign_key_is_refused(db: Database) -> None:
    ledger = _ledger(db, [SEED])
    sealed_events(db, 4)
    ledger.checkpoint()
    a, intruder = NoteSigner(ORIGIN, SEED), NoteSigner(ORIGIN, bytes(32))
    # Someone with the database adds a rotation to their own key, signed by their own key, and signs a checkpoint.
    with db.transaction() as conn:
        forged = sign_rotation(intruder, ORIGIN, intruder.verifier, 5)
        conn.execute(
            insert(ledger_keys).values(
                seq=1, verifier_key=intruder.verifier.verifier_key, from_size=5, statement=forged, created_at=T0
            )
        )
    sealed_events(db, 2, start=4)
    ledger.feed()
    with db.transaction() as conn:
        head = ledger.head()
        note = intruder.sign(f"{ORIGIN}\n{head.size}\n{bundles.b64(head.root)}\n")
        conn.execute(
            insert(ledger_checkpoints).values(
                tree_size=head.size, root_hash=head.root, origin=ORIGIN, note=note, created_at=T0
            )
        )
    report = ledger.verify(trusted=a.verifier)
    assert not report.ok
    assert any(p.startswith("key rotation 1:") and "no signature by" in p for p in report.problems), report.problems
    assert any(p.startswith(f"checkpoint at tree size {head.size}:") for p in report.problems), report.problems
    # The service itself refuses to sign with a key the file does not hold (the forged chain names the intruder's).
    sealed_events(db, 1, start=6)
    with pytest.raises(LedgerIdentityError, match="does not hold the key in force"):
        ledger.checkpoint()


def test_the_identity_is_stored_once_and_a_different_configured_origin_is_refused(db: Database) -> None:
    assert _ledger(db, [SEED], origin="first.test/ledger", pinned=False).origin == "first.test/ledger"
    # Derived from another PUBLIC_BASE_URL: the stored origin stands.
    moved = _ledger(db, [SEED], origin="moved.test/ledger", pinned=False)
    assert moved.origin == "first.test/ledger" and moved.signer.name == "first.test/ledger"
    with pytest.raises(LedgerIdentityError, match="never changes"):
        _ledger(db, [SEED], origin="moved.test/ledger", pinned=True).identity()


def test_public_key_and_the_checkpoint_origin_do_not_follow_public_base_url(
    db_url: str, db: Database, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TAKEDOWN_DATABASE_URL", db_url)
    monkeypatch.delenv("TAKEDOWN_LEDGER_ORIGIN", raising=False)
    monkeypatch.setenv("TAKEDOWN_PUBLIC_BASE_URL", "https://takedown.example/")
    made = CliRunner().invoke(cli, ["ledger", "public-key"])
    assert made.exit_code == 0, made.output
    key = made.output.splitlines()[0]
    assert key.startswith("takedown.example/ledger+")
    monkeypatch.setenv("TAKEDOWN_PUBLIC_BASE_URL", "http://127.0.0.1:8000")  # an operator's shell, not the server's
    again = CliRunner().invoke(cli, ["ledger", "public-key"])
    assert again.exit_code == 0 and key in again.output.splitlines(), again.output
    assert not any("127.0.0.1" in line for line in again.output.splitlines() if "+" in line and "[" not in line)
    sealed_events(db, 2)
    signed = CliRunner().invoke(cli, ["ledger", "checkpoint"])
    assert signed.exit_code == 0 and "\ntakedown.example/ledger\n2\n" in signed.output, signed.output
    assert "is the stored one" in signed.output  # said, not silent
    monkeypatch.setenv("TAKEDOWN_LEDGER_ORIGIN", "elsewhere.example/ledger")
    refused = CliRunner().invoke(cli, ["ledger", "public-key"])
    assert refused.exit_code != 0 and isinstance(refused.exception, LedgerIdentityError)


def test_rotate_key_command_replaces_the_key_file_and_verify_follows_from_the_first_key(
    db_url: str, db: Database, monkeypatch: pytest.MonkeyPatch, _ledger_key_file: Path
) -> None:
    monkeypatch.setenv("TAKEDOWN_DATABASE_URL", db_url)
    monkeypatch.setenv("TAKEDOWN_LEDGER_ORIGIN", ORIGIN)
    first = CliRunner().invoke(cli, ["ledger", "public-key"]).output.splitlines()[0]
    old_seed = _ledger_key_file.read_text()
    sealed_events(db, 3)
    rotated = CliRunner().invoke(cli, ["ledger", "rotate-key"])
    assert rotated.exit_code == 0, rotated.output
    assert _ledger_key_file.read_text() != old_seed
    assert Path(f"{_ledger_key_file}.retired-4").read_text() == old_seed
    assert not Path(f"{_ledger_key_file}.next").exists()
    current = CliRunner().invoke(cli, ["ledger", "public-key", "--chain"]).output
    assert current.splitlines()[0] != first and f"key 0 from tree size 0: {first}" in current
    assert "takedown-ledger-key-rotation/v1\n" in current
    # Recorded now: the command signed its checkpoints now, and an event older than one minus the lag is backdated.
    sealed_events(db, 2, start=3, at=datetime.now(UTC))
    assert CliRunner().invoke(cli, ["ledger", "checkpoint"]).exit_code == 0
    ok = CliRunner().invoke(cli, ["ledger", "verify", "--key", first])
    assert ok.exit_code == 0 and "key chain: 2 keys followed" in ok.output, ok.output
    foreign = NoteSigner(ORIGIN, bytes(32)).verifier.verifier_key
    refused = CliRunner().invoke(cli, ["ledger", "verify", "--key", foreign])
    assert refused.exit_code == 1, refused.output


# ----------------------------------------------------------------------------------------------- bundles and API


def _bundle(api: Api, order_id: str | None = None) -> dict[str, Any]:
    if order_id is None:
        order_id = str(api.issue().json()["id"])
    api.container.sequencer.catch_up()
    r = api.call("GET", f"/v1/orders/{order_id}/evidence", "auditor")
    assert r.status_code == 200, r.text
    return dict(r.json())


def _first_key(api: Api) -> str:
    return str(api.call("GET", "/v1/ledger/public-key", None).json()["key_chain"][0]["verifier_key"])


def _writer_keys(api: Api) -> dict[str, bytes]:
    writer = api.container.store.writer
    assert writer is not None
    return {writer.key_id: writer.public_key}


def test_a_bundle_after_rotation_verifies_from_the_first_key_and_the_api_shows_the_chain(api: Api) -> None:
    first = _first_key(api)
    before = _bundle(api)
    assert before["format"] == bundles.FORMAT and before["key_rotations"] == []
    assert before["events"][0]["envelope"]["leaf_format"] == V2
    assert bundles.verify_bundle(json.dumps(before), first, _writer_keys(api)).ok
    rotated = api.container.ledger.rotate_key(SEED_B)
    served = api.call("GET", "/v1/ledger/public-key", None).json()
    assert served["verifier_key"] == rotated.new.verifier_key and served["origin"] == api.container.ledger.origin
    assert [k["verifier_key"] for k in served["key_chain"]] == [first, rotated.new.verifier_key]
    assert served["key_chain"][1]["rotation"] == rotated.statement and served["key_chain"][0]["rotation"] is None
    reused = _bundle(api, before["order_id"])  # its checkpoint, signed by the first key, still covers the order
    assert reused["checkpoint"] == before["checkpoint"] and reused["key_rotations"] == [rotated.statement]
    assert bundles.verify_bundle(json.dumps(reused), first).ok
    problems = bundles.verify_bundle(json.dumps(reused), rotated.new.verifier_key).problems
    assert problems == [
        f"checkpoint: tree size {before['checkpoint']['tree_size']} is before the trusted key signed"
        f" (from {rotated.from_size})"
    ]
    api.advance(minutes=5)
    acknowledged = api.call("POST", f"/v1/orders/{before['order_id']}/acknowledge", "platform_a")
    assert acknowledged.status_code == 200, acknowledged.text
    after = _bundle(api, before["order_id"])
    assert after["checkpoint"]["tree_size"] >= rotated.from_size
    assert after["key_rotations"] == [rotated.statement] and after["verifier_key"] == rotated.new.verifier_key
    report = bundles.verify_bundle(json.dumps(after), first, _writer_keys(api))
    assert report.ok, report.problems
    offline_verify.verify(after, first)
    assert bundles.verify_bundle(json.dumps(after), rotated.new.verifier_key).ok  # a later pinned key also serves
    # A rotation statement forged by someone else: refused by both verifiers.
    intruder = NoteSigner(api.container.ledger.origin, bytes(32))
    forged = {**after, "key_rotations": [sign_rotation(intruder, intruder.name, rotated.new, rotated.from_size)]}
    forged = api.container.ledger.attest(forged)
    assert any(p.startswith("key_rotations:") for p in bundles.verify_bundle(json.dumps(forged), first).problems)
    with pytest.raises(ValueError, match="key rotation is not signed by this key"):
        offline_verify.verify(forged, first)


@pytest.mark.parametrize("field", ["meta", "seal"])
def test_a_bundle_whose_format_2_meta_or_seal_changed_fails_both_verifiers(api: Api, field: str) -> None:
    doc = _bundle(api)
    first = _first_key(api)
    entry = doc["events"][0]
    if field == "meta":
        entry["envelope"]["meta"] = {**entry["envelope"]["meta"], "actor": "authority:someone-else"}
    else:
        entry["envelope"]["seal"] = {**entry["envelope"]["seal"], "kid": "0" * 16}
    entry["leaf"] = bundles.rfc8785.dumps(entry["envelope"]).decode()
    entry["leaf_hash"] = bundles.b64(bundles.merkle.leaf_hash(entry["leaf"].encode()))
    forged = api.container.ledger.attest(doc)  # re-signed, as a dishonest operator could
    report = bundles.verify_bundle(json.dumps(forged), first)
    assert report.problems == ["events[0]: not in the checkpoint's tree (the audit path leads to another root)"]
    with pytest.raises(ValueError, match="not in the checkpoint's tree"):
        offline_verify.verify(forged, first)


def test_a_seal_is_checked_against_the_writer_keys(api: Api, tmp_path: Path) -> None:
    doc = _bundle(api)
    first = _first_key(api)
    assert bundles.verify_bundle(json.dumps(doc), first, _writer_keys(api)).ok
    other = WriterSigner(bytes(32))
    report = bundles.verify_bundle(json.dumps(doc), first, {other.key_id: other.public_key})
    assert not report.ok and all("the writer's seal is unknown key" in p for p in report.problems), report.problems
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(doc))
    served = api.call("GET", "/v1/ledger/public-key", None).json()["writer_keys"]
    ok = CliRunner().invoke(cli, ["ledger", "verify-bundle", str(path), "--key", first, "--writer-key", served[0]])
    assert ok.exit_code == 0, ok.output
    wrong = public_key_text(other.public_key)
    refused = CliRunner().invoke(cli, ["ledger", "verify-bundle", str(path), "--key", first, "--writer-key", wrong])
    assert refused.exit_code == 1 and "unknown key" in refused.output, refused.output


def test_a_format_1_bundle_still_verifies(api: Api) -> None:
    """A bundle as the ledger made them before rotation and leaf format 2: format 1 leaves, no key_rotations."""
    with api.container.db.transaction() as conn:
        conn.execute(delete(ledger_leaf_formats))  # a ledger from before migration 0013
    doc = _bundle(api)
    assert all("leaf_format" not in e["envelope"] for e in doc["events"])
    # Nor witnesses: no earlier checkpoints, no cosigned note.
    old = {k: v for k, v in doc.items() if k not in ("key_rotations", "earlier_checkpoints")} | {
        "format": bundles.FORMAT_V1,
        "checkpoint": {k: v for k, v in doc["checkpoint"].items() if k != "cosigned_note"},
    }
    old = api.container.ledger.attest(old)
    first = _first_key(api)
    report = bundles.verify_bundle(json.dumps(old), first)
    assert report.ok, report.problems
    offline_verify.verify(old, first)
    assert not bundles.verify_bundle(json.dumps({**old, "key_rotations": []}), first).ok  # not a format 1 field


def test_key_chain_single() -> None:
    a = parse_verifier_key(NoteSigner(ORIGIN, SEED).verifier.verifier_key)
    assert KeyChain.single(a).key_for(0) == a == KeyChain.single(a).current


def test_a_rotation_interrupted_before_the_key_files_moved_signs_with_the_staged_key(
    db: Database, tmp_path: Path
) -> None:
    """The chain names the new key but the process died before renaming: the key is read from '<file>.next'."""
    from services.ledger.checkpoints import next_key_file, read_seeds, stage_new_seed

    key_file = tmp_path / "keys" / "ledger.key"
    ledger = Ledger(
        db,
        signed_store(db),
        FrozenClock(T0),
        origin=ORIGIN,
        seed=lambda: read_seeds(None, key_file),
        stream_visible=lambda principal, stream_id: False,
    )
    sealed_events(db, 2)
    ledger.checkpoint()
    rotated = ledger.rotate_key(stage_new_seed(key_file))
    assert next_key_file(key_file).exists()  # not promoted: as after a crash
    sealed_events(db, 2, start=2)
    restarted = Ledger(
        db,
        signed_store(db),
        FrozenClock(T0),
        origin=ORIGIN,
        seed=lambda: read_seeds(None, key_file),
        stream_visible=lambda principal, stream_id: False,
    )
    made = restarted.checkpoint()
    open_checkpoint(made.note, rotated.new, ORIGIN)
    assert restarted.verify(trusted=rotated.old).ok


@given(
    data=st.dictionaries(st.text(), json_values, max_size=4),
    meta=st.dictionaries(st.text(), json_values, max_size=3),
    seal=st.none() | st.dictionaries(st.text(), json_values, max_size=4),
    ids=st.tuples(st.text(), st.text(), st.text()),
    version=st.integers(min_value=1, max_value=2**40),
)
def test_a_format_2_leaf_written_around_its_values_is_the_canonical_form_of_its_envelope(
    data: dict, meta: dict, seal: dict | None, ids: tuple[str, str, str], version: int
) -> None:
    event = RecordedEvent(ids[0], ids[1], version, ids[2], 1, data, meta, T0, 7, seal)
    try:
        expected = canonical.dumps(envelope(event, V2))
    except Exception as refused:  # noqa: BLE001 - a lone surrogate has no UTF-8 form: both paths refuse it
        with pytest.raises(type(refused)):
            leaf_bytes(event, V2)
        return
    assert leaf_bytes(event, V2) == expected
    assert leaf_bytes(event, V2, (canonical.dumps(data), canonical.dumps(meta))) == expected
