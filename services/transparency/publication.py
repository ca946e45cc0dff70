"""Published months: once a month has ended and its late outcomes had time to land, its report is fixed as a
`transparency.report_published` event on the stream `transparency-YYYY-MM`.

The event holds every document the report route serves for the month (the whole country, and each grouping) with
the SHA-256 of each document's RFC 8785 form; the ledger puts the event in its Merkle tree like any other, so a
published figure can be checked against the signed log and cannot change unseen. Revision n is stream version n:
the first publication appends at expected version 0, so two schedulers racing publish once (the loser's conflict
is the expected outcome, not an error); an amendment appends the next revision, naming the one it supersedes and
why. Once published, the report route serves the month's published rows instead of recomputing them.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Connection

from services.transparency import facts as facts_of
from services.transparency.errors import AmendmentRefused, MonthNotFinished, NotPublished, ReportError
from services.transparency.render import document, rows_of, total_of
from services.transparency.report import DIMENSIONS, Dimension, Report, build, month_of, next_month
from services.transparency.service import labeller
from shared import canonical
from shared.bus import MessageBus, Published
from shared.clock import Clock
from shared.db import Database
from shared.events import TransparencyReportPublished
from shared.eventstore import ConcurrencyError, EventStore, NewEvent, RecordedEvent

log = logging.getLogger("takedown.transparency")

STREAM_PREFIX = "transparency-"
WHOLE = "all"  # the document without a grouping; the others are named by their dimension
DOCUMENTS: tuple[str, ...] = (WHOLE, *DIMENSIONS)
_PERIOD = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def parse_period(text: str) -> date:
    """The first day of the month a `YYYY-MM` names (ReportError otherwise)."""
    found = _PERIOD.match(text)
    if found is None:
        raise ReportError(f"a period is YYYY-MM, not {text!r}")
    return date(int(found.group(1)), int(found.group(2)), 1)


def label(month: date) -> str:
    """`YYYY-MM` of a month."""
    return month.strftime("%Y-%m")


def stream_id(month: date) -> str:
    """The stream of a month's publications."""
    return STREAM_PREFIX + label(month)


def digest(doc: Mapping[str, Any]) -> str:
    """Hex SHA-256 of a document's RFC 8785 canonical JSON."""
    return hashlib.sha256(canonical.dumps(doc)).hexdigest()


