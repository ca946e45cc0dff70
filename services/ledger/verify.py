"""Verification of the whole store: recompute every leaf, rebuild the tree, compare every stored node and checkpoint."""

from __future__ import annotations

import bisect
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, and_, select

from services.ledger import tree
from services.ledger.admission import BACKDATED, CHANGED, DELETED, FORGED, GAP, MISSING, UNKNOWN_KEY
from services.ledger.checkpoints import Checkpoint, all_checkpoints
from services.ledger.identity import leaf_formats
from services.ledger.intake import Intake
from services.ledger.leaf import leaf_hash
from services.ledger.rotation import KeyChain
from services.ledger.tables import ledger_nodes
from services.ledger.witnessing import cosignature_lines, cosigned
from shared.eventstore import EventStore
from shared.tlog import merkle
from shared.tlog.note import NoteError, Verifier, open_checkpoint
from shared.tlog.policy import WitnessPolicy


@dataclass(frozen=True)
class BadPosition:
    """One position that fails, and why (forged, missing, unknown key, gap, backdated, changed, deleted)."""

    position: int
    reason: str
    detail: str


@dataclass(frozen=True)
class QuarantinedPosition:
    """A position an operator set aside: the decision, and whether the checkpoint key signed it."""

    position: int
    event_id: str
    fault: str
    reason: str
    decided_at: str
    signed: bool


@dataclass
class VerifyReport:
    """What `verify_ledger` found: every bad position with its reason, the quarantined ones, every problem."""

    tree_size: int = 0
    events_checked: int = 0
    nodes_checked: int = 0
    checkpoints_checked: int = 0
    pending_events: int = 0
    first_bad_position: int | None = None
    problems: list[str] = field(default_factory=list)
    trusted_key: str | None = None  # the key the chain was followed from
    keys_followed: int = 1  # how many keys that chain holds
    bad_positions: list[BadPosition] = field(default_factory=list)
    quarantined: list[QuarantinedPosition] = field(default_factory=list)
    quorum: int = 0  # the cosignatures a checkpoint needs to count (0: witnesses not checked)
    witnessed_size: int | None = None  # the largest checkpoint that counts under the witness policy

    @property
    def ok(self) -> bool:
        """True when nothing failed."""
        return not self.problems

    def bad(self, position: int | None, problem: str) -> None:
        """Record a problem (the first position named is kept)."""
        if position is not None and (self.first_bad_position is None or position < self.first_bad_position):
            self.first_bad_position = position
        self.problems.append(problem)

    def fault(self, position: int, reason: str, detail: str) -> None:
        """Record a bad position with its reason."""
        self.bad_positions.append(BadPosition(position, reason, detail))
        self.bad(position, f"position {position}: {reason}: {detail}")

    def as_json(self) -> dict[str, Any]:
        """The report as a JSON object (`takedown ledger verify --json`)."""
        return {
            "ok": self.ok,
            "tree_size": self.tree_size,
            "events_checked": self.events_checked,
            "nodes_checked": self.nodes_checked,
            "checkpoints_checked": self.checkpoints_checked,
            "pending_events": self.pending_events,
            "first_bad_position": self.first_bad_position,
            "bad_positions": [asdict(b) for b in sorted(self.bad_positions, key=lambda b: b.position)],
            "quarantined": [asdict(q) for q in self.quarantined],
            "quorum": self.quorum,
            "witnessed_size": self.witnessed_size,
            "problems": self.problems,
        }


_SCREENED = {
    FORGED: "its writer seal does not verify",
    MISSING: "it has no writer seal",
    UNKNOWN_KEY: "its writer seal names a key the ledger does not know",
    GAP: "its stream version is not the previous one plus one",
    BACKDATED: "it was recorded more than the maximum lag before the last checkpoint signed before it",
}


def _stored_nodes(conn: Connection, made: list[tuple[int, int, bytes]]) -> dict[merkle.Node, bytes]:
    """The stored counterparts of freshly rebuilt nodes: one range query per level."""
    spans: dict[int, tuple[int, int]] = {}
    for level, idx, _ in made:
        lo, hi = spans.get(level, (idx, idx))
        spans[level] = (min(lo, idx), max(hi, idx))
    found: dict[merkle.Node, bytes] = {}
    for level, (lo, hi) in spans.items():
        rows = conn.execute(
            select(ledger_nodes.c.idx, ledger_nodes.c.hash).where(
                and_(ledger_nodes.c.level == level, ledger_nodes.c.idx.between(lo, hi))
            )
        )
        found.update({(level, int(r.idx)): bytes(r.hash) for r in rows})
    return found


