"""The feeder's screen: reads what the admission checks need (seals, stream versions, decisions) and applies them.

The checks themselves are pure (services/ledger/admission.py); this module only reads, in the caller's
transaction, and never commits. The feeder, /readyz and `verify` screen events through the same `Intake.screen`,
so what the feeder refuses is exactly what they report.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson
from sqlalchemy import Connection, select

from services.ledger.admission import Decision, decision_leaf, decision_text, refusal
from services.ledger.identity import leaf_formats, read_identity, stored_keys
from services.ledger.leaf import V2, LeafFormats, leaf_hash
from services.ledger.rotation import KeyChain, follow_valid
from services.ledger.tables import ledger_checkpoints, ledger_quarantine
from shared import canonical
from shared.eventstore import EventStore, RecordedEvent
from shared.tlog.note import NoteError, Verifier, open_note

log = logging.getLogger("takedown.ledger")

# The time of the last checkpoint signed before the event at a position was fed (None: there was none).
CheckpointBefore = Callable[[int], datetime | None]


@dataclass(frozen=True)
class Verdict:
    """What becomes of the event at one position: the leaf it gets, or why it is refused."""

    position: int
    leaf: bytes | None  # the event's leaf, or the decision's for a quarantined event; None when refused
    refusal: str | None
    decision: Decision | None = None


@dataclass(frozen=True)
class Refusal:
    """The event the feeder stopped at, and why."""

    position: int
    reason: str
    event_id: str
    stream_id: str


@dataclass(frozen=True)
class BatchContext:
    """What screening a batch reads besides its events, in one or two statements: the leaf formats, each of its
    streams' version before it, whether a quarantine decision falls in it, and when the newest checkpoint was signed."""

    formats: LeafFormats
    versions: dict[str, int]
    any_decision: bool
    latest_checkpoint_at: datetime | None


# PostgreSQL: the batch's ledger reads in one statement whose text never changes (prepared once).
_PG_CONTEXT = """
    SELECT (SELECT created_at FROM ledger_checkpoints ORDER BY tree_size DESC LIMIT 1),
           (SELECT json_agg(json_build_array(from_size, format) ORDER BY format) FROM ledger_leaf_formats)::text,
           EXISTS (SELECT 1 FROM ledger_quarantine WHERE position > %(after)s AND position <= %(upto)s)
"""


def batch_context(conn: Connection, store: EventStore, events: Sequence[RecordedEvent]) -> BatchContext:
    """The reads `Intake.screen` needs for these consecutive sequenced events (at least one), in the caller's
    transaction: the feeder reads them after locking the head, so no checkpoint is signed until it commits."""
    first, last = events[0].position or 0, events[-1].position or 0
    versions = store.versions_before(conn, sorted({e.stream_id for e in events}), first - 1)
    if conn.dialect.name != "postgresql":
        return BatchContext(
            leaf_formats(conn),
            versions,
            conn.execute(
                select(ledger_quarantine.c.position)
                .where(ledger_quarantine.c.position > first - 1, ledger_quarantine.c.position <= last)
                .limit(1)
            ).first()
            is not None,
            latest_checkpoint_time(conn),
        )
    at, formats, any_decision = conn.exec_driver_sql(_PG_CONTEXT, {"after": first - 1, "upto": last}).one()
    switches = tuple((int(size), int(fmt)) for size, fmt in orjson.loads(formats or "[]"))
    return BatchContext(
        LeafFormats(switches), versions, bool(any_decision), at.astimezone(UTC) if at is not None else None
    )


@dataclass(frozen=True)
class StoredDecision:
    """A quarantine row as stored, with whether its note is a valid signature by a checkpoint key over it."""

    decision: Decision
    note: str
    signed: bool


