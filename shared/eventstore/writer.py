"""Writer signatures: the appending process signs each append call's events with an Ed25519 key kept outside the DB.

Each event's canonical form is the RFC 8785 JSON of {event_id, stream_id, version, type, schema_version, data,
meta, recorded_at} (recorded_at as RFC 3339 UTC with six fraction digits and "Z", as in the ledger's leaf). One
signature covers one append call: Ed25519 over DOMAIN || SHA-256(d_1 || ... || d_n), where d_i is the SHA-256 of
event i's canonical form, in the order appended. Signing once per call, not per event, keeps the cost of a
4-event order at one signature. Each event's seal names the key, its index in the batch, every digest of the
batch and the signature, so it verifies alone: its own digest must be the one at its index.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shared import canonical, keyfile

DOMAIN = b"takedown-writer-batch/1\n"


class WriterKeyError(ValueError):
    """The writer key file is unreadable or malformed."""


# (event_id, stream_id, version, type, schema_version, data, meta): what `batch_digests` reads of each event.
EventFields = tuple[str, str, int, str, int, Mapping[str, Any], Mapping[str, Any]]


def canonical_event(
    event_id: str,
    stream_id: str,
    version: int,
    type: str,
    schema_version: int,
    data: Mapping[str, Any],
    meta: Mapping[str, Any],
    recorded_at: datetime,
) -> bytes:
    """The RFC 8785 bytes a writer signs for one event."""
    return event_form(
        event_id, stream_id, version, type, schema_version, canonical.dumps(data), canonical.dumps(meta), recorded_at
    )


def batch_digests(events: Iterable[EventFields], recorded_at: datetime) -> list[bytes]:
    """The digests of one append call's events (their canonical forms, as `canonical_event` writes them).

    The time is formatted once and each distinct meta encoded once: a command's events share both, and they were
    a third of the cost of sealing a 4-event order.
    """
    stamp = _stamp(recorded_at)
    metas: dict[int, bytes] = {}
    digests = []
    for event_id, stream_id, version, type, schema_version, data, meta in events:
        meta_form = metas.get(id(meta))
        if meta_form is None:
            meta_form = metas[id(meta)] = canonical.dumps(meta)
        form = _envelope(event_id, stream_id, version, type, schema_version, canonical.dumps(data), meta_form, stamp)
        digests.append(hashlib.sha256(form).digest())
    return digests


def event_form(
    event_id: str, stream_id: str, version: int, type: str, schema_version: int, data: bytes, meta: bytes, at: datetime
) -> bytes:
    """`canonical_event` from the canonical bytes of data and meta (a reader that needs them for more, like the
    ledger's leaf, encodes them once)."""
    return _envelope(event_id, stream_id, version, type, schema_version, data, meta, _stamp(at))


def _stamp(recorded_at: datetime) -> bytes:
    if recorded_at.tzinfo is None:
        raise ValueError("naive datetimes cannot be signed: pass UTC-aware times")
    return recorded_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ").encode()


def _envelope(
    event_id: str, stream_id: str, version: int, type: str, schema_version: int, data: bytes, meta: bytes, stamp: bytes
) -> bytes:
    # The RFC 8785 form of {event_id, stream_id, version, type, schema_version, data, meta, recorded_at}, written
    # around the canonical data and meta: its keys are fixed and ASCII, so their sorted order is fixed too
    # (tests/store/test_writer_signatures.py checks it against canonical.dumps of the whole object).
    return b"".join(
        (
            b'{"data":', data,
            b',"event_id":', canonical.string(event_id),
            b',"meta":', meta,
            b',"recorded_at":"', stamp,
            b'","schema_version":', canonical.integer(schema_version),
            b',"stream_id":', canonical.string(stream_id),
            b',"type":', canonical.string(type),
            b',"version":', canonical.integer(version),
            b"}",
        )
    )  # fmt: skip


def event_digest(form: bytes) -> bytes:
    """SHA-256 of an event's canonical form."""
    return hashlib.sha256(form).digest()


def batch_message(digests: list[bytes]) -> bytes:
    """What the writer signs for one append call."""
    return DOMAIN + hashlib.sha256(b"".join(digests)).digest()


def key_id(public_key: bytes) -> str:
    """A writer key's id: the first 8 bytes of SHA-256 of its public key, in hex."""
    return hashlib.sha256(public_key).digest()[:8].hex()


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@dataclass(frozen=True)
class WriterSigner:
    """The appending process's Ed25519 key."""

    seed: bytes

    def __post_init__(self) -> None:
        key = Ed25519PrivateKey.from_private_bytes(self.seed)
        object.__setattr__(self, "_key", key)
        # Computed once: the append path seals on every call.
        object.__setattr__(self, "_kid", key_id(key.public_key().public_bytes_raw()))

    @property
    def public_key(self) -> bytes:
        """The raw 32-byte public key."""
        key: Ed25519PrivateKey = self._key  # type: ignore[attr-defined]
        return key.public_key().public_bytes_raw()

    @property
    def key_id(self) -> str:
        """This key's id."""
        kid: str = self._kid  # type: ignore[attr-defined]
        return kid

    def seal(self, digests: list[bytes]) -> list[dict[str, Any]]:
        """One seal per event of a batch: key id, index, the batch's digests and one signature over them."""
        key: Ed25519PrivateKey = self._key  # type: ignore[attr-defined]
        signature = _b64(key.sign(batch_message(digests)))
        batch = [_b64(d) for d in digests]
        kid = self.key_id
        return [{"kid": kid, "i": i, "batch": batch, "sig": signature} for i in range(len(digests))]


_SEAL_KEYS = {"batch", "i", "kid", "sig"}


def seal_form(seal: Any) -> bytes:
    """The RFC 8785 bytes of a stored seal (what a format 2 leaf commits to), written directly for a seal of the
    shape `WriterSigner.seal` makes (its keys sort as batch, i, kid, sig); any other value through `canonical`."""
    if type(seal) is dict and seal.keys() == _SEAL_KEYS:
        batch, index, kid, signature = seal["batch"], seal["i"], seal["kid"], seal["sig"]
        if (
            type(batch) is list
            and type(index) is int
            and type(kid) is str
            and type(signature) is str
            and all(type(d) is str for d in batch)
        ):
            return b"".join(
                (
                    b'{"batch":[', b",".join(map(canonical.string, batch)),
                    b'],"i":', canonical.integer(index),
                    b',"kid":', canonical.string(kid),
                    b',"sig":', canonical.string(signature),
                    b"}",
                )
            )  # fmt: skip
    return canonical.dumps(seal)


def public_key_text(public_key: bytes) -> str:
    """The published form of a writer key: '<key id>+<base64 public key>'."""
    return f"{key_id(public_key)}+{_b64(public_key)}"


def parse_public_key(text: str) -> bytes:
    """A writer public key from its published form (the key id must match)."""
    kid, _, encoded = text.strip().partition("+")
    try:
        raw = base64.b64decode(encoded, validate=True)
    except binascii.Error as exc:
        raise WriterKeyError(f"not a writer public key: {text!r}") from exc
    if len(raw) != 32 or key_id(raw) != kid:
        raise WriterKeyError(f"not a writer public key: {text!r}")
    return raw


def check_seal(seal: Any, digest: bytes, known: Mapping[str, bytes]) -> str | None:
    """Why a seal does not vouch for the event of this digest ('missing', 'unknown key', 'forged'); None if it does."""
    if not seal:
        return "missing"
    try:
        kid, index, batch, signature = seal["kid"], seal["i"], seal["batch"], seal["sig"]
        # binascii's strict mode refuses what b64decode(validate=True) does, in C: the regex check of the latter
        # was a tenth of the feeder's time per event.
        digests = [binascii.a2b_base64(d, strict_mode=True) for d in batch]
        raw_sig = binascii.a2b_base64(signature, strict_mode=True)
    except (KeyError, TypeError, binascii.Error):
        return "forged"
    public = known.get(kid)
    if public is None:
        return "unknown key"
    if not isinstance(index, int) or not 0 <= index < len(digests) or digests[index] != digest:
        return "forged"
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(raw_sig, batch_message(digests))
    except InvalidSignature:
        return "forged"
    return None


def load_or_create_seed(key_file: str | Path) -> bytes:
    """The writer seed from its file (base64 on one line), made with mode 0600 if missing."""
    try:
        return keyfile.read_or_create(key_file, 32, create=True)
    except ValueError as exc:
        raise WriterKeyError(f"{exc} (the writer key is a base64 32-byte Ed25519 seed)") from exc
