"""The order aggregate: `decide(state, command, now)` returns new events or refuses; `apply` folds them.

Pure code: no framework, no database, no clock (the caller passes `now`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import reduce

# The escalation levels are defined with the schedule that says when each falls due, and named here for callers.
# A refusal is an OrderError like the service's own; errors.py imports nothing, so the domain stays pure.
from services.orders.errors import DomainError as DomainError
from services.orders.sla_clock import DEADLINE_MISSED as DEADLINE_MISSED
from services.orders.sla_clock import DEFAULT_POLICY, SlaPolicy, escalation_due_at
from services.orders.sla_clock import ESCALATION_LEVELS as ESCALATION_LEVELS
from services.orders.sla_clock import NOT_NOTIFIED as NOT_NOTIFIED
from services.orders.sla_clock import REVIEW_OVERDUE as REVIEW_OVERDUE
from services.orders.sla_clock import STILL_OPEN as STILL_OPEN
from services.orders.sla_clock import STILL_OPEN_LONG as STILL_OPEN_LONG
from services.orders.state import OrderState as OrderState
from services.orders.state import Status as Status
from shared.events import (
    NOTICE_CHANNELS,
    ContestGrounds,
    DeliveryAttemptFailed,
    Event,
    ItemOutcomeReported,
    NoticeChannel,
    OrderAcknowledged,
    OrderClosed,
    OrderContested,
    OrderDeclinesAccepted,
    OrderDelivered,
    OrderEscalated,
    OrderFields,
    OrderIssued,
    OrderUpheld,
    OrderWithdrawn,
    Outcome,
    Representative,
)

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
    """The representative's webhook answered 2xx to the order.issued notification.

    `url` is the endpoint pushed to and `representative` who the registry had on record, both read when the
    delivery was claimed.
    """

    delivery_id: str
    attempt: int
    url: str | None = None
    representative: Representative | None = None


@dataclass(frozen=True)
class ReadInbox:
    """The platform read the order with its own key (`address` names the key) before any other notification."""

    address: str | None = None
    representative: Representative | None = None


@dataclass(frozen=True)
class RecordNotice:
    """An operator records a notice sent to the representative another way (e-mail, letter...), with evidence."""

    channel: NoticeChannel
    address: str
    evidence: str
    representative: Representative | None = None


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
class AcceptDeclines:
    """The issuer accepts the platform's declines: the order closes as declined."""

    reason: str


@dataclass(frozen=True)
class Withdraw:
    reason: str


@dataclass(frozen=True)
class Escalate:
    """Record an escalation level once it has fallen due.

    `dead_letter`: the order's push was given up (every attempt failed), which is evidence that the platform was
    not notified, so NOT_NOTIFIED may be recorded before its time (still only while not notified, and once).
    """

    level: int
    reason: str
    dead_letter: bool = False


Command = (
    IssueOrder
    | RecordDeliveryFailure
    | RecordDelivery
    | ReadInbox
    | RecordNotice
    | Acknowledge
    | ReportOutcomes
    | Contest
    | Uphold
    | AcceptDeclines
    | Withdraw
    | Escalate
)


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
            return replace(
                s, notified_at=event.notified_at, notified_via=event.channel, notification=event, status=status
            )
        case OrderAcknowledged():
            return replace(s, acknowledged_at=event.acknowledged_at, status="acknowledged")
        case ItemOutcomeReported():
            answered = replace(s, outcomes={**s.outcomes, event.item_id: event})
            if answered.answered_at is not None and answered.declined_item_ids:
                # Every item answered, some declined: no order.closed follows; the issuer decides.
                return replace(answered, status="declined")
            return answered
        case OrderClosed():
            return replace(s, closed_at=event.closed_at, status="closed")
        case OrderContested():
            return replace(s, contested_at=event.contested_at, contest_count=s.contest_count + 1, status="contested")
        case OrderUpheld():
            if (since := s.contest_pending_since) is not None:
                paused = (event.upheld_at - since).total_seconds() if s.notified_at else 0.0
                resumed = replace(s, upheld_at=event.upheld_at, paused_seconds=s.paused_seconds + paused)
            else:
                # Upheld over declines: those items lose their outcome and are due again (the deadline stays).
                outcomes = {i: o for i, o in s.outcomes.items() if i not in event.items_due_again}
                resumed = replace(s, outcomes=outcomes, upheld_at=event.upheld_at)
            return replace(resumed, status=_resting_status(resumed))
        case OrderDeclinesAccepted():
            return replace(s, declines_accepted_at=event.accepted_at)
        case OrderWithdrawn():
            return replace(s, withdrawn_at=event.withdrawn_at, status="withdrawn")
        case OrderEscalated():
            return replace(s, escalation_levels=s.escalation_levels | {event.level})
    raise ValueError(f"unknown event {event.type}")


