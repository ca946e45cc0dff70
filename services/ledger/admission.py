"""What the feeder admits into the tree, and the operator's signed decision to set a refused event aside (pure).

An event enters the tree only if (a) its seal verifies against a known writer key, (b) its stream version is the
previous one in its stream (at an earlier position) plus one, the first being 1, and (c) it was not recorded more
than the feeder's maximum lag before the last checkpoint signed before it was fed. Otherwise the feeder stops at
it until an operator quarantines it: a decision signed by the checkpoint key. The quarantined position keeps its
place in the tree, as a leaf that commits to the decision instead of the event, so leaf index = position - 1 still
holds for every other event and their proofs and bundles are unchanged.
"""

from __future__ import annotations

import base64
import binascii
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import rfc8785

from services.ledger.leaf import StoredEvent, rfc3339_utc
from shared import canonical
from shared.eventstore.writer import check_seal, event_digest, event_form
from shared.tlog.merkle import leaf_hash as hash_leaf_bytes

FORGED, MISSING, UNKNOWN_KEY = "forged", "missing", "unknown key"
GAP, BACKDATED = "gap", "backdated"
# What only `verify` finds: an event in the tree whose leaf no longer matches, a tree position without its event.
CHANGED, DELETED = "changed", "deleted"

# Signed decisions are notes (the checkpoint key's format) whose first line names what they are.
DECISION_HEADER = "takedown-ledger-quarantine/1"


class SealedEvent(StoredEvent, Protocol):
    """An event with what its writer signed beyond the leaf (`shared.eventstore.RecordedEvent` has it)."""

    @property
    def meta(self) -> dict[str, Any]: ...


def refusal(
    event: SealedEvent,
    seal: Any,
    previous_version: int,
    known: Mapping[str, bytes],
    last_checkpoint_at: datetime | None,
    max_lag: timedelta,
    forms: tuple[bytes, bytes] | None = None,
) -> str | None:
    """Why the feeder must not put this event into the tree (forged, missing, unknown key, gap, backdated); or None.

    `forms`: the canonical bytes of the event's data and meta, if the caller has them (they are most of the cost).
    """
    data, meta = forms or (canonical.dumps(event.data), canonical.dumps(event.meta))
    digest = event_digest(
        event_form(event.event_id, event.stream_id, event.version, event.type, event.schema_version, data, meta,
                   event.recorded_at)
    )  # fmt: skip
    why = _seal_refusal(seal, digest, known)
    if why is not None:
        return why
    if event.version != previous_version + 1:
        return GAP
    if last_checkpoint_at is not None and event.recorded_at < last_checkpoint_at - max_lag:
        return BACKDATED
    return None


def _seal_refusal(seal: Any, digest: bytes, known: Mapping[str, bytes]) -> str | None:
    """`check_seal`, with each batch's signature verified once: the events of one append call share it."""
    try:
        kid, index, batch, signature = seal["kid"], seal["i"], seal["batch"], seal["sig"]
    except (KeyError, TypeError):
        return check_seal(seal, digest, known)
    public = known.get(kid) if isinstance(kid, str) else None
    well_formed = isinstance(batch, list) and all(isinstance(d, str) for d in batch) and isinstance(signature, str)
    if (
        public is None
        or not well_formed
        or not isinstance(index, int)
        or not 0 <= index < len(batch)
        or batch[index] != base64.b64encode(digest).decode()
    ):
        return check_seal(seal, digest, known)  # whatever is wrong, named as `check_seal` names it
    return None if _batch_signed(public, signature, tuple(batch)) else FORGED


@functools.lru_cache(maxsize=4096)
def _batch_signed(public: bytes, signature: str, batch: tuple[str, ...]) -> bool:
    """Whether `signature` is the writer's over this batch of digests (pure, so its answer is kept)."""
    try:
        first = binascii.a2b_base64(batch[0], strict_mode=True)
    except (binascii.Error, IndexError):
        return False
    return check_seal({"kid": "k", "i": 0, "batch": list(batch), "sig": signature}, first, {"k": public}) is None


@dataclass(frozen=True)
class Decision:
    """An operator's decision to keep the event at `position` out of the tree: what was refused, why, and when."""

    position: int
    event_id: str
    event_leaf: bytes  # the refused event's leaf hash when decided: the decision holds for that content only
    fault: str  # what the feeder detected
    reason: str  # what the operator wrote
    decided_at: datetime

    def fields(self) -> dict[str, Any]:
        """The decision as JSON fields (what is signed, logged and committed to in the tree)."""
        return {
            "position": self.position,
            "event_id": self.event_id,
            "event_leaf": base64.b64encode(self.event_leaf).decode(),
            "fault": self.fault,
            "reason": self.reason,
            "decided_at": rfc3339_utc(self.decided_at),
        }


def decision_text(origin: str, decision: Decision) -> str:
    """The note text the checkpoint key signs: header, the ledger's origin, the RFC 8785 JSON of the decision."""
    return f"{DECISION_HEADER}\n{origin}\n{rfc8785.dumps(decision.fields()).decode()}\n"


def decision_leaf(decision: Decision) -> bytes:
    """The leaf hash a quarantined position holds: RFC 9162 leaf of {"quarantined": decision} (never an envelope)."""
    return hash_leaf_bytes(rfc8785.dumps({"quarantined": decision.fields()}))
