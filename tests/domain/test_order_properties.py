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
    CLAIM_SKEW,
    ESCALATION_LEVELS,
    REVIEW_OVERDUE,
    AcceptDeclines,
    Acknowledge,
    Command,
    Contest,
    DomainError,
    Escalate,
    IssueOrder,
    OrderState,
    OutcomeReport,
    ReadInbox,
    RecordDelivery,
    RecordDeliveryFailure,
    RecordNotice,
    ReportOutcomes,
    Uphold,
    Withdraw,
    apply,
    decide,
    replay,
)
from services.orders.sla_clock import (
    DEFAULT_POLICY,
    _clock_runs,
    clock_running,
    clock_stopped_at,
    due_escalations,
    escalation_due_at,
    next_due,
    status,
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
    OrderDeclinesAccepted,
    OrderDelivered,
    OrderEscalated,
    OrderIssued,
    OrderUpheld,
    OrderWithdrawn,
    Redress,
    Representative,
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
    "escalation-not-due",
    "actioned-before-notice",
    "awaiting-issuer",
    "not-declined",
    "contest-window-closed",
    "bad-channel",
    "address-required",
    "evidence-required",
}


# ------------------------------------------------------------------------------------------ strategies


@dataclass(frozen=True)
class Report:
    """A ReportOutcomes resolved against the order when it is sent.

    An item is an int k (the order's k-th item, modulo its item count) or a str (an id used as is, which the
    order usually does not have). `when` is ("between", f): f of the way from the order's issue to now;
    ("future", s): s seconds after now; ("before_issue", s): s seconds before the order was issued. With
    `rest`, every item still without an outcome is reported too (removed, now). ("since_notice", f): f of the way
    from the order's notification (or issue) to now.
    """

    outcomes: tuple[tuple[int | str, str, tuple[str, float], str | None], ...]
    rest: bool = False
    rest_declined: bool = False  # the rest are declined (with a reason) instead of removed

    def build(self, state: OrderState | None, now: datetime) -> ReportOutcomes:
        ids = state.item_ids if state is not None else KNOWN_IDS
        issued_at = state.issued.issued_at if state is not None else now
        notified_at = (state.notified_at or issued_at) if state is not None else now
        reports = [
            OutcomeReport(
                item_id=ids[i % len(ids)] if isinstance(i, int) else i,
                outcome=o,  # type: ignore[arg-type]
                actioned_at=_at(when, issued_at, notified_at, now),
                reason=r,
            )
            for i, o, when, r in self.outcomes
        ]
        if self.rest and state is not None:
            named = {r.item_id for r in reports}
            reports += [
                OutcomeReport(item_id=i, outcome="declined", actioned_at=now, reason="lawful speech")
                if self.rest_declined
                else OutcomeReport(item_id=i, outcome="removed", actioned_at=now)
                for i in ids
                if i not in state.outcomes and i not in named
            ]
        return ReportOutcomes(tuple(reports))


def _at(when: tuple[str, float], issued_at: datetime, notified_at: datetime, now: datetime) -> datetime:
    kind, x = when
    if kind == "future":
        return now + timedelta(seconds=x)
    if kind == "before_issue":
        return issued_at - timedelta(seconds=x)
    if kind == "since_notice":
        return notified_at + (now - notified_at) * x
    if kind == "before_notice":
        return notified_at - timedelta(seconds=x)
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
    window = draw(st.sampled_from([None, None, 1, 24, 72]))
    redress = None if window is None else Redress(instructions="write to the ministry", contest_within_hours=window)
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
        redress=redress,
    )


item_refs: st.SearchStrategy[int | str] = st.one_of(*[st.integers(0, MAX_ITEMS - 1)] * 6, st.sampled_from(UNKNOWN_IDS))
reasons = st.sampled_from([None, "", "  ", "lawful speech", "not illegal", "satire"])
texts = st.sampled_from(["", " ", "because", "issued in error", "Статья 26"])
# actioned_at: mostly between the order's issue and now (both ends included), sometimes in the future or
# before the order was issued, by up to an hour (within the platform's clock skew, or beyond it)
SKEW_S = CLAIM_SKEW.total_seconds()
off_by = st.sampled_from([1.0, SKEW_S, SKEW_S + 1]) | st.integers(1, 3600).map(float)
whens = st.one_of(
    *[st.tuples(st.just("between"), st.sampled_from([0.0, 0.5, 1.0]) | st.floats(0, 1))] * 3,
    *[st.tuples(st.just("since_notice"), st.sampled_from([0.0, 0.5, 1.0]) | st.floats(0, 1))] * 3,
    st.tuples(st.just("future"), off_by),
    st.tuples(st.just("before_issue"), off_by),
    st.tuples(st.just("before_notice"), off_by),
)

