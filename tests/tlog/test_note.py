"""Signed notes and checkpoints (pure): the Go note package's known answer, and any change to a note refused."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta, timezone

import pytest

from services.ledger import leaf
from shared.eventstore import RecordedEvent
from shared.tlog import merkle, note

# golang.org/x/mod/sumdb/note's documented example: key, text and the exact signed note it produces.
GO_SKEY_SEED = base64.b64decode("AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz")[1:]
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
GO_NOTE = (
    GO_TEXT
    + "\n— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
ORIGIN = "ledger.example.kz/takedown"


def test_go_note_known_answer() -> None:
    signer = note.NoteSigner("PeterNeumann", GO_SKEY_SEED)
    assert signer.verifier.verifier_key == GO_VKEY
    assert signer.sign(GO_TEXT) == GO_NOTE
    assert note.open_note(GO_NOTE, note.parse_verifier_key(GO_VKEY)) == GO_TEXT


def _signed_checkpoint() -> tuple[str, note.Verifier]:
    signer = note.NoteSigner(ORIGIN, hashlib.sha256(b"test key").digest())
    body = note.CheckpointBody(ORIGIN, 1234, merkle.leaf_hash(b"x"))
    return note.sign_checkpoint(body, signer), note.parse_verifier_key(signer.verifier.verifier_key)


def test_checkpoint_verifies_with_the_verifier_key() -> None:
    signed, verifier = _signed_checkpoint()
    body = note.open_checkpoint(signed, verifier, ORIGIN)
    assert (body.origin, body.size, body.root) == (ORIGIN, 1234, merkle.leaf_hash(b"x"))
    assert signed.startswith(f"{ORIGIN}\n1234\n{base64.b64encode(merkle.leaf_hash(b'x')).decode()}\n\n— {ORIGIN} ")


def test_any_change_to_a_checkpoint_note_is_refused() -> None:
    signed, verifier = _signed_checkpoint()
    raw = signed.encode()
    note.open_checkpoint(raw, verifier, ORIGIN)
    for i in range(len(raw)):
        for flip in (0x01, 0x02, 0x20, 0x80):
            changed = raw[:i] + bytes([raw[i] ^ flip]) + raw[i + 1 :]
            with pytest.raises(note.NoteError):
                note.open_checkpoint(changed, verifier, ORIGIN)
    for i in range(len(raw)):  # a byte removed, a byte added
        with pytest.raises(note.NoteError):
            note.open_checkpoint(raw[:i] + raw[i + 1 :], verifier, ORIGIN)
        with pytest.raises(note.NoteError):
            note.open_checkpoint(raw[:i] + b"0" + raw[i:], verifier, ORIGIN)


def test_other_keys_and_origins_are_refused() -> None:
    signed, verifier = _signed_checkpoint()
    stranger = note.NoteSigner(ORIGIN, hashlib.sha256(b"another key").digest()).verifier
    with pytest.raises(note.NoteError):
        note.open_checkpoint(signed, stranger, ORIGIN)
    with pytest.raises(note.NoteError):
        note.open_checkpoint(signed, verifier, "other.example/log")
    with pytest.raises(note.NoteError):  # a verifier key whose hash does not match its key
        note.parse_verifier_key(GO_VKEY.replace("c74f20a3", "c74f20a4"))


def test_verifier_keys_whose_base64_holds_a_plus_parse() -> None:
    keys = [note.NoteSigner(ORIGIN, hashlib.sha256(bytes([n])).digest()).verifier for n in range(64)]
    plus = [k for k in keys if "+" in k.verifier_key.split("+", 2)[2]]
    assert plus, "no key with a '+' in its base64 among 64: pick more seeds"
    for key in plus:
        assert note.parse_verifier_key(key.verifier_key) == key


def test_base64_must_be_canonical() -> None:
    assert note.b64decode_strict("AAE=") == b"\x00\x01"
    for spelling in ("AAF=", "AAE", "AA E=", "AAE=\n"):
        with pytest.raises(note.NoteError):
            note.b64decode_strict(spelling)


# ----------------------------------------------------------------------------------------------- leaves


def _event(**changes: object) -> RecordedEvent:
    fields: dict[str, object] = {
        "event_id": "0190a1b2-0000-7000-8000-000000000001",
        "stream_id": "order-1",
        "version": 1,
        "type": "order.issued",
        "schema_version": 1,
        "data": {"z": 1.0, "a": "é\u2028", "n": None, "list": [3, 2.5]},
        "meta": {"actor": "authority:mci"},
        "recorded_at": datetime(2026, 3, 2, 9, 0, 0, 120000, tzinfo=UTC),
        "position": 7,
    }
    fields.update(changes)
    return RecordedEvent(**fields)  # type: ignore[arg-type]


def test_leaf_bytes_are_rfc8785_of_the_envelope() -> None:
    assert (
        leaf.leaf_bytes(_event(), leaf.V1)
        == (
            '{"data":{"a":"é\u2028","list":[3,2.5],"n":null,"z":1},"event_id":"0190a1b2-0000-7000-8000-000000000001",'
            '"recorded_at":"2026-03-02T09:00:00.120000Z","schema_version":1,"stream_id":"order-1","type":"order.issued",'
            '"version":1}'
        ).encode()
    )
    assert leaf.leaf_hash(_event(), leaf.V1) == hashlib.sha256(b"\x00" + leaf.leaf_bytes(_event(), leaf.V1)).digest()


def test_leaf_ignores_position_and_meta_but_not_content() -> None:
    base = leaf.leaf_hash(_event(), leaf.V1)
    assert leaf.leaf_hash(_event(position=None, meta={}), leaf.V1) == base  # known at send time, before numbering
    same_instant = datetime(2026, 3, 2, 14, 0, 0, 120000, tzinfo=timezone(timedelta(hours=5)))
    assert leaf.leaf_hash(_event(recorded_at=same_instant), leaf.V1) == base
    for change in (
        {"event_id": "0190a1b2-0000-7000-8000-000000000002"},
        {"stream_id": "order-2"},
        {"version": 2},
        {"type": "order.withdrawn"},
        {"schema_version": 2},
        {"data": {"z": 1.5}},
        {"recorded_at": datetime(2026, 3, 2, 9, 0, 0, 120001, tzinfo=UTC)},
    ):
        assert leaf.leaf_hash(_event(**change), leaf.V1) != base, change
    with pytest.raises(ValueError):
        leaf.leaf_hash(_event(recorded_at=datetime(2026, 3, 2, 9, 0)), leaf.V1)


def test_position_and_index() -> None:
    assert leaf.leaf_index(1) == 0 and leaf.position_of(0) == 1
    with pytest.raises(ValueError):
        leaf.leaf_index(0)
