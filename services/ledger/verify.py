"""Verification of the whole store: recompute every leaf, rebuild the tree, compare every stored node and checkpoint."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Connection, and_, select

from services.ledger import merkle, tree
from services.ledger.checkpoints import all_checkpoints
from services.ledger.identity import leaf_formats
from services.ledger.leaf import leaf_hash
from services.ledger.note import NoteError, Verifier, open_checkpoint
from services.ledger.rotation import KeyChain
from services.ledger.tables import ledger_nodes
from shared.eventstore import EventStore


@dataclass
class VerifyReport:
    """What `verify_ledger` found; `first_bad_position` names the earliest event that fails, if one does."""

    tree_size: int = 0
    events_checked: int = 0
    nodes_checked: int = 0
    checkpoints_checked: int = 0
    pending_events: int = 0
    first_bad_position: int | None = None
    problems: list[str] = field(default_factory=list)
    trusted_key: str | None = None  # the key the chain was followed from
    keys_followed: int = 1  # how many keys that chain holds

    @property
    def ok(self) -> bool:
        """True when nothing failed."""
        return not self.problems

    def bad(self, position: int | None, problem: str) -> None:
        """Record a problem (the first position named is kept)."""
        if position is not None and self.first_bad_position is None:
            self.first_bad_position = position
        self.problems.append(problem)


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


def _compare(conn: Connection, made: list[tuple[int, int, bytes]], report: VerifyReport) -> bool:
    """Compare rebuilt nodes (in the order they were made: leaf first) with the stored ones; False at the first miss."""
    stored = _stored_nodes(conn, made)
    for level, idx, rebuilt in made:
        report.nodes_checked += 1
        if stored.get((level, idx)) == rebuilt:
            continue
        first = (idx << level) + 1
        if level == 0:
            what = "missing from the ledger" if (0, idx) not in stored else "not the event the ledger recorded"
            report.bad(first, f"position {first}: the stored event is {what} (its leaf hash differs)")
        else:
            last = (idx + 1) << level
            report.bad(
                first, f"ledger node ({level}, {idx}) over positions {first}..{last} differs from the rebuilt tree"
            )
        return False
    return True


def verify_ledger(
    conn: Connection, store: EventStore, verifier: Verifier | KeyChain, origin: str, batch: int = 5000
) -> VerifyReport:
    """Check every event against the tree and every checkpoint against its signature and the rebuilt roots.

    Each checkpoint must be signed by the key the chain puts in force at its tree size (services/ledger/rotation.py);
    each leaf is recomputed in the format it was written in (services/ledger/leaf.py).
    """
    report = VerifyReport()
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

    def check_roots(size: int, root: bytes) -> None:
        for stored_size, signed in roots.get(size, []):
            if signed != root:
                report.bad(
                    None,
                    f"checkpoint at tree size {stored_size}: the signed root differs from the events' tree"
                    f" (an event at or before position {size} was changed)",
                )

    check_roots(0, merkle.EMPTY_ROOT)
    frontier: dict[int, bytes] = {}
    size = 0
    while size < current.size:
        events = store.read_all(conn, after=size, limit=min(batch, current.size - size), seals=True)
        made: list[tuple[int, int, bytes]] = []
        gap: str | None = None
        for event in events:
            if event.position != size + 1:
                gap = f"position {size + 1}: missing from the event store (the next stored is {event.position})"
                break
            made.extend(merkle.append_leaf(frontier, size, leaf_hash(event, formats.at(size))))
            size += 1
            report.events_checked += 1
            check_roots(size, merkle.frontier_root(frontier))
        if not events:
            gap = f"position {size + 1}: missing from the event store (the ledger holds {current.size} events)"
        if made and not _compare(conn, made, report):
            break
        if gap is not None:
            report.bad(size + 1, gap)
            break
    else:
        if merkle.frontier_root(frontier) != current.root:
            report.bad(None, f"the ledger head's root at size {current.size} differs from the rebuilt tree")
    report.pending_events = max(0, store.head(conn) - current.size)
    return report
