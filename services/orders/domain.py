"""The order aggregate: `decide(state, command, now)` returns new events or refuses; `apply` folds them.

Pure code: no framework, no database, no clock (the caller passes `now`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal

from shared.events import (
    ContestGrounds,
    DeliveryAttemptFailed,
    Event,
    ItemOutcomeReported,
    OrderAcknowledged,
    OrderClosed,
    OrderContested,
    OrderDelivered,
    OrderEscalated,
    OrderFields,
    OrderIssued,
    OrderUpheld,
    OrderWithdrawn,
    Outcome,
)

Status = Literal["issued", "delivered", "acknowledged", "contested", "closed", "withdrawn"]


class DomainError(Exception):
    """A command the order refuses; nothing is recorded. `code` is stable, `reason` is for people."""

    def __init__(self, code: str, reason: str) -> None:
        self.code, self.reason = code, reason
        super().__init__(reason)


# ---------------------------------------------------------------------------------------------- commands


@dataclass(frozen=True)
class IssueOrder:
    order_id: str
    order: OrderFields


@dataclass(frozen=True)
class RecordDeliveryFailure:
    delivery_id: str
    webhook_type: str
    attempt: int
    error_kind: str
    duration_ms: float
    status_code: int | None = None
    next_attempt_at: datetime | None = None


@dataclass(frozen=True)
class RecordDelivery:
    """The representative's webhook answered 2xx to the order.issued notification."""

    delivery_id: str
    attempt: int


@dataclass(frozen=True)
class Acknowledge:
    note: str | None = None


@dataclass(frozen=True)
class OutcomeReport:
    item_id: str
    outcome: Outcome
    actioned_at: datetime
    reason: str | None = None


@dataclass(frozen=True)
class ReportOutcomes:
    outcomes: tuple[OutcomeReport, ...]


@dataclass(frozen=True)
class Contest:
    grounds: ContestGrounds
    detail: str


@dataclass(frozen=True)
class Uphold:
    reason: str


@dataclass(frozen=True)
class Withdraw:
    reason: str


@dataclass(frozen=True)
class Escalate:
    level: int
    reason: str


Command = (
    IssueOrder
    | RecordDeliveryFailure
    | RecordDelivery
    | Acknowledge
    | ReportOutcomes
    | Contest
    | Uphold
    | Withdraw
    | Escalate
)

# ------------------------------------------------------------------------------------------------- state


@dataclass(frozen=True)
class OrderState:
    """Everything the rules need to know about one order, folded from its events."""

    issued: OrderIssued
    status: Status = "issued"
    version: int = 1
    notified_at: datetime | None = None
    notified_via: str | None = None
    acknowledged_at: datetime | None = None
    outcomes: dict[str, ItemOutcomeReported] = field(default_factory=dict)
    contested_at: datetime | None = None  # set while a contest awaits review
    contest_count: int = 0
    paused_seconds: float = 0.0  # time spent contested, which does not count against the deadline
    upheld_at: datetime | None = None
    withdrawn_at: datetime | None = None
    closed_at: datetime | None = None
    escalation_levels: frozenset[int] = frozenset()
    failed_attempts: int = 0

    @property
    def order_id(self) -> str:
        """The order's id (its stream id)."""
        return self.issued.order_id

    @property
    def item_ids(self) -> tuple[str, ...]:
        """The ids of the order's items, in order."""
        return tuple(i.item_id for i in self.issued.items)

    @property
    def is_open(self) -> bool:
        """Neither closed nor withdrawn."""
        return self.status not in ("closed", "withdrawn")

    @property
    def last_actioned_at(self) -> datetime | None:
        """When the last item was actioned, once every item has an outcome."""
        if len(self.outcomes) < len(self.issued.items):
            return None
        return max(o.actioned_at for o in self.outcomes.values())


def _resting_status(state: OrderState) -> Status:
    """The status an open order returns to after a contest is upheld."""
    if state.acknowledged_at is not None:
        return "acknowledged"
    if state.notified_at is not None:
        return "delivered"
    return "issued"


