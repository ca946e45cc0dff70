"""The incremental Merkle tree in the database, and the feeder that appends every sequenced event to it.

Only complete subtrees are stored (`ledger_nodes`), so appending a leaf writes 1 + (trailing one-bits of its
index) rows, two on average and log2(n) at most, from the tree's right edge (one row per set bit of the size,
which the feeder keeps between its batches and reads only when another process fed last); a proof or a tree head reads O(log n) rows by primary key in one query. Nothing here
commits: every function runs in the caller's transaction (`Database.transaction()` owns the commit).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import Counter, Gauge
from sqlalchemy import Connection, and_, select, tuple_, update

from services.ledger.errors import InvalidRange, LedgerGap, PositionNotFound, TreeTooSmall
from services.ledger.identity import leaf_formats
from services.ledger.intake import Intake, Refusal, batch_context
from services.ledger.leaf import leaf_hash, leaf_index
from services.ledger.tables import ledger_head, ledger_nodes
from shared.db import Database
from shared.eventstore import EventStore, RecordedEvent
from shared.loop import TailingReader
from shared.tlog import merkle

log = logging.getLogger("takedown.ledger")

# PostgreSQL: the new nodes and the new head in one statement whose text never changes (prepared once), whatever
# the batch size. Levels and indexes go as array literals and the hashes as one bytea, 32 bytes each: built in C,
# where psycopg's list dumper spent 40 us a leaf in Python. Matching on the old size turns a second writer that
# slipped past the lock into an error (no row updated), not a fork.
_PG_APPEND = """
    WITH added AS (
        INSERT INTO ledger_nodes (level, idx, hash)
        SELECT t.level, t.idx, substring(%(hashes)s::bytea FROM ((t.n - 1) * 32 + 1)::int FOR 32)
        FROM unnest(%(levels)s::smallint[], %(idxs)s::bigint[]) WITH ORDINALITY AS t(level, idx, n)
    )
    UPDATE ledger_head SET tree_size = %(size)s, root_hash = %(root)s,
                           updated_at = COALESCE(%(now)s::timestamptz, updated_at)
    WHERE id = 1 AND tree_size = %(old)s
"""

# The complete-subtree roots on the right edge of a tree, by level (what appending the next leaf needs).
Frontier = dict[int, bytes]


@dataclass(frozen=True)
class TreeHead:
    """The tree's size (= the last position fed) and root."""

    size: int
    root: bytes


@dataclass(frozen=True)
class AuditPath:
    """The inclusion proof of one leaf index against one tree size, with the leaf hash and root it connects."""

    index: int
    tree_size: int
    leaf_hash: bytes
    root: bytes
    proof: list[bytes]


@dataclass(frozen=True)
class InclusionProof:
    """An audit path of one event against one tree size."""

    position: int
    index: int
    tree_size: int
    leaf_hash: bytes
    root: bytes
    proof: list[bytes]
    stream_id: str


@dataclass(frozen=True)
class ConsistencyProof:
    """A consistency proof between two tree sizes, with both roots."""

    first: int
    second: int
    first_root: bytes
    second_root: bytes
    proof: list[bytes]


# ----------------------------------------------------------------------------------------------- reads


def head(conn: Connection) -> TreeHead:
    """The current tree head (size 0 and the empty root before anything is fed)."""
    row = conn.execute(select(ledger_head.c.tree_size, ledger_head.c.root_hash).where(ledger_head.c.id == 1)).first()
    return TreeHead(0, merkle.EMPTY_ROOT) if row is None else TreeHead(int(row.tree_size), bytes(row.root_hash))


def nodes(conn: Connection, wanted: Iterable[merkle.Node]) -> dict[merkle.Node, bytes]:
    """Stored complete-subtree hashes by (level, idx), in one query by primary key."""
    keys = sorted(set(wanted))
    if not keys:
        return {}
    rows = conn.execute(
        select(ledger_nodes.c.level, ledger_nodes.c.idx, ledger_nodes.c.hash).where(
            tuple_(ledger_nodes.c.level, ledger_nodes.c.idx).in_(keys)
        )
    )
    return {(int(r.level), int(r.idx)): bytes(r.hash) for r in rows}