def _at(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


@dataclass(frozen=True)
class Publication:
    """One revision of a month's published report, and where its event sits in the log."""

    period: str
    revision: int
    documents: dict[str, dict[str, Any]]
    sha256: dict[str, str]
    supersedes: int | None
    reason: str | None
    generated_at: datetime
    event_id: str
    stream_id: str
    version: int
    position: int | None
    recorded_at: datetime


def from_event(e: RecordedEvent) -> Publication:
    """A publication from its stored event."""
    d = e.data
    return Publication(
        period=d["period"],
        revision=int(d["revision"]),
        documents=d["documents"],
        sha256=d["sha256"],
        supersedes=d.get("supersedes"),
        reason=d.get("reason"),
        generated_at=datetime.fromisoformat(d["generated_at"]),
        event_id=e.event_id,
        stream_id=e.stream_id,
        version=e.version,
        position=e.position,
        recorded_at=e.recorded_at,
    )


def month_documents(conn: Connection, month: date, min_cell: int) -> dict[str, dict[str, Any]]:
    """Every document the report route serves for this month, computed now from the projections (as finished:
    `today` is the next month's first day, so the documents do not depend on when they are made)."""
    after = next_month(month)
    loaded = facts_of.load(conn, _at(month), _at(after))
    name = labeller(conn, loaded)
    made: dict[str, dict[str, Any]] = {}
    for key in DOCUMENTS:
        group: Dimension | None = None if key == WHOLE else key  # type: ignore[assignment]
        report = build(
            loaded,
            start=month,
            end=after - timedelta(days=1),
            period="month",
            group_by=group,
            min_cell=min_cell,
            label=name,
            today=after,
        )
        made[key] = document(report)
    return made


def latest(store: EventStore, conn: Connection, month: date) -> Publication | None:
    """The newest revision of a month's publication (None: unpublished)."""
    found = store.read_stream(conn, stream_id(month))
    return from_event(found[-1]) if found else None


def published_in(store: EventStore, conn: Connection, months: Sequence[date]) -> dict[str, Publication]:
    """The newest revision of each of these months that is published, by `YYYY-MM`, in one read."""
    streams = store.read_streams(conn, [stream_id(m) for m in months])
    return {(p := from_event(events[-1])).period: p for events in streams.values() if events}


def with_published(report: Report, published: Mapping[str, Publication]) -> Report:
    """The report with each published month's rows as published (a one-month report: its total too).

    A longer range's total is recomputed: medians and percentiles cannot be added up from published months.
    """
    if report.period != "month" or not published:
        return report
    key = WHOLE if report.group_by is None else report.group_by
    rows, used = [], {}
    for period in dict.fromkeys(r.period for r in report.rows):
        fixed = published.get(period)
        if fixed is None or key not in fixed.documents:
            rows += [r for r in report.rows if r.period == period]
            continue
        rows += rows_of(fixed.documents[key])
        used[period] = fixed.revision
    if not used:
        return report
    total = report.total
    if {r.period for r in rows} == set(used) and len(used) == 1:
        total = total_of(published[next(iter(used))].documents[key])
    return replace(report, rows=rows, total=total, suppressed_cells=sum(r.suppressed for r in rows), published=used)


class Publisher:
    """Publishes finished, settled months; amends and checks published ones. Appends go through the bus, so the
    sequencer, the ledger's feeder and the other readers hear of them as of any command's events."""

    def __init__(
        self,
        db: Database,
        store: EventStore,
        bus: MessageBus,
        clock: Clock,
        *,
        settle: timedelta,
        min_cell: int,
    ) -> None:
        self.db, self.store, self.bus, self.clock = db, store, bus, clock
        self.settle, self.min_cell = settle, min_cell

    def settled(self, month: date, now: datetime) -> bool:
        """Whether the month has ended at least the settle time ago."""
        return now >= _at(next_month(month)) + self.settle

    def due(self, conn: Connection, now: datetime) -> list[date]:
        """The finished, settled months from the first order's on that are not published yet."""
        first = facts_of.first_issued(conn)
        if first is None:
            return []
        months, at = [], month_of(first.astimezone(UTC).date())
        while self.settled(at, now):
            months.append(at)
            at = next_month(at)
        done = published_in(self.store, conn, months)
        return [m for m in months if label(m) not in done]

    def run_once(self) -> list[Publication]:
        """Publish every finished, settled, unpublished month (the scheduler's job); returns what this call published."""
        with self.db.read() as conn:
            months = self.due(conn, self.clock.now())
        made = [p for m in months if (p := self.publish(m)) is not None]
        return made

    def publish(self, month: date, actor: str = "scheduler") -> Publication | None:
        """Publish a finished month's first revision; None if it is published already (by this or a racing
        publisher). MonthNotFinished for the current month or a future one."""
        if self.clock.now() < _at(next_month(month)):
            raise MonthNotFinished(f"{label(month)} has not ended: its figures still grow")
        try:
            with self.db.transaction() as conn:
                return self._append(conn, month, 0, None, actor)
        except ConcurrencyError:
            return None  # published first by someone else: the month has its one revision 1

    def amend(self, month: date, reason: str, actor: str = "cli") -> Publication:
        """A new revision of a published month, recomputed now, superseding the newest (ConcurrencyError if another
        revision is appended meanwhile)."""
        if not reason.strip():
            raise AmendmentRefused("an amendment needs a reason")
        with self.db.transaction() as conn:
            before = latest(self.store, conn, month)
            if before is None:
                raise NotPublished(f"{label(month)} is not published: publish it first")
            return self._append(conn, month, before.revision, reason.strip(), actor)

    def check(self, month: date) -> tuple[Publication, list[str]]:
        """The newest revision of a month, and the documents whose recomputation now hashes otherwise."""
        with self.db.read() as conn:
            published = latest(self.store, conn, month)
            if published is None:
                raise NotPublished(f"{label(month)} is not published")
            now = month_documents(conn, month, self.min_cell)
        stored = published.documents

        def same(key: str) -> bool:
            # Recomputed now as published, and the stored document still the one its hash names.
            fixed = published.sha256.get(key)
            return key in now and key in stored and fixed == digest(now[key]) == digest(stored[key])

        return published, [k for k in sorted({*now, *published.sha256, *stored}) if not same(k)]

    def _append(self, conn: Connection, month: date, version: int, reason: str | None, actor: str) -> Publication:
        now = self.clock.now()
        documents = month_documents(conn, month, self.min_cell)
        event = TransparencyReportPublished(
            period=label(month),
            revision=version + 1,
            documents=documents,
            sha256={k: digest(d) for k, d in documents.items()},
            supersedes=version or None,
            reason=reason,
            generated_at=now,
        )
        meta = {"actor": actor, "role": "system"}
        recorded = self.store.append(conn, stream_id(month), version, [NewEvent.of(event, meta)], now)
        self.bus.publish(conn, (Published(e, {}) for e in recorded))
        log.info("transparency report published", extra={"period": event.period, "revision": event.revision})
        return from_event(recorded[0])
