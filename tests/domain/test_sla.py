"""Frozen-time boundary tests of the SLA clock."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from services.orders.domain import (
    DEADLINE_MISSED,
    ESCALATION_LEVELS,
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
    ReportOutcomes,
    Uphold,
    Withdraw,
)
from services.orders.sla_clock import (
    SLA_STATUSES,
    Escalation,
    SlaPolicy,
    deadline,
    due_escalations,
    next_due,
    next_escalation,
    next_status_change,
    remaining,
    remaining_seconds,
    review_due,
    status,
    status_at,
)
from shared.events import OrderEscalated
from tests.builders import T0, execute, issue_cmd, run

NOTIFIED = T0 + timedelta(minutes=30)  # delivered
DUE = NOTIFIED + timedelta(hours=24)  # default deadline
H = timedelta(hours=1)
S = timedelta(seconds=1)
POLICY = SlaPolicy()


def issued(n_items: int = 2, category: str = "child_cyberbullying") -> OrderState:
    return run(None, (issue_cmd(n_items, category=category), T0))  # issued at T0


def delivered(n_items: int = 2, category: str = "child_cyberbullying") -> OrderState:
    return run(issued(n_items, category), (RecordDelivery(delivery_id="d1", attempt=1), NOTIFIED))


def report(*items: tuple[str, datetime]) -> ReportOutcomes:
    return ReportOutcomes(tuple(OutcomeReport(item_id=i, outcome="removed", actioned_at=at) for i, at in items))


def sla(state: OrderState, now: datetime, policy: SlaPolicy = POLICY) -> tuple[str, timedelta | None]:
    # `remaining` is in whole seconds (rounded down); the expectations below read better as durations.
    left = remaining(state, policy, now)
    return status(state, policy, now), (timedelta(seconds=left) if left is not None else None)


# -------------------------------------------------------------------------------------------------- policy


def test_default_policy() -> None:
    assert POLICY.default_hours == 24
    assert POLICY.at_risk_share == 0.25
    assert dict(POLICY.overrides) == {}
    assert POLICY.duration("extremism") == timedelta(hours=24)


def test_policy_is_frozen_and_keeps_its_own_copy_of_overrides() -> None:
    overrides: dict[str, float] = {"fraud": 48}
    policy = SlaPolicy(overrides=overrides)
    overrides["fraud"] = 1
    assert policy.hours_for("fraud") == 48
    with pytest.raises(AttributeError):
        policy.default_hours = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        policy.overrides["fraud"] = 2  # type: ignore[index]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"default_hours": 0},
        {"default_hours": -1},
        {"overrides": {"fraud": 0}},
        {"at_risk_share": -0.1},
        {"at_risk_share": 1.5},
        {"notice_hours": 0},
        {"review_hours": -1},
        {"still_open_hours": (72, 24)},
        {"still_open_hours": (0, 24)},
    ],
)
def test_policy_refuses_nonsense(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        SlaPolicy(**kwargs)


def test_statuses_listed() -> None:
    assert set(SLA_STATUSES) == {
        "awaiting_delivery",
        "on_track",
        "at_risk",
        "breached",
        "met",
        "met_late",
        "declined",
        "contested",
        "withdrawn",
    }


# ------------------------------------------------------------------------------------------------ delivery


def test_awaiting_delivery_has_no_deadline_whatever_the_time() -> None:
    state = issued()
    assert deadline(state, POLICY) is None
    for now in (T0, T0 + 100 * H):
        assert sla(state, now) == ("awaiting_delivery", None)


def test_failed_deliveries_do_not_start_the_clock() -> None:
    state = run(issued(), (RecordDeliveryFailure("d1", "order.issued", 1, "timeout", 10_000.0), T0 + H))
    assert deadline(state, POLICY) is None
    assert status(state, POLICY, T0 + 30 * H) == "awaiting_delivery"


def test_deadline_is_notified_time_plus_24_hours() -> None:
    state = delivered()
    assert deadline(state, POLICY) == DUE
    assert sla(state, NOTIFIED) == ("on_track", timedelta(hours=24))


def test_inbox_notification_starts_the_clock_when_the_platform_acts() -> None:
    seen = T0 + 5 * H
    state = run(issued(), (Acknowledge(), seen))
    assert deadline(state, POLICY) == seen + 24 * H


# ---------------------------------------------------------------------------------------- deadline boundary


def test_one_second_before_the_deadline() -> None:
    assert sla(delivered(), DUE - S) == ("at_risk", S)


def test_at_the_deadline_is_not_yet_breached() -> None:
    assert sla(delivered(), DUE) == ("at_risk", timedelta(0))


def test_one_second_after_the_deadline_is_breached_and_remaining_negative() -> None:
    assert sla(delivered(), DUE + S) == ("breached", -S)


def test_breached_long_after_and_remaining_keeps_falling() -> None:
    state = run(delivered(), (Acknowledge(), NOTIFIED + H), (Escalate(level=DEADLINE_MISSED, reason="late"), DUE + S))
    assert sla(state, DUE + 10 * H) == ("breached", -10 * H)


# ---------------------------------------------------------------------------------------- at-risk boundary


def test_at_risk_boundary_default_share() -> None:
    state = delivered()
    quarter_left = DUE - 6 * H  # exactly 25 % of 24 h left: not yet at risk
    assert sla(state, quarter_left - S) == ("on_track", 6 * H + S)
    assert sla(state, quarter_left) == ("on_track", 6 * H)
    assert sla(state, quarter_left + S) == ("at_risk", 6 * H - S)


def test_at_risk_boundary_configured_share() -> None:
    policy = SlaPolicy(at_risk_share=0.5)
    state = delivered()
    assert status(state, policy, DUE - 12 * H) == "on_track"
    assert status(state, policy, DUE - 12 * H + S) == "at_risk"


def test_at_risk_share_zero_never_warns_before_the_deadline() -> None:
    policy = SlaPolicy(at_risk_share=0)
    assert status(delivered(), policy, DUE - S) == "on_track"
    assert status(delivered(), policy, DUE) == "on_track"
    assert status(delivered(), policy, DUE + S) == "breached"


def test_at_risk_share_uses_the_category_duration() -> None:
    policy = SlaPolicy(overrides={"child_sexual_abuse_material": 4})
    state = delivered(category="child_sexual_abuse_material")
    assert status(state, policy, NOTIFIED + 3 * H) == "on_track"  # exactly 1 h (25 % of 4 h) left
    assert status(state, policy, NOTIFIED + 3 * H + S) == "at_risk"


# -------------------------------------------------------------------------------------------- per category


def test_per_category_override() -> None:
    policy = SlaPolicy(overrides={"child_sexual_abuse_material": 1, "fraud": 72})
    csam = delivered(category="child_sexual_abuse_material")
    fraud = delivered(category="fraud")
    other = delivered(category="extremism")
    assert deadline(csam, policy) == NOTIFIED + H
    assert deadline(fraud, policy) == NOTIFIED + 72 * H
    assert deadline(other, policy) == DUE
    assert status(csam, policy, NOTIFIED + H + S) == "breached"
    assert status(fraud, policy, NOTIFIED + H + S) == "on_track"
    assert status(other, policy, NOTIFIED + H + S) == "on_track"


def test_default_hours_configurable() -> None:
    policy = SlaPolicy(default_hours=12, overrides={"fraud": 48})
    assert deadline(delivered(), policy) == NOTIFIED + 12 * H
    assert deadline(delivered(category="fraud"), policy) == NOTIFIED + 48 * H


def test_fractional_hours() -> None:
    policy = SlaPolicy(default_hours=0.5)
    assert deadline(delivered(), policy) == NOTIFIED + timedelta(minutes=30)


# ----------------------------------------------------------------------------------------- contest/uphold

CONTESTED = NOTIFIED + 10 * H  # 14 h left when contested
UPHELD = CONTESTED + 30 * H  # contested for 30 h


def contested() -> OrderState:
    return run(delivered(), (Contest(grounds="not_illegal", detail="news reporting"), CONTESTED))


def upheld() -> OrderState:
    return run(contested(), (Uphold(reason="it is illegal"), UPHELD))


def test_contest_freezes_the_clock() -> None:
    state = contested()
    for now in (CONTESTED, DUE - S, DUE + S, DUE + 100 * H):
        assert sla(state, now) == ("contested", 14 * H)


def test_uphold_resumes_and_moves_the_deadline_by_the_paused_time() -> None:
    state = upheld()
    assert state.paused_seconds == 30 * 3600
    assert deadline(state, POLICY) == DUE + 30 * H
    assert sla(state, UPHELD) == ("on_track", 14 * H)
    new_due = DUE + 30 * H
    assert sla(state, new_due - S) == ("at_risk", S)
    assert sla(state, new_due) == ("at_risk", timedelta(0))
    assert sla(state, new_due + S) == ("breached", -S)


def test_contest_after_the_deadline_freezes_a_negative_remaining_and_resumes_breached() -> None:
    state = run(delivered(), (Contest(grounds="other", detail="late objection"), DUE + H))
    assert sla(state, DUE + 3 * H) == ("contested", -H)
    state = run(state, (Uphold(reason="no"), DUE + 5 * H))
    assert deadline(state, POLICY) == DUE + 4 * H
    assert sla(state, DUE + 5 * H) == ("breached", -H)


def test_contest_of_undelivered_order_starts_and_freezes_the_clock() -> None:
    at = T0 + 2 * H
    state = run(issued(), (Contest(grounds="forged", detail="unknown signer"), at))
    assert deadline(state, POLICY) == at + 24 * H
    assert sla(state, at + 50 * H) == ("contested", 24 * H)


def test_met_after_uphold_uses_the_moved_deadline() -> None:
    new_due = DUE + 30 * H
    state = run(upheld(), (report(("i0", new_due), ("i1", new_due - H)), new_due))
    assert status(state, POLICY, new_due + H) == "met"
    late = run(upheld(), (report(("i0", new_due), ("i1", new_due - H)), new_due + S))
    assert status(late, POLICY, new_due + H) == "met_late"


# ---------------------------------------------------------------------------------------------- withdrawal


@pytest.mark.parametrize("when", [NOTIFIED + H, DUE + H])
def test_withdrawn_is_withdrawn_before_or_after_the_deadline(when: datetime) -> None:
    state = run(delivered(), (Withdraw(reason="issued in error"), when))
    for now in (when, DUE + 100 * H):
        assert sla(state, now) == ("withdrawn", None)


def test_withdrawn_before_delivery() -> None:
    state = run(issued(), (Withdraw(reason="issued in error"), T0 + H))
    assert sla(state, T0 + 100 * H) == ("withdrawn", None)


def test_withdrawn_while_contested() -> None:
    state = run(contested(), (Withdraw(reason="contest accepted"), CONTESTED + H))
    assert sla(state, CONTESTED + 2 * H) == ("withdrawn", None)


# ---------------------------------------------------------------------------------------- outcomes, close


def test_partial_outcomes_stay_open() -> None:
    state = run(delivered(2), (report(("i0", NOTIFIED + H)), NOTIFIED + H))
    assert state.is_open
    assert sla(state, NOTIFIED + 2 * H) == ("on_track", 22 * H)
    assert sla(state, DUE + S) == ("breached", -S)


def test_met_when_the_last_report_is_recorded_exactly_at_the_deadline() -> None:
    state = run(delivered(2), (report(("i0", NOTIFIED + H), ("i1", DUE)), DUE))
    assert state.status == "closed"
    assert sla(state, DUE + 100 * H) == ("met", timedelta(0))


def test_met_late_when_the_last_report_is_recorded_one_second_after_the_deadline() -> None:
    state = run(delivered(2), (report(("i0", NOTIFIED + H)), NOTIFIED + H), (report(("i1", DUE + S)), DUE + S))
    assert sla(state, DUE + 100 * H) == ("met_late", -S)


def test_a_late_report_is_met_late_whatever_it_claims() -> None:
    # Recorded 5 h after the deadline, claiming the item was removed an hour before it: judged on the record.
    state = run(delivered(1), (report(("i0", DUE - H)), DUE + 5 * H))
    assert state.outcomes["i0"].actioned_at == DUE - H  # the claim is kept as such
    assert sla(state, DUE + 5 * H) == ("met_late", -5 * H)
    assert sla(state, DUE + 500 * H) == ("met_late", -5 * H)


def test_met_late_when_any_item_is_reported_late() -> None:
    state = run(delivered(3), (report(("i0", NOTIFIED), ("i1", DUE + H), ("i2", NOTIFIED + H)), DUE + 2 * H))
    assert status(state, POLICY, DUE + 2 * H) == "met_late"


def test_closed_status_does_not_depend_on_now() -> None:
    state = run(delivered(1), (report(("i0", NOTIFIED + H)), NOTIFIED + H))
    assert {status(state, POLICY, now) for now in (NOTIFIED + H, DUE, DUE + 1000 * H)} == {"met"}


def test_closed_via_inbox_notification_is_met() -> None:
    at = T0 + 2 * H
    state = run(issued(1), (report(("i0", T0 + H)), at))
    assert state.notified_via == "inbox"
    assert status(state, POLICY, at) == "met"


def test_an_early_report_is_met_whatever_it_claims() -> None:
    state = run(delivered(1), (report(("i0", DUE - 2 * H)), DUE - H))
    assert sla(state, DUE + 5 * H) == ("met", H)


# ------------------------------------------------------------------------------------------------- declines


def declined(at: datetime = NOTIFIED + 2 * H) -> OrderState:
    outcomes = (
        OutcomeReport(item_id="i0", outcome="removed", actioned_at=NOTIFIED + H),
        OutcomeReport(item_id="i1", outcome="declined", actioned_at=NOTIFIED + H, reason="lawful news reporting"),
    )
    return run(delivered(2), (ReportOutcomes(outcomes), at))


def test_declines_awaiting_the_issuer_are_declined_with_a_frozen_remaining() -> None:
    state = declined()
    for now in (NOTIFIED + 2 * H, DUE + S, DUE + 100 * H):
        assert sla(state, now) == ("declined", 22 * H)


def test_decline_then_accept_closes_as_declined_never_met() -> None:
    state = run(declined(), (AcceptDeclines(reason="accepted"), NOTIFIED + 5 * H))
    assert state.status == "closed"
    for now in (NOTIFIED + 5 * H, DUE + 100 * H):
        assert sla(state, now) == ("declined", 22 * H)


def test_decline_then_uphold_makes_the_item_due_again_against_the_original_deadline() -> None:
    upheld_at = NOTIFIED + 10 * H
    state = run(declined(), (Uphold(reason="it is illegal"), upheld_at))
    assert deadline(state, POLICY) == DUE  # the time spent declined is not given back
    assert sla(state, upheld_at) == ("on_track", 14 * H)
    assert sla(state, DUE - S) == ("at_risk", S)
    assert sla(state, DUE) == ("at_risk", timedelta(0))
    assert sla(state, DUE + S) == ("breached", -S)
    met = run(state, (report(("i1", upheld_at + H)), DUE))
    assert sla(met, DUE + H) == ("met", timedelta(0))
    late = run(state, (report(("i1", upheld_at + H)), DUE + S))
    assert sla(late, DUE + H) == ("met_late", -S)


def test_decline_upheld_after_the_deadline_is_breached_at_once() -> None:
    state = run(declined(), (Uphold(reason="no"), DUE + 3 * H))
    assert sla(state, DUE + 3 * H) == ("breached", -3 * H)


# -------------------------------------------------------------------------------------------------- reviews


def test_review_of_a_contest_is_due_after_the_review_hours() -> None:
    assert review_due(contested(), POLICY) == CONTESTED + 72 * H
    assert review_due(contested(), SlaPolicy(review_hours=8)) == CONTESTED + 8 * H


def test_review_of_declines_is_due_after_the_review_hours_from_the_answer() -> None:
    assert review_due(declined(), POLICY) == NOTIFIED + 2 * H + 72 * H


@pytest.mark.parametrize(
    "state",
    [issued(), delivered(), upheld(), run(declined(), (AcceptDeclines(reason="ok"), DUE))],
    ids=["issued", "delivered", "upheld", "accepted"],
)
def test_no_review_pending_no_review_due(state: OrderState) -> None:
    assert review_due(state, POLICY) is None


# ----------------------------------------------------------------------------------------------- escalation


def test_next_escalation_of_an_order_not_notified() -> None:
    assert next_escalation(issued(), POLICY) == Escalation(
        T0 + H, NOT_NOTIFIED, "the platform was not notified within 1 h of issue"
    )
    assert next_escalation(issued(), SlaPolicy(notice_hours=0.5)) == Escalation(
        T0 + 30 * 60 * S, NOT_NOTIFIED, "the platform was not notified within 0.5 h of issue"
    )


def test_next_escalations_of_a_notified_order_in_turn() -> None:
    state = delivered()
    expected = [(DUE, DEADLINE_MISSED), (DUE + 24 * H, STILL_OPEN), (DUE + 72 * H, STILL_OPEN_LONG)]
    for due_at, level in expected:
        found = next_escalation(state, POLICY)
        assert found is not None and (found.due_at, found.level) == (due_at, level)
        state = run(state, (Escalate(level, found.reason), due_at))
    assert next_escalation(state, POLICY) is None


def test_due_escalations_caught_up_at_once() -> None:
    state = delivered()
    assert due_escalations(state, POLICY, DUE - S) == []
    assert [e.level for e in due_escalations(state, POLICY, DUE)] == [DEADLINE_MISSED]
    assert [e.level for e in due_escalations(state, POLICY, DUE + 80 * H)] == [
        DEADLINE_MISSED,
        STILL_OPEN,
        STILL_OPEN_LONG,
    ]
    state = run(state, (Escalate(STILL_OPEN, "x"), DUE + 80 * H))
    assert [e.level for e in due_escalations(state, POLICY, DUE + 80 * H)] == [DEADLINE_MISSED, STILL_OPEN_LONG]


def test_a_contest_pauses_the_platform_levels_and_starts_the_review_clock() -> None:
    state = contested()
    assert next_escalation(state, POLICY) == Escalation(
        CONTESTED + 72 * H, REVIEW_OVERDUE, "the issuer's review of the contest is overdue (72 h)"
    )
    assert due_escalations(state, POLICY, CONTESTED + 72 * H - S) == []  # no platform level while paused
    resumed = upheld()
    found = next_escalation(resumed, POLICY)
    assert found is not None and (found.due_at, found.level) == (DUE + 30 * H, DEADLINE_MISSED)


def test_nothing_escalates_once_closed_or_withdrawn() -> None:
    done = run(delivered(1), (report(("i0", NOTIFIED)), DUE + H))
    gone = run(issued(), (Withdraw(reason="x"), T0 + 10 * 60 * S))
    for state in (done, gone):
        assert next_escalation(state, POLICY) is None
        assert next_due(state, POLICY) is None


def test_next_due_is_the_next_escalation_and_stays_due_until_recorded() -> None:
    state = delivered()
    assert next_due(state, POLICY) == DUE  # level 2 falls due at the deadline
    state = run(state, (Escalate(DEADLINE_MISSED, "x"), DUE))
    assert next_due(state, POLICY) == DUE + 24 * H
    # Status changes by time alone (at risk, breached) are the projection's: `next_status_change`.
    assert next_status_change("on_track", DUE, "child_cyberbullying", POLICY) == DUE - 6 * H + timedelta(microseconds=1)


def test_next_due_of_orders_waiting_for_the_issuer_is_the_review() -> None:
    assert next_due(contested(), POLICY) == CONTESTED + 72 * H
    assert next_due(declined(), POLICY) == NOTIFIED + 74 * H
    reviewed = run(contested(), (Escalate(REVIEW_OVERDUE, "x"), CONTESTED + 72 * H))
    assert next_due(reviewed, POLICY) is None


def test_a_whole_order_life_fires_each_level_once_at_its_time() -> None:
    """A sweep that wakes exactly at each order's next due time, through a whole life, on a moving clock."""
    policy = SlaPolicy()
    read = T0 + 2 * H  # not notified until the platform reads its inbox: level 1 at T0+1h
    due = read + 24 * H
    contest_at = due + 80 * H  # after levels 2, 3 and 4; the order has no contest window
    life: list[tuple[datetime, Command]] = [
        (read, ReadInbox(address="api-key:k1")),
        (read + H, ReportOutcomes((OutcomeReport("i0", "removed", read + H),))),
        (contest_at, Contest(grounds="already_actioned", detail="the second post is gone too")),
        (contest_at + 100 * H, Uphold(reason="it is still online")),  # review overdue at contest_at + 72 h
        (contest_at + 101 * H, ReportOutcomes((OutcomeReport("i1", "removed", contest_at + 101 * H),))),
    ]
    expected = {
        NOT_NOTIFIED: T0 + H,
        DEADLINE_MISSED: due,
        STILL_OPEN: due + 24 * H,
        STILL_OPEN_LONG: due + 72 * H,
        REVIEW_OVERDUE: contest_at + 72 * H,
    }
    state = issued()
    now = T0
    fired: list[OrderEscalated] = []
    while True:
        wake = next_due(state, policy)
        step = life[0][0] if life else None
        candidates = [t for t in (wake, step) if t is not None]
        if not candidates:
            break
        now = min(candidates)
        for escalation in due_escalations(state, policy, now):
            state, events = execute(state, Escalate(escalation.level, escalation.reason), now, policy)
            fired += [e for e in events if isinstance(e, OrderEscalated)]
            with pytest.raises(DomainError):  # never twice
                execute(state, Escalate(escalation.level, escalation.reason), now + H, policy)
        if life and life[0][0] == now:
            state, _ = execute(state, life.pop(0)[1], now, policy)
    assert {e.level: e.escalated_at for e in fired} == expected
    assert len(fired) == len(ESCALATION_LEVELS)
    assert status(state, policy, now) == "met_late"