def _getter(found: dict[merkle.Node, bytes]) -> merkle.NodeGetter:
    def get(level: int, idx: int) -> bytes:
        try:
            return found[(level, idx)]
        except KeyError:
            raise LookupError(f"ledger node ({level}, {idx}) is missing") from None

    return get


def _within(conn: Connection, size: int) -> int:
    current = head(conn).size
    if size > current:
        raise TreeTooSmall(size, current)
    return current


def root_at(conn: Connection, size: int) -> bytes:
    """The tree head at any size the ledger has reached (O(log n) reads)."""
    _within(conn, size)
    if size == 0:
        return merkle.EMPTY_ROOT
    plan = merkle.range_nodes(0, size)
    return merkle.root_at(size, _getter(nodes(conn, plan)))


def inclusion_proof(conn: Connection, index: int, tree_size: int) -> AuditPath:
    """The audit path of leaf `index` in the tree of `tree_size` leaves: O(log n) nodes in one query."""
    if not 0 <= index < tree_size:
        raise InvalidRange(f"leaf index {index} is not in a tree of {tree_size} leaves")
    _within(conn, tree_size)
    plan = merkle.inclusion_plan(index, tree_size)
    get = _getter(nodes(conn, [*merkle.plan_nodes(plan), *merkle.range_nodes(0, tree_size), (0, index)]))
    return AuditPath(index, tree_size, get(0, index), merkle.root_at(tree_size, get), merkle.build_proof(plan, get))


def event_inclusion_proof(conn: Connection, store: EventStore, position: int, tree_size: int) -> InclusionProof:
    """The audit path of the event at `position` (leaf position - 1), with the stream it belongs to."""
    if position < 1 or tree_size < 1:
        raise InvalidRange("positions and tree sizes start at 1")
    if position > tree_size:
        raise InvalidRange(f"position {position} is not in a tree of {tree_size} leaves")
    _within(conn, tree_size)
    events = store.read_all(conn, after=position - 1, limit=1, seals=True)
    if not events or events[0].position != position:
        raise PositionNotFound(position)
    path = inclusion_proof(conn, leaf_index(position), tree_size)
    if path.leaf_hash != leaf_hash(events[0], leaf_formats(conn).at(leaf_index(position))):
        # A quarantined position's leaf commits to the decision, not to the event: the ledger holds no event there.
        raise PositionNotFound(position)
    return InclusionProof(
        position=position,
        index=path.index,
        tree_size=tree_size,
        leaf_hash=path.leaf_hash,
        root=path.root,
        proof=path.proof,
        stream_id=events[0].stream_id,
    )


def consistency_proof(conn: Connection, first: int, second: int) -> ConsistencyProof:
    """The proof that the tree of `first` leaves is a prefix of the tree of `second` leaves."""
    if first < 1 or first > second:
        raise InvalidRange(f"no consistency proof from {first} to {second} leaves (need 1 <= first <= second)")
    _within(conn, second)
    plan = merkle.consistency_plan(first, second)
    wanted = [*merkle.plan_nodes(plan), *merkle.range_nodes(0, first), *merkle.range_nodes(0, second)]
    get = _getter(nodes(conn, wanted))
    return ConsistencyProof(
        first=first,
        second=second,
        first_root=merkle.root_at(first, get),
        second_root=merkle.root_at(second, get),
        proof=merkle.build_proof(plan, get),
    )


# ----------------------------------------------------------------------------------------------- writes


def lock_head(conn: Connection) -> TreeHead | None:
    """The head row, locked for this transaction; None if another feeder holds it (PostgreSQL SKIP LOCKED)."""
    stmt = select(ledger_head.c.tree_size, ledger_head.c.root_hash).where(ledger_head.c.id == 1)
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    row = conn.execute(stmt).first()
    if row is None:
        # The migration seeds the row; an empty table (or a second feeder locking it) means: not now.
        return None
    return TreeHead(int(row.tree_size), bytes(row.root_hash))


