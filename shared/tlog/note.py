"""C2SP signed notes and checkpoints (pure): Ed25519 note signatures, verifier keys, checkpoint bodies.

A checkpoint body is "<origin>\\n<tree size>\\n<base64 root hash>\\n" (c2sp.org/tlog-checkpoint). A signed note is
the body, a blank line, and one line per signature: "— <key name> <base64(key hash || signature)>\\n", where the
key hash is the first 4 bytes of SHA-256(<key name> || "\\n" || 0x01 || <Ed25519 public key>) and the signature
is Ed25519 over the body's bytes (c2sp.org/signed-note, golang.org/x/mod/sumdb/note). The verifier key that
clients pin is "<key name>+<key hash as 8 hex digits>+<base64(0x01 || public key)>". Parsing is strict: base64
must be canonical and every byte of the note must be accounted for, so that any change to a note is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ED25519 = 0x01
SIGNATURE_PREFIX = "— "  # U+2014 EM DASH, then a space
_NAME = re.compile(r"[^\s+]+")  # a key name: non-empty, no whitespace, no '+'
_DECIMAL = re.compile(r"0|[1-9][0-9]*")


class NoteError(ValueError):
    """A note, checkpoint or key that is malformed or whose signature does not verify."""


def b64decode_strict(text: str) -> bytes:
    """Standard base64 with padding, refusing any other spelling of the same bytes."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise NoteError(f"not base64: {text!r}") from exc
    if base64.b64encode(raw).decode("ascii") != text:
        # The unused low bits of the last character could otherwise carry a change the bytes do not show.
        raise NoteError(f"non-canonical base64: {text!r}")
    return raw


def key_hash(name: str, public_key: bytes) -> bytes:
    """The 4-byte key hash of an Ed25519 note key."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([ED25519]) + public_key).digest()[:4]


def check_key_name(name: str) -> str:
    """A key name or origin usable in a note: non-empty, no whitespace, no '+'."""
    if not _NAME.fullmatch(name):
        raise NoteError(f"a key name needs at least one character and no spaces or '+': {name!r}")
    return name


@dataclass(frozen=True)
class Verifier:
    """A note verifier: a key name and its Ed25519 public key."""

    name: str
    public_key: bytes

    @property
    def key_hash(self) -> bytes:
        """The 4-byte key hash."""
        return key_hash(self.name, self.public_key)

    @property
    def verifier_key(self) -> str:
        """The verifier key text clients pin: name+hash+base64(0x01||key)."""
        encoded = base64.b64encode(bytes([ED25519]) + self.public_key).decode()
        return f"{self.name}+{self.key_hash.hex()}+{encoded}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Whether the signature is this key's over the message."""
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except InvalidSignature:
            return False
        return True


def parse_verifier_key(text: str) -> Verifier:
    """Parse "name+hash+base64(0x01||key)", checking the hash against the key."""
    name, public_key, given = split_vkey(text, ED25519)
    verifier = Verifier(name, public_key)
    if given != verifier.key_hash:
        raise NoteError("the verifier key's hash does not match its name and key")
    return verifier


def split_vkey(text: str, algorithm: int) -> tuple[str, bytes, bytes]:
    """A C2SP vkey "name+<8 hex digits>+base64(algorithm||32-byte Ed25519 key)" as (name, key, the stated hash);
    the caller checks the hash, which each key type computes its own way."""
    parts = text.strip().split("+", 2)  # the base64 key may hold '+' itself; the name may not
    if len(parts) != 3:
        raise NoteError("a verifier key is name+hash+key")
    name, hash_hex, encoded = parts
    check_key_name(name)
    raw = b64decode_strict(encoded)
    if len(raw) != 33 or raw[0] != algorithm:
        raise NoteError(f"expected an Ed25519 key of type 0x{algorithm:02x} (32 bytes)")
    if not re.fullmatch(r"[0-9a-f]{8}", hash_hex):
        raise NoteError("a verifier key's hash is 8 hex digits")
    return name, raw[1:], bytes.fromhex(hash_hex)


