"""Property tests: random command sequences through decide/apply keep the order's invariants.

Each example is a list of (time step, command) pairs. Commands of every kind are generated with valid and
invalid parameters (item ids drawn from the order's items plus unknown ones, actioned_at before the order,
in the past or in the future). Refused commands are skipped; after every step the whole recorded history is
checked against the rules in docs/domain.md.
"""

from __future__ import annotations

import copy
import json
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from services.orders.domain import (
    Acknowledge,
    Command,
    Contest,
    DomainError,
    Escalate,
    IssueOrder,
    OrderState,
    OutcomeReport,
    RecordDelivery,
    RecordDeliveryFailure,
    ReportOutcomes,
    Uphold,
    Withdraw,
    apply,
    decide,
    replay,
)
from shared.events import (
    CATEGORIES,
    DeliveryAttemptFailed,
    Event,
    Item,
    ItemOutcomeReported,
    OrderAcknowledged,
    OrderClosed,
    OrderContested,
    OrderDelivered,
    OrderEscalated,
    OrderIssued,
    OrderUpheld,
    OrderWithdrawn,
    dump_event,
    load_event,
)
from tests.builders import T0, issue_cmd

MAX_ITEMS = 4
KNOWN_IDS = tuple(f"i{n}" for n in range(MAX_ITEMS))  # an order with n items has i0..i{n-1}
UNKNOWN_IDS = ("ghost", "I0", "")
REFUSAL_CODES = {
    "order-exists",
    "order-not-found",
    "no-items",
    "duplicate-items",
    "category-unspecified",
    "no-reasons",
    "no-scope",
    "already-notified",
    "order-withdrawn",
    "order-closed",
    "already-acknowledged",
    "order-contested",
    "no-outcomes",
    "unknown-item",
    "outcome-already-reported",
    "reason-required",
    "actioned-in-future",
    "actioned-before-issue",
    "already-contested",
    "grounds-required",
    "not-contested",
    "bad-level",
    "already-escalated",
}


# ------------------------------------------------------------------------------------------ strategies


@dataclass(frozen=True)
class Report:
    """A ReportOutcomes resolved against the order when it is sent.

    An item is an int k (the order's k-th item, modulo its item count) or a str (an id used as is, which the
    order usually does not have). `when` is ("between", f): f of the way from the order's issue to now;
    ("future", s): s seconds after now; ("before_issue", s): s seconds before the order was issued. With
    `rest`, every item still without an outcome is reported too (removed, now).
    """

    outcomes: tuple[tuple[int | str, str, tuple[str, float], str | None], ...]
    rest: bool = False

    def build(self, state: OrderState | None, now: datetime) -> ReportOutcomes:
        ids = state.item_ids if state is not None else KNOWN_IDS
        issued_at = state.issued.issued_at if state is not None else now
        reports = [
            OutcomeReport(
                item_id=ids[i % len(ids)] if isinstance(i, int) else i,
                outcome=o,  # type: ignore[arg-type]
                actioned_at=_at(when, issued_at, now),
                reason=r,
            )
            for i, o, when, r in self.outcomes
        ]
        if self.rest and state is not None:
            named = {r.item_id for r in reports}
            reports += [
                OutcomeReport(item_id=i, outcome="removed", actioned_at=now)
                for i in ids
                if i not in state.outcomes and i not in named
            ]
        return ReportOutcomes(tuple(reports))


def _at(when: tuple[str, float], issued_at: datetime, now: datetime) -> datetime:
    kind, x = when
    if kind == "future":
        return now + timedelta(seconds=x)
    if kind == "before_issue":
        return issued_at - timedelta(seconds=x)
    return issued_at + (now - issued_at) * x


Template = Command | Report


def build(template: Template, state: OrderState | None, now: datetime) -> Command:
    return template.build(state, now) if isinstance(template, Report) else template