def _insert_nodes(conn: Connection, made: Sequence[tuple[int, int, bytes]]) -> None:
    """Insert complete-subtree rows in one statement (SQLite; PostgreSQL's go with the head, in `extend`)."""
    if made:
        conn.execute(ledger_nodes.insert(), [{"level": lv, "idx": i, "hash": h} for lv, i, h in made])


def frontier(conn: Connection, current: TreeHead) -> Frontier:
    """The right edge of the tree at this head, read from `ledger_nodes` (one row per set bit of the size)."""
    edge = merkle.frontier_nodes(current.size)
    stored = nodes(conn, edge)
    if len(stored) != len(edge):
        raise LookupError(f"the right edge of the tree at size {current.size} is missing from ledger_nodes")
    return {level: stored[(level, idx)] for level, idx in edge}


def append(conn: Connection, current: TreeHead, leaf_hashes: Sequence[bytes], now: datetime | None = None) -> TreeHead:
    """Append leaves after `current` (which the caller has locked): nodes and the new head, no commit."""
    if not leaf_hashes:
        return current
    return extend(conn, current, frontier(conn, current), leaf_hashes, now)[0]


def extend(
    conn: Connection, current: TreeHead, edge: Frontier, leaf_hashes: Sequence[bytes], now: datetime | None = None
) -> tuple[TreeHead, Frontier]:
    """`append` from the right edge the caller holds (read by `frontier`, or kept from its last append): the new
    head and its right edge. `edge` is not changed."""
    edge = dict(edge)
    if not leaf_hashes:
        return current, edge
    made: list[tuple[int, int, bytes]] = []
    for offset, hashed in enumerate(leaf_hashes):
        made.extend(merkle.append_leaf(edge, current.size + offset, hashed))
    new = TreeHead(current.size + len(leaf_hashes), merkle.frontier_root(edge))
    if conn.dialect.name == "postgresql":
        levels, idxs, hashes = zip(*made, strict=True)
        params = {
            "levels": "{" + ",".join(map(str, levels)) + "}",
            "idxs": "{" + ",".join(map(str, idxs)) + "}",
            "hashes": b"".join(hashes),
            "size": new.size,
            "root": new.root,
            "now": now,
            "old": current.size,
        }
        updated = conn.exec_driver_sql(_PG_APPEND, params).rowcount
    else:
        _insert_nodes(conn, made)
        values: dict[str, object] = {"tree_size": new.size, "root_hash": new.root}
        if now is not None:
            values["updated_at"] = now
        updated = conn.execute(
            update(ledger_head)
            .where(and_(ledger_head.c.id == 1, ledger_head.c.tree_size == current.size))
            .values(values)
        ).rowcount
    # Matching on the old size turns a second writer that slipped past the lock into an error, not a fork.
    if updated != 1:
        raise RuntimeError(f"the ledger head moved from size {current.size} under this transaction")
    return new, edge


# ----------------------------------------------------------------------------------------------- the feeder


# The alert when the feeder refuses an event: it stops there (later events wait) until an operator quarantines it.
BLOCKED = Gauge("takedown_ledger_blocked", "1 while the ledger feeder refuses the next event (it waits there)")
BLOCKED_POSITION = Gauge("takedown_ledger_blocked_position", "The position the ledger feeder refuses (0: none)")
REFUSED = Counter("takedown_ledger_refused", "Events the ledger feeder refused, by reason", ["reason"])


def report_block(refused: Refusal | None) -> None:
    """Set the blocked gauges to what a process found (the feeder, or /readyz and /metrics reading the store)."""
    BLOCKED.set(0 if refused is None else 1)
    BLOCKED_POSITION.set(0 if refused is None else refused.position)


def lock_head_waiting(conn: Connection) -> None:
    """Wait for the head row's lock (PostgreSQL): a checkpoint then never falls between a feeder's reads and commit."""
    if conn.dialect.name == "postgresql":
        conn.execute(select(ledger_head.c.tree_size).where(ledger_head.c.id == 1).with_for_update())


