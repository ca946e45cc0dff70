"""Orders across three platforms, two authorities, several categories and every SLA status, on a frozen clock.

Every order carries a URL, a statement of reasons and a signatory's name that must never reach public output.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tests.support import Api

SECRET_NAME = "Zhanna Qwertyuly"  # the signatory of every seeded order: a person's name
REP_NAME = "Bolat Asdfghov"  # platform C's representative
REASONS = "Threatening posts naming a pupil of school 47 in Uralsk."


@dataclass
class Seeded:
    """The seeded order ids by what happened to them, and platform C's id."""

    platform_c: str
    ids: dict[str, str] = field(default_factory=dict)
    urls: list[str] = field(default_factory=list)


def project(api: Api) -> None:
    """Sequence the events, run the projections, and move the SLA statuses that time alone changes."""
    api.container.sequencer.catch_up()
    api.container.projections.run_once()
    with api.container.db.transaction() as conn:
        api.container.sla.advance(conn, api.clock.now())
    api.container.projections.run_once()


def seed(api: Api) -> Seeded:
    """Issue and answer orders so that, 46 hours after T0, every SLA status is present."""
    r = api.call(
        "POST",
        "/v1/platforms",
        "admin",
        json={
            "name": "C",
            "monthly_users": 150_000,
            "representative": {"name": REP_NAME, "citizenship": "KZ", "email": "rep-c@example.kz"},
        },
    )
    assert r.status_code == 201, r.text
    seeded = Seeded(platform_c=r.json()["id"])
    platform = {"A": api.platform_a, "B": api.platform_b, "C": seeded.platform_c}
    key = {"A": "platform_a", "B": "platform_b"}

    def issue(
        name: str, on: str, who: str = "issuer", category: str = "child_cyberbullying", act: str = "Law on Mass Media"
    ) -> str:
        urls = [f"https://social.example/{name}/1", f"https://social.example/{name}/2"]
        r = api.issue(
            who=who,
            platform=platform[on],
            issuer_reference=f"SEED-{name}",
            category=category,
            signed_off_by=SECRET_NAME,
            statement_of_reasons=REASONS,
            legal_basis={"act": act, "article": "18-1"},
            items=[{"url": u} for u in urls],
        )
        assert r.status_code == 201, r.text
        seeded.ids[name] = r.json()["id"]
        seeded.urls += urls
        return seeded.ids[name]

    def act(on: str, path: str, oid: str, body: dict[str, Any]) -> None:
        who = key.get(on)
        if who is None:  # platform C has no key in the harness: make one
            from shared.auth import create_key

            with api.container.db.transaction() as conn:
                api.keys["platform_c"] = create_key(conn, "platform", api.clock.now(), platform_id=platform["C"])[0]
            key["C"] = who = "platform_c"
        r = api.call("POST", f"/v1/orders/{oid}/{path}", who, json=body)
        assert r.status_code == 200, r.text

    def answer(on: str, oid: str, *outcomes: str) -> None:
        items = api.call("GET", f"/v1/orders/{oid}", "admin").json()["items"]
        now = api.clock.now().isoformat()
        reports = [
            {
                "item_id": i["item_id"],
                "outcome": o,
                "actioned_at": now,
                **({"reason": "lawful speech"} if o == "declined" else {}),
            }
            for i, o in zip(items, outcomes, strict=True)
        ]
        act(on, "outcomes", oid, {"outcomes": reports})

    # T0: three orders acknowledged at once, one answered later within the SLA, one late, one never.
    for name, on in (("met", "A"), ("late", "B"), ("breached_c", "C"), ("declined", "C")):
        act(on, "acknowledge", issue(name, on, category="fraud" if on == "C" else "child_cyberbullying"), {})
    breached_b = issue("breached_b", "B", who="issuer2", category="extremism", act="Law on Countering Extremism")
    act("B", "acknowledge", breached_b, {})
    api.advance(hours=2)
    answer("A", seeded.ids["met"], "removed", "restricted")
    api.advance(hours=1)
    answer("C", seeded.ids["declined"], "removed", "declined")
    # T0 + 27h: past the first deadline; new orders that will be at risk or still on track at the end.
    api.advance(hours=24)
    answer("B", seeded.ids["late"], "removed", "not_found")
    for name, on in (("at_risk_a", "A"), ("at_risk_b", "B")):
        act(on, "acknowledge", issue(name, on), {})
    act("A", "contest", issue("contested", "A", who="issuer2"), {"grounds": "not_illegal", "detail": "satire"})
    withdrawn = issue("withdrawn", "B")
    assert (
        api.call("POST", f"/v1/orders/{withdrawn}/withdraw", "issuer", json={"reason": "sent in error"}).status_code
        == 200
    )
    api.advance(hours=14)
    act("C", "acknowledge", issue("on_track", "C", category="fraud"), {})
    issue("awaiting", "A")
    api.advance(hours=5)  # T0 + 46h: the T0 + 27h orders have less than 6 of their 24 hours left
    project(api)
    return seeded
