"""Example-based tests of every command and every refusal of the order aggregate."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from services.orders.domain import (
    Acknowledge,
    Command,
    Contest,
    DomainError,
    Escalate,
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
    DeliveryAttemptFailed,
    Item,
    ItemOutcomeReported,
    OrderAcknowledged,
    OrderClosed,
    OrderContested,
    OrderDelivered,
    OrderEscalated,
    OrderFields,
    OrderIssued,
    OrderUpheld,
    OrderWithdrawn,
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
    cmd = ReportOutcomes((out("i0", at=LATER + S),))
    assert refused(delivered(), cmd, LATER) == "actioned-in-future"


def test_actioned_exactly_now_is_accepted() -> None:
    state, _ = execute(delivered(), ReportOutcomes((out("i0", at=LATER),)), LATER)
    assert state.outcomes["i0"].actioned_at == LATER


def test_actioned_before_issue_refused() -> None:
    cmd = ReportOutcomes((out("i0", at=T0 - S),))
    assert refused(delivered(), cmd, LATER) == "actioned-before-issue"


def test_actioned_exactly_at_issue_is_accepted() -> None:
    state, _ = execute(delivered(), ReportOutcomes((out("i0", at=T0),)), LATER)
    assert state.outcomes["i0"].actioned_at == T0


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
        (ReportOutcomes((out("i2", "declined", at=T0 + 4 * H, reason="not illegal"),)), T0 + 4 * H),
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
    assert state.contested_at is None
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
    assert state.contested_at is None
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


def test_each_escalation_level_once() -> None:
    state = delivered()
    for level in (1, 2, 3):
        state, events = execute(state, Escalate(level=level, reason=f"level {level}"), T0 + level * 25 * H)
        assert events == [OrderEscalated(level=level, reason=f"level {level}", escalated_at=T0 + level * 25 * H)]
    assert state.escalation_levels == frozenset({1, 2, 3})
    assert state.status == "delivered"
    assert refused(state, Escalate(level=2, reason="again"), T0 + 100 * H) == "already-escalated"


def test_escalation_levels_may_come_out_of_order() -> None:
    state = run(issued(), (Escalate(level=2, reason="x"), LATER), (Escalate(level=1, reason="y"), LATER))
    assert state.escalation_levels == frozenset({1, 2})


def test_undelivered_order_can_be_escalated() -> None:
    state, _ = execute(issued(), Escalate(level=1, reason="not delivered in time"), LATER)
    assert state.escalation_levels == frozenset({1})
    assert state.notified_at is None
    assert state.status == "issued"


@pytest.mark.parametrize("level", [0, -1])
def test_escalation_level_must_be_positive(level: int) -> None:
    assert refused(delivered(), Escalate(level=level, reason="x"), LATER) == "bad-level"


def test_escalation_refused_while_contested() -> None:
    assert refused(contested(), Escalate(level=1, reason="x"), LATER) == "order-contested"


def test_escalation_allowed_after_contest_upheld() -> None:
    state, _ = execute(upheld(), Escalate(level=1, reason="x"), LATER)
    assert state.escalation_levels == frozenset({1})


def test_escalation_refused_when_closed() -> None:
    assert refused(closed(), Escalate(level=1, reason="x"), LATER) == "order-closed"


def test_escalation_refused_when_withdrawn() -> None:
    assert refused(withdrawn(), Escalate(level=1, reason="x"), LATER) == "order-withdrawn"


# ------------------------------------------------------------------------------------------ execute/replay


def test_execute_folds_the_events_and_replay_agrees() -> None:
    log: list[Any] = []
    state: OrderState | None = None
    steps: list[tuple[Command, datetime]] = [
        (issue_cmd(2), T0),
        (RecordDeliveryFailure("d1", "order.issued", 1, "timeout", 5000.0), T0 + S),
        (RecordDelivery("d1", 2), T0 + H),
        (Acknowledge(), T0 + 2 * H),
        (Escalate(level=1, reason="slow"), T0 + 25 * H),
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
