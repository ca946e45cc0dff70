"""Example-based tests of every command and every refusal of the order aggregate."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from services.orders.domain import (
    CLAIM_SKEW,
    DEADLINE_MISSED,
    NOT_NOTIFIED,
    REVIEW_OVERDUE,
    STILL_OPEN,
    STILL_OPEN_LONG,
    AcceptDeclines,
    Acknowledge,
    Command,
    Contest,
    DomainError,
    Escalate,
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
from shared.events import (
    DeliveryAttemptFailed,
    Item,
    ItemOutcomeReported,
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
    Redress,
    Representative,
    load_event,
)
from tests.builders import T0, execute, issue_cmd, run

H = timedelta(hours=1)
S = timedelta(seconds=1)


def issued(n_items: int = 2) -> OrderState:
    return run(None, (issue_cmd(n_items), T0))


def delivered(n_items: int = 2) -> OrderState:
    return run(issued(n_items), (RecordDelivery(delivery_id="d1", attempt=1), T0 + H))


def acknowledged(n_items: int = 2) -> OrderState:
    return run(delivered(n_items), (Acknowledge(note="on it"), T0 + 2 * H))


def contested(n_items: int = 2) -> OrderState:
    return run(delivered(n_items), (Contest(grounds="not_illegal", detail="satire"), T0 + 2 * H))


def upheld(n_items: int = 2) -> OrderState:
    return run(contested(n_items), (Uphold(reason="it is illegal"), T0 + 5 * H))


def withdrawn(n_items: int = 2) -> OrderState:
    return run(delivered(n_items), (Withdraw(reason="issued in error"), T0 + 2 * H))


def closed(n_items: int = 2) -> OrderState:
    outcomes = tuple(OutcomeReport(f"i{n}", "removed", T0 + 2 * H) for n in range(n_items))
    return run(delivered(n_items), (ReportOutcomes(outcomes), T0 + 3 * H))


def declined(n_items: int = 2) -> OrderState:
    """Every item answered at T0+3h, the last one declined: the order waits for the issuer."""
    outcomes = tuple(
        OutcomeReport(f"i{n}", "declined" if n == n_items - 1 else "removed", T0 + 2 * H, "lawful satire")
        for n in range(n_items)
    )
    return run(delivered(n_items), (ReportOutcomes(outcomes), T0 + 3 * H))


def out(item_id: str, outcome: str = "removed", at: datetime = T0 + H, reason: str | None = None) -> OutcomeReport:
    return OutcomeReport(item_id=item_id, outcome=outcome, actioned_at=at, reason=reason)  # type: ignore[arg-type]


def refused(state: OrderState | None, command: Command, now: datetime) -> str:
    """Assert that the command is refused and changes nothing; return the refusal code."""
    before = copy.deepcopy(state)
    with pytest.raises(DomainError) as info:
        decide(state, command, now)
    assert state == before
    assert info.value.reason
    return info.value.code


BUILDERS: dict[str, Callable[[], OrderState]] = {
    "issued": issued,
    "delivered": delivered,
    "acknowledged": acknowledged,
    "contested": contested,
    "upheld": upheld,
    "withdrawn": withdrawn,
    "closed": closed,
    "declined": declined,
}
LATER = T0 + 10 * H


# ------------------------------------------------------------------------------------------------- issue


def test_issue_records_the_order_as_given_with_issued_at_now() -> None:
    cmd = issue_cmd(3, category="other", category_specification="hate speech", territorial_scope=("KZ", "KG"))
    events = decide(None, cmd, T0)
    assert len(events) == 1
    event = events[0]
    assert isinstance(event, OrderIssued)
    assert event.issued_at == T0
    assert event.order_id == "ord-1"
    assert event.issuer_reference == "MCI-2026-0001"
    assert event.category == "other"
    assert event.category_specification == "hate speech"
    assert event.items == cmd.order.items
    assert OrderFields(**{k: getattr(event, k) for k in OrderFields.model_fields}) == cmd.order
    assert event.territorial_scope == ("KZ", "KG")
    state = apply(None, event)
    assert state.status == "issued"
    assert state.version == 1
    assert state.order_id == "ord-1"
    assert state.item_ids == ("i0", "i1", "i2")
    assert state.notified_at is None
    assert state.is_open


def test_issue_refused_when_order_exists() -> None:
    assert refused(issued(), issue_cmd(), LATER) == "order-exists"


def test_issue_refused_without_items() -> None:
    assert refused(None, issue_cmd(0), T0) == "no-items"


def test_issue_refused_with_duplicate_item_ids() -> None:
    items = (Item(item_id="a", url="https://x.test/1"), Item(item_id="a", url="https://x.test/2"))
    assert refused(None, issue_cmd(items=items), T0) == "duplicate-items"


def test_issue_refused_with_duplicate_urls() -> None:
    items = (Item(item_id="a", url="https://x.test/1"), Item(item_id="b", url="https://x.test/1"))
    assert refused(None, issue_cmd(items=items), T0) == "duplicate-items"


@pytest.mark.parametrize("spec", [None, "", "   "])
def test_issue_refused_for_other_category_without_specification(spec: str | None) -> None:
    assert refused(None, issue_cmd(category="other", category_specification=spec), T0) == "category-unspecified"


@pytest.mark.parametrize("reasons", ["", "  \n\t"])
def test_issue_refused_without_statement_of_reasons(reasons: str) -> None:
    assert refused(None, issue_cmd(statement_of_reasons=reasons), T0) == "no-reasons"


def test_issue_refused_without_territorial_scope() -> None:
    assert refused(None, issue_cmd(territorial_scope=()), T0) == "no-scope"


@pytest.mark.parametrize(
    "command",
    [
        RecordDeliveryFailure(
            delivery_id="d1", webhook_type="order.issued", attempt=1, error_kind="timeout", duration_ms=1
        ),
        RecordDelivery(delivery_id="d1", attempt=1),
        Acknowledge(),
        ReportOutcomes((out("i0"),)),
        Contest(grounds="forged", detail="no such authority"),
        Uphold(reason="x"),
        Withdraw(reason="x"),
        Escalate(level=1, reason="x"),
        ReadInbox(),
        RecordNotice(channel="email", address="rep@example.kz", evidence="message id 1"),
        AcceptDeclines(reason="x"),
    ],
    ids=lambda c: type(c).__name__,
)
def test_every_command_but_issue_refused_for_a_missing_order(command: Command) -> None:
    assert refused(None, command, T0) == "order-not-found"


def test_apply_refuses_events_before_issue() -> None:
    with pytest.raises(ValueError):
        apply(None, OrderAcknowledged(acknowledged_at=T0))


# -------------------------------------------------------------------------------------- delivery failure


@pytest.mark.parametrize("state_name", list(BUILDERS))
def test_delivery_failure_is_recorded_in_any_state(state_name: str) -> None:
    state = BUILDERS[state_name]()
    cmd = RecordDeliveryFailure(
        delivery_id="d9",
        webhook_type="order.issued",
        attempt=3,
        error_kind="http_status",
        duration_ms=812.5,
        status_code=503,
        next_attempt_at=LATER + H,
    )
    events = decide(state, cmd, LATER)
    assert events == [
        DeliveryAttemptFailed(
            delivery_id="d9",
            webhook_type="order.issued",
            attempt=3,
            attempted_at=LATER,
            status_code=503,
            error_kind="http_status",
            duration_ms=812.5,
            next_attempt_at=LATER + H,
        )
    ]
    after = apply(state, events[0])
    assert after.failed_attempts == state.failed_attempts + 1
    assert after.status == state.status
    assert after.version == state.version + 1
    assert after.notified_at == state.notified_at


# ------------------------------------------------------------------------------------------------ delivery


def test_delivery_starts_the_clock_via_webhook() -> None:
    state, events = execute(issued(), RecordDelivery(delivery_id="d1", attempt=2), T0 + H)
    assert events == [OrderDelivered(channel="webhook", notified_at=T0 + H, delivery_id="d1", attempt=2)]
    assert state.status == "delivered"
    assert state.notified_at == T0 + H
    assert state.notified_via == "webhook"


def test_delivery_after_failures_still_records_delivery() -> None:
    state = run(
        issued(),
        (RecordDeliveryFailure("d1", "order.issued", 1, "timeout", 10_000.0), T0 + S),
        (RecordDelivery("d1", 2), T0 + H),
    )
    assert state.failed_attempts == 1
    assert state.notified_at == T0 + H


def test_delivery_refused_once_notified() -> None:
    assert refused(delivered(), RecordDelivery(delivery_id="d2", attempt=1), LATER) == "already-notified"


def test_delivery_refused_once_notified_through_inbox() -> None:
    state = run(issued(), (Acknowledge(), T0 + H))
    assert state.notified_via == "inbox"
    assert refused(state, RecordDelivery(delivery_id="d1", attempt=1), LATER) == "already-notified"


def test_delivery_refused_for_withdrawn_undelivered_order() -> None:
    state = run(issued(), (Withdraw(reason="error"), T0 + H))
    assert refused(state, RecordDelivery(delivery_id="d1", attempt=1), LATER) == "order-withdrawn"


# --------------------------------------------------------------------------------------------- acknowledge


def test_acknowledge_a_delivered_order() -> None:
    state, events = execute(delivered(), Acknowledge(note="looking"), T0 + 2 * H)
    assert events == [OrderAcknowledged(acknowledged_at=T0 + 2 * H, note="looking")]
    assert state.status == "acknowledged"
    assert state.acknowledged_at == T0 + 2 * H
    assert state.notified_at == T0 + H  # unchanged


def test_acknowledging_an_undelivered_order_records_inbox_notification_first() -> None:
    state, events = execute(issued(), Acknowledge(), T0 + H)
    assert events == [
        OrderDelivered(channel="inbox", notified_at=T0 + H),
        OrderAcknowledged(acknowledged_at=T0 + H),
    ]
    assert state.status == "acknowledged"
    assert state.notified_at == T0 + H
    assert state.notified_via == "inbox"


def test_acknowledge_refused_twice() -> None:
    assert refused(acknowledged(), Acknowledge(), LATER) == "already-acknowledged"


def test_acknowledge_refused_while_contested() -> None:
    assert refused(contested(), Acknowledge(), LATER) == "order-contested"


def test_acknowledge_allowed_after_contest_upheld() -> None:
    state, _ = execute(upheld(), Acknowledge(), LATER)
    assert state.status == "acknowledged"


def test_acknowledge_refused_when_withdrawn() -> None:
    assert refused(withdrawn(), Acknowledge(), LATER) == "order-withdrawn"


def test_acknowledge_refused_when_closed() -> None:
    assert refused(closed(), Acknowledge(), LATER) == "order-closed"


# ------------------------------------------------------------------------------------------------ outcomes


@pytest.mark.parametrize("outcome", ["removed", "restricted", "not_found"])
def test_outcome_recorded_per_item_and_order_stays_open(outcome: str) -> None:
    now = T0 + 3 * H
    state, events = execute(acknowledged(2), ReportOutcomes((out("i1", outcome, T0 + 2 * H),)), now)
    assert events == [
        ItemOutcomeReported(item_id="i1", outcome=outcome, actioned_at=T0 + 2 * H, reported_at=now)  # type: ignore[arg-type]
    ]
    assert set(state.outcomes) == {"i1"}
    assert state.status == "acknowledged"
    assert state.is_open
    assert state.last_actioned_at is None


def test_declined_with_reason_is_recorded() -> None:
    state, events = execute(delivered(2), ReportOutcomes((out("i0", "declined", reason="lawful satire"),)), LATER)
    assert isinstance(events[0], ItemOutcomeReported)
    assert events[0].reason == "lawful satire"
    assert state.outcomes["i0"].outcome == "declined"


@pytest.mark.parametrize("reason", [None, "", "   "])
def test_declined_without_reason_refused(reason: str | None) -> None:
    cmd = ReportOutcomes((out("i0", "declined", reason=reason),))
    assert refused(delivered(), cmd, LATER) == "reason-required"


def test_outcome_for_unknown_item_refused() -> None:
    assert refused(delivered(), ReportOutcomes((out("nope"),)), LATER) == "unknown-item"


def test_outcome_refused_for_item_that_already_has_one() -> None:
    state = run(delivered(3), (ReportOutcomes((out("i0"),)), T0 + 2 * H))
    assert refused(state, ReportOutcomes((out("i0", "not_found"),)), LATER) == "outcome-already-reported"


def test_same_item_twice_in_one_report_refused() -> None:
    cmd = ReportOutcomes((out("i0"), out("i0", "restricted")))
    assert refused(delivered(3), cmd, LATER) == "outcome-already-reported"


def test_empty_report_refused() -> None:
    assert refused(delivered(), ReportOutcomes(()), LATER) == "no-outcomes"


def test_one_bad_outcome_refuses_the_whole_report() -> None:
    cmd = ReportOutcomes((out("i0"), out("zzz")))
    assert refused(delivered(3), cmd, LATER) == "unknown-item"


def test_actioned_in_the_future_refused() -> None:
    cmd = ReportOutcomes((out("i0", at=LATER + CLAIM_SKEW + S),))
    assert refused(delivered(), cmd, LATER) == "actioned-in-future"


def test_actioned_a_little_ahead_of_our_clock_is_the_platforms_claim() -> None:
    state, _ = execute(delivered(), ReportOutcomes((out("i0", at=LATER + CLAIM_SKEW),)), LATER)
    assert state.outcomes["i0"].actioned_at == LATER + CLAIM_SKEW


def test_actioned_exactly_now_is_accepted() -> None:
    state, _ = execute(delivered(), ReportOutcomes((out("i0", at=LATER),)), LATER)
    assert state.outcomes["i0"].actioned_at == LATER


def test_actioned_before_issue_refused_while_not_notified() -> None:
    cmd = ReportOutcomes((out("i0", at=T0 - CLAIM_SKEW - S),))
    assert refused(issued(), cmd, LATER) == "actioned-before-issue"


def test_actioned_exactly_at_issue_is_accepted_while_not_notified() -> None:
    state, _ = execute(issued(), ReportOutcomes((out("i0", at=T0),)), LATER)
    assert state.outcomes["i0"].actioned_at == T0
    assert state.notified_at == LATER  # the report itself notified the platform (inbox)


def test_backdated_actioned_at_before_notification_refused() -> None:
    # Notified at T0+1h: a claim of having acted earlier than the skew allows is refused, though after the issue.
    early = T0 + H - CLAIM_SKEW - S
    assert refused(delivered(), ReportOutcomes((out("i0", at=early),)), LATER) == "actioned-before-notice"
    assert refused(delivered(), ReportOutcomes((out("i0", at=T0 - S),)), LATER) == "actioned-before-notice"


def test_acting_as_the_webhook_arrives_is_accepted_though_before_the_recorded_notice() -> None:
    # The platform acted on the webhook a few seconds before the service recorded the answer as the notice.
    state, _ = execute(delivered(), ReportOutcomes((out("i0", at=T0 + H - CLAIM_SKEW),)), LATER)
    assert state.outcomes["i0"].actioned_at == T0 + H - CLAIM_SKEW


def test_actioned_exactly_at_notification_is_accepted_and_kept_as_the_claim() -> None:
    state, events = execute(delivered(), ReportOutcomes((out("i0", at=T0 + H),)), LATER)
    assert events == [ItemOutcomeReported(item_id="i0", outcome="removed", actioned_at=T0 + H, reported_at=LATER)]
    assert state.outcomes["i0"].actioned_at == T0 + H


def test_order_closes_when_every_item_has_an_outcome_in_one_report() -> None:
    cmd = ReportOutcomes((out("i0", at=T0 + H), out("i1", "not_found", at=T0 + 2 * H)))
    state, events = execute(delivered(2), cmd, LATER)
    assert [type(e) for e in events] == [ItemOutcomeReported, ItemOutcomeReported, OrderClosed]
    assert events[-1] == OrderClosed(closed_at=LATER)
    assert state.status == "closed"
    assert state.closed_at == LATER
    assert not state.is_open
    assert state.last_actioned_at == T0 + 2 * H


def test_order_closes_when_the_last_item_gets_its_outcome() -> None:
    state = run(
        acknowledged(3),
        (ReportOutcomes((out("i0", at=T0 + 3 * H),)), T0 + 3 * H),
        (ReportOutcomes((out("i2", "not_found", at=T0 + 4 * H),)), T0 + 4 * H),
    )
    assert state.status == "acknowledged"
    state, events = execute(state, ReportOutcomes((out("i1", "restricted", at=T0 + 4 * H),)), T0 + 5 * H)
    assert [type(e) for e in events] == [ItemOutcomeReported, OrderClosed]
    assert state.status == "closed"
    assert state.last_actioned_at == T0 + 4 * H


def test_outcome_on_undelivered_order_records_inbox_notification_first() -> None:
    state, events = execute(issued(2), ReportOutcomes((out("i0", at=T0 + H),)), T0 + H)
    assert events[0] == OrderDelivered(channel="inbox", notified_at=T0 + H)
    assert isinstance(events[1], ItemOutcomeReported)
    assert state.status == "delivered"
    assert state.notified_via == "inbox"


def test_outcome_refused_while_contested() -> None:
    assert refused(contested(), ReportOutcomes((out("i0"),)), LATER) == "order-contested"


def test_outcome_allowed_after_contest_upheld() -> None:
    state, _ = execute(upheld(1), ReportOutcomes((out("i0", at=LATER),)), LATER)
    assert state.status == "closed"


def test_outcome_refused_when_withdrawn() -> None:
    assert refused(withdrawn(), ReportOutcomes((out("i0"),)), LATER) == "order-withdrawn"


def test_outcome_refused_when_closed() -> None:
    assert refused(closed(), ReportOutcomes((out("i0"),)), LATER) == "order-closed"


# ------------------------------------------------------------------------------------------ contest/uphold


def test_contest_pauses_the_order() -> None:
    state, events = execute(acknowledged(), Contest(grounds="out_of_scope", detail="not in KZ"), T0 + 3 * H)
    assert events == [OrderContested(grounds="out_of_scope", detail="not in KZ", contested_at=T0 + 3 * H)]
    assert state.status == "contested"
    assert state.contested_at == T0 + 3 * H
    assert state.contest_count == 1


def test_contesting_an_undelivered_order_records_inbox_notification_first() -> None:
    state, events = execute(issued(), Contest(grounds="forged", detail="unknown signer"), T0 + H)
    assert events == [
        OrderDelivered(channel="inbox", notified_at=T0 + H),
        OrderContested(grounds="forged", detail="unknown signer", contested_at=T0 + H),
    ]
    assert state.status == "contested"
    assert state.notified_at == T0 + H


def test_contest_refused_while_contested() -> None:
    assert refused(contested(), Contest(grounds="other", detail="again"), LATER) == "already-contested"


def test_contest_refused_after_contest_upheld() -> None:
    assert refused(upheld(), Contest(grounds="other", detail="again"), LATER) == "already-contested"


@pytest.mark.parametrize("detail", ["", "  "])
def test_contest_needs_detail(detail: str) -> None:
    assert refused(delivered(), Contest(grounds="not_illegal", detail=detail), LATER) == "grounds-required"


def test_contest_refused_when_withdrawn() -> None:
    assert refused(withdrawn(), Contest(grounds="other", detail="x"), LATER) == "order-withdrawn"


def test_contest_refused_when_closed() -> None:
    assert refused(closed(), Contest(grounds="other", detail="x"), LATER) == "order-closed"


def test_uphold_resumes_and_accounts_paused_time() -> None:
    state = contested()  # delivered at T0+1h, contested at T0+2h
    state, events = execute(state, Uphold(reason="content is illegal"), T0 + 5 * H)
    assert events == [OrderUpheld(reason="content is illegal", upheld_at=T0 + 5 * H)]
    assert state.status == "delivered"
    # The contest stays on the record; it no longer awaits review.
    assert state.contested_at == T0 + 2 * H and state.contest_pending_since is None
    assert state.upheld_at == T0 + 5 * H
    assert state.paused_seconds == 3 * 3600


def test_uphold_returns_an_acknowledged_order_to_acknowledged() -> None:
    state = run(
        acknowledged(),
        (Contest(grounds="not_illegal", detail="news"), T0 + 3 * H),
        (Uphold(reason="no"), T0 + 3 * H + 90 * S),
    )
    assert state.status == "acknowledged"
    assert state.paused_seconds == 90


def test_uphold_keeps_partial_outcomes() -> None:
    state = run(
        delivered(2),
        (ReportOutcomes((out("i0", at=T0 + H),)), T0 + 2 * H),
        (Contest(grounds="already_actioned", detail="i1 is gone too"), T0 + 3 * H),
        (Uphold(reason="still up"), T0 + 4 * H),
    )
    assert set(state.outcomes) == {"i0"}
    assert state.status == "delivered"
    assert state.paused_seconds == 3600


@pytest.mark.parametrize("state_name", ["issued", "delivered", "acknowledged", "upheld"])
def test_uphold_refused_unless_contested(state_name: str) -> None:
    assert refused(BUILDERS[state_name](), Uphold(reason="x"), LATER) == "not-contested"


def test_uphold_refused_when_withdrawn_during_contest() -> None:
    state = run(contested(), (Withdraw(reason="we reconsidered"), T0 + 3 * H))
    assert refused(state, Uphold(reason="x"), LATER) == "order-withdrawn"


def test_uphold_refused_when_closed() -> None:
    assert refused(closed(), Uphold(reason="x"), LATER) == "order-closed"


# ------------------------------------------------------------------------------------------------ withdraw


@pytest.mark.parametrize("state_name", ["issued", "delivered", "acknowledged", "contested", "upheld"])
def test_withdraw_any_open_order(state_name: str) -> None:
    state, events = execute(BUILDERS[state_name](), Withdraw(reason="issued in error"), LATER)
    assert events == [OrderWithdrawn(reason="issued in error", withdrawn_at=LATER)]
    assert state.status == "withdrawn"
    assert state.withdrawn_at == LATER
    # Nothing awaits review any more; a contest made before the withdrawal stays on the record.
    assert state.contest_pending_since is None
    assert (state.contested_at is not None) == (state_name in ("contested", "upheld"))
    assert not state.is_open


def test_withdraw_partially_actioned_order() -> None:
    state = run(delivered(2), (ReportOutcomes((out("i0"),)), T0 + 2 * H), (Withdraw(reason="moot"), LATER))
    assert state.status == "withdrawn"
    assert set(state.outcomes) == {"i0"}


def test_withdraw_refused_when_closed() -> None:
    assert refused(closed(), Withdraw(reason="x"), LATER) == "order-closed"


def test_withdraw_refused_twice() -> None:
    assert refused(withdrawn(), Withdraw(reason="x"), LATER) == "order-withdrawn"


# ------------------------------------------------------------------------------------------------ escalate

DUE = T0 + 25 * H  # delivered() is notified at T0+1h; the default deadline is 24 h later


def test_not_notified_escalates_at_its_time_and_once() -> None:
    state = issued()
    assert refused(state, Escalate(NOT_NOTIFIED, "late"), T0 + H - S) == "escalation-not-due"
    state, events = execute(state, Escalate(NOT_NOTIFIED, "not notified within 1 h"), T0 + H)
    assert events == [OrderEscalated(level=NOT_NOTIFIED, reason="not notified within 1 h", escalated_at=T0 + H)]
    assert state.escalation_levels == frozenset({NOT_NOTIFIED})
    assert state.status == "issued"
    assert refused(state, Escalate(NOT_NOTIFIED, "again"), LATER) == "already-escalated"


def test_not_notified_does_not_apply_once_notified() -> None:
    assert refused(delivered(), Escalate(NOT_NOTIFIED, "x"), LATER) == "escalation-not-due"


def test_a_dead_letter_escalates_not_notified_early_but_only_once_and_only_unnotified() -> None:
    early = T0 + 10 * 60 * S
    state, _ = execute(issued(), Escalate(NOT_NOTIFIED, "push dead-lettered", dead_letter=True), early)
    assert state.escalation_levels == frozenset({NOT_NOTIFIED})
    assert refused(state, Escalate(NOT_NOTIFIED, "scheduled"), T0 + 2 * H) == "already-escalated"
    dead = Escalate(NOT_NOTIFIED, "push dead-lettered", dead_letter=True)
    assert refused(delivered(), dead, LATER) == "escalation-not-due"
    # A dead letter is evidence of non-notification only: it does not hurry any other level.
    assert refused(delivered(), Escalate(DEADLINE_MISSED, "x", dead_letter=True), T0 + 2 * H) == "escalation-not-due"


@pytest.mark.parametrize(
    ("level", "due"), [(DEADLINE_MISSED, DUE), (STILL_OPEN, DUE + 24 * H), (STILL_OPEN_LONG, DUE + 72 * H)]
)
def test_deadline_levels_fall_due_at_their_time(level: int, due: datetime) -> None:
    state = acknowledged()
    assert refused(state, Escalate(level, "x"), due - S) == "escalation-not-due"
    state, events = execute(state, Escalate(level, "late"), due)
    assert events == [OrderEscalated(level=level, reason="late", escalated_at=due)]
    assert state.status == "acknowledged"
    assert refused(state, Escalate(level, "again"), due + 100 * H) == "already-escalated"


def test_deadline_levels_may_be_recorded_together_when_caught_up() -> None:
    state = run(
        delivered(),
        (Escalate(STILL_OPEN_LONG, "x"), DUE + 80 * H),
        (Escalate(DEADLINE_MISSED, "y"), DUE + 80 * H),
        (Escalate(STILL_OPEN, "z"), DUE + 80 * H),
    )
    assert state.escalation_levels == frozenset({DEADLINE_MISSED, STILL_OPEN, STILL_OPEN_LONG})


def test_deadline_levels_do_not_apply_before_notification_or_once_fully_answered() -> None:
    assert refused(issued(), Escalate(DEADLINE_MISSED, "x"), T0 + 100 * H) == "escalation-not-due"
    assert refused(declined(), Escalate(DEADLINE_MISSED, "x"), DUE + H) == "escalation-not-due"


def test_partial_answer_is_not_a_full_answer() -> None:
    state = run(delivered(2), (ReportOutcomes((out("i0"),)), T0 + 2 * H))
    state, _ = execute(state, Escalate(DEADLINE_MISSED, "x"), DUE)
    assert state.escalation_levels == frozenset({DEADLINE_MISSED})


@pytest.mark.parametrize("level", [0, -1, 6])
def test_escalation_level_must_be_a_known_level(level: int) -> None:
    assert refused(delivered(), Escalate(level=level, reason="x"), LATER) == "bad-level"


@pytest.mark.parametrize("level", [NOT_NOTIFIED, DEADLINE_MISSED, STILL_OPEN, STILL_OPEN_LONG])
def test_platform_side_escalation_refused_while_contested(level: int) -> None:
    assert refused(contested(), Escalate(level=level, reason="x"), T0 + 1000 * H) == "order-contested"


def test_overdue_review_of_a_contest_escalates_on_the_issuer_side() -> None:
    state = contested()  # contested at T0+2h; the review is due 72 h later
    assert refused(state, Escalate(REVIEW_OVERDUE, "x"), T0 + 74 * H - S) == "escalation-not-due"
    state, _ = execute(state, Escalate(REVIEW_OVERDUE, "review overdue"), T0 + 74 * H)
    assert state.escalation_levels == frozenset({REVIEW_OVERDUE})
    assert state.status == "contested"


def test_overdue_review_of_declines_escalates_on_the_issuer_side() -> None:
    state = declined()  # answered at T0+3h
    assert refused(state, Escalate(REVIEW_OVERDUE, "x"), T0 + 75 * H - S) == "escalation-not-due"
    state, _ = execute(state, Escalate(REVIEW_OVERDUE, "review overdue"), T0 + 75 * H)
    assert state.escalation_levels == frozenset({REVIEW_OVERDUE})


def test_no_review_pending_no_review_escalation() -> None:
    assert refused(acknowledged(), Escalate(REVIEW_OVERDUE, "x"), T0 + 1000 * H) == "escalation-not-due"


def test_escalation_after_contest_upheld_uses_the_moved_deadline() -> None:
    state = upheld()  # contested from T0+2h to T0+5h: the deadline moves from T0+25h to T0+28h
    assert refused(state, Escalate(DEADLINE_MISSED, "x"), T0 + 28 * H - S) == "escalation-not-due"
    state, _ = execute(state, Escalate(DEADLINE_MISSED, "x"), T0 + 28 * H)
    assert state.escalation_levels == frozenset({DEADLINE_MISSED})


def test_escalation_refused_when_closed() -> None:
    assert refused(closed(), Escalate(level=1, reason="x"), LATER) == "order-closed"


def test_escalation_refused_when_withdrawn() -> None:
    assert refused(withdrawn(), Escalate(level=1, reason="x"), LATER) == "order-withdrawn"


# ------------------------------------------------------------------------------------ notification channels

REP = Representative(name="Rep", citizenship="KZ", email="rep@example.kz")


def test_webhook_delivery_records_the_url_and_the_representative_on_record() -> None:
    cmd = RecordDelivery(delivery_id="d1", attempt=1, url="https://hooks.example/td", representative=REP)
    state, events = execute(issued(), cmd, T0 + H)
    assert events == [
        OrderDelivered(
            channel="webhook",
            notified_at=T0 + H,
            delivery_id="d1",
            attempt=1,
            address="https://hooks.example/td",
            representative=REP,
        )
    ]
    assert state.notification == events[0]


def test_reading_the_inbox_notifies_with_the_key_and_the_representative() -> None:
    state, events = execute(issued(), ReadInbox(address="api-key:k1", representative=REP), T0 + 3 * H)
    assert events == [OrderDelivered(channel="inbox", notified_at=T0 + 3 * H, address="api-key:k1", representative=REP)]
    assert state.status == "delivered"
    assert state.notified_at == T0 + 3 * H
    assert refused(state, ReadInbox(), LATER) == "already-notified"
    assert refused(state, RecordDelivery("d1", 1), LATER) == "already-notified"


@pytest.mark.parametrize("channel", ["email", "letter", "other"])
def test_a_notice_sent_another_way_notifies_with_its_evidence(channel: str) -> None:
    cmd = RecordNotice(channel=channel, address="rep@example.kz", evidence="SMTP 250 id=abc", representative=REP)  # type: ignore[arg-type]
    state, events = execute(issued(), cmd, T0 + 2 * H)
    assert events == [
        OrderDelivered(
            channel=channel,  # type: ignore[arg-type]
            notified_at=T0 + 2 * H,
            address="rep@example.kz",
            representative=REP,
            evidence="SMTP 250 id=abc",
        )
    ]
    assert state.notified_via == channel
    assert refused(state, RecordNotice("email", "x@y.kz", "again"), LATER) == "already-notified"


@pytest.mark.parametrize(
    ("cmd", "code"),
    [
        (RecordNotice("email", "rep@example.kz", "  "), "evidence-required"),
        (RecordNotice("email", "", "id=1"), "address-required"),
        (RecordNotice("webhook", "rep@example.kz", "id=1"), "bad-channel"),  # type: ignore[arg-type]
        (RecordNotice("inbox", "rep@example.kz", "id=1"), "bad-channel"),  # type: ignore[arg-type]
    ],
)
def test_a_notice_needs_a_channel_an_address_and_evidence(cmd: RecordNotice, code: str) -> None:
    assert refused(issued(), cmd, LATER) == code


@pytest.mark.parametrize("cmd", [ReadInbox(), RecordNotice("email", "rep@example.kz", "id=1")])
def test_no_notification_of_a_withdrawn_order(cmd: Command) -> None:
    state = run(issued(), (Withdraw(reason="error"), T0 + H))
    assert refused(state, cmd, LATER) == "order-withdrawn"


def test_a_notice_starts_the_clock_for_later_actions() -> None:
    state = run(issued(), (RecordNotice("letter", "Almaty, Abay 1", "courier receipt 77"), T0 + 2 * H))
    assert refused(state, ReportOutcomes((out("i0", at=T0 + H),)), LATER) == "actioned-before-notice"
    state, events = execute(state, Acknowledge(), LATER)
    assert events == [OrderAcknowledged(acknowledged_at=LATER)]  # no second notification


def test_stored_delivered_and_upheld_events_of_the_first_shape_still_load() -> None:
    at = (T0 + H).isoformat()
    delivered_v1 = {"channel": "webhook", "notified_at": at, "delivery_id": "d1", "attempt": 2}
    event = load_event("order.delivered", 1, delivered_v1)
    assert event == OrderDelivered(channel="webhook", notified_at=T0 + H, delivery_id="d1", attempt=2)
    upheld_v1 = {"reason": "stands", "upheld_at": at}
    assert load_event("order.upheld", 1, upheld_v1) == OrderUpheld(reason="stands", upheld_at=T0 + H)


# ----------------------------------------------------------------------------------------- contest window


def windowed(hours: int) -> Any:
    return issue_cmd(redress=Redress(instructions="write to the ministry", contest_within_hours=hours))


def test_contest_window_runs_from_notification() -> None:
    state = run(None, (windowed(2), T0), (RecordDelivery("d1", 1), T0 + H))
    assert refused(state, Contest(grounds="other", detail="late"), T0 + 3 * H + S) == "contest-window-closed"
    state, _ = execute(state, Contest(grounds="other", detail="just in time"), T0 + 3 * H)
    assert state.status == "contested"


def test_contest_window_runs_from_issue_while_not_notified() -> None:
    state = run(None, (windowed(2), T0))
    assert refused(state, Contest(grounds="forged", detail="x"), T0 + 2 * H + S) == "contest-window-closed"
    state, events = execute(state, Contest(grounds="forged", detail="x"), T0 + 2 * H)
    assert [e.type for e in events] == ["order.delivered", "order.contested"]


def test_a_contest_fifty_hours_into_a_two_hour_window_is_refused() -> None:
    state = run(None, (windowed(2), T0), (RecordDelivery("d1", 1), T0 + H))
    assert refused(state, Contest(grounds="not_illegal", detail="x"), T0 + 51 * H) == "contest-window-closed"


def test_without_a_window_a_contest_is_accepted_any_time_while_open() -> None:
    state, _ = execute(delivered(), Contest(grounds="other", detail="x"), T0 + 500 * H)
    assert state.status == "contested"


# ------------------------------------------------------------------------------------------------ declines


def test_an_order_with_a_declined_item_does_not_close_it_waits_for_the_issuer() -> None:
    outcomes = (out("i0", at=T0 + 2 * H), out("i1", "declined", at=T0 + 2 * H, reason="lawful satire"))
    state, events = execute(delivered(2), ReportOutcomes(outcomes), T0 + 3 * H)
    assert [type(e) for e in events] == [ItemOutcomeReported, ItemOutcomeReported]
    assert state.status == "declined"
    assert state.is_open
    assert state.closed_at is None
    assert state.answered_at == T0 + 3 * H
    assert state.awaiting_review_since == T0 + 3 * H
    assert state.declined_item_ids == ("i1",)


def test_a_partial_decline_keeps_the_order_open_for_the_other_items() -> None:
    state = run(delivered(3), (ReportOutcomes((out("i0", "declined", reason="news"),)), T0 + 2 * H))
    assert state.status == "delivered"
    assert state.awaiting_review_since is None
    state = run(state, (ReportOutcomes((out("i1"), out("i2"))), T0 + 3 * H))
    assert state.status == "declined"


def test_accepting_the_declines_closes_the_order_as_declined() -> None:
    state, events = execute(declined(), AcceptDeclines(reason="the satire defence holds"), LATER)
    assert events == [
        OrderDeclinesAccepted(reason="the satire defence holds", accepted_at=LATER, item_ids=("i1",)),
        OrderClosed(closed_at=LATER),
    ]
    assert state.status == "closed"
    assert state.declines_accepted_at == LATER
    assert not state.is_open
    assert refused(state, AcceptDeclines(reason="again"), LATER) == "order-closed"


@pytest.mark.parametrize("state_name", ["issued", "delivered", "acknowledged", "contested", "upheld"])
def test_accepting_declines_refused_unless_declines_await_the_issuer(state_name: str) -> None:
    assert refused(BUILDERS[state_name](), AcceptDeclines(reason="x"), LATER) == "not-declined"


def test_upholding_over_declines_makes_the_declined_items_due_again() -> None:
    state, events = execute(declined(3), Uphold(reason="the content is illegal"), LATER)
    assert events == [OrderUpheld(reason="the content is illegal", upheld_at=LATER, items_due_again=("i2",))]
    assert state.status == "delivered"
    assert set(state.outcomes) == {"i0", "i1"}  # the accepted outcomes stay
    assert state.paused_seconds == 0  # no time given back: the original deadline stands
    assert state.awaiting_review_since is None
    # The platform must report again; this time the order closes.
    state, events = execute(state, ReportOutcomes((out("i2", at=LATER + H),)), LATER + H)
    assert [type(e) for e in events] == [ItemOutcomeReported, OrderClosed]
    assert state.status == "closed"


def test_upholding_over_declines_returns_an_acknowledged_order_to_acknowledged() -> None:
    state = run(
        acknowledged(1),
        (ReportOutcomes((out("i0", "declined", at=T0 + 2 * H, reason="news"),)), T0 + 3 * H),
        (Uphold(reason="no"), T0 + 4 * H),
    )
    assert state.status == "acknowledged"
    assert state.outcomes == {}


@pytest.mark.parametrize(
    "cmd", [Acknowledge(), ReportOutcomes((out("i0"),)), Contest(grounds="other", detail="x")], ids=str
)
def test_the_platform_waits_while_declines_await_the_issuer(cmd: Command) -> None:
    assert refused(declined(), cmd, LATER) == "awaiting-issuer"


def test_declines_awaiting_the_issuer_can_be_withdrawn() -> None:
    state, _ = execute(declined(), Withdraw(reason="we agree"), LATER)
    assert state.status == "withdrawn"


# ------------------------------------------------------------------------------------------ execute/replay


def test_execute_folds_the_events_and_replay_agrees() -> None:
    log: list[Any] = []
    state: OrderState | None = None
    steps: list[tuple[Command, datetime]] = [
        (issue_cmd(2), T0),
        (RecordDeliveryFailure("d1", "order.issued", 1, "timeout", 5000.0), T0 + S),
        (RecordDelivery("d1", 2), T0 + H),
        (Acknowledge(), T0 + 2 * H),
        (Escalate(level=DEADLINE_MISSED, reason="slow"), T0 + 25 * H),
        (ReportOutcomes((out("i0", at=T0 + 26 * H), out("i1", "not_found", at=T0 + 26 * H))), T0 + 27 * H),
    ]
    for command, now in steps:
        state, events = execute(state, command, now)
        log.extend(events)
    assert state is not None
    assert replay(log) == state
    assert state.version == len(log) == 8
    assert state.status == "closed"


def test_execute_refusal_raises() -> None:
    with pytest.raises(DomainError) as info:
        execute(closed(), Acknowledge(), LATER)
    assert info.value.code == "order-closed"
