"""The event store: streams with expected-version appends, idempotent event ids, a dense global position.

Positions. Writers never wait for each other: an append inserts its events and commits, so PostgreSQL can
group-commit concurrent writers. Global positions are given afterwards by the sequencer (`sequence`), which
numbers only events whose transaction id is below the oldest transaction still running that could write this
store (`_HORIZON`: this database's transactions, not the whole server's): every such transaction has finished,
so no event can later appear before a position already handed out. Positions are therefore dense (1, 2, 3, ... without holes,
even when appends roll back) and a reader tailing `read_all(after=p)` never skips a late committer.
On SQLite, writers are serialised by the database lock, so `append` numbers its events inline.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson
from sqlalchemy import Connection, func, null, select, text
from sqlalchemy.exc import IntegrityError

from shared.bulk import bulk_insert
from shared.events import Event, dump_event
from shared.eventstore.tables import event_positions, events
from shared.eventstore.writer import WriterSigner, batch_digests
from shared.ids import new_id

# Key of the transaction-scoped advisory lock that makes one sequencer run at a time (PostgreSQL).
SEQUENCER_LOCK = 0x7A6B_0001

# The numbering horizon: every event whose transaction id is below it was written by a transaction that has ended.
# It is the oldest transaction still running that could write this store, or the snapshot's xmax when none is.
# A transaction id of the snapshot's in-progress list is skipped only when it is known to belong to a backend of
# ANOTHER database (a backend is bound to one database, so it cannot write here): a session left open in another
# database no longer holds back numbering here. What cannot be identified (e.g. a backend whose row the role may
# not read: grant it pg_read_all_stats) still counts, which is safe. Ids in pg_stat_activity are 32-bit; the
# snapshot's are 64-bit with the epoch, hence the modulo.
_HORIZON = """
    SELECT least(
        pg_snapshot_xmax(snap.s)::text::bigint,
        (SELECT min(x.xid::text::bigint) FROM pg_snapshot_xip(snap.s) AS x(xid)
         WHERE x.xid::text::bigint % 4294967296 NOT IN (
             SELECT a.backend_xid::text::bigint FROM pg_stat_activity a
             WHERE a.backend_xid IS NOT NULL AND a.datname IS DISTINCT FROM current_database()
             UNION ALL
             SELECT p.transaction::text::bigint FROM pg_prepared_xacts p WHERE p.database <> current_database()
         ))
    )
    FROM (SELECT pg_current_snapshot() AS s) AS snap
"""


class EventStoreError(Exception):
    """Base of the event store's refusals."""


class ConcurrencyError(EventStoreError):
    """The stream is not at the version the caller expected: someone else appended first."""

    def __init__(self, stream_id: str, expected: int, actual: int | None = None) -> None:
        self.stream_id, self.expected, self.actual = stream_id, expected, actual
        got = "" if actual is None else f", found {actual}"
        super().__init__(f"stream {stream_id}: expected version {expected}{got}")


class DuplicateEventError(EventStoreError):
    """An event id is already stored with other content."""

    def __init__(self, event_id: str) -> None:
        self.event_id = event_id
        super().__init__(f"event id {event_id} already stored with other content")


@dataclass(frozen=True)
class NewEvent:
    """An event about to be appended."""

    type: str
    data: dict[str, Any]
    schema_version: int = 1
    event_id: str = field(default_factory=new_id)
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, event: Event, meta: dict[str, Any] | None = None, event_id: str | None = None) -> NewEvent:
        """Wrap a domain event for storage."""
        return cls(
            type=event.type,
            data=dump_event(event),
            schema_version=event.schema_version,
            event_id=event_id or new_id(),
            meta=meta or {},
        )


class RecordedEvent(NamedTuple):
    """An event as stored: its stream version and, once sequenced, its global position.

    A named tuple, not a frozen dataclass: the tailing read builds one per row, and a frozen dataclass's
    `__init__` (one `object.__setattr__` per field) cost 1.5 us against 0.4 us, a quarter of the gap to a bare
    keyset read (bench/store.py).
    """

    event_id: str
    stream_id: str
    version: int
    type: str
    schema_version: int
    data: dict[str, Any]
    meta: dict[str, Any]
    recorded_at: datetime
    position: int | None
    # The writer's seal (shared/eventstore/writer.py): read where asked for (the ledger's leaf commits to it).
    seal: dict[str, Any] | None = None


