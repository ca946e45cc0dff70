"""Checkpoint key rotation (pure): the signed rotation statement, and the chain of keys a verifier follows.

A rotation statement is a C2SP signed note (shared/tlog/note.py) whose text is four lines:

    takedown-ledger-key-rotation/v1
    <origin>
    <new verifier key: name+hash+base64(0x01 || Ed25519 public key)>
    <from tree size: decimal>

signed by the key in force before it. It says: checkpoints of this origin with a tree size of at least
<from tree size> are signed by the new key; smaller ones by the keys before. The ledger makes one last checkpoint
with the old key at the current tree size N before it rotates, and names N + 1, so no tree size is ever signed by
both keys. The statement's first line can never parse as a checkpoint's origin-size-root (its second line names
an origin, not a size), and a checkpoint can never parse as a statement (its first line is not the tag).

The chain starts at a key the verifier already trusts (the first key, pinned when the ledger was created; or any
later key of the chain, for a verifier that pinned it after a rotation). From there it follows each statement in
order: a statement must be signed by the key in force, name the same origin and key name, and name a strictly
larger from size than the one before. A checkpoint verifies only with the key that the chain puts in force at its
tree size: a checkpoint signed by any other key, in the chain or not, is refused.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from shared.tlog.note import NoteError, NoteSigner, Verifier, check_key_name, open_note, parse_verifier_key

TAG = "takedown-ledger-key-rotation/v1"
_DECIMAL = re.compile(r"0|[1-9][0-9]*")


class RotationError(NoteError):
    """A rotation statement that is malformed, not signed by the key in force, or out of order."""

    def __init__(self, index: int, detail: str) -> None:
        self.index = index
        super().__init__(f"key rotation {index + 1}: {detail}")


@dataclass(frozen=True)
class Rotation:
    """What a rotation statement states."""

    origin: str
    new_key: Verifier
    from_size: int

    def text(self) -> str:
        """The statement's text, exactly as signed."""
        return f"{TAG}\n{self.origin}\n{self.new_key.verifier_key}\n{self.from_size}\n"


def parse_rotation(text: str) -> Rotation:
    """Parse a rotation statement's text (strictly: four lines, each as the format says)."""
    lines = text.split("\n")
    if len(lines) != 5 or lines[-1] != "" or lines[0] != TAG:
        raise NoteError(f"a rotation statement is '{TAG}', an origin, a verifier key and a tree size, one a line")
    origin, key, size = lines[1], lines[2], lines[3]
    check_key_name(origin)
    if not _DECIMAL.fullmatch(size):
        raise NoteError(f"a tree size is a decimal number without leading zeros: {size!r}")
    return Rotation(origin, parse_verifier_key(key), int(size))


def sign_rotation(old: NoteSigner, origin: str, new_key: Verifier, from_size: int) -> str:
    """The rotation statement, signed by the old key."""
    if new_key.name != old.name:
        raise NoteError("a rotated key keeps the key name")
    return old.sign(Rotation(check_key_name(origin), new_key, from_size).text())


@dataclass(frozen=True)
class KeyChain:
    """The checkpoint keys in force, each from a tree size: ((from size, key), ...), from sizes ascending."""

    keys: tuple[tuple[int, Verifier], ...]

    @classmethod
    def single(cls, key: Verifier) -> KeyChain:
        """A chain of one key, in force from the empty tree."""
        return cls(((0, key),))

    @property
    def current(self) -> Verifier:
        """The key in force now (the last one)."""
        return self.keys[-1][1]

    @property
    def first_size(self) -> int:
        """The smallest tree size this chain can verify a checkpoint of."""
        return self.keys[0][0]

    def key_for(self, tree_size: int) -> Verifier | None:
        """The key that must have signed the checkpoint of this tree size (None: before this chain's first key)."""
        found: Verifier | None = None
        for start, key in self.keys:
            if tree_size >= start:
                found = key
        return found


def follow(trusted: Verifier, origin: str, statements: Sequence[str]) -> KeyChain:
    """The chain from a trusted key through the signed rotation statements; RotationError at the first bad one.

    If the trusted key is the new key of a statement, the chain starts there (the statements before it are the
    past of a key the verifier chose to trust).
    """
    start, keys = 0, [(0, trusted)]
    for n, note in enumerate(statements):
        try:
            named = parse_rotation(_text_of(note))
        except NoteError:
            continue
        if named.new_key == trusted:
            start, keys = n + 1, [(named.from_size, trusted)]
    for n in range(start, len(statements)):
        in_force = keys[-1]
        try:
            rotation = parse_rotation(open_note(statements[n], in_force[1]))
        except NoteError as exc:
            raise RotationError(n, str(exc)) from exc
        if rotation.origin != origin:
            raise RotationError(n, f"the statement is of {rotation.origin!r}, not {origin!r}")
        if rotation.new_key.name != trusted.name:
            raise RotationError(n, f"the new key is named {rotation.new_key.name!r}, not {trusted.name!r}")
        if rotation.from_size <= in_force[0]:
            raise RotationError(n, f"from tree size {rotation.from_size} is not after {in_force[0]}")
        keys.append((rotation.from_size, rotation.new_key))
    return KeyChain(tuple(keys))


def follow_valid(trusted: Verifier, origin: str, statements: Sequence[str]) -> tuple[KeyChain, RotationError | None]:
    """`follow` as far as the statements are good: the chain up to the first bad one, and that one's error."""
    try:
        return follow(trusted, origin, statements), None
    except RotationError as exc:
        return follow(trusted, origin, statements[: exc.index]), exc


def _text_of(note: str) -> str:
    """A note's text without checking any signature (only to find where a trusted key entered the chain)."""
    split = note.rfind("\n\n")
    return note[: split + 1] if split >= 0 else note