@st.composite
def issue_commands(draw: st.DrawFn) -> IssueOrder:
    valid = draw(st.integers(0, 5)) > 0  # mostly valid orders, so that the other commands have work to do
    n = draw(st.integers(1, MAX_ITEMS)) if valid else draw(st.integers(0, MAX_ITEMS))
    ids = list(KNOWN_IDS[:n])
    urls = [f"https://example.test/p/{k}" for k in range(n)]
    category = draw(st.sampled_from(CATEGORIES))
    spec: str | None = "unlawful content" if category == "other" else None
    reasons = "Posts insult a named minor."
    scope: tuple[str, ...] = ("KZ",)
    if not valid:
        flaw = draw(st.sampled_from(["dup-id", "dup-url", "spec", "reasons", "scope", "none"]))
        if flaw == "dup-id" and n >= 2:
            ids[1] = ids[0]
        elif flaw == "dup-url" and n >= 2:
            urls[1] = urls[0]
        elif flaw == "spec":
            category, spec = "other", draw(st.sampled_from([None, "", "  "]))
        elif flaw == "reasons":
            reasons = draw(st.sampled_from(["", " \n"]))
        elif flaw == "scope":
            scope = ()
    return issue_cmd(
        items=tuple(Item(item_id=i, url=u) for i, u in zip(ids, urls, strict=True)),
        category=category,
        category_specification=spec,
        statement_of_reasons=reasons,
        requested_action=draw(st.sampled_from(["remove", "restrict"])),
        territorial_scope=scope,
    )


item_refs: st.SearchStrategy[int | str] = st.one_of(*[st.integers(0, MAX_ITEMS - 1)] * 6, st.sampled_from(UNKNOWN_IDS))
reasons = st.sampled_from([None, "", "  ", "lawful speech", "not illegal", "satire"])
texts = st.sampled_from(["", " ", "because", "issued in error", "Статья 26"])
# actioned_at: mostly between the order's issue and now (both ends included), sometimes in the future or
# before the order was issued
whens = st.one_of(
    *[st.tuples(st.just("between"), st.sampled_from([0.0, 0.5, 1.0]) | st.floats(0, 1))] * 6,
    st.tuples(st.just("future"), st.integers(1, 3600).map(float)),
    st.tuples(st.just("before_issue"), st.integers(1, 3600).map(float)),
)

outcome_entries = st.tuples(
    item_refs,
    st.sampled_from(["removed", "restricted", "not_found", "declined"]),
    whens,
    reasons,
)

failures = st.builds(
    RecordDeliveryFailure,
    delivery_id=st.sampled_from(["d1", "d2"]),
    webhook_type=st.just("order.issued"),
    attempt=st.integers(1, 10),
    error_kind=st.sampled_from(["timeout", "http_status", "connect"]),
    duration_ms=st.floats(0, 30_000, allow_nan=False, allow_infinity=False),
    status_code=st.one_of(st.none(), st.sampled_from([404, 500, 503])),
    next_attempt_at=st.one_of(st.none(), st.just(T0 + timedelta(days=30))),
)
reports = st.one_of(
    st.builds(Report, outcomes=st.lists(outcome_entries, min_size=0, max_size=MAX_ITEMS + 1).map(tuple)),
    st.builds(Report, outcomes=st.lists(outcome_entries, min_size=1, max_size=2).map(tuple)),
    st.builds(Report, outcomes=st.lists(outcome_entries, min_size=1, max_size=1).map(tuple)),
    st.builds(Report, outcomes=st.lists(outcome_entries, max_size=1).map(tuple), rest=st.just(True)),
)
contests = st.builds(
    Contest,
    grounds=st.sampled_from(["not_illegal", "forged", "out_of_scope", "already_actioned", "other"]),
    detail=texts,
)
# Weighted so that sequences often reach every state: outcomes, contests and upholds are common, withdrawals
# (always accepted on an open order, and terminal) and repeated issue attempts are rare.
KINDS: dict[str, tuple[int, st.SearchStrategy[Any]]] = {
    "report": (12, reports),
    "deliver": (3, st.builds(RecordDelivery, delivery_id=st.sampled_from(["d1", "d2"]), attempt=st.integers(1, 10))),
    "acknowledge": (3, st.builds(Acknowledge, note=st.one_of(st.none(), texts))),
    "contest": (2, contests),
    "uphold": (3, st.builds(Uphold, reason=texts)),
    "escalate": (3, st.builds(Escalate, level=st.integers(-1, 4), reason=texts)),
    "failure": (2, failures),
    "issue": (1, issue_commands()),
    "withdraw": (1, st.builds(Withdraw, reason=texts)),
}
templates: st.SearchStrategy[Template] = st.sampled_from(
    [kind for kind, (weight, _) in KINDS.items() for _ in range(weight)]
).flatmap(lambda kind: KINDS[kind][1])
time_steps = st.one_of(st.just(0), st.integers(1, 120), st.integers(120, 3 * 86400))
steps = st.lists(st.tuples(time_steps, templates), min_size=2, max_size=30)


