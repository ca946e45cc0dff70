"""Projections: readers that follow the event store by global position and keep tables derived from it.

Exactly once: a projection's tracking position is written in the same transaction as its rows, so a crash
between the two cannot happen, and a position is never applied twice. Any projection can be dropped and rebuilt
from position 0 (`takedown projections rebuild`); the tests check that a rebuild equals the live tables.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from sqlalchemy import BigInteger, Column, Connection, String, Table, select

from shared.db import Database, metadata
from shared.eventstore import EventStore, RecordedEvent
from shared.loop import TailingReader

log = logging.getLogger("takedown.projections")

projection_positions = Table(
    "projection_positions",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("position", BigInteger, nullable=False),
)


class Projection(Protocol):
    """A reader of events by position; `handle` and `reset` run in the runner's transaction and never commit."""

    name: str

    def handle(self, conn: Connection, events: Sequence[RecordedEvent]) -> None:
        """Apply a batch of events, in position order."""

    def reset(self, conn: Connection) -> None:
        """Delete every row the projection derived (before a rebuild from position 0)."""


def _position(conn: Connection, name: str) -> int:
    """The projection's tracking position, locked for this transaction (one runner at a time per projection)."""
    row = conn.execute(
        select(projection_positions.c.position).where(projection_positions.c.name == name).with_for_update()
    ).first()
    if row is None:
        conn.execute(projection_positions.insert().values(name=name, position=0))
        return 0
    return int(row.position)


def positions(conn: Connection) -> dict[str, int]:
    """Every projection's tracking position, unlocked (what its lag is measured from)."""
    rows = conn.execute(select(projection_positions.c.name, projection_positions.c.position))
    return {str(name): int(position) for name, position in rows}


def catch_up_once(db: Database, store: EventStore, projection: Projection, batch: int = 1000) -> int:
    """Apply the next batch of events after the projection's position; returns how many were applied."""
    with db.transaction() as conn:
        after = _position(conn, projection.name)
        events = store.read_all(conn, after=after, limit=batch)
        if not events:
            return 0
        projection.handle(conn, events)
        position = events[-1].position
        conn.execute(
            projection_positions.update()
            .where(projection_positions.c.name == projection.name)
            .values(position=position)
        )
    return len(events)


def catch_up(db: Database, store: EventStore, projection: Projection, batch: int = 1000) -> int:
    """Apply everything numbered so far; returns how many events were applied."""
    total = 0
    while n := catch_up_once(db, store, projection, batch):
        total += n
    return total


def rebuild(db: Database, store: EventStore, projection: Projection, batch: int = 1000) -> int:
    """Drop the projection's rows and replay it from position 0; returns how many events were applied."""
    with db.transaction() as conn:
        _position(conn, projection.name)
        projection.reset(conn)
        conn.execute(
            projection_positions.update().where(projection_positions.c.name == projection.name).values(position=0)
        )
    return catch_up(db, store, projection, batch)


class ProjectionRunner(TailingReader):
    """Keeps projections caught up in a daemon thread: on `wake` (after a commit here) and on a short poll."""

    def __init__(
        self, db: Database, store: EventStore, projections: Sequence[Projection], interval_s: float = 0.2
    ) -> None:
        self.db, self.store, self.projections = db, store, list(projections)
        super().__init__("projections", log, interval_s=interval_s, failure="a projection failed to catch up")

    def run_once(self) -> int:
        """Catch every projection up; returns how many events were applied in all."""
        return sum(catch_up(self.db, self.store, p) for p in self.projections)

    def _pass(self) -> None:
        self.run_once()