def apply(state: OrderState | None, event: Event) -> OrderState:
    """Fold one event into the state (events are facts: no checks here)."""
    if isinstance(event, OrderIssued):
        return OrderState(issued=event)
    if state is None:
        raise ValueError(f"{event.type} before order.issued")
    s = replace(state, version=state.version + 1)
    match event:
        case DeliveryAttemptFailed():
            return replace(s, failed_attempts=s.failed_attempts + 1)
        case OrderDelivered():
            status: Status = "delivered" if s.status == "issued" else s.status
            return replace(s, notified_at=event.notified_at, notified_via=event.channel, status=status)
        case OrderAcknowledged():
            return replace(s, acknowledged_at=event.acknowledged_at, status="acknowledged")
        case ItemOutcomeReported():
            return replace(s, outcomes={**s.outcomes, event.item_id: event})
        case OrderClosed():
            return replace(s, closed_at=event.closed_at, status="closed")
        case OrderContested():
            return replace(s, contested_at=event.contested_at, contest_count=s.contest_count + 1, status="contested")
        case OrderUpheld():
            assert s.contested_at is not None
            paused = (event.upheld_at - s.contested_at).total_seconds() if s.notified_at else 0.0
            resumed = replace(s, contested_at=None, upheld_at=event.upheld_at, paused_seconds=s.paused_seconds + paused)
            return replace(resumed, status=_resting_status(resumed))
        case OrderWithdrawn():
            return replace(s, withdrawn_at=event.withdrawn_at, status="withdrawn", contested_at=None)
        case OrderEscalated():
            return replace(s, escalation_levels=s.escalation_levels | {event.level})
    raise ValueError(f"unknown event {event.type}")


def replay(events: Iterable[Event]) -> OrderState | None:
    """Rebuild the state from an order's events."""
    state: OrderState | None = None
    for event in events:
        state = apply(state, event)
    return state


# ------------------------------------------------------------------------------------------------- rules


def _require_open(state: OrderState) -> None:
    if state.status == "withdrawn":
        raise DomainError("order-withdrawn", "the order has been withdrawn")
    if state.status == "closed":
        raise DomainError("order-closed", "the order is closed: every item already has an outcome")


def _notified_by_inbox(state: OrderState, now: datetime) -> list[Event]:
    """A platform that acts on an order it was never pushed has been notified through its inbox, now."""
    if state.notified_at is not None:
        return []
    return [OrderDelivered(channel="inbox", notified_at=now)]


def _issue(cmd: IssueOrder, now: datetime) -> list[Event]:
    order = cmd.order
    if not order.items:
        raise DomainError("no-items", "an order needs at least one item")
    ids = [i.item_id for i in order.items]
    if len(set(ids)) != len(ids):
        raise DomainError("duplicate-items", "item ids must be unique within an order")
    urls = [i.url for i in order.items]
    if len(set(urls)) != len(urls):
        raise DomainError("duplicate-items", "the same URL is listed twice")
    if order.category == "other" and not (order.category_specification or "").strip():
        raise DomainError("category-unspecified", "category 'other' needs a category_specification")
    if not order.statement_of_reasons.strip():
        raise DomainError("no-reasons", "a statement of reasons is required")
    if not order.territorial_scope:
        raise DomainError("no-scope", "territorial_scope needs at least one country code")
    # Iterating a model yields its fields as they are (nested values stay models): the order's shape, once.
    return [OrderIssued(order_id=cmd.order_id, issued_at=now, **dict(order))]


