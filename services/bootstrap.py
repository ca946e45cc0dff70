"""Wiring in one place: settings in, a container of adapters and services out. Tests swap any part here."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from services.ledger.service import Ledger, ledger_from_settings
from services.notifier.worker import Notifier, NotifierConfig
from services.orders.service import OrderService
from services.orders.sla import SlaPolicy
from shared.auth import Principal
from shared.clock import Clock, SystemClock
from shared.db import Database, make_engine
from shared.eventstore import EventStore
from shared.eventstore.sequencer import Sequencer
from shared.problems import NotFound
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
    notifier: Notifier
    ledger: Ledger

    def close(self) -> None:
        """Stop background loops and release connections."""
        self.sequencer.stop()
        self.ledger.stop()
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
    orders = OrderService(db=db, store=store, clock=clock, policy=policy, base_url=settings.public_base_url)
    notifier = Notifier(
        db,
        orders,
        clock,
        NotifierConfig(
            timeout_s=settings.webhook_timeout_s,
            lease_margin_s=settings.webhook_lease_margin_s,
            allow_list=tuple(settings.webhook_allow_list),
            total=settings.webhook_concurrency,
            per_platform=settings.webhook_per_platform,
        ),
    )

    def after_commit() -> None:
        # In-process signals instead of LISTEN/NOTIFY: a NOTIFY takes a database-wide lock at commit and
        # would serialise every writer; other processes pick work up on their short poll.
        sequencer.wake()
        notifier.wake()

    orders.after_commit = after_commit

    def order_stream_visible(principal: Principal, stream_id: str) -> bool:
        # The ledger's streams are orders: a caller may see an event's proof if it may see the order.
        try:
            orders.get(principal, stream_id)
        except NotFound:
            return False
        return True

    return Container(
        settings=settings,
        db=db,
        clock=clock,
        store=store,
        policy=policy,
        sequencer=sequencer,
        orders=orders,
        notifier=notifier,
        ledger=ledger_from_settings(settings, db, store, clock, order_stream_visible),
    )