def test_a_sweep_on_a_fixed_interval_fires_each_level_once_within_one_interval() -> None:
    """The same, with a sweep every 7 minutes instead of at the exact due times: late by less than a step."""
    policy = SlaPolicy()
    state = delivered()
    step = timedelta(minutes=7)
    now = NOTIFIED
    fired: dict[int, datetime] = {}
    while now < DUE + 100 * H:
        now += step
        for escalation in due_escalations(state, policy, now):
            assert escalation.level not in fired
            state, _ = execute(state, Escalate(escalation.level, escalation.reason), now, policy)
            fired[escalation.level] = now
    expected = {DEADLINE_MISSED: DUE, STILL_OPEN: DUE + 24 * H, STILL_OPEN_LONG: DUE + 72 * H}
    assert set(fired) == set(expected)
    for level, due_at in expected.items():
        assert timedelta(0) <= fired[level] - due_at < step


# ------------------------------------------------------------------ the one definition every reader uses


def test_remaining_seconds_runs_with_now_freezes_once_stopped_and_is_none_without_a_clock() -> None:
    stopped = DUE - 5 * H
    for running in ("on_track", "at_risk", "breached"):
        assert remaining_seconds(running, DUE, None, DUE - S / 2) == 0  # whole seconds, rounded down
        assert remaining_seconds(running, DUE, None, DUE + S / 2) == -1  # negative from the first breached instant
    for frozen in ("met", "met_late", "declined", "contested"):
        assert remaining_seconds(frozen, DUE, stopped, DUE + 100 * H) == 5 * 3600
    for none in ("awaiting_delivery", "withdrawn"):
        assert remaining_seconds(none, DUE, stopped, DUE) is None
    assert remaining_seconds("contested", None, stopped, DUE) is None  # contested before notification


def test_status_at_moves_only_a_running_clock() -> None:
    cat = "child_cyberbullying"
    assert status_at("on_track", DUE, cat, POLICY, DUE - 6 * H + S) == "at_risk"
    assert status_at("at_risk", DUE, cat, POLICY, DUE + S) == "breached"
    assert status_at("met", DUE, cat, POLICY, DUE + 100 * H) == "met"
    assert status_at("contested", DUE, cat, POLICY, DUE + 100 * H) == "contested"
    tick = timedelta(microseconds=1)
    assert next_status_change("on_track", DUE, cat, POLICY) == DUE - 6 * H + tick
    assert next_status_change("at_risk", DUE, cat, POLICY) == DUE + tick
    assert next_status_change("breached", DUE, cat, POLICY) is None
    assert next_status_change("met", DUE, cat, POLICY) is None
