"""Order command handlers: load, decide, append, update the view, publish to the bus; one transaction each."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, Select, select

from services.orders import views
from services.orders.domain import (
    Command,
    DomainError,
    IssueOrder,
    OrderState,
    ReadInbox,
    RecordNotice,
    apply,
    decide,
)
from services.orders.errors import IdempotencyConflict, InvalidCursor, InvalidOrder, OrderNotFound, UnknownPlatform
from services.orders.repository import OrderRepository
from services.orders.sla_clock import SlaPolicy
from services.orders.visibility import visible, visible_in
from services.registry import service as registry
from shared.auth import Principal
from shared.bus import MessageBus, Published
from shared.clock import Clock
from shared.db import Database, TransientError, UniqueViolation, matching
from shared.events import NoticeChannel, OrderFields, Representative
from shared.eventstore import ConcurrencyError, EventStore, NewEvent, RecordedEvent
from shared.ids import new_id
from shared.logs import current_request_id

_REMEMBER_KEY = views.idempotency_keys.insert()


class Recorded(NamedTuple):
    """A recorded command: the order's state and client view afterwards, and the command's own events."""

    state: OrderState
    document: dict[str, Any]
    events: list[RecordedEvent]


def request_hash(order: OrderFields) -> str:
    """A digest of the order's meaning, to tell a repeat from a different order under the same key."""
    canonical = json.dumps(order.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def unread_by_platform(principal: Principal, row: Any) -> bool:
    """Whether this read is the platform reading an open order it was never notified of (which notifies it)."""
    return principal.role == "platform" and row.notified_at is None and row.status not in ("closed", "withdrawn")


def _encode_cursor(order_id: str) -> str:
    return base64.urlsafe_b64encode(order_id.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> str:
    try:
        order_id = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True).decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidCursor() from exc
    if not order_id.isprintable():
        raise InvalidCursor()
    return order_id


@dataclass
class OrderService:
    """The order side's use cases; each public method is one transaction."""

    db: Database
    store: EventStore
    clock: Clock
    policy: SlaPolicy
    bus: MessageBus = field(default_factory=MessageBus)
    # Order ids by SLA status, as a subquery on the SLA projection (its one owner); wired in bootstrap, because
    # services/sla/ imports this package and not the other way round. None: `list(sla_status=...)` is refused.
    sla_status_ids: Callable[[str], Select[Any]] | None = None

    @property
    def repository(self) -> OrderRepository:
        """Where orders' states are loaded from (their streams, replayed)."""
        return OrderRepository(self.store)

    # ------------------------------------------------------------------------------------------ writes

    def record(
        self, conn: Connection, order_id: str, command: Command, meta: dict[str, Any], request_hash: str | None = None
    ) -> Recorded:
        """Decide a command against the stored order and record it in the caller's transaction (or raise)."""
        [result] = self.record_many(conn, [(order_id, command, meta)], request_hash)
        if isinstance(result, DomainError):
            raise result
        return result

    def record_many(
        self,
        conn: Connection,
        commands: Sequence[tuple[str, Command, dict[str, Any]]],
        request_hash: str | None = None,
        loaded: Mapping[str, OrderState] | None = None,
    ) -> list[Recorded | DomainError]:
        """Decide commands on any orders, in order, and record them in the caller's transaction.

        One read of the orders' events, one append, one batch of view updates, whatever the count: the
        notifier records many attempts this way. `loaded`: the states the caller already loaded in this
        transaction (the sweep), so the streams are not read again. A refused command records nothing and is
        returned as its DomainError; the others still count. Returns each command's outcome, in the commands' order.
        """
        now = self.clock.now()
        order_ids = list(dict.fromkeys(order_id for order_id, _, _ in commands))
        if loaded is None:
            loaded = self.repository.load(conn, order_ids)
        states: dict[str, OrderState | None] = {order_id: loaded.get(order_id) for order_id in order_ids}
        base = {order_id: state.version if state else 0 for order_id, state in states.items()}
        new_events: dict[str, list[NewEvent]] = {}
        decided: list[tuple[str, int, int] | DomainError] = []  # (order, first new event, count) or refusal
        for order_id, command, meta in commands:
            try:
                new = decide(states[order_id], command, now, self.policy)
            except DomainError as exc:
                decided.append(exc)
                continue
            for event in new:
                states[order_id] = apply(states[order_id], event)
            pending = new_events.setdefault(order_id, [])
            decided.append((order_id, len(pending), len(new)))
            pending.extend(NewEvent.of(e, meta) for e in new)
        appended = self.store.append_many(
            conn,
            # In id order, so that two batches touching the same orders wait for each other instead of deadlocking.
            [(order_id, base[order_id], new_events[order_id]) for order_id in sorted(new_events)],
            recorded_at=now,
            read_in_this_transaction=True,  # the versions come from the read above
        )
        recorded = dict(zip(sorted(new_events), appended, strict=True))
        final = {order_id: state for order_id in new_events if (state := states[order_id]) is not None}
        documents = {order_id: views.render(state, self.policy, now) for order_id, state in final.items()}
        changed = [(state, documents[o], base[o] == 0) for o, state in sorted(final.items())]
        views.save(conn, changed, self.policy, now, request_hash)
        self.bus.publish(
            conn, (Published(event, documents[order_id]) for order_id, events in recorded.items() for event in events)
        )
        results: list[Recorded | DomainError] = []
        for outcome in decided:
            if isinstance(outcome, DomainError):
                results.append(outcome)
                continue
            order_id, first, count = outcome
            results.append(Recorded(final[order_id], documents[order_id], recorded[order_id][first : first + count]))
        return results

    def issue(
        self, principal: Principal, order: OrderFields, idempotency_key: str | None
    ) -> tuple[dict[str, Any], bool]:
        """Issue an order; a repeat (same key or issuer_reference, same order) returns the first one unchanged."""
        digest = request_hash(order)

        def repeat(conn: Connection) -> tuple[dict[str, Any], bool]:
            existing = self._existing(conn, principal, order.issuer_reference, idempotency_key, digest)
            if existing is not None:
                return existing, False
            return create(conn)  # the key or reference that tripped was not ours after all (a rolled-back race)

        def create(conn: Connection) -> tuple[dict[str, Any], bool]:
            if not registry.exists(conn, order.platform_id):
                raise UnknownPlatform(f"no platform {order.platform_id!r} is registered")
            order_id = new_id()
            issue = [(order_id, IssueOrder(order_id, order), self._meta(principal))]
            # A new id names no stream: nothing to read (a stream there would trip the unique (stream, version)).
            [result] = self.record_many(conn, issue, digest, loaded={})
            if isinstance(result, DomainError):
                raise InvalidOrder(result.code, result.reason) from result
            document = result.document
            if idempotency_key:
                self._remember_key(conn, principal, idempotency_key, digest, order_id)
            return document, True

        try:
            # No read before the write: the unique keys (authority, issuer_reference) and (authority,
            # Idempotency-Key) tell a repeat, and the transaction that trips one rolls back whole.
            return self.db.run(create, retry_on=(TransientError,))
        except UniqueViolation:
            # A repeat, or a concurrent one that committed first: find it and compare. Should yet another race
            # trip a key, the next round finds its order.
            return self.db.run(repeat, retry_on=(UniqueViolation, TransientError))

    def act(self, principal: Principal, order_id: str, command: Command) -> dict[str, Any]:
        """Run a platform's or issuer's command on an order it may see; refusals (DomainError) record nothing.

        A platform acting on an order it was never notified of has read it: that notification (inbox, with the
        representative on record) is recorded first, in the same transaction.
        """

        def work(conn: Connection) -> dict[str, Any]:
            row = views.get_row(conn, order_id)
            if row is None or not visible(principal, row):
                raise OrderNotFound()
            meta = self._meta(principal)
            commands: list[tuple[str, Command, dict[str, Any]]] = [(order_id, command, meta)]
            if unread_by_platform(principal, row) and not isinstance(command, ReadInbox):
                commands.insert(0, (order_id, self._inbox_read(conn, principal, row.platform_id), meta))
            *_, result = self.record_many(conn, commands)
            if isinstance(result, DomainError):
                raise result  # and the transaction, with the read recorded before it, rolls back
            return result.document

        # Someone appended first, or a deadlock with another writer (the notifier recording this order): decide again.
        return self.db.run(work, retry_on=(ConcurrencyError, TransientError))

    def record_notice(
        self, principal: Principal, order_id: str, channel: NoticeChannel, address: str, evidence: str
    ) -> dict[str, Any]:
        """An operator records a notice sent to the platform's representative another way (e-mail, letter...).

        It notifies the platform now (the SLA clock starts) unless it was already notified; the event records the
        representative on record. Refusals (DomainError: already-notified, evidence-required...) record nothing.
        """

        def work(conn: Connection) -> dict[str, Any]:
            row = views.get_row(conn, order_id)
            if row is None or not visible(principal, row):
                raise OrderNotFound()
            command = RecordNotice(channel, address, evidence, self._representative(conn, row.platform_id))
            return self.record(conn, order_id, command, self._meta(principal)).document

        return self.db.run(work, retry_on=(ConcurrencyError, TransientError))

    # ------------------------------------------------------------------------------------------- reads

    def get(self, principal: Principal, order_id: str) -> dict[str, Any]:
        """One order as this caller may see it, its SLA status as of now.

        The platform reading an open order it was never notified of is notified by that read (`order.delivered`,
        channel inbox), recorded in the read's own transaction; every other read stays a read.
        """
        with self.db.read() as conn:
            row = views.get_row(conn, order_id)
            if row is None or not visible(principal, row):
                raise OrderNotFound()
            document = dict(row.document)
        if unread_by_platform(principal, row):
            document = self._read_inbox(principal, row.platform_id, [order_id])[order_id]
        return views.refresh(document, self.policy, self.clock.now())

    def can_see(self, principal: Principal, order_id: str) -> bool:
        """Whether this order exists and this caller may see it (a read that never notifies)."""
        with self.db.read() as conn:
            row = views.get_row(conn, order_id)
        return row is not None and visible(principal, row)

    def events(self, principal: Principal, order_id: str) -> list[RecordedEvent]:
        """The order's events, with their global (ledger) positions once sequenced.

        They show the order itself, so a platform reading them is notified as by `get`.
        """
        with self.db.read() as conn:
            row = views.get_row(conn, order_id)
            if row is None or not visible(principal, row):
                raise OrderNotFound()
            if not unread_by_platform(principal, row):
                return self.store.read_stream(conn, order_id)
        self._read_inbox(principal, row.platform_id, [order_id])
        with self.db.read() as conn:
            return self.store.read_stream(conn, order_id)

    def list(
        self,
        principal: Principal,
        *,
        status: str | None = None,
        sla_status: str | None = None,
        platform_id: str | None = None,
        category: str | None = None,
        issued_from: datetime | None = None,
        issued_to: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A page of the orders this caller may see, newest first, with the cursor of the next page."""
        o = views.orders
        stmt = (
            select(o.c.id, o.c.document, o.c.platform_id, o.c.notified_at, o.c.status)
            .order_by(o.c.id.desc())
            .limit(limit + 1)
        )
        stmt = stmt.where(
            visible_in(principal, o), matching(o, status=status, platform_id=platform_id, category=category)
        )
        if sla_status:
            if self.sla_status_ids is None:
                raise TypeError("OrderService.sla_status_ids is not wired (see services/bootstrap.py)")
            stmt = stmt.where(o.c.id.in_(self.sla_status_ids(sla_status)))
        if issued_from:
            stmt = stmt.where(o.c.issued_at >= issued_from)
        if issued_to:
            stmt = stmt.where(o.c.issued_at < issued_to)
        if cursor:
            stmt = stmt.where(o.c.id < _decode_cursor(cursor))
        with self.db.read() as conn:
            rows = conn.execute(stmt).all()
        page = rows[:limit]
        next_cursor = _encode_cursor(page[-1].id) if len(rows) > limit else None
        documents = [dict(r.document) for r in page]
        # A platform listing its inbox reads every order on the page: those it was never notified of, now.
        unread = [r for r in page if unread_by_platform(principal, r)]
        if unread:
            fresh = self._read_inbox(principal, unread[0].platform_id, [r.id for r in unread])
            documents = [fresh.get(d["id"], d) for d in documents]
        now = self.clock.now()
        return [views.refresh(d, self.policy, now) for d in documents], next_cursor

    # ---------------------------------------------------------------------------------------- helpers

    def _representative(self, conn: Connection, platform_id: str) -> Representative | None:
        """The platform's representative on record now, as a notification records it."""
        return registry.representative_of(registry.on_record(conn, platform_id, self.clock.now()).get("representative"))

    def _inbox_read(self, conn: Connection, principal: Principal, platform_id: str) -> ReadInbox:
        """The notification a platform's read makes: which key read it, and who the registry has on record."""
        return ReadInbox(address=f"api-key:{principal.key_id}", representative=self._representative(conn, platform_id))

    def _read_inbox(
        self, principal: Principal, platform_id: str, order_ids: Sequence[str]
    ) -> dict[str, dict[str, Any]]:
        """Record the platform's read of orders it was not notified of; their documents afterwards, by id."""

        def work(conn: Connection) -> dict[str, dict[str, Any]]:
            command = self._inbox_read(conn, principal, platform_id)
            meta = self._meta(principal)
            results = self.record_many(conn, [(order_id, command, meta) for order_id in order_ids])
            documents: dict[str, dict[str, Any]] = {}
            for order_id, result in zip(order_ids, results, strict=True):
                if isinstance(result, DomainError):
                    # Notified meanwhile (a push, a notice, another read) or withdrawn: the order as it is now.
                    documents[order_id] = dict(views.get_row(conn, order_id).document)
                else:
                    documents[order_id] = result.document
            return documents

        return self.db.run(work, retry_on=(ConcurrencyError, TransientError))

    def _existing(
        self, conn: Connection, principal: Principal, reference: str, key: str | None, digest: str
    ) -> dict[str, Any] | None:
        """The order an earlier identical request created, or IdempotencyConflict if the key or reference meant another."""
        if key:
            hit = conn.execute(
                select(views.idempotency_keys).where(
                    views.idempotency_keys.c.authority_id == principal.authority_id,
                    views.idempotency_keys.c.key == key,
                )
            ).first()
            if hit is not None:
                if hit.request_hash != digest:
                    raise IdempotencyConflict(
                        "idempotency-key-reused", "this Idempotency-Key was used with another body"
                    )
                row = views.get_row(conn, hit.order_id)
                return dict(row.document)
        row = conn.execute(
            select(views.orders).where(
                views.orders.c.authority_id == principal.authority_id, views.orders.c.issuer_reference == reference
            )
        ).first()
        if row is None:
            return None
        if row.request_hash != digest:
            raise IdempotencyConflict("issuer-reference-reused", "this issuer_reference names another order")
        if key:
            # The key now names this order too, so the same key with another body is a 409 from here on.
            self._remember_key(conn, principal, key, digest, row.id)
        return dict(row.document)

    def _remember_key(self, conn: Connection, principal: Principal, key: str, digest: str, order_id: str) -> None:
        """Record that this authority's Idempotency-Key names this order (for this request body)."""
        conn.execute(
            _REMEMBER_KEY,  # the values apart from the statement: its compiled form is cached
            dict(
                authority_id=principal.authority_id,
                key=key,
                request_hash=digest,
                order_id=order_id,
                created_at=self.clock.now(),
            ),
        )

    @staticmethod
    def _meta(principal: Principal) -> dict[str, Any]:
        meta: dict[str, Any] = {"actor": principal.key_id, "role": principal.role}
        request_id = current_request_id()
        if request_id is not None:
            meta["request_id"] = request_id  # the request that caused the events (the webhooks' log lines carry it)
        return meta
