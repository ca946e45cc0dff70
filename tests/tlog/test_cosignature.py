"""cosignature/v1 lines: made, found, refused when anything changes; the bytes checked against the spec by hand."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from shared.tlog.cosignature import Cosigner, add_cosignatures, cosignatures, parse_cosigner_vkey
from shared.tlog.note import CheckpointBody, NoteError, NoteSigner, sign_checkpoint

BODY = CheckpointBody("example.org/log", 7, bytes(range(32)))


def _note() -> str:
    return sign_checkpoint(BODY, NoteSigner("example.org/log", b"\x01" * 32))


def test_a_cosignature_line_is_what_the_spec_says_byte_for_byte() -> None:
    witness = Cosigner("witness.example/w1", b"\x02" * 32)
    line = witness.cosign(BODY.text(), 1_679_315_147)
    assert line.startswith("— witness.example/w1 ") and line.endswith("\n")
    raw = base64.b64decode(line.split(" ")[2])
    public = witness.verifier.public_key
    assert raw[:4] == hashlib.sha256(b"witness.example/w1\n\x04" + public).digest()[:4]
    assert int.from_bytes(raw[4:12], "big") == 1_679_315_147
    message = b"cosignature/v1\ntime 1679315147\n" + BODY.text().encode()
    Ed25519PublicKey.from_public_bytes(public).verify(raw[12:], message)  # raises if not


def test_cosignatures_are_found_by_their_pinned_keys_only() -> None:
    w1, w2 = Cosigner("w1.example", b"\x03" * 32), Cosigner("w2.example", b"\x04" * 32)
    note = add_cosignatures(_note(), [w1.cosign(BODY.text(), 10), w2.cosign(BODY.text(), 20)])
    assert cosignatures(note, [w1.verifier, w2.verifier]) == {"w1.example": 10, "w2.example": 20}
    assert cosignatures(note, [w1.verifier]) == {"w1.example": 10}
    stranger = Cosigner("w1.example", b"\x05" * 32)  # the same name, another key
    assert cosignatures(note, [stranger.verifier]) == {}


def test_a_cosignature_of_another_body_or_time_does_not_count() -> None:
    w1 = Cosigner("w1.example", b"\x03" * 32)
    other = CheckpointBody("example.org/log", 8, bytes(range(32)))
    note = add_cosignatures(_note(), [w1.cosign(other.text(), 10)])
    assert cosignatures(note, [w1.verifier]) == {}
    line = w1.cosign(BODY.text(), 10)
    raw = bytearray(base64.b64decode(line.split(" ")[2]))
    raw[11] ^= 1  # another timestamp under the same signature
    forged = f"— w1.example {base64.b64encode(bytes(raw)).decode()}\n"
    assert cosignatures(add_cosignatures(_note(), [forged]), [w1.verifier]) == {}


def test_the_vkey_round_trips_and_a_wrong_id_or_type_is_refused() -> None:
    verifier = Cosigner("w1.example", b"\x03" * 32).verifier
    assert parse_cosigner_vkey(verifier.vkey) == verifier
    name, _key_id, key = verifier.vkey.split("+", 2)
    with pytest.raises(NoteError):
        parse_cosigner_vkey(f"{name}+00000000+{key}")
    note_key = NoteSigner("w1.example", b"\x03" * 32).verifier.verifier_key  # type 0x01, not a cosigner key
    with pytest.raises(NoteError):
        parse_cosigner_vkey(note_key)


def test_adding_a_line_twice_keeps_one() -> None:
    line = Cosigner("w1.example", b"\x03" * 32).cosign(BODY.text(), 10)
    note = add_cosignatures(add_cosignatures(_note(), [line]), [line, line])
    assert note.count(line) == 1
