"""An order's state as its events leave it: what the rules, the SLA clock and the views read.

Its own module, below both the aggregate (`domain`, which folds events into it) and the SLA clock (`sla_clock`,
which reads it), so neither imports the other to know its shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from shared.events import ItemOutcomeReported, OrderDelivered, OrderIssued

# "declined": every item has an outcome, some declined; the order waits for the issuer to accept or uphold.
Status = Literal["issued", "delivered", "acknowledged", "contested", "declined", "closed", "withdrawn"]


@dataclass(frozen=True)
class OrderState:
    """Everything the rules need to know about one order, folded from its events."""

    issued: OrderIssued
    status: Status = "issued"
    version: int = 1
    notified_at: datetime | None = None
    notified_via: str | None = None
    notification: OrderDelivered | None = None  # the fact: channel, address, representative on record, evidence
    acknowledged_at: datetime | None = None
    outcomes: dict[str, ItemOutcomeReported] = field(default_factory=dict)
    # When the platform contested the order: kept after the review (upheld or withdrawn), since a contest that
    # happened stays part of the record; `contest_pending_since` says whether it still awaits review.
    contested_at: datetime | None = None
    contest_count: int = 0
    paused_seconds: float = 0.0  # time spent contested, which does not count against the deadline
    upheld_at: datetime | None = None
    withdrawn_at: datetime | None = None
    closed_at: datetime | None = None
    declines_accepted_at: datetime | None = None
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
        """When the platform says the last item was actioned (its claim), once every item has an outcome."""
        if len(self.outcomes) < len(self.issued.items):
            return None
        return max(o.actioned_at for o in self.outcomes.values())

    @property
    def answered_at(self) -> datetime | None:
        """When the service recorded the last item's outcome, once every item has one: what the SLA judges."""
        if len(self.outcomes) < len(self.issued.items):
            return None
        return max(o.reported_at for o in self.outcomes.values())

    @property
    def declined_item_ids(self) -> tuple[str, ...]:
        """The items whose outcome is a decline, in order."""
        return tuple(i for i in self.item_ids if (o := self.outcomes.get(i)) is not None and o.outcome == "declined")

    @property
    def contest_pending_since(self) -> datetime | None:
        """When the contest that still awaits the issuer's review was made; None if none awaits it."""
        return self.contested_at if self.status == "contested" else None

    @property
    def awaiting_review_since(self) -> datetime | None:
        """Since when the order waits for the issuer: a contest, or every item answered with some declined."""
        if self.contest_pending_since is not None:
            return self.contest_pending_since
        if self.status == "declined":
            return self.answered_at
        return None
