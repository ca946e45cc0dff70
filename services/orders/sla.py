"""The SLA clock of an order: deadline, remaining time and status.

Pure code: no I/O and no clock reads; the caller passes `now` (timezone-aware, from the one clock).
The clock starts when the platform is notified, stops while a contest awaits review, and resumes when the
contest is upheld: the deadline moves later by the time spent contested.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Literal

from services.orders.domain import OrderState

SlaStatus = Literal[
    "awaiting_delivery",
    "on_track",
    "at_risk",
    "breached",
    "met",
    "met_late",
    "contested",
    "withdrawn",
]
SLA_STATUSES: tuple[str, ...] = SlaStatus.__args__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class SlaPolicy:
    """How long a platform has to act once notified (per category), and when an open order is at risk."""

    default_hours: float = 24
    overrides: Mapping[str, float] = field(default_factory=dict)  # category -> hours
    at_risk_share: float = 0.25  # at risk when less than this share of the duration is left

    def __post_init__(self) -> None:
        if not self.default_hours > 0:
            raise ValueError("default_hours must be positive")
        for category, hours in self.overrides.items():
            if not hours > 0:
                raise ValueError(f"hours for category {category!r} must be positive")
        if not 0 <= self.at_risk_share <= 1:
            raise ValueError("at_risk_share must be between 0 and 1")
        # A frozen policy must not change behind its users' backs: keep a read-only copy of the overrides.
        object.__setattr__(self, "overrides", MappingProxyType(dict(self.overrides)))

    def hours_for(self, category: str) -> float:
        """The hours allowed for an order of this category."""
        return self.overrides.get(category, self.default_hours)

    def duration(self, category: str) -> timedelta:
        """The time allowed for an order of this category, from notification to action."""
        return timedelta(hours=self.hours_for(category))


def deadline(state: OrderState, policy: SlaPolicy) -> datetime | None:
    """Notified time + the category's duration + time paused by upheld contests (None until notified)."""
    if state.notified_at is None:
        return None
    return state.notified_at + policy.duration(state.issued.category) + timedelta(seconds=state.paused_seconds)


def remaining(state: OrderState, policy: SlaPolicy, now: datetime) -> timedelta | None:
    """Time left before the deadline (negative once breached), frozen while contested and once closed."""
    due = deadline(state, policy)
    if due is None or state.status == "withdrawn":
        # Not notified yet, or withdrawn: there is no clock to show.
        return None
    if state.contested_at is not None:
        return due - state.contested_at
    if state.status == "closed":
        last = state.last_actioned_at
        return due - (last if last is not None else now)
    return due - now


def status(state: OrderState, policy: SlaPolicy, now: datetime) -> SlaStatus:
    """Where the order stands against its SLA at `now`."""
    if state.status == "withdrawn":
        return "withdrawn"
    due = deadline(state, policy)
    if state.status == "closed":
        last = state.last_actioned_at
        if due is None or last is None or last <= due:
            return "met"
        return "met_late"
    if state.contested_at is not None:
        return "contested"
    if due is None:
        return "awaiting_delivery"
    left = due - now
    if left < timedelta(0):
        return "breached"
    if left < policy.duration(state.issued.category) * policy.at_risk_share:
        return "at_risk"
    return "on_track"
