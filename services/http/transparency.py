"""The public transparency report: aggregates only, small cells withheld, as JSON and as CSV (no API key); and
the published months, each with its ledger inclusion proof."""

from __future__ import annotations

import hashlib
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Response

from services.http.deps import ContainerDep
from services.http.ledger import checkpoint_out, inclusion_out
from services.http.problems import problem_responses
from services.http.schemas.transparency import PublicationOut, PublicationProofOut, ReportOut
from services.ledger.errors import NotYetInLedger, PositionNotFound
from services.ledger.leaf import envelope
from services.transparency.errors import NotPublished
from services.transparency.publication import Publication, latest, parse_period, published_in, with_published
from services.transparency.render import document, to_csv
from services.transparency.report import Dimension, Period, Report
from services.transparency.service import make_report

router = APIRouter(prefix="/v1/transparency", tags=["transparency"])


From = Annotated[date | None, Query(alias="from", description="first day (a monthly report starts on the 1st)")]
To = Annotated[date | None, Query(description="last day, inclusive (default today)")]
Grouping = Annotated[Dimension | None, Query(description="one dimension, monthly reports only")]


def _report(
    c: ContainerDep, start: From = None, to: To = None, period: Period = "month", group_by: Grouping = None
) -> Report:
    """The report the query asks for: one dependency, so that the JSON and CSV forms take the same parameters.

    A published month's rows are served as published, so a figure once published never moves under its reader.
    """
    with c.read_db.read() as conn:
        made = make_report(
            conn,
            today=c.clock.now().date(),
            start=start,
            end=to,
            period=period,
            group_by=group_by,
            min_cell=c.settings.transparency_min_cell,
        )
        if made.period != "month":
            return made
        months = sorted({date.fromisoformat(r.period + "-01") for r in made.rows})
        return with_published(made, published_in(c.store, conn, months))


Made = Annotated[Report, Depends(_report)]
IfNoneMatch = Annotated[str | None, Header(description="an ETag from an earlier answer: 304 if still current")]

# Finished periods change only by late facts (an answer or contest after the period); the current one by every
# order. Shared caches (the proxy) may keep either for as long as a reader would not mind.
_MAX_AGE = {False: 300, True: 60}
_CACHED: dict[int | str, dict[str, Any]] = {
    304: {"description": "not modified: the report is still the one the ETag names"},
}


def _caching(report: Report, body: str, if_none_match: str | None) -> tuple[dict[str, str], bool]:
    """ETag and Cache-Control for an answer, and whether the reader's If-None-Match still names it (a 304).

    Weak: two answers with one tag differ in `generated_at` only (the tag is over everything else); If-None-Match
    compares weakly (RFC 9110, 13.1.2), so a tag sent back without its W/ matches too.
    """
    opaque = f'"{hashlib.sha256(body.encode()).hexdigest()[:32]}"'
    headers = {"ETag": f"W/{opaque}", "Cache-Control": f"public, max-age={_MAX_AGE[report.provisional]}"}
    given = {t.strip().removeprefix("W/") for t in (if_none_match or "").split(",")}
    return headers, opaque in given or "*" in given


@router.get(
    "/report",
    operation_id="transparency_report",
    summary="Aggregates per period, authority, category, legal basis or platform (public)",
    response_model=ReportOut,
    responses={**_CACHED, **problem_responses(400, 422)},
)
def report(made: Made, c: ContainerDep, response: Response, if_none_match: IfNoneMatch = None) -> ReportOut | Response:
    """Orders and items, outcome per item, share answered within the SLA, median and p90 time to answer.

    Finished periods only, unless `to` says otherwise; a row of the current period is marked provisional.
    """
    out = ReportOut.model_validate({**document(made), "generated_at": c.clock.now(), "published": made.published})
    headers, same = _caching(made, out.model_dump_json(exclude={"generated_at"}), if_none_match)
    if same:
        return Response(status_code=304, headers=headers)
    response.headers.update(headers)
    return out