# A RecordedEvent's columns in its field order; each query adds `position` and `seal` last, so a row maps onto it
# positionally.
_columns = tuple(events.c[name] for name in RecordedEvent._fields[:-2])


# The tailing read on PostgreSQL; bench/store.py times this same statement with nothing between it and the driver.
READ_ALL_POSTGRES_SQL = """
    SELECT e.event_id, e.stream_id, e.version, e.type, e.schema_version, e.data::text, e.meta::text,
           e.recorded_at, p.position
    FROM event_positions p JOIN events e ON e.id = p.event_pk
    WHERE p.position > %s
    ORDER BY p.position
    LIMIT %s
"""
# The same with each event's seal, for the ledger (decoding seals costs the other readers time they need not spend).
READ_ALL_SEALED_POSTGRES_SQL = READ_ALL_POSTGRES_SQL.replace("p.position\n", "p.position, e.seal::text\n", 1)


# Each stream's highest version among the events numbered up to a position (the ledger's gap check).
_VERSIONS_BEFORE_POSTGRES_SQL = """
    SELECT e.stream_id, max(e.version)
    FROM events e JOIN event_positions p ON p.event_pk = e.id
    WHERE e.stream_id = ANY (ARRAY(SELECT json_array_elements_text(%s::json))) AND p.position <= %s
    GROUP BY e.stream_id
"""


