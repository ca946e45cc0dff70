"""Wiring in one place: settings in, a container of adapters and services out. Tests swap any part here."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Engine

from services.orders.service import OrderService
from services.orders.sla import SlaPolicy
from shared.clock import Clock, SystemClock
from shared.db import Database, make_engine
from shared.eventstore import EventStore
from shared.eventstore.sequencer import Sequencer
from shared.settings import Settings


@dataclass
class Container:
    """Everything a process needs, built once at start-up (never at import time)."""

    settings: Settings
    db: Database
    clock: Clock
    store: EventStore
    policy: SlaPolicy
    sequencer: Sequencer
    orders: OrderService
    background: list[object] = field(default_factory=list)

    def close(self) -> None:
        """Stop background loops and release connections."""
        self.sequencer.stop()
        self.db.engine.dispose()


def bootstrap(settings: Settings, clock: Clock | None = None, engine: Engine | None = None) -> Container:
    """Build the container for these settings."""
    db = Database(engine or make_engine(settings.database_url))
    clock = clock or SystemClock()
    store = EventStore(db.dialect)
    policy = SlaPolicy(
        default_hours=settings.sla_hours,
        overrides=settings.sla_category_hours,
        at_risk_share=settings.sla_at_risk_share,
    )
    sequencer = Sequencer(db, store)
    orders = OrderService(
        db=db, store=store, clock=clock, policy=policy, base_url=settings.public_base_url, after_commit=sequencer.wake
    )
    return Container(
        settings=settings, db=db, clock=clock, store=store, policy=policy, sequencer=sequencer, orders=orders
    )
