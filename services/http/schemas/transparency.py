"""The HTTP shapes of the public transparency report."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from services.http.schemas.ledger import CheckpointOut, InclusionOut
from services.transparency.facts import OUTCOMES
from services.transparency.report import Dimension, Period


class FiguresOut(BaseModel):
    """A published cell's figures."""

    orders: int
    items: int
    outcomes: dict[str, int] = Field(description=f"items by outcome: {', '.join(OUTCOMES)}")
    orders_contested: int = Field(description="orders contested, awaiting review or reviewed (upheld or withdrawn)")
    orders_withdrawn: int
    sla_decided: int = Field(description="orders whose deadline is decided: answered, declined, or breached")
    sla_met: int = Field(description="orders fully answered within the SLA")
    share_met: float | None = Field(description="sla_met / sla_decided")
    answered: int = Field(description="orders with every item answered")
    median_answer_seconds: float | None = Field(description="from notification to the last item's answer")
    p90_answer_seconds: float | None


class RowOut(BaseModel):
    """A period's row (`dimension` null) or one group's cell within a period; no figures when suppressed."""

    period: str = Field(description="YYYY-MM, YYYY-MM-DD")
    dimension: Dimension | None
    group: str | None
    label: str | None
    suppressed: bool
    provisional: bool = Field(description="the period has not ended: its figures still grow")
    figures: FiguresOut | None


class ReportOut(BaseModel):
    """The transparency report of a range."""

    model_config = ConfigDict(populate_by_name=True)

    from_: date = Field(alias="from")
    to: date
    period: Period
    group_by: Dimension | None
    provisional: bool = Field(description="the range holds the current, unfinished period")
    generated_at: datetime
    min_cell: int = Field(description="cells with fewer orders than this are suppressed")
    suppressed_cells: int
    suppression_rule: str
    rows: list[RowOut]
    total: FiguresOut = Field(description="the published period rows added up")
    published: dict[str, int] = Field(
        default_factory=dict,
        description="the months served as published, with the revision: their rows (a one-month report: its total"
        " too) are the published report's (GET /v1/transparency/publications/{period}), never a recomputation",
    )


class PublicationOut(BaseModel):
    """The newest revision of a month's published report: every document, each document's hash, and its event."""

    period: str = Field(description="YYYY-MM")
    revision: int = Field(description="1 for the first publication; an amendment adds one")
    supersedes: int | None = Field(description="the revision this one replaces (null for revision 1)")
    reason: str | None = Field(description="why the month was amended (null for revision 1)")
    generated_at: datetime
    documents: dict[str, dict[str, Any]] = Field(
        description="`all` (no grouping) and one per grouping (authority, category, legal_basis, platform): each the"
        " report route's JSON for the month, without `generated_at` and `published`"
    )
    sha256: dict[str, str] = Field(description="per document: hex SHA-256 of its RFC 8785 canonical JSON")
    stream_id: str = Field(description="transparency-YYYY-MM")
    stream_version: int = Field(description="the event's version in its stream (= revision)")
    event_id: str
    position: int | None = Field(description="the event's global position (its ledger leaf index + 1); null: not yet")
    recorded_at: datetime


class PublicationProofOut(BaseModel):
    """The publication's event, its ledger leaf, and the RFC 9162 inclusion proof against a signed checkpoint."""

    period: str
    revision: int
    leaf_format: int = Field(description="the leaf's format (services/ledger/leaf.py)")
    leaf: dict[str, Any] = Field(
        description="the event's envelope as the leaf commits to it: its RFC 8785 bytes, hashed as"
        " SHA-256(0x00 || bytes), give `inclusion.leaf_hash`; `leaf.data` is the publication"
    )
    inclusion: InclusionOut
    checkpoint: CheckpointOut = Field(description="the signed checkpoint whose root the proof leads to")
