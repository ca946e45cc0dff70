"""The order repository: read orders' streams and replay them into states, written once for every reader."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection

from services.orders.domain import replay
from services.orders.state import OrderState
from shared.events import load_event
from shared.eventstore import EventStore, RecordedEvent


def replay_recorded(stored: Iterable[RecordedEvent]) -> OrderState | None:
    """The state an order's recorded events (in version order) leave it in; None without any."""
    return replay(load_event(e.type, e.schema_version, e.data) for e in stored)


@dataclass(frozen=True)
class OrderRepository:
    """Loads orders' states from the event store (the only source of truth), in the caller's transaction."""

    store: EventStore

    def load(self, conn: Connection, order_ids: Sequence[str]) -> dict[str, OrderState]:
        """The states of these orders, read in one query; an order without events is absent."""
        streams = self.store.read_streams(conn, list(order_ids), positions=False)
        states = {order_id: replay_recorded(stored) for order_id, stored in streams.items()}
        return {order_id: state for order_id, state in states.items() if state is not None}