@router.get(
    "/report.csv",
    operation_id="transparency_report_csv",
    summary="The same report as CSV (public)",
    response_class=Response,
    responses={
        200: {
            "content": {"text/csv": {"schema": {"type": "string"}}},
            "description": "one line per row, the total last",
        },
        **_CACHED,
        **problem_responses(400, 422),
    },
)
def report_csv(made: Made, if_none_match: IfNoneMatch = None) -> Response:
    """One line per row; suppressed cells have `suppressed` = yes and empty figures."""
    name = f"transparency-{made.start.isoformat()}-{made.end.isoformat()}.csv"
    body = to_csv(made)
    headers, same = _caching(made, body, if_none_match)
    if same:
        return Response(status_code=304, headers=headers)
    headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return Response(body, media_type="text/csv; charset=utf-8", headers=headers)


# ----------------------------------------------------------------------------------------------- published months

PeriodPath = Annotated[str, Path(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="YYYY-MM", examples=["2026-03"])]


def _publication_out(p: Publication) -> PublicationOut:
    return PublicationOut(
        period=p.period,
        revision=p.revision,
        supersedes=p.supersedes,
        reason=p.reason,
        generated_at=p.generated_at,
        documents=p.documents,
        sha256=p.sha256,
        stream_id=p.stream_id,
        stream_version=p.version,
        event_id=p.event_id,
        position=p.position,
        recorded_at=p.recorded_at,
    )


@router.get(
    "/publications/{period}",
    operation_id="transparency_publication",
    summary="A finished month's published report: its documents, their hashes, its revision (public)",
    response_model=PublicationOut,
    responses=problem_responses(404, 422),
)
def publication(c: ContainerDep, period: PeriodPath) -> PublicationOut:
    """The newest revision; `/proof` proves its event is in the signed ledger."""
    with c.read_db.read() as conn:
        found = latest(c.store, conn, parse_period(period))
    if found is None:
        raise NotPublished(
            f"{period} is not published (a month is, {c.settings.transparency_settle_h:g} h after it ends)"
        )
    return _publication_out(found)


@router.get(
    "/publications/{period}/proof",
    operation_id="transparency_publication_proof",
    summary="The RFC 9162 inclusion proof of a month's publication event against the signed checkpoint (public)",
    response_model=PublicationProofOut,
    responses=problem_responses(404, 409, 422),
)
def publication_proof(c: ContainerDep, period: PeriodPath) -> PublicationProofOut:
    """Hash `leaf` (RFC 8785) as a leaf, follow `inclusion.proof` to `checkpoint.root_hash`, check the checkpoint's
    signature with /v1/ledger/public-key: then `leaf.data.sha256` are the month's published hashes."""
    # The primary: the proof is the ledger's, whose tree may hold what a replica has not replayed yet.
    with c.db.read() as conn:
        found = latest(c.store, conn, parse_period(period))
        if found is None:
            raise NotPublished(f"{period} is not published")
        if found.position is None:
            raise NotYetInLedger(f"the publication of {period} has no global position yet")
        events = c.store.read_all(conn, after=found.position - 1, limit=1, seals=True)
    if not events or events[0].event_id != found.event_id:
        raise PositionNotFound(found.position)
    checkpoint = c.ledger.latest_checkpoint()
    if checkpoint.tree_size < found.position:
        raise NotYetInLedger(
            f"the publication of {period} is at position {found.position}, beyond the signed tree's"
            f" {checkpoint.tree_size} leaves"
        )
    p = c.ledger.inclusion(found.position, checkpoint.tree_size)
    witnessed = c.ledger.cosigned_checkpoint(checkpoint)
    fmt = c.ledger.leaf_formats().of_position(found.position)
    return PublicationProofOut(
        period=found.period,
        revision=found.revision,
        leaf_format=fmt,
        leaf=envelope(events[0], fmt),
        inclusion=inclusion_out(p),
        checkpoint=checkpoint_out(witnessed),
    )
