"""Wiring in one place: settings in, a container of adapters and services out, and which handlers read which events.

Tests swap any part here.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

from sqlalchemy import Engine

from services.keys.service import Keys
from services.ledger.evidence import Evidence, EvidenceSources
from services.ledger.service import Ledger, ledger_from_settings
from services.metrics.counters import count_issued
from services.notifier import deliveries as delivery_log
from services.notifier.deliveries import DeliveryLog
from services.notifier.outbox import SUPERVISOR, WEBHOOK_TYPES, Outbox
from services.notifier.worker import Notifier, NotifierConfig
from services.orders.service import OrderService
from services.orders.sla_clock import SlaPolicy
from services.orders.visibility import tenant
from services.receipts import store as receipts_store
from services.receipts.client import LogClient
from services.receipts.service import ReceiptsKit
from services.registry import service as platforms
from services.registry.kek import keyring_from_settings
from services.registry.service import PlatformsProjection, Registry, WebhookEndpoint
from services.sla.projection import SlaProjection
from services.sla.queries import ids_with_status
from services.sla.sweep import Job, Scheduler, Sweep, record_escalation
from services.transparency.publication import Publisher
from services.witness import store as witness_store
from services.witness.domain import trusted_logs
from services.witness.service import Witness
from shared.auth import KeyCache, Principal
from shared.bus import MessageBus
from shared.clock import Clock, DatabaseClock, SystemClock
from shared.db import Database, make_engine, server_time
from shared.eventstore import EventStore
from shared.eventstore.sequencer import Sequencer
from shared.eventstore.writer import WriterSigner, load_or_create_seed
from shared.keyfile import read_or_create
from shared.projections import Projection, ProjectionRunner
from shared.settings import Settings
from shared.tlog.cosignature import Cosigner
from shared.tlog.note import check_key_name, parse_verifier_key


@dataclass
class Container:
    """Everything a process needs, built once at start-up (never at import time)."""

    settings: Settings
    db: Database
    read_db: Database  # the read side's: a streaming replica when READ_DATABASE_URL names one, else `db`
    clock: Clock
    store: EventStore
    bus: MessageBus
    policy: SlaPolicy
    sequencer: Sequencer
    orders: OrderService
    registry: Registry
    notifier: Notifier
    deliveries: DeliveryLog
    sweep: Sweep
    scheduler: Scheduler
    sla: SlaProjection
    projections: ProjectionRunner
    ledger: Ledger
    evidence: Evidence
    keys: Keys
    publisher: Publisher

    def rebuildable(self) -> list[Projection]:
        """Every projection `takedown projections rebuild` replays: the runner's, and the registry's table (which
        its commands write in their own transaction instead of a runner following positions)."""
        return [*self.projections.projections, PlatformsProjection(self.store)]

    def close(self) -> None:
        """Stop background loops and release connections."""
        self.sequencer.stop()
        self.projections.stop()
        self.scheduler.stop()
        self.ledger.stop()
        self.db.engine.dispose()
        if self.read_db is not self.db:
            self.read_db.engine.dispose()


def bootstrap(settings: Settings, clock: Clock | None = None, engine: Engine | None = None) -> Container:
    """Build the container for these settings."""
    db = Database(engine or make_engine(settings.database_url))
    read_db = Database(make_engine(settings.read_database_url)) if settings.read_database_url else db
    # PostgreSQL: the server's clock for every host, so that skewed hosts judge a deadline alike (SQLite: one host).
    clock = clock or (DatabaseClock(server_time(db.engine)) if db.dialect == "postgresql" else SystemClock())
    # The writer key is read (or made, mode 0600) at start: every append this process makes is signed with it.
    store = EventStore(db.dialect, WriterSigner(load_or_create_seed(settings.writer_key_file)))
    bus = MessageBus()
    policy = SlaPolicy(
        default_hours=settings.sla_hours,
        overrides=settings.sla_category_hours,
        at_risk_share=settings.sla_at_risk_share,
        notice_hours=settings.sla_notice_hours,
        still_open_hours=settings.sla_still_open_hours,
        review_hours=settings.sla_review_hours,
    )
    sequencer = Sequencer(db, store)
    # The webhook secrets' KEK: read (or made) once, on first use, by whichever of registry and notifier needs it.
    keyring = functools.cache(lambda: keyring_from_settings(settings))
    orders = OrderService(db=db, store=store, clock=clock, policy=policy, bus=bus, sla_status_ids=ids_with_status)
    registry = Registry(
        db=db,
        store=store,
        clock=clock,
        bus=bus,
        allow_list=tuple(settings.webhook_allow_list),
        https_only=settings.production,
        obliged_above=settings.obliged_monthly_users,
        secret_overlap=timedelta(hours=settings.secret_overlap_hours),
        keyring=keyring,
    )
    notifier = Notifier(
        db.urgent(),  # on SQLite its claims and records go before waiting intake, or pushes fall behind
        orders.record_many,
        clock,
        NotifierConfig(
            timeout_s=settings.webhook_timeout_s,
            lease_margin_s=settings.webhook_lease_margin_s,
            allow_list=tuple(settings.webhook_allow_list),
            https_only=settings.production,
            total=settings.webhook_concurrency,
            per_platform=settings.webhook_per_platform,
            per_process=settings.webhook_per_platform_per_process,
            extra_endpoints=_supervisor(settings),
        ),
        endpoint_gone=registry.disable_webhook,
        keyring=keyring,
    )

    def order_stream_visible(principal: Principal, stream_id: str) -> bool:
        # A caller may see an event's proof if it may see the event's order (a platform's stream: those who see all).
        return tenant(principal) is None or orders.can_see(principal, stream_id)

    sla = SlaProjection(store, policy, clock)
    projections = ProjectionRunner(db, store, [sla])
    ledger = ledger_from_settings(settings, db, store, clock, order_stream_visible)
    sweep = Sweep(db, store, orders, sla, policy, clock)
    publisher = Publisher(
        db,
        store,
        bus,
        clock,
        settle=timedelta(hours=settings.transparency_settle_h),
        min_cell=settings.transparency_min_cell,
    )
    sources = EvidenceSources(
        deliveries=lambda conn, order_id: delivery_log.find(conn, order_id=order_id, limit=10_000),
        on_record=platforms.on_record,
        platform_stream=platforms.stream_id,
    )

    # In the command's transaction: the webhooks platforms are pushed (the transactional outbox).
    bus.subscribe(WEBHOOK_TYPES, Outbox(settings.public_base_url))
    # ... and the escalations: one row per (order, level), and a copy pushed to the supervisor.
    bus.subscribe(["order.escalated"], record_escalation)
    # ... and the orders issued, counted once the intake commits.
    bus.subscribe(["order.issued"], count_issued)
    if settings.supervisor_webhook_url:
        bus.subscribe(["order.escalated"], Outbox(settings.public_base_url, destination=SUPERVISOR))
    # After commit: in-process signals instead of LISTEN/NOTIFY (a NOTIFY takes a database-wide lock at commit
    # and would serialise every writer); other processes pick work up on their short poll.
    bus.on_commit(sequencer.wake)
    bus.on_commit(notifier.wake)
    bus.on_commit(projections.wake)  # on SQLite positions are given at commit; on PostgreSQL its poll follows
    bus.on_commit(ledger.feeder.wake)

    return Container(
        settings=settings,
        db=db,
        read_db=read_db,
        clock=clock,
        store=store,
        bus=bus,
        policy=policy,
        sequencer=sequencer,
        orders=orders,
        registry=registry,
        notifier=notifier,
        deliveries=DeliveryLog(db, clock, notifier.wake),
        sweep=sweep,
        scheduler=Scheduler(
            sweep,
            settings.sweep_interval_s,
            # Finished, settled months fixed in the ledger: the expected-version append makes it once per month.
            [Job("transparency-publish", publisher.run_once, settings.transparency_publish_interval_s)],
        ),
        sla=sla,
        projections=projections,
        ledger=ledger,
        # The bundle's facts from the read side; its proofs from the ledger on the primary, whose tree holds
        # every event a replica has (a replica only lags).
        evidence=Evidence(read_db, store, clock, ledger, sources),
        keys=Keys(
            db,
            clock,
            KeyCache(clock, settings.auth_cache_s),
            last_used_every=timedelta(seconds=settings.key_last_used_every_s),
            platform_exists=lambda conn, platform_id: platforms.find(conn, platform_id) is not None,
        ),
        publisher=publisher,
    )


def _supervisor(settings: Settings) -> dict[str, WebhookEndpoint]:
    """The supervisor's webhook as an endpoint the notifier can push to (none if not configured)."""
    if not settings.supervisor_webhook_url or settings.supervisor_webhook_secret is None:
        return {}
    secret = settings.supervisor_webhook_secret.get_secret_value()
    return {SUPERVISOR: WebhookEndpoint(SUPERVISOR, settings.supervisor_webhook_url, True, secret)}