class NoteSigner:
    """An Ed25519 note signer (the private key never leaves this object)."""

    def __init__(self, name: str, seed: bytes) -> None:
        check_key_name(name)
        if len(seed) != 32:
            raise NoteError("an Ed25519 seed is 32 bytes")
        self.name = name
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        self.verifier = Verifier(name, self._key.public_key().public_bytes_raw())

    def sign(self, text: str) -> str:
        """The signed note: the text, a blank line, this key's signature line."""
        if not text.endswith("\n"):
            raise NoteError("a note's text ends with a newline")
        signature = self._key.sign(text.encode())
        blob = base64.b64encode(self.verifier.key_hash + signature).decode()
        return f"{text}\n{SIGNATURE_PREFIX}{self.name} {blob}\n"


def split_note(note: str | bytes) -> tuple[str, list[tuple[str, bytes]]]:
    """A note's text and its signature lines as (key name, raw key hash || signature); NoteError if malformed.

    Every byte is accounted for: a line that is not a well-formed signature refuses the whole note.
    """
    if isinstance(note, bytes):
        try:
            note = note.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise NoteError("a note is UTF-8") from exc
    if not note.endswith("\n"):
        raise NoteError("a note ends with a newline")
    split = note.rfind("\n\n")
    if split < 0:
        raise NoteError("a note has a blank line before its signatures")
    text, block = note[: split + 1], note[split + 2 :]
    if any(ch < " " and ch != "\n" for ch in note):
        raise NoteError("a note holds no control characters other than newlines")
    signatures: list[tuple[str, bytes]] = []
    for line in block[:-1].split("\n"):
        if not line.startswith(SIGNATURE_PREFIX):
            raise NoteError(f"not a signature line: {line!r}")
        name, space, blob = line[len(SIGNATURE_PREFIX) :].partition(" ")
        if not space or not _NAME.fullmatch(name) or " " in blob:
            raise NoteError(f"malformed signature line: {line!r}")
        raw = b64decode_strict(blob)
        if len(raw) < 5:
            raise NoteError("a signature is a 4-byte key hash and at least one byte")
        signatures.append((name, raw))
    return text, signatures


def open_note(note: str | bytes, verifier: Verifier) -> str:
    """The text of a note that carries a valid signature by this verifier; NoteError otherwise.

    Signatures by other keys are ignored (a note may be cosigned); a line that claims our key but does not verify,
    or any line that is not a well-formed signature, refuses the whole note.
    """
    text, signatures = split_note(note)
    found = False
    for name, raw in signatures:
        if name != verifier.name or raw[:4] != verifier.key_hash:
            continue
        if len(raw) != 4 + 64 or not verifier.verify(text.encode(), raw[4:]):
            raise NoteError(f"the signature of {name} does not verify")
        found = True
    if not found:
        raise NoteError(f"the note carries no signature by {verifier.name}")
    return text


# ----------------------------------------------------------------------------------------------- checkpoints


@dataclass(frozen=True)
class CheckpointBody:
    """The signed statement: this origin's log had `size` leaves with this root."""

    origin: str
    size: int
    root: bytes

    def text(self) -> str:
        """The checkpoint body, exactly as signed."""
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n"


def parse_checkpoint(text: str) -> CheckpointBody:
    """Parse a checkpoint body (extension lines after the root are allowed and ignored)."""
    lines = text.split("\n")
    if len(lines) < 4 or lines[-1] != "":
        raise NoteError("a checkpoint has an origin, a size and a root, each on its own line")
    origin, size, root = lines[0], lines[1], lines[2]
    if not origin:
        raise NoteError("a checkpoint names its origin")
    if not _DECIMAL.fullmatch(size):
        raise NoteError(f"a tree size is a decimal number without leading zeros: {size!r}")
    raw = b64decode_strict(root)
    if len(raw) != 32:
        raise NoteError("a checkpoint root is a SHA-256 hash")
    return CheckpointBody(origin, int(size), raw)


def sign_checkpoint(body: CheckpointBody, signer: NoteSigner) -> str:
    """The signed checkpoint note."""
    check_key_name(body.origin)
    return signer.sign(body.text())


def open_checkpoint(note: str | bytes, verifier: Verifier, origin: str) -> CheckpointBody:
    """Verify a signed checkpoint of this origin and return what it states."""
    body = parse_checkpoint(open_note(note, verifier))
    if body.origin != origin:
        raise NoteError(f"the checkpoint is of {body.origin!r}, not {origin!r}")
    return body