def replay(events: Iterable[Event]) -> OrderState | None:
    """Rebuild the state from an order's events."""
    empty: OrderState | None = None
    return reduce(apply, events, empty)


# ------------------------------------------------------------------------------------------------- rules


def _require_open(state: OrderState) -> None:
    if state.status == "withdrawn":
        raise DomainError("order-withdrawn", "the order has been withdrawn")
    if state.status == "closed":
        raise DomainError("order-closed", "the order is closed: every item already has an accepted outcome")


def _require_platform_turn(state: OrderState) -> None:
    """The platform acts on an open order that does not wait for the issuer."""
    _require_open(state)
    if state.contest_pending_since is not None:
        raise DomainError("order-contested", "the order is contested and awaits the issuer's review")
    if state.status == "declined":
        raise DomainError("awaiting-issuer", "every item is answered; the declines await the issuer's decision")


def _notified_by_inbox(state: OrderState, now: datetime) -> list[Event]:
    """A platform that acts on an order it was never pushed has been notified through its inbox, now."""
    if state.notified_at is not None:
        return []
    return [OrderDelivered(channel="inbox", notified_at=now)]


def _require_not_notified(state: OrderState) -> None:
    if state.notified_at is not None:
        raise DomainError("already-notified", "the platform was already notified of this order")
    _require_open(state)


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


# How far a platform's actioned_at may stand outside [notice, report] and still be taken as its claim. The platform
# reads a webhook before the service records the answer as the notice (up to the webhook timeout, 15 s), and its
# clock is not ours: a platform that removes at once and says so was refused 409 in the system test before this.
CLAIM_SKEW = timedelta(seconds=60)


def _report(state: OrderState, cmd: ReportOutcomes, now: datetime) -> list[Event]:
    _require_platform_turn(state)
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
        # actioned_at is the platform's claim, read off its own clock: kept, never used to judge the deadline, and
        # never (beyond CLAIM_SKEW) before the platform knew of the order (its notification, or the order's issue
        # while it was not yet notified) or after the service received the report.
        if o.actioned_at > now + CLAIM_SKEW:
            raise DomainError("actioned-in-future", f"item {o.item_id!r}: actioned_at is in the future")
        if state.notified_at is not None and o.actioned_at < state.notified_at - CLAIM_SKEW:
            raise DomainError(
                "actioned-before-notice", f"item {o.item_id!r}: actioned_at is before the platform was notified"
            )
        if o.actioned_at < state.issued.issued_at - CLAIM_SKEW:
            raise DomainError("actioned-before-issue", f"item {o.item_id!r}: actioned_at is before the order")
        seen.add(o.item_id)
    new: list[Event] = _notified_by_inbox(state, now)
    new += [
        ItemOutcomeReported(
            item_id=o.item_id, outcome=o.outcome, reason=o.reason, actioned_at=o.actioned_at, reported_at=now
        )
        for o in cmd.outcomes
    ]
    answered = [o.outcome for o in state.outcomes.values()] + [o.outcome for o in cmd.outcomes]
    if len(answered) == len(known) and "declined" not in answered:
        # Every item removed, restricted or not found. With a decline among them the order waits for the issuer.
        new.append(OrderClosed(closed_at=now))
    return new


def _contest(state: OrderState, cmd: Contest, now: datetime) -> list[Event]:
    _require_open(state)
    if state.contested_at is not None or state.contest_count > 0:
        raise DomainError("already-contested", "the order has already been contested once")
    _require_platform_turn(state)
    if not cmd.detail.strip():
        raise DomainError("grounds-required", "a contest needs a detailed reason")
    redress = state.issued.redress
    if redress is not None and redress.contest_within_hours is not None:
        # The window runs from notification, or from issue for an order the platform was never notified of.
        opened = state.notified_at or state.issued.issued_at
        closes = opened + timedelta(hours=redress.contest_within_hours)
        if now > closes:
            raise DomainError(
                "contest-window-closed", f"the order could be contested until {closes.isoformat()} (no later)"
            )
    return [
        *_notified_by_inbox(state, now),
        OrderContested(grounds=cmd.grounds, detail=cmd.detail, contested_at=now),
    ]