outcome_entries = st.tuples(
    item_refs,
    st.sampled_from(["removed", "restricted", "not_found", "declined", "declined"]),
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
    st.builds(
        Report,
        outcomes=st.lists(outcome_entries, max_size=1).map(tuple),
        rest=st.just(True),
        rest_declined=st.just(True),
    ),
)
contests = st.builds(
    Contest,
    grounds=st.sampled_from(["not_illegal", "forged", "out_of_scope", "already_actioned", "other"]),
    detail=texts,
)
reps = st.one_of(st.none(), st.just(Representative(name="Rep", citizenship="KZ", email="rep@example.kz")))
notices = st.builds(
    RecordNotice,
    channel=st.sampled_from(["email", "letter", "other", "webhook"]),
    address=st.sampled_from(["rep@example.kz", "Almaty, Abay 1", ""]),
    evidence=st.sampled_from(["SMTP 250 id=1", "courier receipt 77", " "]),
    representative=reps,
)
# Weighted so that sequences often reach every state: outcomes, contests and upholds are common, withdrawals
# (always accepted on an open order, and terminal) and repeated issue attempts are rare.
KINDS: dict[str, tuple[int, st.SearchStrategy[Any]]] = {
    "report": (12, reports),
    "deliver": (3, st.builds(RecordDelivery, delivery_id=st.sampled_from(["d1", "d2"]), attempt=st.integers(1, 10))),
    "acknowledge": (3, st.builds(Acknowledge, note=st.one_of(st.none(), texts))),
    "contest": (2, contests),
    "uphold": (3, st.builds(Uphold, reason=texts)),
    "accept": (3, st.builds(AcceptDeclines, reason=texts)),
    "read": (2, st.builds(ReadInbox, address=st.one_of(st.none(), st.just("api-key:k1")), representative=reps)),
    "notice": (2, notices),
    "escalate": (4, st.builds(Escalate, level=st.integers(-1, 6), reason=texts, dead_letter=st.booleans())),
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
    for name in ("contested_at", "upheld_at", "accepted_at", "withdrawn_at", "escalated_at"):
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

    # Outcomes: only for the order's items; an item gets a second outcome only after the issuer upheld the order
    # over its decline (which took the outcome away).
    current: dict[str, ItemOutcomeReported] = {}
    for fact in log:
        if isinstance(fact, ItemOutcomeReported):
            assert fact.item_id in items
            assert fact.item_id not in current
            current[fact.item_id] = fact
        elif isinstance(fact, OrderUpheld):
            for item_id in fact.items_due_again:
                assert current.pop(item_id).outcome == "declined"
            assert not fact.items_due_again or not any(o.outcome == "declined" for o in current.values())
    assert state.outcomes == current
    every_item_answered = set(current) == items
    some_declined = any(o.outcome == "declined" for o in current.values())
    accepted = indices(log, OrderDeclinesAccepted)
    closes = indices(log, OrderClosed)
    assert len(accepted) <= 1
    if closes:
        # Closed right after the last outcome (none declined), or right after the issuer accepted the declines.
        assert every_item_answered
        before = log[closes[0] - 1]
        if accepted:
            assert accepted == [closes[0] - 1] and some_declined
            assert isinstance(before, OrderDeclinesAccepted) and set(before.item_ids) == set(state.declined_item_ids)
        else:
            assert isinstance(before, ItemOutcomeReported) and not some_declined
    else:
        assert not accepted
        if state.is_open:
            assert not (every_item_answered and not some_declined), "every item answered, none declined, not closed"
            # Every item answered with a decline: the order waits for the issuer.
            assert (state.status == "declined") == (every_item_answered and some_declined)
    for e in (e for e in log if isinstance(e, ItemOutcomeReported)):
        assert e.outcome != "declined" or (e.reason or "").strip()
        assert state.issued.issued_at - CLAIM_SKEW <= e.actioned_at <= e.reported_at + CLAIM_SKEW
        if state.notified_at is not None and state.notified_at < e.reported_at:
            assert e.actioned_at >= state.notified_at - CLAIM_SKEW, "a claim of acting before the platform knew"

    # Each escalation level at most once, and only known levels.
    levels = Counter(e.level for e in log if isinstance(e, OrderEscalated))
    assert all(count == 1 for count in levels.values())
    assert set(levels) <= set(ESCALATION_LEVELS)
    assert state.escalation_levels == frozenset(levels)

    # Notified at most once, by one channel, and before any acknowledgement, outcome or contest.
    assert len(indices(log, OrderAcknowledged)) <= 1
    delivered = indices(log, OrderDelivered)
    assert len(delivered) <= 1
    acted = indices(log, OrderAcknowledged, ItemOutcomeReported, OrderContested)
    if acted:
        assert delivered and delivered[0] < acted[0]
    assert (state.notified_at is not None) == bool(delivered)
    if delivered:
        notice = log[delivered[0]]
        assert isinstance(notice, OrderDelivered) and state.notification == notice
        assert notice.channel in ("webhook", "inbox") or (notice.evidence or "").strip()
    assert (state.acknowledged_at is not None) == bool(indices(log, OrderAcknowledged))

    # Contested at most once, and within the order's window; upheld only while the issuer is asked to review;
    # the platform does nothing while a contest or its declines await review, and only the issuer's level
    # escalates then.
    assert len(indices(log, OrderContested)) <= 1
    window = state.issued.redress.contest_within_hours if state.issued.redress else None
    awaiting: str | None = None
    outcomes_then: dict[str, str] = {}
    for fact in log:
        if isinstance(fact, OrderContested):
            assert awaiting is None
            awaiting = "contest"
            if window is not None:
                assert state.notified_at is not None
                assert fact.contested_at <= state.notified_at + timedelta(hours=window)
        elif isinstance(fact, OrderUpheld):
            assert awaiting is not None
            assert bool(fact.items_due_again) == (awaiting == "declines")
            for item_id in fact.items_due_again:
                outcomes_then.pop(item_id)
            awaiting = None
        elif isinstance(fact, OrderDeclinesAccepted):
            assert awaiting == "declines"
            awaiting = None
        elif isinstance(fact, OrderWithdrawn):
            awaiting = None
        elif isinstance(fact, ItemOutcomeReported | OrderAcknowledged | OrderClosed):
            assert awaiting is None, f"{fact.type} recorded while the issuer is asked to review"
            if isinstance(fact, ItemOutcomeReported):
                outcomes_then[fact.item_id] = fact.outcome
                if set(outcomes_then) == items and "declined" in outcomes_then.values():
                    awaiting = "declines"
        elif isinstance(fact, OrderEscalated):
            assert awaiting is None or fact.level == REVIEW_OVERDUE
    assert (awaiting == "contest") == (state.contest_pending_since is not None) == (state.status == "contested")
    # A contest that happened stays on the record after its review (upheld or withdrawn).
    contests = [e for e in log if isinstance(e, OrderContested)]
    assert state.contested_at == (contests[0].contested_at if contests else None)
    assert (awaiting == "declines") == (state.status == "declined")
    assert state.paused_seconds >= 0
    assert state.failed_attempts == len(indices(log, DeliveryAttemptFailed))


def check_schedule(state: OrderState | None, now: datetime) -> None:
    """The schedule and the rule agree: what `due_escalations` lists is accepted now, and nothing else is."""
    if state is None:
        return
    due = {e.level for e in due_escalations(state, DEFAULT_POLICY, now)}
    for level in ESCALATION_LEVELS:
        try:
            decide(state, Escalate(level=level, reason="sweep"), now)
            accepted = True
        except DomainError:
            accepted = False
        assert accepted == (level in due), f"level {level}: schedule says {level in due}, rule {accepted}"
        at = escalation_due_at(state, level, DEFAULT_POLICY)
        assert level not in due or (at is not None and at <= now)
    upcoming = next_due(state, DEFAULT_POLICY)
    assert (upcoming is None) or state.is_open
    sla = status(state, DEFAULT_POLICY, now)
    # "Is the clock running" has one meaning: the status's, and the schedule's reading of the state agree.
    assert clock_running(sla) == _clock_runs(state)
    stopped = clock_stopped_at(state)
    assert clock_running(sla) or sla in ("awaiting_delivery", "withdrawn") or stopped is not None, sla
    assert (sla == "declined") == (state.status == "declined" or state.declines_accepted_at is not None)
    if sla in ("met", "met_late"):
        assert state.status == "closed" and not state.declined_item_ids


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
        check_schedule(state, now)
        event(f"recorded: {type(command).__name__}")
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
    ReadInbox: "already-notified",
    RecordNotice: "already-notified",
    AcceptDeclines: "order-closed",
    Acknowledge: "already-acknowledged",
    Contest: "already-contested",
    Uphold: "not-contested",
    Withdraw: "order-withdrawn",
    Escalate: "already-escalated",
}


def expected_on_repeat(command: Command, recorded: list[Event], after: OrderState) -> list[Event] | str:
    if isinstance(command, RecordDeliveryFailure):
        return recorded  # every failed attempt is evidence: recorded again, the same
    if isinstance(command, ReportOutcomes):
        if any(isinstance(e, OrderClosed) for e in recorded):
            return "order-closed"
        # Every item answered with a decline: the order now waits for the issuer.
        return "awaiting-issuer" if after.status == "declined" else "outcome-already-reported"
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
        again = expected_on_repeat(command, decided, folded)
        assert decision(folded, command, now) == again, f"{command!r} accepted twice"
        assert decision(replay(loaded(stored)), command, now) == again