def witness_name(settings: Settings) -> str:
    """The witness's key name: the configured one, else the public base URL's host and path + /witness."""
    if settings.witness_name:
        return check_key_name(settings.witness_name)
    parts = urlsplit(settings.public_base_url)
    return check_key_name(f"{parts.netloc}{parts.path.rstrip('/')}/witness")


def witness_cosigner(settings: Settings) -> Cosigner:
    """The witness's cosigning key (its seed file made with mode 0600 on first use)."""
    return Cosigner(witness_name(settings), read_or_create(settings.witness_key_file, 32, create=True))


def witness_from_settings(settings: Settings, clock: Clock | None = None) -> Witness:
    """A standalone witness: its own database (tables created here, not by the service's migrations), its key, its logs."""
    engine = make_engine(settings.witness_database_url)
    witness_store.create(engine)
    logs = trusted_logs(settings.witness_logs)
    return Witness(Database(engine), logs, witness_cosigner(settings), clock or SystemClock())


def receipts_from_settings(settings: Settings, clock: Clock | None = None, receiving: bool = True) -> ReceiptsKit:
    """A platform's receipts kit: its own SQLite file (tables created here), the service's API, the log's key.

    `receiving`: it will check webhooks, so it needs the platform's secret (writing a statement needs none).
    ValueError naming what is missing or malformed (no log key, no webhook secret, a SQLite-only store).
    """
    if not settings.receipts_database_url.startswith("sqlite"):
        raise ValueError("the receipts kit keeps its own SQLite file: TAKEDOWN_RECEIPTS_DATABASE_URL=sqlite:///...")
    if not settings.receipts_log_key:
        raise ValueError("the log's verifier key is needed to check its checkpoints: TAKEDOWN_RECEIPTS_LOG_KEY")
    if receiving and not settings.receipts_webhook_secrets:
        raise ValueError(
            "the platform's webhook secret is needed to check signatures: TAKEDOWN_RECEIPTS_WEBHOOK_SECRETS"
        )
    engine = make_engine(settings.receipts_database_url)
    receipts_store.create(engine)
    key = settings.receipts_api_key.get_secret_value() if settings.receipts_api_key else None
    return ReceiptsKit(
        Database(engine),
        LogClient(settings.receipts_service_url, key),
        parse_verifier_key(settings.receipts_log_key),
        [s.get_secret_value() for s in settings.receipts_webhook_secrets],
        clock or SystemClock(),
        forward_url=settings.receipts_forward_url,
        forward_timeout_s=settings.receipts_forward_timeout_s,
        poll_s=settings.receipts_poll_s,
        backoff_max_s=settings.receipts_backoff_max_s,
    )
