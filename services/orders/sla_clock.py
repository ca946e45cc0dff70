"""The SLA clock of an order and its escalation schedule: deadline, remaining time, status, what falls due when.

Pure code: no I/O and no clock reads; the caller passes `now` (timezone-aware, from the one clock).
The clock starts when the platform is notified, stops while a contest awaits review, and resumes when the
contest is upheld: the deadline moves later by the time spent contested. Whether the deadline was met is judged
on when the service recorded the answer (`reported_at`), never on the platform's own `actioned_at`.

Every reader of SLA time (the order document, `/v1/sla/orders`, the dashboard overview) takes the status as of
now and the remaining time from here (`status_at`, `remaining_seconds`), so they cannot disagree. It reads the
order's state (`services.orders.state`) but not the aggregate, which consults the schedule (an escalation is
refused before it falls due): the dependency points from `domain` to here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Literal, NamedTuple

from services.orders.state import OrderState

SlaStatus = Literal[
    "awaiting_delivery",
    "on_track",
    "at_risk",
    "breached",
    "met",
    "met_late",
    "declined",
    "contested",
    "withdrawn",
]
SLA_STATUSES: tuple[str, ...] = SlaStatus.__args__  # type: ignore[attr-defined]
# The statuses of a running clock: they change with time alone (the others change only with a new event).
RUNNING_STATUSES: tuple[str, ...] = ("on_track", "at_risk", "breached")
# The statuses without a clock to show: not notified yet, or withdrawn.
NO_CLOCK_STATUSES: tuple[str, ...] = ("awaiting_delivery", "withdrawn")

# Escalation levels: each is recorded at most once per order.
NOT_NOTIFIED = 1  # not notified within `notice_hours` of issue
DEADLINE_MISSED = 2  # the deadline passed without a full answer
STILL_OPEN = 3  # still without a full answer `still_open_hours[0]` after the deadline
STILL_OPEN_LONG = 4  # ... and `still_open_hours[1]` after it
REVIEW_OVERDUE = 5  # the issuer's review (of a contest, or of declines) is overdue: the issuer's side
ESCALATION_LEVELS: tuple[int, ...] = (NOT_NOTIFIED, DEADLINE_MISSED, STILL_OPEN, STILL_OPEN_LONG, REVIEW_OVERDUE)

# The resolution of recorded times: the first instant after a threshold.
_TICK = timedelta(microseconds=1)


@dataclass(frozen=True)
class SlaPolicy:
    """How long a platform has to act once notified (per category), when an open order is at risk, and when each
    escalation level falls due."""

    default_hours: float = 24
    overrides: Mapping[str, float] = field(default_factory=dict)  # category -> hours
    at_risk_share: float = 0.25  # at risk when less than this share of the duration is left
    notice_hours: float = 1  # escalate when the platform is not notified within this time of issue
    still_open_hours: tuple[float, float] = (24, 72)  # escalate again this long after the deadline
    review_hours: float = 72  # the issuer's review of a contest or of declines is due within this time

    def __post_init__(self) -> None:
        if not self.default_hours > 0:
            raise ValueError("default_hours must be positive")
        for category, hours in self.overrides.items():
            if not hours > 0:
                raise ValueError(f"hours for category {category!r} must be positive")
        if not 0 <= self.at_risk_share <= 1:
            raise ValueError("at_risk_share must be between 0 and 1")
        if not self.notice_hours > 0 or not self.review_hours > 0:
            raise ValueError("notice_hours and review_hours must be positive")
        first, second = self.still_open_hours
        if not 0 < first < second:
            raise ValueError("still_open_hours must be two increasing positive durations")
        # A frozen policy must not change behind its users' backs: keep a read-only copy of the overrides.
        object.__setattr__(self, "overrides", MappingProxyType(dict(self.overrides)))

    def hours_for(self, category: str) -> float:
        """The hours allowed for an order of this category."""
        return self.overrides.get(category, self.default_hours)

    def duration(self, category: str) -> timedelta:
        """The time allowed for an order of this category, from notification to answer."""
        return timedelta(hours=self.hours_for(category))


DEFAULT_POLICY = SlaPolicy()


# --------------------------------------------------------------------------------------------- the clock


def deadline(state: OrderState, policy: SlaPolicy) -> datetime | None:
    """Notified time + the category's duration + time paused by upheld contests (None until notified)."""
    if state.notified_at is None:
        return None
    return state.notified_at + policy.duration(state.issued.category) + timedelta(seconds=state.paused_seconds)