def _uphold(state: OrderState, cmd: Uphold, now: datetime) -> list[Event]:
    _require_open(state)
    if state.contest_pending_since is not None:
        return [OrderUpheld(reason=cmd.reason, upheld_at=now)]
    if state.status == "declined":
        # The declined items are due again against the original deadline: no time is given back.
        return [OrderUpheld(reason=cmd.reason, upheld_at=now, items_due_again=state.declined_item_ids)]
    raise DomainError("not-contested", "only a contested order, or one with declined items, can be upheld")


def _escalate(state: OrderState, cmd: Escalate, now: datetime, policy: SlaPolicy) -> list[Event]:
    _require_open(state)
    if cmd.level not in ESCALATION_LEVELS:
        raise DomainError("bad-level", f"escalation levels are {', '.join(map(str, ESCALATION_LEVELS))}")
    if cmd.level in state.escalation_levels:
        raise DomainError("already-escalated", f"level {cmd.level} was already escalated")
    if state.contest_pending_since is not None and cmd.level != REVIEW_OVERDUE:
        raise DomainError("order-contested", "the clock is paused while the order is contested")
    due = escalation_due_at(state, cmd.level, policy)
    if cmd.dead_letter and cmd.level == NOT_NOTIFIED and due is not None:
        due = now  # every push failed: evidence enough that the platform was not notified, whatever the time
    if due is None:
        raise DomainError("escalation-not-due", f"level {cmd.level} does not apply to the order as it stands")
    if due > now:
        raise DomainError("escalation-not-due", f"level {cmd.level} falls due at {due.isoformat()}")
    return [OrderEscalated(level=cmd.level, reason=cmd.reason, escalated_at=now)]


def decide(
    state: OrderState | None, command: Command, now: datetime, policy: SlaPolicy = DEFAULT_POLICY
) -> list[Event]:
    """Decide what a command records, or raise DomainError (and record nothing).

    `policy` is the SLA policy in force: it says when an escalation falls due (the only rule that needs it).
    """
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
            _require_not_notified(state)
            return [
                OrderDelivered(
                    channel="webhook",
                    notified_at=now,
                    delivery_id=command.delivery_id,
                    attempt=command.attempt,
                    address=command.url,
                    representative=command.representative,
                )
            ]
        case ReadInbox():
            _require_not_notified(state)
            return [
                OrderDelivered(
                    channel="inbox", notified_at=now, address=command.address, representative=command.representative
                )
            ]
        case RecordNotice():
            _require_not_notified(state)
            if command.channel not in NOTICE_CHANNELS:
                raise DomainError("bad-channel", f"a notice is sent by {', '.join(NOTICE_CHANNELS)}")
            if not command.address.strip():
                raise DomainError("address-required", "say where the notice was sent")
            if not command.evidence.strip():
                raise DomainError("evidence-required", "a notice sent another way needs its evidence")
            return [
                OrderDelivered(
                    channel=command.channel,
                    notified_at=now,
                    address=command.address,
                    representative=command.representative,
                    evidence=command.evidence,
                )
            ]
        case Acknowledge():
            _require_open(state)
            if state.acknowledged_at is not None:
                raise DomainError("already-acknowledged", "the order was already acknowledged")
            _require_platform_turn(state)
            return [*_notified_by_inbox(state, now), OrderAcknowledged(acknowledged_at=now, note=command.note)]
        case ReportOutcomes():
            return _report(state, command, now)
        case Contest():
            return _contest(state, command, now)
        case Uphold():
            return _uphold(state, command, now)
        case AcceptDeclines():
            _require_open(state)
            if state.status != "declined":
                raise DomainError("not-declined", "only declines awaiting the issuer can be accepted")
            return [
                OrderDeclinesAccepted(reason=command.reason, accepted_at=now, item_ids=state.declined_item_ids),
                OrderClosed(closed_at=now),
            ]
        case Withdraw():
            _require_open(state)
            return [OrderWithdrawn(reason=command.reason, withdrawn_at=now)]
        case Escalate():
            return _escalate(state, command, now, policy)
    raise TypeError(f"unknown command {command!r}")
