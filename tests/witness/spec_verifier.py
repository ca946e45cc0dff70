"""A second cosignature/v1 verifier, written from c2sp.org/tlog-cosignature and c2sp.org/signed-note alone.

It shares no code with shared/tlog (only hashlib, base64, struct and cryptography's Ed25519), so a mistake made
once in the witness's signing and once in the project's verifier cannot cancel out in the tests.
"""

from __future__ import annotations

import base64
import hashlib
import struct

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

EM_DASH_SPACE = "\u2014 "


class SpecError(AssertionError):
    """The response or key is not what the spec says."""


def _b64(text: str) -> bytes:
    raw = base64.b64decode(text, validate=True)
    if base64.b64encode(raw).decode() != text:
        raise SpecError(f"not canonical standard base64: {text!r}")
    return raw


def parse_vkey(vkey: str) -> tuple[str, bytes, bytes]:
    """A cosigner vkey "<name>+<hex key ID>+base64(0x04 || 32-byte key)" as (name, key ID, public key)."""
    name, key_id_hex, encoded = vkey.split("+", 2)
    material = _b64(encoded)
    if len(material) != 33 or material[0] != 0x04:
        raise SpecError("an Ed25519 cosignature/v1 vkey is type 0x04 and 32 bytes of key")
    public_key = material[1:]
    key_id = hashlib.sha256(name.encode() + b"\n" + b"\x04" + public_key).digest()[:4]
    if key_id.hex() != key_id_hex:
        raise SpecError("the vkey's key ID is not SHA-256(name || 0x0A || 0x04 || key)[:4]")
    return name, key_id, public_key


def checkpoint_body(note: str) -> str:
    """The note body of a signed checkpoint: everything up to the blank line, with its final newline."""
    return note[: note.index("\n\n") + 1]


def verify_response(response: str, body: str, vkey: str) -> int:
    """The timestamp of the vkey's cosignature of `body` in an add-checkpoint response; SpecError if there is none.

    The response is one or more note signature lines ("— <name> base64(key ID || u64 timestamp || signature)\\n");
    the signature is Ed25519 over "cosignature/v1\\ntime <timestamp>\\n" followed by the checkpoint body.
    """
    name, key_id, public_key = parse_vkey(vkey)
    if not response.endswith("\n") or not response:
        raise SpecError("the response is signature lines, each ending in a newline")
    found: int | None = None
    for line in response[:-1].split("\n"):
        if not line.startswith(EM_DASH_SPACE):
            raise SpecError(f"not a note signature line: {line!r}")
        line_name, _, blob = line[len(EM_DASH_SPACE) :].partition(" ")
        raw = _b64(blob)
        if line_name != name or raw[:4] != key_id:
            continue  # another cosigner's line: ignored, as clients must
        if len(raw) != 4 + 8 + 64:
            raise SpecError("an Ed25519 timestamped_signature is 8 bytes of time and 64 of signature")
        (timestamp,) = struct.unpack(">Q", raw[4:12])
        if timestamp > 2**63 - 1:
            raise SpecError("the timestamp exceeds 2^63 - 1")
        message = b"cosignature/v1\n" + b"time " + str(timestamp).encode() + b"\n" + body.encode()
        try:
            Ed25519PublicKey.from_public_bytes(public_key).verify(raw[12:], message)
        except InvalidSignature as exc:
            raise SpecError("the cosignature does not verify") from exc
        found = timestamp
    if found is None:
        raise SpecError(f"no cosignature by {name}")
    return found