class LedgerFeeder(TailingReader):
    """A tailing reader of global positions that appends each admitted event's leaf, tracking position = tree size.

    Each event is screened first (`Intake.screen`): the first refused one stops the batch and every later event
    waits (fail closed) until an operator quarantines it; the refusal is logged once, counted and shown in the
    gauges (`blocked` here, and /readyz).
    """

    def __init__(
        self,
        db: Database,
        store: EventStore,
        intake: Intake,
        *,
        batch: int = 5000,
        interval_s: float = 0.1,
        now: Callable[[], datetime] | None = None,
        on_idle: Callable[[], None] | None = None,
    ) -> None:
        self.db, self.store, self.intake, self.batch = db, store, intake, batch
        self.now, self.on_idle = now, on_idle
        self.blocked: Refusal | None = None
        # The head this feeder's last append made and the tree's right edge at it (the next append starts there).
        self._edge: tuple[TreeHead, Frontier] | None = None
        super().__init__("ledger-feeder", log, interval_s=interval_s, failure="ledger feeder: run failed; retrying")

    def run_once(self, conn: Connection) -> int:
        """Append the next batch of admitted events in the caller's transaction; returns how many.

        Five statements, whatever the batch: lock the head, read the events, `batch_context` (its stream versions,
        then the ledger's reads), and the nodes with the new head. The tree's right edge is kept from the last
        append when the head is still the one it made (this process fed last), instead of read again.
        """
        current = lock_head(conn)
        if current is None:
            return 0
        batch: list[RecordedEvent] = self.store.read_all(conn, after=current.size, limit=self.batch, seals=True)
        for expected, event in enumerate(batch, start=current.size + 1):
            if event.position != expected:
                raise LedgerGap(expected, event.position or 0)
        if not batch:
            self._note(None, current.size)
            return 0
        # The head is locked: no checkpoint is signed until this commits, so this is the last one before the batch.
        context = batch_context(conn, self.store, batch)
        at = context.latest_checkpoint_at
        hashes = []
        refused: Refusal | None = None
        verdicts = self.intake.screen(conn, self.store, batch, lambda _: at, context=context)
        for event, verdict in zip(batch, verdicts, strict=True):
            if verdict.leaf is None:
                refused = Refusal(verdict.position, verdict.refusal or "refused", event.event_id, event.stream_id)
                break
            hashes.append(verdict.leaf)
        if hashes:
            kept = self._edge
            edge = kept[1] if kept is not None and kept[0] == current else frontier(conn, current)
            # Kept before commit: were this transaction rolled back, the head would not match it and it is read again.
            self._edge = extend(conn, current, edge, hashes, self.now() if self.now else None)
        self._note(refused, current.size + len(hashes))
        return len(hashes)

    def _note(self, refused: Refusal | None, size: int) -> None:
        """Raise the alert when a new refusal stops the feeder; clear it once the tree is past it (fed by anyone)."""
        if refused is not None:
            if refused != self.blocked:
                log.error(
                    "ledger feeder refused an event: it waits at this position until it is quarantined",
                    extra={
                        "position": refused.position,
                        "reason": refused.reason,
                        "event_id": refused.event_id,
                        "stream_id": refused.stream_id,
                    },
                )
                REFUSED.labels(reason=refused.reason).inc()
            self.blocked = refused
        elif self.blocked is not None and size >= self.blocked.position:
            log.info("ledger feeder moving again", extra={"after_position": self.blocked.position})
            self.blocked = None
        report_block(self.blocked)

    def catch_up(self, max_rounds: int = 1_000_000) -> int:
        """Feed everything sequenced so far, one transaction per batch; returns how many leaves were added."""
        total = 0
        for _ in range(max_rounds):
            added = self._fed_once()
            total += added
            if added < self.batch:
                return total
        return total

    def _pass(self) -> None:
        self._drain(self._fed_once, self.batch)
        if self.on_idle is not None:
            self.on_idle()

    def _fed_once(self) -> int:
        """One batch in its own transaction; returns how many leaves were added."""
        with self.db.transaction() as conn:
            return self.run_once(conn)