def _report(state: OrderState, cmd: ReportOutcomes, now: datetime) -> list[Event]:
    _require_open(state)
    if state.contested_at is not None:
        raise DomainError("order-contested", "the order is contested and awaits the issuer's review")
    if not cmd.outcomes:
        raise DomainError("no-outcomes", "report at least one item outcome")
    known = set(state.item_ids)
    seen: set[str] = set()
    for o in cmd.outcomes:
        if o.item_id not in known:
            raise DomainError("unknown-item", f"item {o.item_id!r} is not in this order")
        if o.item_id in state.outcomes or o.item_id in seen:
            raise DomainError("outcome-already-reported", f"item {o.item_id!r} already has an outcome")
        if o.outcome == "declined" and not (o.reason or "").strip():
            raise DomainError("reason-required", f"declining item {o.item_id!r} needs a reason")
        if o.actioned_at > now:
            raise DomainError("actioned-in-future", f"item {o.item_id!r}: actioned_at is in the future")
        if o.actioned_at < state.issued.issued_at:
            raise DomainError("actioned-before-issue", f"item {o.item_id!r}: actioned_at is before the order")
        seen.add(o.item_id)
    new: list[Event] = _notified_by_inbox(state, now)
    new += [
        ItemOutcomeReported(
            item_id=o.item_id, outcome=o.outcome, reason=o.reason, actioned_at=o.actioned_at, reported_at=now
        )
        for o in cmd.outcomes
    ]
    if len(state.outcomes) + len(cmd.outcomes) == len(known):
        new.append(OrderClosed(closed_at=now))
    return new


def decide(state: OrderState | None, command: Command, now: datetime) -> list[Event]:
    """Decide what a command records, or raise DomainError (and record nothing)."""
    if isinstance(command, IssueOrder):
        if state is not None:
            raise DomainError("order-exists", "the order already exists")
        return _issue(command, now)
    if state is None:
        raise DomainError("order-not-found", "no such order")
    match command:
        case RecordDeliveryFailure():
            # A failed attempt is evidence of what notification was tried, whatever the order's state.
            return [
                DeliveryAttemptFailed(
                    delivery_id=command.delivery_id,
                    webhook_type=command.webhook_type,
                    attempt=command.attempt,
                    attempted_at=now,
                    status_code=command.status_code,
                    error_kind=command.error_kind,
                    duration_ms=command.duration_ms,
                    next_attempt_at=command.next_attempt_at,
                )
            ]
        case RecordDelivery():
            if state.notified_at is not None:
                raise DomainError("already-notified", "the platform was already notified of this order")
            _require_open(state)
            return [
                OrderDelivered(
                    channel="webhook", notified_at=now, delivery_id=command.delivery_id, attempt=command.attempt
                )
            ]
        case Acknowledge():
            _require_open(state)
            if state.acknowledged_at is not None:
                raise DomainError("already-acknowledged", "the order was already acknowledged")
            if state.contested_at is not None:
                raise DomainError("order-contested", "the order is contested and awaits the issuer's review")
            return [*_notified_by_inbox(state, now), OrderAcknowledged(acknowledged_at=now, note=command.note)]
        case ReportOutcomes():
            return _report(state, command, now)
        case Contest():
            _require_open(state)
            if state.contested_at is not None or state.contest_count > 0:
                raise DomainError("already-contested", "the order has already been contested once")
            if not command.detail.strip():
                raise DomainError("grounds-required", "a contest needs a detailed reason")
            return [
                *_notified_by_inbox(state, now),
                OrderContested(grounds=command.grounds, detail=command.detail, contested_at=now),
            ]
        case Uphold():
            _require_open(state)
            if state.contested_at is None:
                raise DomainError("not-contested", "only a contested order can be upheld")
            return [OrderUpheld(reason=command.reason, upheld_at=now)]
        case Withdraw():
            _require_open(state)
            return [OrderWithdrawn(reason=command.reason, withdrawn_at=now)]
        case Escalate():
            _require_open(state)
            if command.level < 1:
                raise DomainError("bad-level", "escalation levels start at 1")
            if command.level in state.escalation_levels:
                raise DomainError("already-escalated", f"level {command.level} was already escalated")
            if state.contested_at is not None:
                raise DomainError("order-contested", "the clock is paused while the order is contested")
            return [OrderEscalated(level=command.level, reason=command.reason, escalated_at=now)]
    raise TypeError(f"unknown command {command!r}")