class EventStore:
    """Append to and read from streams; all methods run inside the caller's transaction and never commit."""

    def __init__(self, dialect: str, writer: WriterSigner | None = None) -> None:
        if dialect not in ("sqlite", "postgresql"):
            raise ValueError(f"unsupported database {dialect!r}")
        self.dialect = dialect
        # The appending process's key (shared/eventstore/writer.py): without one, events are stored unsealed.
        self.writer = writer

    def append(
        self,
        conn: Connection,
        stream_id: str,
        expected_version: int,
        new_events: Sequence[NewEvent],
        recorded_at: datetime,
    ) -> list[RecordedEvent]:
        """Append events to a stream that must be at `expected_version` (0: the stream must not exist).

        Re-appending exactly the same events (same ids, stream and versions) is a no-op that returns them.
        """
        return self.append_many(conn, [(stream_id, expected_version, new_events)], recorded_at)[0]

    def append_many(
        self,
        conn: Connection,
        appends: Sequence[tuple[str, int, Sequence[NewEvent]]],
        recorded_at: datetime,
        *,
        read_in_this_transaction: bool = False,
    ) -> list[list[RecordedEvent]]:
        """`append` to several streams at once: one version check and one insert for all of them.

        Each (stream, expected version, events) is checked as `append` checks it; any refusal refuses the
        whole call (the caller's transaction rolls back). A conflict found only by the insert (a writer that
        committed after the check) names the first stream, as the statement cannot tell which one it was.
        `read_in_this_transaction`: the caller read these streams' versions earlier in this transaction, so the
        version check is skipped: the expected version cannot be ahead of the stream, and an append that came
        in between holds the next version, which the unique (stream, version) key refuses at the insert.
        """
        todo = [(s, v, list(evs)) for s, v, evs in appends if evs]
        if len({s for s, _, _ in todo}) != len(todo):
            raise ValueError("append_many takes each stream once")
        replayed: set[str] = set()
        checked = [] if read_in_this_transaction else [s for s, v, _ in todo if v > 0]
        if checked:
            current: dict[str, int] = {
                stream_id: version
                for stream_id, version in conn.execute(
                    select(events.c.stream_id, func.max(events.c.version))
                    .where(events.c.stream_id.in_(checked))
                    .group_by(events.c.stream_id)
                )
            }
            for stream_id, expected, new_events in todo:
                if expected > 0 and current.get(stream_id) != expected:
                    if not self._is_replay(conn, stream_id, expected, new_events):
                        raise ConcurrencyError(stream_id, expected, current.get(stream_id) or 0)
                    replayed.add(stream_id)
        fresh = [t for t in todo if t[0] not in replayed]
        rows = [
            {
                "event_id": e.event_id,
                "stream_id": stream_id,
                "version": expected + i,
                "type": e.type,
                "schema_version": e.schema_version,
                "data": e.data,
                "meta": e.meta,
                "recorded_at": recorded_at,
            }
            for stream_id, expected, new_events in fresh
            for i, e in enumerate(new_events, start=1)
        ]
        if self.writer is not None and rows:
            # One signature for the whole call (one transaction's events) over the digests of their canonical forms.
            digests = batch_digests(
                (
                    (e.event_id, stream_id, expected + i, e.type, e.schema_version, e.data, e.meta)
                    for stream_id, expected, new_events in fresh
                    for i, e in enumerate(new_events, start=1)
                ),
                recorded_at,
            )
            for row, seal in zip(rows, self.writer.seal(digests), strict=True):
                row["seal"] = seal
        try:
            # One statement, whatever the number of events; the count inserted tells a replay from a fresh append.
            inserted = bulk_insert(conn, events, rows, skip_conflicts_on="event_id")
        except IntegrityError as exc:
            stream_id, expected, _ = fresh[0]
            raise ConcurrencyError(stream_id, expected) from exc
        if inserted != len(rows):
            # Some event ids were stored already: a replay only if none was new and all are stored exactly so.
            foreign = [t for t in fresh if inserted or not self._is_replay(conn, *t)]
            if foreign:
                raise DuplicateEventError(self._first_foreign_id(conn, foreign))
            replayed |= {s for s, _, _ in fresh}
            fresh = []
        positions: dict[str, list[int | None]] = {}
        if self.dialect == "sqlite":
            # The SQLite write lock is held since BEGIN IMMEDIATE, so numbering inline is in commit order.
            last = conn.execute(select(func.coalesce(func.max(event_positions.c.position), 0))).scalar_one()
            for stream_id, expected, new_events in fresh:
                conn.execute(
                    text(
                        "INSERT INTO event_positions (position, event_pk) "
                        "SELECT :last + row_number() OVER (ORDER BY version), id FROM events "
                        "WHERE stream_id = :stream AND version > :after"
                    ),
                    {"last": last, "stream": stream_id, "after": expected},
                )
                positions[stream_id] = list(range(last + 1, last + 1 + len(new_events)))
                last += len(new_events)
        rows_of: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            rows_of.setdefault(str(row["stream_id"]), []).append(row)
        by_stream: dict[str, list[RecordedEvent]] = {}
        for stream_id, expected, new_events in todo:
            if stream_id in replayed:
                by_stream[stream_id] = self.read_stream(conn, stream_id, after_version=expected)[: len(new_events)]
                continue
            numbers = positions.get(stream_id) or [None] * len(new_events)
            by_stream[stream_id] = [
                RecordedEvent(
                    event_id=e.event_id,
                    stream_id=stream_id,
                    version=expected + i,
                    type=e.type,
                    schema_version=e.schema_version,
                    data=e.data,
                    meta=e.meta,
                    recorded_at=recorded_at,
                    position=pos,
                    seal=row.get("seal"),
                )
                for i, (e, pos, row) in enumerate(
                    zip(new_events, numbers, rows_of.get(stream_id, ()), strict=True), start=1
                )
            ]
        return [by_stream.get(s, []) if evs else [] for s, _, evs in appends]

    def _first_foreign_id(self, conn: Connection, appends: Sequence[tuple[str, int, Sequence[NewEvent]]]) -> str:
        """The first of these event ids that is stored with other content than this append's."""
        mine = {e.event_id: (stream_id, e) for stream_id, _, new_events in appends for e in new_events}
        stored = conn.execute(
            select(events.c.event_id, events.c.stream_id, events.c.data).where(events.c.event_id.in_(list(mine)))
        ).all()
        by_id = {r.event_id: r for r in stored}
        for event_id, (stream_id, e) in mine.items():
            r = by_id.get(event_id)
            if r is not None and (r.stream_id != stream_id or r.data != e.data):
                return event_id
        return next(event_id for event_id in mine if event_id in by_id)

    def _is_replay(
        self, conn: Connection, stream_id: str, expected_version: int, new_events: Sequence[NewEvent]
    ) -> bool:
        """True if exactly these events are already stored at these versions of this stream."""
        stored = conn.execute(
            select(events.c.event_id, events.c.version, events.c.type, events.c.data).where(
                events.c.event_id.in_([e.event_id for e in new_events])
            )
        ).all()
        by_id = {r.event_id: r for r in stored}
        for i, e in enumerate(new_events, start=1):
            r = by_id.get(e.event_id)
            if r is None or r.version != expected_version + i or r.type != e.type or r.data != e.data:
                return False
        return conn.execute(
            select(func.count())
            .select_from(events)
            .where(events.c.event_id.in_(list(by_id)), events.c.stream_id == stream_id)
        ).scalar_one() == len(new_events)

    def read_stream(self, conn: Connection, stream_id: str, after_version: int = 0) -> list[RecordedEvent]:
        """All events of one stream after a version, in version order."""
        stmt = (
            select(*_columns, event_positions.c.position, events.c.seal)
            .outerjoin(event_positions, event_positions.c.event_pk == events.c.id)
            .where(events.c.stream_id == stream_id, events.c.version > after_version)
            .order_by(events.c.version)
        )
        return [RecordedEvent._make(r) for r in conn.execute(stmt)]

    def read_streams(
        self, conn: Connection, stream_ids: Sequence[str], *, positions: bool = True
    ) -> dict[str, list[RecordedEvent]]:
        """Several whole streams in one query (each in version order; a stream with no events is absent).

        With `positions=False` the global positions are not looked up (left None): enough to replay a state.
        """
        position = event_positions.c.position if positions else null().label("position")
        stmt = select(*_columns, position, events.c.seal).where(events.c.stream_id.in_(list(stream_ids)))
        if positions:
            stmt = stmt.outerjoin(event_positions, event_positions.c.event_pk == events.c.id)
        stmt = stmt.order_by(events.c.stream_id, events.c.version)
        found: dict[str, list[RecordedEvent]] = {}
        for row in conn.execute(stmt):
            found.setdefault(row.stream_id, []).append(RecordedEvent._make(row))
        return found

    def stream_version(self, conn: Connection, stream_id: str) -> int:
        """The stream's current version (0 if it has no events)."""
        return int(
            conn.execute(
                select(func.coalesce(func.max(events.c.version), 0)).where(events.c.stream_id == stream_id)
            ).scalar_one()
        )

    def read_all(
        self, conn: Connection, after: int = 0, limit: int = 1000, *, seals: bool = False
    ) -> list[RecordedEvent]:
        """Sequenced events with a global position above `after`, in position order (with their seals if asked)."""
        if self.dialect == "postgresql":
            return self._read_all_postgres(conn, after, limit, seals)
        seal = events.c.seal if seals else null().label("seal")
        stmt = (
            select(*_columns, event_positions.c.position, seal)
            .join(events, events.c.id == event_positions.c.event_pk)
            .where(event_positions.c.position > after)
            .order_by(event_positions.c.position)
            .limit(limit)
        )
        return [RecordedEvent._make(r) for r in conn.execute(stmt)]

    def _read_all_postgres(self, conn: Connection, after: int, limit: int, seals: bool) -> list[RecordedEvent]:
        # The tailing read is the hot path of every projection: straight to the driver (prepared, one fetch),
        # JSON decoded from text, rows built positionally. SQLAlchemy's per-row processing cost 2x here.
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]  # None only once invalidated
        try:
            sql = READ_ALL_SEALED_POSTGRES_SQL if seals else READ_ALL_POSTGRES_SQL
            cursor.execute(sql, (after, limit), prepare=True)
            rows = cursor.fetchall()
        finally:
            cursor.close()
        loads = orjson.loads  # 2.5x json.loads on these documents (a tailing read decodes two or three per row)
        # Every object built here stays alive, so the cyclic collector's passes over them (one per 700 new
        # containers) are wasted: pausing it for the batch cut 0.8 us of 4.6 us per row (5,000-row batches).
        paused = gc.isenabled()
        gc.disable()
        try:
            if seals:
                return [
                    RecordedEvent(
                        eid, sid, ver, typ, sv, loads(data), loads(meta), at.astimezone(UTC), pos, loads(seal or "null")
                    )
                    for eid, sid, ver, typ, sv, data, meta, at, pos, seal in rows
                ]
            return [
                RecordedEvent(eid, sid, ver, typ, sv, loads(data), loads(meta), at.astimezone(UTC), pos)
                for eid, sid, ver, typ, sv, data, meta, at, pos in rows
            ]
        finally:
            if paused:
                gc.enable()

    def versions_before(self, conn: Connection, stream_ids: Sequence[str], position: int) -> dict[str, int]:
        """Each stream's highest version among the events at positions up to `position` (absent: none there)."""
        if not stream_ids:
            return {}
        if self.dialect == "postgresql":
            # One text whatever the number of streams (prepared once; an IN list of thousands of parameters was
            # parsed anew each batch), the ids as one JSON array encoded in C.
            params = (orjson.dumps(list(stream_ids)).decode(), position)
            found = conn.exec_driver_sql(_VERSIONS_BEFORE_POSTGRES_SQL, params)
            return {str(stream_id): int(version) for stream_id, version in found}
        rows = conn.execute(
            select(events.c.stream_id, func.max(events.c.version))
            .join(event_positions, event_positions.c.event_pk == events.c.id)
            .where(events.c.stream_id.in_(list(stream_ids)), event_positions.c.position <= position)
            .group_by(events.c.stream_id)
        )
        return {str(stream_id): int(version) for stream_id, version in rows}

    def head(self, conn: Connection) -> int:
        """The highest global position handed out so far (0 when empty)."""
        return int(conn.execute(select(func.coalesce(func.max(event_positions.c.position), 0))).scalar_one())

    def unnumbered(self, conn: Connection) -> tuple[int, datetime | None]:
        """How many committed events still wait for a position, and when the oldest was recorded (the numbering lag)."""
        if self.dialect != "postgresql":
            return 0, None
        _, last_tx, last_id = self._last_numbered(conn)
        # Everything after the last numbered (tx_id, id) on the index: the cost follows the lag, not the store.
        row = conn.execute(
            text("SELECT count(*), min(recorded_at) FROM events WHERE (tx_id, id) > (:last_tx, :last_id)"),
            {"last_tx": last_tx, "last_id": last_id},
        ).one()
        oldest = row[1].astimezone(UTC) if row[1] is not None else None
        return int(row[0]), oldest

    def _last_numbered(self, conn: Connection) -> tuple[int, int, int]:
        """The last position handed out and its event's (tx_id, id); (0, -1, -1) before the first."""
        last = conn.execute(
            select(event_positions.c.position, events.c.tx_id, events.c.id)
            .join(events, events.c.id == event_positions.c.event_pk)
            .order_by(event_positions.c.position.desc())
            .limit(1)
        ).first()
        return (int(last.position), int(last.tx_id), int(last.id)) if last else (0, -1, -1)

    def sequence(self, conn: Connection, batch: int = 10_000) -> int:
        """Give global positions to committed events (PostgreSQL); returns how many were numbered.

        Call it in a transaction of its own. Only one sequencer runs at a time (a transaction-scoped
        advisory lock); a second caller returns 0 at once and the running one, or the next call, numbers
        what it missed.
        """
        if self.dialect != "postgresql":
            return 0
        if not conn.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": SEQUENCER_LOCK}).scalar_one():
            return 0
        last_pos, last_tx, last_id = self._last_numbered(conn)
        result = conn.execute(
            text(
                f"""
                INSERT INTO event_positions (position, event_pk)
                SELECT :last_pos + row_number() OVER (ORDER BY tx_id, id), id
                FROM (
                    SELECT tx_id, id FROM events
                    WHERE (tx_id, id) > (:last_tx, :last_id)
                      AND tx_id < ({_HORIZON})
                    ORDER BY tx_id, id
                    LIMIT :batch
                ) AS ready
                """
            ),
            {"last_pos": last_pos, "last_tx": last_tx, "last_id": last_id, "batch": batch},
        )
        return int(result.rowcount or 0)
