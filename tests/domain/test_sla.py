"""Frozen-time boundary tests of the SLA clock."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from services.orders.domain import (
    Acknowledge,
    Contest,
    Escalate,
    OrderState,
    OutcomeReport,
    RecordDelivery,
    RecordDeliveryFailure,
    ReportOutcomes,
    Uphold,
    Withdraw,
)
from services.orders.sla import SLA_STATUSES, SlaPolicy, deadline, remaining, status
from tests.builders import T0, issue_cmd, run

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
    return status(state, policy, now), remaining(state, policy, now)


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
    state = run(delivered(), (Acknowledge(), NOTIFIED + H), (Escalate(level=1, reason="late"), DUE + S))
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
    state = run(upheld(), (report(("i0", new_due), ("i1", new_due - H)), new_due + H))
    assert status(state, POLICY, new_due + H) == "met"


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


def test_met_when_last_item_actioned_exactly_at_the_deadline() -> None:
    state = run(delivered(2), (report(("i0", NOTIFIED + H), ("i1", DUE)), DUE))
    assert state.status == "closed"
    assert sla(state, DUE + 100 * H) == ("met", timedelta(0))


def test_met_late_when_last_item_actioned_one_second_after_the_deadline() -> None:
    state = run(delivered(2), (report(("i0", NOTIFIED + H)), NOTIFIED + H), (report(("i1", DUE + S)), DUE + S))
    assert sla(state, DUE + 100 * H) == ("met_late", -S)


def test_met_depends_on_when_items_were_actioned_not_when_reported() -> None:
    state = run(delivered(1), (report(("i0", DUE - H)), DUE + 5 * H))
    assert sla(state, DUE + 5 * H) == ("met", H)


def test_met_late_when_any_item_late() -> None:
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