def at_risk_from(due: datetime, category: str, policy: SlaPolicy) -> datetime:
    """The instant after which an open order with this deadline is at risk."""
    return due - policy.duration(category) * policy.at_risk_share


def clock_status(due: datetime, category: str, policy: SlaPolicy, now: datetime) -> SlaStatus:
    """The status of an order whose clock is running: on track, at risk, or breached (past its deadline)."""
    if now > due:
        return "breached"
    if now > at_risk_from(due, category, policy):
        return "at_risk"
    return "on_track"


def next_status_change(status: str, due: datetime | None, category: str, policy: SlaPolicy) -> datetime | None:
    """When a running clock's status next changes by time alone: the first instant past its threshold."""
    if due is None:
        return None
    threshold = {"on_track": at_risk_from(due, category, policy), "at_risk": due}.get(status)
    return threshold + _TICK if threshold is not None else None


def clock_running(status: str) -> bool:
    """Whether an order with this SLA status has a running clock: its status and remaining time move with `now`."""
    return status in RUNNING_STATUSES


def _clock_runs(state: OrderState) -> bool:
    """`clock_running` of the state's status, without computing it (notified, open, not waiting for the issuer)."""
    return state.is_open and state.notified_at is not None and state.awaiting_review_since is None


def clock_stopped_at(state: OrderState) -> datetime | None:
    """When the clock stopped: the pending contest (it resumes if upheld), else the full answer; None otherwise."""
    return state.contest_pending_since or state.answered_at


def status_at(status: SlaStatus, due: datetime | None, category: str, policy: SlaPolicy, now: datetime) -> SlaStatus:
    """A status found earlier, as of `now`: a running clock's moves with time alone, the others wait for an event."""
    if clock_running(status) and due is not None:
        return clock_status(due, category, policy, now)
    return status


def remaining_seconds(status: str, due: datetime | None, stopped_at: datetime | None, now: datetime) -> int | None:
    """Whole seconds left before the deadline, rounded down (negative from the first breached instant).

    While the clock runs, until `now`; once it stopped (a pending contest, a full answer: met, met late, declined),
    frozen at `stopped_at`, so a met order shows the time it had to spare and a late one by how much it missed.
    None without a clock (not notified, withdrawn).
    """
    if due is None or status in NO_CLOCK_STATUSES:
        return None
    until = now if clock_running(status) else stopped_at
    if until is None:
        return None
    return math.floor((due - until).total_seconds())


def remaining(state: OrderState, policy: SlaPolicy, now: datetime) -> int | None:
    """`remaining_seconds` of an order's state at `now`."""
    return remaining_seconds(status(state, policy, now), deadline(state, policy), clock_stopped_at(state), now)


def status(state: OrderState, policy: SlaPolicy, now: datetime) -> SlaStatus:
    """Where the order stands against its SLA at `now`."""
    if state.status == "withdrawn":
        return "withdrawn"
    if state.status == "declined" or state.declines_accepted_at is not None:
        # An answer, not compliance: declines never count as met, before or after the issuer's review.
        return "declined"
    due = deadline(state, policy)
    if state.status == "closed":
        answered = state.answered_at
        if due is None or answered is None or answered <= due:
            return "met"
        return "met_late"
    if state.contest_pending_since is not None:
        return "contested"
    if due is None:
        return "awaiting_delivery"
    return clock_status(due, state.issued.category, policy, now)


