"""A verifier's witness policy (pure): which cosigners it pins and how many must have cosigned a checkpoint.

A checkpoint counts only with `quorum` valid cosignature/v1 lines from distinct pinned witnesses
(c2sp.org/tlog-cosignature); their times bound, from outside the log, when the tree was that size.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from shared.tlog.cosignature import CosignatureVerifier, cosignatures, parse_cosigner_vkey
from shared.tlog.note import NoteError


class PolicyError(ValueError):
    """A witness given to a verifier that cannot be used (malformed NAME=VKEY, a quorum out of range)."""


@dataclass(frozen=True)
class WitnessPolicy:
    """What a verifier requires of a checkpoint: `quorum` valid cosignatures from distinct pinned witnesses."""

    witnesses: tuple[CosignatureVerifier, ...] = ()
    quorum: int = 0

    @property
    def names(self) -> str:
        """The pinned witnesses' names, for messages."""
        return ", ".join(w.name for w in self.witnesses) or "none"

    def counted(self, note: str) -> dict[str, int]:
        """The pinned witnesses whose cosignature of this note verifies: name -> the time it states."""
        try:
            return cosignatures(note, list(self.witnesses))
        except NoteError:
            return {}

    def problem(self, note: str, what: str) -> str | None:
        """Why this note does not count (fewer than `quorum` valid cosignatures), or None if it does."""
        if self.quorum == 0:
            return None
        found = self.counted(note)
        if len(found) >= self.quorum:
            return None
        have = ", ".join(sorted(found)) or "none"
        return (
            f"{what}: {len(found)} valid cosignatures of the {self.quorum} required from the pinned witnesses"
            f" ({self.names}); valid: {have}"
        )

    def witnessed_at(self, note: str) -> int | None:
        """The time at least `quorum` pinned witnesses state they saw this checkpoint by (None if it does not count).

        The quorum-th latest of the cosignatures' times: that many witnesses say the tree was this size by then.
        """
        if self.quorum == 0:
            return None
        times = sorted(self.counted(note).values(), reverse=True)
        return times[self.quorum - 1] if len(times) >= self.quorum else None


def parse_policy(pinned: Iterable[str], quorum: int | None) -> WitnessPolicy:
    """A policy from `--witness NAME=VKEY` (repeatable) and `--quorum K` (default: all given, 0 when none)."""
    verifiers: dict[str, CosignatureVerifier] = {}
    for given in pinned:
        name, sep, vkey = given.partition("=")
        if not sep:
            raise PolicyError(f"--witness is NAME=VKEY: {given!r}")
        try:
            verifier = parse_cosigner_vkey(vkey)
        except NoteError as exc:
            raise PolicyError(f"--witness {name}: {exc}") from exc
        if verifier.name != name:
            raise PolicyError(f"--witness {name}: the key names {verifier.name!r}")
        if name in verifiers and verifiers[name] != verifier:
            raise PolicyError(f"--witness {name}: given twice with different keys")
        verifiers[name] = verifier
    k = len(verifiers) if quorum is None else quorum
    if not 0 <= k <= len(verifiers):
        raise PolicyError(f"--quorum {k}: between 0 and the {len(verifiers)} witnesses given")
    return WitnessPolicy(tuple(verifiers.values()), k)