@st.composite
def scenarios(draw: st.DrawFn) -> list[tuple[int, Template]]:
    """Maybe a few commands before the order exists, then an issue attempt, then anything."""
    before = draw(st.lists(st.tuples(time_steps, templates), max_size=2))
    issue = (draw(time_steps), draw(issue_commands()))
    return [*before, issue, *draw(steps)]


# ------------------------------------------------------------------------------------------ invariants


def roundtrip(e: Event) -> Event:
    data = json.loads(json.dumps(dump_event(e)))
    return load_event(e.type, e.schema_version, data)


def indices(log: list[Event], *types: type[Event]) -> list[int]:
    return [n for n, e in enumerate(log) if isinstance(e, types)]


def event_time(e: Event) -> datetime:
    for name in ("issued_at", "attempted_at", "notified_at", "acknowledged_at", "reported_at", "closed_at"):
        if hasattr(e, name):
            return getattr(e, name)  # type: ignore[no-any-return]
    for name in ("contested_at", "upheld_at", "withdrawn_at", "escalated_at"):
        if hasattr(e, name):
            return getattr(e, name)  # type: ignore[no-any-return]
    raise AssertionError(f"no time on {e!r}")


def check_invariants(log: list[Event], state: OrderState | None, stored: list[Event]) -> None:
    if not log:
        assert state is None
        return
    assert state is not None
    # History: one order.issued, first; state is exactly what replaying the history (and its stored form) gives.
    assert indices(log, OrderIssued) == [0]
    assert replay(log) == state
    assert replay(stored) == state
    assert state.version == len(log)
    items = set(state.item_ids)
    assert items, "an issued order has at least one item"

    # Time never runs backwards in the record.
    times = [event_time(e) for e in log]
    assert times == sorted(times)

    # Withdrawn and closed are terminal: only failed delivery attempts may follow.
    ends = indices(log, OrderWithdrawn, OrderClosed)
    assert len(ends) <= 1
    if ends:
        assert all(isinstance(e, DeliveryAttemptFailed) for e in log[ends[0] + 1 :])
        assert state.status == ("withdrawn" if isinstance(log[ends[0]], OrderWithdrawn) else "closed")
        assert not state.is_open
    else:
        assert state.is_open

    # Outcomes: at most one per item, only for the order's items; closed iff every item has one.
    outcomes = [e for e in log if isinstance(e, ItemOutcomeReported)]
    per_item = Counter(e.item_id for e in outcomes)
    assert all(count == 1 for count in per_item.values())
    assert set(per_item) <= items
    assert set(state.outcomes) == set(per_item)
    every_item_done = set(per_item) == items
    closes = indices(log, OrderClosed)
    assert (state.status == "closed") == every_item_done
    assert len(closes) == (1 if every_item_done else 0)
    if closes:
        assert closes[0] == max(indices(log, ItemOutcomeReported)) + 1
        assert state.last_actioned_at == max(e.actioned_at for e in outcomes)
    for e in outcomes:
        assert e.outcome != "declined" or (e.reason or "").strip()
        assert state.issued.issued_at <= e.actioned_at <= e.reported_at

    # Each escalation level at most once, and levels start at 1.
    levels = Counter(e.level for e in log if isinstance(e, OrderEscalated))
    assert all(count == 1 for count in levels.values())
    assert all(level >= 1 for level in levels)
    assert state.escalation_levels == frozenset(levels)

    # Acknowledged at most once; delivered at most once and no later than any acknowledgement/outcome/contest.
    assert len(indices(log, OrderAcknowledged)) <= 1
    delivered = indices(log, OrderDelivered)
    assert len(delivered) <= 1
    acted = indices(log, OrderAcknowledged, ItemOutcomeReported, OrderContested)
    if acted:
        assert delivered and delivered[0] < acted[0]
    assert (state.notified_at is not None) == bool(delivered)
    assert (state.acknowledged_at is not None) == bool(indices(log, OrderAcknowledged))

    # Contested at most once; upheld only while contested; nothing is acknowledged, actioned or escalated
    # while a contest awaits review.
    assert len(indices(log, OrderContested)) <= 1
    awaiting = False
    for fact in log:
        if isinstance(fact, OrderContested):
            awaiting = True
        elif isinstance(fact, OrderUpheld):
            assert awaiting
            awaiting = False
        elif isinstance(fact, OrderWithdrawn):
            awaiting = False
        elif isinstance(fact, ItemOutcomeReported | OrderAcknowledged | OrderEscalated | OrderClosed):
            assert not awaiting, f"{fact.type} recorded while a contest awaits review"
    assert awaiting == (state.contested_at is not None) == (state.status == "contested")
    assert state.paused_seconds >= 0
    assert state.failed_attempts == len(indices(log, DeliveryAttemptFailed))