# ----------------------------------------------------------------------------------------------- reviews


def review_due(state: OrderState, policy: SlaPolicy) -> datetime | None:
    """When the issuer's pending review (of a contest, or of declined items) is due; None if none is pending."""
    since = state.awaiting_review_since
    if since is None or not state.is_open:
        return None
    return since + timedelta(hours=policy.review_hours)


# ------------------------------------------------------------------------------------------- escalations


class Escalation(NamedTuple):
    """An escalation level and when it falls due."""

    due_at: datetime
    level: int
    reason: str


def escalation_due_at(state: OrderState, level: int, policy: SlaPolicy) -> datetime | None:
    """When `level` falls due for the order as it stands (None: it does not apply now), recorded or not.

    Levels 2-4 apply only while the platform owes an answer on a running clock: never while a contest awaits
    review (the clock is paused; after an uphold the deadline has moved by the pause) nor while declines await
    the issuer, whose delay is escalated on its own side (level 5).
    """
    if not state.is_open:
        return None
    if level == NOT_NOTIFIED:
        if state.notified_at is not None:
            return None
        return state.issued.issued_at + timedelta(hours=policy.notice_hours)
    if level == REVIEW_OVERDUE:
        return review_due(state, policy)
    if level in (DEADLINE_MISSED, STILL_OPEN, STILL_OPEN_LONG):
        due = deadline(state, policy)
        if due is None or not _clock_runs(state) or state.answered_at is not None:
            return None
        after = {
            DEADLINE_MISSED: 0.0,
            STILL_OPEN: policy.still_open_hours[0],
            STILL_OPEN_LONG: policy.still_open_hours[1],
        }
        return due + timedelta(hours=after[level])
    return None


def escalation_reason(state: OrderState, level: int, policy: SlaPolicy) -> str:
    """Why `level` escalates, in words for the people it reaches."""
    if level == NOT_NOTIFIED:
        return f"the platform was not notified within {policy.notice_hours:g} h of issue"
    if level == DEADLINE_MISSED:
        return "the deadline passed without a full answer"
    if level in (STILL_OPEN, STILL_OPEN_LONG):
        hours = policy.still_open_hours[level - STILL_OPEN]
        return f"still without a full answer {hours:g} h after the deadline"
    if level == REVIEW_OVERDUE:
        what = "the contest" if state.contest_pending_since is not None else "the declined items"
        return f"the issuer's review of {what} is overdue ({policy.review_hours:g} h)"
    return f"escalation level {level}"


def _pending(state: OrderState, policy: SlaPolicy) -> list[tuple[datetime, int]]:
    """The levels not yet recorded that apply now, as (due, level), earliest first (reasons are worded later:
    `next_due` runs for every recorded command and needs only the times)."""
    found = [
        (due, level)
        for level in ESCALATION_LEVELS
        if level not in state.escalation_levels and (due := escalation_due_at(state, level, policy)) is not None
    ]
    return sorted(found)


def next_escalation(state: OrderState, policy: SlaPolicy) -> Escalation | None:
    """The next escalation not yet recorded (it may already be due), or None while none applies."""
    pending = _pending(state, policy)
    if not pending:
        return None
    due, level = pending[0]
    return Escalation(due, level, escalation_reason(state, level, policy))


def due_escalations(state: OrderState, policy: SlaPolicy, now: datetime) -> list[Escalation]:
    """The escalations due at `now` and not yet recorded, earliest first."""
    return [
        Escalation(due, level, escalation_reason(state, level, policy))
        for due, level in _pending(state, policy)
        if due <= now
    ]


def next_due(state: OrderState, policy: SlaPolicy) -> datetime | None:
    """When the next escalation not yet recorded falls due (it may have passed: it stays pending until recorded).

    The order view keeps it as the sweep's index. Status changes by time alone are the SLA projection's
    (`next_status_change`), not the sweep's business here. None: nothing will escalate until a new event.
    """
    pending = _pending(state, policy)
    return pending[0][0] if pending else None
