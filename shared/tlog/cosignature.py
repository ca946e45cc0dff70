"""C2SP tlog-cosignature `cosignature/v1` (pure): Ed25519 timestamped cosignatures of a checkpoint.

A cosignature is a note signature line "— <name> base64(key ID || u64 big-endian timestamp || signature)", where
the key ID is SHA-256(<name> || "\\n" || 0x04 || public key)[:4] and the signature is Ed25519 over
"cosignature/v1\\ntime <timestamp>\\n" followed by the whole checkpoint body (c2sp.org/tlog-cosignature). Its
verifier key is "<name>+<key ID hex>+base64(0x04 || public key)". A cosignature says: as of that time, this is the
largest tree consistent with everything the cosigner saw for the log.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shared.tlog.note import SIGNATURE_PREFIX, NoteError, check_key_name, split_note, split_vkey

COSIGNATURE_V1 = 0x04
_MAX_TIMESTAMP = 2**63 - 1


def cosigner_key_id(name: str, public_key: bytes) -> bytes:
    """The 4-byte key ID of an Ed25519 cosignature/v1 key."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([COSIGNATURE_V1]) + public_key).digest()[:4]


def signed_message(body: str, timestamp: int) -> bytes:
    """The bytes a cosignature/v1 signs: the header line, the time line, the whole checkpoint body."""
    if not 0 <= timestamp <= _MAX_TIMESTAMP:
        raise NoteError(f"a cosignature's timestamp is between 0 and 2^63-1: {timestamp}")
    return f"cosignature/v1\ntime {timestamp}\n{body}".encode()


@dataclass(frozen=True)
class CosignatureVerifier:
    """A cosigner's name and Ed25519 public key, as a verifier pins them."""

    name: str
    public_key: bytes

    @property
    def key_id(self) -> bytes:
        """The 4-byte key ID its signature lines carry."""
        return cosigner_key_id(self.name, self.public_key)

    @property
    def vkey(self) -> str:
        """The verifier key text: name+key ID+base64(0x04||key)."""
        encoded = base64.b64encode(bytes([COSIGNATURE_V1]) + self.public_key).decode()
        return f"{self.name}+{self.key_id.hex()}+{encoded}"

    def timestamp(self, body: str, raw: bytes) -> int | None:
        """The time a raw signature (key ID || timestamp || signature) states, if it is this key's over the body."""
        if len(raw) != 4 + 8 + 64 or raw[:4] != self.key_id:
            return None
        (timestamp,) = struct.unpack(">Q", raw[4:12])
        if timestamp > _MAX_TIMESTAMP:
            return None
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(raw[12:], signed_message(body, timestamp))
        except InvalidSignature:
            return None
        return int(timestamp)


def parse_cosigner_vkey(text: str) -> CosignatureVerifier:
    """Parse "name+keyid+base64(0x04||key)", checking the key ID against the name and key."""
    name, public_key, given = split_vkey(text, COSIGNATURE_V1)
    verifier = CosignatureVerifier(name, public_key)
    if given != verifier.key_id:
        raise NoteError("the verifier key's ID does not match its name and key")
    return verifier


class Cosigner:
    """An Ed25519 cosignature/v1 signer (the private key never leaves this object)."""

    def __init__(self, name: str, seed: bytes) -> None:
        check_key_name(name)
        if len(seed) != 32:
            raise NoteError("an Ed25519 seed is 32 bytes")
        self.name = name
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        self.verifier = CosignatureVerifier(name, self._key.public_key().public_bytes_raw())

    def cosign(self, body: str, timestamp: int) -> str:
        """The signature line (with its newline) cosigning this checkpoint body at this POSIX time."""
        signature = self._key.sign(signed_message(body, timestamp))
        blob = self.verifier.key_id + struct.pack(">Q", timestamp) + signature
        return f"{SIGNATURE_PREFIX}{self.name} {base64.b64encode(blob).decode()}\n"


def cosignatures(note: str | bytes, verifiers: list[CosignatureVerifier]) -> dict[str, int]:
    """Which of these cosigners validly cosigned the note: name -> the timestamp they state.

    Lines of other keys are ignored; a line that claims a pinned key but does not verify is ignored too (a
    verifier counts valid cosignatures toward a quorum, and a bad line only fails to count).
    """
    text, signatures = split_note(note)
    found: dict[str, int] = {}
    for name, raw in signatures:
        for verifier in verifiers:
            if name == verifier.name and (timestamp := verifier.timestamp(text, raw)) is not None:
                found[name] = timestamp
    return found


def add_cosignatures(note: str, lines: list[str]) -> str:
    """The note with these signature lines appended, each once, in the order given."""
    present = set(note.splitlines(keepends=True))
    return note + "".join(line for line in dict.fromkeys(lines) if line not in present)