# ---------------------------------------------------------------------------------------------- tests


# A path random sequences seldom take: a second contest after the first was upheld (refused: once per order).
CONTEST_UPHOLD_CONTEST: list[tuple[int, Template]] = [
    (0, issue_cmd()),
    (60, Contest(grounds="forged", detail="unknown signer")),
    (60, Uphold(reason="the signature is genuine")),
    (60, Contest(grounds="not_illegal", detail="satire")),
]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
@example(CONTEST_UPHOLD_CONTEST)
def test_random_command_sequences_keep_the_invariants(scenario: list[tuple[int, Template]]) -> None:
    now = T0
    state: OrderState | None = None
    log: list[Event] = []
    stored: list[Event] = []
    for step, template in scenario:
        now += timedelta(seconds=step)
        command = build(template, state, now)
        before = copy.deepcopy(state)
        try:
            new = decide(state, command, now)
        except DomainError as refusal:
            # A refused command changes nothing and says why.
            assert refusal.code in REFUSAL_CODES
            assert state == before
            event(f"refused: {refusal.code}")
            continue
        # decide itself never changes the state it was given.
        assert state == before
        assert new, f"{command!r} was accepted but recorded nothing"
        if state is not None and not state.is_open:
            assert all(isinstance(e, DeliveryAttemptFailed) for e in new)
        for e in new:
            state = apply(state, e)
            log.append(e)
            back = roundtrip(e)
            assert back == e
            assert type(back) is type(e)
            stored.append(back)
        check_invariants(log, state, stored)
    event(f"final status: {state.status if state else 'none'}")


StoredRow = tuple[str, int, str]


def stored_row(e: Event) -> StoredRow:
    """An event as the store keeps it: its type, its schema version and the JSON text of its data."""
    return e.type, e.schema_version, json.dumps(dump_event(e))


def loaded(rows: list[StoredRow]) -> list[Event]:
    """The stored history read back, as a reader of the store rebuilds it."""
    return [load_event(type_name, version, json.loads(data)) for type_name, version, data in rows]


def decision(state: OrderState | None, command: Command, now: datetime) -> list[Event] | str:
    """What deciding records, or the code of the refusal."""
    try:
        return decide(state, command, now)
    except DomainError as refusal:
        return refusal.code


# Deciding an accepted command again at once, on the state it produced: what the rules must then answer.
REPEATED: dict[type, str] = {
    IssueOrder: "order-exists",
    RecordDelivery: "already-notified",
    Acknowledge: "already-acknowledged",
    Contest: "already-contested",
    Uphold: "not-contested",
    Withdraw: "order-withdrawn",
    Escalate: "already-escalated",
}


def expected_on_repeat(command: Command, recorded: list[Event]) -> list[Event] | str:
    if isinstance(command, RecordDeliveryFailure):
        return recorded  # every failed attempt is evidence: recorded again, the same
    if isinstance(command, ReportOutcomes):
        return "order-closed" if any(isinstance(e, OrderClosed) for e in recorded) else "outcome-already-reported"
    return REPEATED[type(command)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_the_folded_state_and_the_stored_history_replayed_decide_alike(scenario: list[tuple[int, Template]]) -> None:
    """The state folded event by event as they are decided equals the state replayed from the stored (JSON) history,
    and both decide every command alike; and the folded state remembers each decision (repeated at once, it is
    refused with the code that names what was recorded), so a fold that drops what an event says fails here."""
    now = T0
    folded: OrderState | None = None
    stored: list[StoredRow] = []
    for step, template in scenario:
        now += timedelta(seconds=step)
        replayed = replay(loaded(stored))
        assert replayed == folded
        command = build(template, folded, now)
        decided = decision(folded, command, now)
        assert decision(replayed, command, now) == decided
        if isinstance(decided, str):
            continue
        for e in decided:
            before = copy.deepcopy(folded)
            after = apply(folded, e)
            assert folded == before, f"apply changed the state it was given ({e.type})"
            folded = after
            stored.append(stored_row(e))
        assert folded is not None and folded.version == len(stored)
        again = expected_on_repeat(command, decided)
        assert decision(folded, command, now) == again, f"{command!r} accepted twice"
        assert decision(replay(loaded(stored)), command, now) == again