class Intake:
    """The admission policy: the known writer keys and the maximum lag.

    A quarantine decision counts only if the checkpoint key in force at its position signed it: the key of a
    chain followed through signed rotation statements, from the key `verify` was told to trust or, for the
    feeder, from the ledger's first stored key. A key row written into the table without a statement signed by
    the key before it is not in that chain.
    """

    def __init__(self, known: Mapping[str, bytes], max_lag: timedelta) -> None:
        self.known, self.max_lag = dict(known), max_lag

    def decisions(
        self, conn: Connection, after: int = 0, upto: int | None = None, chain: KeyChain | None = None
    ) -> list[StoredDecision]:
        """The quarantine decisions at positions after..upto, each with its signature checked against `chain`
        (default: the chain followed from the first stored key)."""
        stmt = select(ledger_quarantine).where(ledger_quarantine.c.position > after)
        if upto is not None:
            stmt = stmt.where(ledger_quarantine.c.position <= upto)
        identity = read_identity(conn)
        origin = identity.origin if identity is not None else ""
        if chain is None:
            chain = followed_chain(conn, origin)
        found = []
        for row in conn.execute(stmt.order_by(ledger_quarantine.c.position)):
            decision = Decision(
                position=int(row.position),
                event_id=row.event_id,
                event_leaf=bytes(row.event_leaf),
                fault=row.fault,
                reason=row.reason,
                decided_at=row.decided_at,
            )
            # Decided with the tree at position - 1: the key in force for that size, or the next one's (a rotation
            # at exactly that size).
            keys = [k for k in (chain.key_for(decision.position - 1), chain.key_for(decision.position)) if k]
            found.append(StoredDecision(decision, row.note, signed(decision, row.note, keys, origin)))
        return found

    def screen(
        self,
        conn: Connection,
        store: EventStore,
        events: Sequence[RecordedEvent],
        checkpoint_before: CheckpointBefore,
        chain: KeyChain | None = None,
        context: BatchContext | None = None,
    ) -> list[Verdict]:
        """The verdict on each of these consecutive sequenced events, read with their seals (`read_all(seals=True)`).

        A few reads for the whole batch (`batch_context`, unless the caller read it); each leaf in the format its
        index was assigned (services/ledger/leaf.py). The admission checks hold from leaf format 2 on, the release
        that brought them: a format 1 leaf was fed before and is checked by the tree alone.
        """
        if not events:
            return []
        first, last = events[0].position or 0, events[-1].position or 0
        if context is None:
            context = batch_context(conn, store, events)
        formats, versions = context.formats, dict(context.versions)
        # Only a decision the checkpoint key signed counts: a row slipped into the table sets nothing aside. The
        # key chain is read only for a batch that holds a decision.
        decided = (
            {d.decision.position: d.decision for d in self.decisions(conn, first - 1, last, chain) if d.signed}
            if context.any_decision
            else {}
        )
        verdicts = []
        for event in events:
            position = event.position or 0
            fmt = formats.at(position - 1)
            forms = (canonical.dumps(event.data), canonical.dumps(event.meta))  # once, for the seal and the leaf
            leaf = leaf_hash(event, fmt, forms)
            if fmt < V2:  # fed before the admission checks existed: the tree alone vouches for it
                verdicts.append(Verdict(position, leaf, None))
            else:
                why = refusal(
                    event,
                    event.seal,
                    versions.get(event.stream_id, 0),
                    self.known,
                    checkpoint_before(position),
                    self.max_lag,
                    forms,
                )
                decision = decided.get(position)
                # A decision sets aside only the refused event it names: never one the checks admit.
                if why and decision and decision.event_id == event.event_id and decision.event_leaf == leaf:
                    verdicts.append(Verdict(position, decision_leaf(decision), None, decision))
                else:
                    verdicts.append(Verdict(position, None if why else leaf, why))
            # A refused or quarantined event still holds its version: the writer appends after it.
            versions[event.stream_id] = max(versions.get(event.stream_id, 0), event.version)
        return verdicts

    def next_refusal(self, conn: Connection, store: EventStore, tree_size: int) -> Refusal | None:
        """Why the feeder refuses the event after the tree (None: it is admitted, or there is none yet)."""
        events = store.read_all(conn, after=tree_size, limit=1, seals=True)
        if not events or events[0].position != tree_size + 1:
            return None
        at = latest_checkpoint_time(conn)
        verdict = self.screen(conn, store, events, lambda _: at)[0]
        if verdict.refusal is None:
            return None
        return Refusal(verdict.position, verdict.refusal, events[0].event_id, events[0].stream_id)


def followed_chain(conn: Connection, origin: str) -> KeyChain:
    """The stored checkpoint keys that signed rotation statements lead to, from the first stored key."""
    keys = stored_keys(conn)
    if not keys:
        return KeyChain(())
    statements = [k.statement for k in keys if k.statement is not None]
    return follow_valid(keys[0].verifier, origin, statements)[0]  # `verify` names a bad statement


def signed(decision: Decision, note: str, keys: Sequence[Verifier], origin: str) -> bool:
    """True if the note is a signature by one of these checkpoint keys over exactly this decision."""
    text = decision_text(origin, decision)
    for verifier in keys:
        try:
            if open_note(note, verifier) == text:
                return True
        except NoteError:
            continue
    return False


def latest_checkpoint_time(conn: Connection) -> datetime | None:
    """When the newest checkpoint was signed (None before the first)."""
    stmt = select(ledger_checkpoints.c.created_at).order_by(ledger_checkpoints.c.tree_size.desc()).limit(1)
    at: datetime | None = conn.execute(stmt).scalar()
    return at


def record_decision(conn: Connection, decision: Decision, note: str) -> None:
    """Store a signed quarantine decision (one per position: a second one for the same position is refused)."""
    values = decision.fields() | {"event_leaf": decision.event_leaf, "decided_at": decision.decided_at, "note": note}
    conn.execute(ledger_quarantine.insert().values(values))