def _compare(conn: Connection, made: list[tuple[int, int, bytes]], bad_leaves: list[int], report: VerifyReport) -> None:
    """Compare rebuilt nodes with the stored ones: a leaf that differs is a changed position; a node above is named
    only when every leaf under it matched (else the leaf already explains it)."""
    stored = _stored_nodes(conn, made)
    for level, idx, rebuilt in made:
        report.nodes_checked += 1
        if stored.get((level, idx)) == rebuilt:
            continue
        first, last = (idx << level) + 1, (idx + 1) << level
        if level == 0:
            what = "missing from the ledger" if (0, idx) not in stored else "not the event the ledger recorded"
            report.fault(first, CHANGED, f"the stored event is {what} (its leaf hash differs)")
            bisect.insort(bad_leaves, first)
            continue
        at = bisect.bisect_left(bad_leaves, first)
        if at < len(bad_leaves) and bad_leaves[at] <= last:
            continue
        report.bad(first, f"ledger node ({level}, {idx}) over positions {first}..{last} differs from the rebuilt tree")


def verify_ledger(
    conn: Connection,
    store: EventStore,
    verifier: Verifier | KeyChain,
    origin: str,
    intake: Intake,
    batch: int = 5000,
    witnesses: WitnessPolicy | None = None,
) -> VerifyReport:
    """Check every event against the tree and the admission checks, every quarantine decision against its
    signature, and every checkpoint against its signature and the rebuilt roots; report every bad position.

    Each checkpoint must be signed by the key the chain puts in force at its tree size (services/ledger/rotation.py);
    each leaf is recomputed in the format it was written in (services/ledger/leaf.py). With a witness policy, the
    newest checkpoint must carry the quorum of cosignatures, and an event recorded earlier than the time a checkpoint
    that does not hold it was cosigned (minus the maximum lag) is reported backdated.
    """
    report = VerifyReport()
    policy = witnesses or WitnessPolicy()
    report.quorum = policy.quorum
    chain = verifier if isinstance(verifier, KeyChain) else KeyChain.single(verifier)
    formats = leaf_formats(conn)
    # Checkpoints before the head: a checkpoint made meanwhile is then never beyond the head read next.
    checkpoints = all_checkpoints(conn)
    current = tree.head(conn)
    report.tree_size = current.size
    roots: dict[int, list[tuple[int, bytes]]] = {}
    for cp in checkpoints:
        report.checkpoints_checked += 1
        key = chain.key_for(cp.tree_size)
        if key is None:
            report.bad(None, f"checkpoint at tree size {cp.tree_size}: before the trusted key's first tree size")
            continue
        try:
            body = open_checkpoint(cp.note, key, origin)
        except NoteError as exc:
            report.bad(None, f"checkpoint at tree size {cp.tree_size}: {exc}")
            continue
        if body.size != cp.tree_size or body.root != cp.root:
            report.bad(None, f"checkpoint at tree size {cp.tree_size}: its stored size or root differ from its note")
        if body.size > current.size:
            report.bad(None, f"checkpoint at tree size {body.size} is beyond the ledger's {current.size} leaves")
            continue
        roots.setdefault(body.size, []).append((cp.tree_size, body.root))
    sizes = [cp.tree_size for cp in checkpoints]
    # (tree size, time the quorum says it was cosigned by), for the checkpoints that count.
    witnessed = _witnessed(conn, checkpoints, policy, report)

    def checkpoint_before(position: int) -> datetime | None:
        # The checkpoint of the largest tree not holding `position` yet: the last one signed before it was fed
        # (beyond the tree: the newest one, as the feeder would read it now).
        at = bisect.bisect_right(sizes, min(position - 1, current.size))
        return checkpoints[at - 1].created_at if at else None

    def check_roots(size: int, root: bytes) -> None:
        for stored_size, signed in roots.get(size, []):
            if signed != root:
                report.bad(
                    None,
                    f"checkpoint at tree size {stored_size}: the signed root differs from the events' tree"
                    f" (an event at or before position {size} was changed)",
                )

    for stored in intake.decisions(conn, chain=chain):
        d = stored.decision
        report.quarantined.append(
            QuarantinedPosition(d.position, d.event_id, d.fault, d.reason, d.fields()["decided_at"], stored.signed)
        )
        if not stored.signed:
            report.bad(d.position, f"position {d.position}: its quarantine decision is not signed by the ledger's key")

    check_roots(0, merkle.EMPTY_ROOT)
    frontier: dict[int, bytes] = {}
    bad_leaves: list[int] = []
    last = max(store.head(conn), current.size)
    size = 0  # positions screened so far
    while size < last:
        events = store.read_all(conn, after=size, limit=batch, seals=True)
        made: list[tuple[int, int, bytes]] = []
        verdicts = intake.screen(conn, store, events, checkpoint_before, chain)
        for event, verdict in zip(events, verdicts, strict=True):
            position = event.position or 0
            while size + 1 < position:  # a position with no event (deleted, or its row gone)
                size += 1
                report.fault(size, DELETED, "missing from the event store")
                if size <= current.size:
                    # The stored leaf stands in for it, so that only this position is reported, not all after.
                    stand_in = tree.nodes(conn, [(0, size - 1)]).get((0, size - 1), merkle.EMPTY_ROOT)
                    made.extend(merkle.append_leaf(frontier, size - 1, stand_in))
                    bisect.insort(bad_leaves, size)
                    check_roots(size, merkle.frontier_root(frontier))
            size = position
            if verdict.refusal is not None:
                where = "in the tree" if position <= current.size else "the feeder refuses it"
                report.fault(position, verdict.refusal, f"{_SCREENED.get(verdict.refusal, verdict.refusal)} ({where})")
                bisect.insort(bad_leaves, position)
            elif (late := _cosigned_before(witnessed, position)) is not None and (
                event.recorded_at.timestamp() < late[1] - intake.max_lag.total_seconds()
            ):
                report.fault(
                    position,
                    BACKDATED,
                    f"event {event.event_id} recorded at {event.recorded_at.isoformat()}, but the checkpoint of tree"
                    f" size {late[0]} that does not hold it was cosigned at"
                    f" {datetime.fromtimestamp(late[1], UTC).isoformat()} (more than the maximum lag later)",
                )
                bisect.insort(bad_leaves, position)
            if position > current.size:
                report.pending_events += 1
                continue
            leaf = verdict.leaf if verdict.leaf is not None else leaf_hash(event, formats.at(position - 1))
            made.extend(merkle.append_leaf(frontier, position - 1, leaf))
            report.events_checked += 1
            check_roots(position, merkle.frontier_root(frontier))
        if made:
            _compare(conn, made, bad_leaves, report)
        if not events:
            while size < last:
                size += 1
                report.fault(size, DELETED, f"missing from the event store (the ledger holds {current.size} events)")
            break
    if not bad_leaves and merkle.frontier_root(frontier) != current.root:
        report.bad(None, f"the ledger head's root at size {current.size} differs from the rebuilt tree")
    return report


def _witnessed(
    conn: Connection, checkpoints: list[Checkpoint], policy: WitnessPolicy, report: VerifyReport
) -> list[tuple[int, int]]:
    """The checkpoints that count under the policy, as (tree size, the latest time so far that one of size at most
    this was cosigned by); the newest checkpoint not counting is a problem."""
    if policy.quorum == 0 or not checkpoints:
        return []
    lines = cosignature_lines(conn)
    found: list[tuple[int, int]] = []
    latest = 0
    for cp in checkpoints:
        at = policy.witnessed_at(cosigned(cp, lines).note)
        if at is not None:
            latest = max(latest, at)
            found.append((cp.tree_size, latest))
            report.witnessed_size = cp.tree_size
    newest = checkpoints[-1]
    problem = policy.problem(cosigned(newest, lines).note, f"checkpoint at tree size {newest.tree_size} (the newest)")
    if problem is not None:
        report.bad(None, problem)
    return found


def _cosigned_before(witnessed: list[tuple[int, int]], position: int) -> tuple[int, int] | None:
    """The counted checkpoint that does not hold `position` and was cosigned latest: (its size, that time)."""
    at = bisect.bisect_left(witnessed, (position, -1))  # sizes below position do not hold it
    return witnessed[at - 1] if at else None
