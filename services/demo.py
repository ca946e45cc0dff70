"""The demo's sample orders: a fixed scenario (pure data) and `seed`, which plays it through the order commands.

Nothing here writes a row itself: every order is issued, notified and answered through `OrderService` with the
demo keys' principals, the finished part with a clock set in the past (a second container over the same
database), so the SLA projection, the transparency report and the ledger see a history they accept as any other.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import httpx
from sqlalchemy import select

from services.bootstrap import Container, bootstrap
from services.ledger.errors import NoCheckpoint
from services.orders import views
from services.orders.domain import (
    AcceptDeclines,
    Acknowledge,
    Command,
    Contest,
    OutcomeReport,
    ReportOutcomes,
    Uphold,
    Withdraw,
)
from services.orders.sla_clock import SlaStatus
from services.registry import service as registry
from services.webhooks.safety import is_allowed_destination
from shared.auth import Principal
from shared.clock import FrozenClock
from shared.events import Authority, Category, Item, LegalBasis, OrderFields, Outcome, RequestedAction

log = logging.getLogger("takedown.demo")

# The platform the samples are issued to (registered by the demo in services/cli.py).
PLATFORM_NAME = "Demo Platform"
# Every sample order's issuer_reference starts so: how a second start knows the samples are there.
REFERENCE_PREFIX = "DEMO-"
# The oldest sample is issued this long before the demo starts; the platform is registered a day before it.
HISTORY = timedelta(days=45)
# The sweep looks at the past this often while the history plays (a slow sweeper: escalations land within it).
SWEEP_EVERY = timedelta(hours=2)

Action = Literal[
    "inbox",  # the platform reads the order with its key (notified: inbox)
    "notice",  # an operator records an e-mail notice to the representative (notified: email)
    "acknowledge",
    "remove",  # every item not yet answered: removed (restricted for a restrict order)
    "remove_first",  # the first item only
    "not_found",  # the last item not found, the others removed
    "decline",  # every item declined, with a reason
    "contest",
    "uphold",  # the issuer upholds a contest or the declines
    "accept_declines",
    "withdraw",
]


@dataclass(frozen=True)
class Step:
    """One thing that happens to a sample order, `hours` after its issue."""

    hours: float
    action: Action


@dataclass(frozen=True)
class Sample:
    """One sample order: when it is issued (hours before the demo starts; 0 is now), what it asks, what follows."""

    reference: str
    issued_hours_ago: float
    category: Category
    items: int
    steps: tuple[Step, ...]
    shows: SlaStatus  # its SLA status on the dashboard right after seeding
    requested_action: RequestedAction = "remove"


# What each category's orders cite and say (short, plausible, no personal data).
_GROUNDS: dict[str, tuple[str, str, str]] = {
    "child_cyberbullying": ("Law on the Rights of the Child", "Art. 47-1", "Posts insult and threaten a named minor."),
    "extremism": ("Law on Countering Extremism", "Art. 12", "A video calls for violence against a group."),
    "illegal_gambling": ("Law on Gambling", "Art. 8", "An unlicensed online casino advertised to residents."),
    "fraud": ("Law on Mass Media", "Art. 18-1", "A fake investment scheme in a bank's name."),
    "drugs": ("Law on Narcotic Drugs", "Art. 16", "Offers to sell narcotic substances with delivery."),
    "suicide_promotion": ("Law on Mass Media", "Art. 18-1 p.3", "A group urging teenagers to self-harm."),
    "illegal_image_distribution": ("Law on Mass Media", "Art. 18-1 p.4", "Intimate images shared without consent."),
}
_CATEGORIES: tuple[Category, ...] = (
    "child_cyberbullying",
    "fraud",
    "illegal_gambling",
    "child_cyberbullying",
    "extremism",
    "drugs",
    "fraud",
    "suicide_promotion",
    "illegal_image_distribution",
)


def _steps(*pairs: tuple[float, Action]) -> tuple[Step, ...]:
    return tuple(Step(hours, action) for hours, action in pairs)


def scenario() -> list[Sample]:
    """The sample orders: 37 of them, giving every tile, list and chart of the dashboard something to show."""
    samples: list[Sample] = []

    def add(
        ago: float, items: int, steps: tuple[Step, ...], shows: SlaStatus, action: RequestedAction = "remove"
    ) -> None:
        n = len(samples)
        ref = f"{REFERENCE_PREFIX}{n + 1:03d}"
        samples.append(Sample(ref, ago, _CATEGORIES[n % len(_CATEGORIES)], items, steps, shows, action))

    days = 24.0
    # On time: noticed within the hour, acknowledged, every item answered 2 to 20 hours after notification.
    for k in range(20):
        notice: Action = "inbox" if k % 3 else "notice"
        answer: Action = "not_found" if k % 7 == 3 else "remove"
        noticed = 0.1 + (k % 5) * 0.1
        answered = noticed + 2 + (k * 5) % 19
        steps = _steps((noticed, notice), (noticed + 0.7, "acknowledge"), (answered, answer))
        add((3 + k * 2.1) * days, 1 + k % 3, steps, "met", "restrict" if k % 6 == 5 else "remove")
    # Late: answered 26 to 51 hours after notification (the later ones escalated "still open" on the way).
    for k in range(6):
        add((4.5 + k * 6.5) * days, 1 + k % 2, _steps((0.3, "inbox"), (1.5, "acknowledge"), (26.3 + 5 * k, "remove")),
            "met_late")  # fmt: skip
    # Contested, upheld after 18 hours (the clock paused meanwhile), then answered within the extended deadline.
    add(12 * days, 2, _steps((0.4, "inbox"), (4, "contest"), (22, "uphold"), (30, "remove")), "met")
    # Declined: the platform refuses every item; the issuer accepts the declines a day later.
    add(9 * days, 1, _steps((0.5, "notice"), (8, "decline"), (32, "accept_declines")), "declined")
    # Withdrawn by the issuer a few hours after issue.
    add(6 * days, 1, _steps((0.3, "inbox"), (5, "withdraw")), "withdrawn")
    # Contested two days ago: the issuer's review is pending.
    add(2 * days, 1, _steps((0.5, "inbox"), (5, "contest")), "contested")
    # Breached and still open: acknowledged 40 hours ago and never answered; noticed 3.5 days ago and ignored.
    add(84, 2, _steps((0.4, "notice")), "breached")
    add(40, 1, _steps((0.2, "inbox"), (1, "acknowledge")), "breached")
    # At risk: noticed 19 to 21 hours ago (less than a quarter of the 24 hours left), one of them half answered.
    add(21, 2, _steps((0.3, "inbox"), (1, "acknowledge"), (6, "remove_first")), "at_risk")
    add(20.5, 1, _steps((0.2, "notice"), (2, "acknowledge")), "at_risk")
    add(19.5, 1, _steps((0.4, "inbox")), "at_risk")
    # The present: one order read by the platform now, one that waits for its notification.
    add(0, 2, _steps((0, "inbox")), "on_track")
    add(0, 1, (), "awaiting_delivery")
    return samples


def order_fields(sample: Sample, platform_id: str, authority: Authority) -> OrderFields:
    """The order a sample issues (pure)."""
    act, article, reasons = _GROUNDS[sample.category]
    slug = sample.reference.lower()
    return OrderFields(
        issuer_reference=sample.reference,
        authority=authority,
        signed_off_by="A. Nurlanova, deputy head (demo)",
        platform_id=platform_id,
        legal_basis=LegalBasis(act=act, article=article),
        category=sample.category,
        statement_of_reasons=reasons,
        items=tuple(
            Item(item_id=f"item-{n}", url=f"https://social.example/{slug}/p/{n}", content_type="post")
            for n in range(1, sample.items + 1)
        ),
        requested_action=sample.requested_action,
        territorial_scope=("KZ",),
        language="ru",
    )


def timeline(samples: Sequence[Sample], now: datetime) -> list[tuple[datetime, int, Step | None]]:
    """Every issue (step None) and step of the samples, at its time, in the order they happen (pure)."""
    happenings: list[tuple[datetime, int, int, Step | None]] = []
    for index, sample in enumerate(samples):
        issued = now - timedelta(hours=sample.issued_hours_ago)
        happenings.append((issued, index, -1, None))
        happenings += [(issued + timedelta(hours=s.hours), index, n, s) for n, s in enumerate(sample.steps)]
    happenings.sort(key=lambda h: (h[0], h[1], h[2]))
    return [(at, index, step) for at, index, _, step in happenings]


# ------------------------------------------------------------------------------------------------ playing


@dataclass(frozen=True)
class Principals:
    """Who acts in the demo: the demo keys' issuer, platform and admin."""

    issuer: Principal
    platform: Principal
    admin: Principal


def principals(container: Container, keys: Mapping[str, str]) -> Principals:
    """The principals of the demo keys (plaintexts by role) that act in the samples."""
    found = {role: container.keys.valid(keys[role]) for role in ("issuer", "platform", "admin")}
    issuer, platform, admin = found["issuer"], found["platform"], found["admin"]
    if issuer is None or platform is None or admin is None:
        raise ValueError("the demo's issuer, platform and admin keys must be valid")
    return Principals(issuer=issuer, platform=platform, admin=admin)


def seeding_refusal(container: Container) -> str | None:
    """Why the sample history cannot be seeded into this database (None: it can)."""
    with container.db.read() as conn:
        seeded = conn.execute(
            select(views.orders.c.id).where(views.orders.c.issuer_reference.startswith(REFERENCE_PREFIX)).limit(1)
        ).first()
        platform = next((p for p in registry.list_all(conn) if p.name == PLATFORM_NAME), None)
    if seeded is not None:
        return "the sample orders are there already"
    try:
        container.ledger.latest_checkpoint()
    except NoCheckpoint:
        pass
    else:
        # The feeder refuses events recorded long before a signed checkpoint: backdated history would stop it.
        return "the ledger has signed a checkpoint already, so backdated sample history would be refused"
    if platform is not None and platform.created_at > history_start(container.clock.now()):
        # Its representative would not be on record when the older samples notify it.
        return f"{PLATFORM_NAME} was registered after the sample history would begin"
    return None


def history_start(now: datetime) -> datetime:
    """When the demo platform is registered if the history is seeded: before the oldest sample order."""
    return now - HISTORY - timedelta(days=1)


@dataclass(frozen=True)
class Seeded:
    """What `seed` did: how many orders it issued, and where the present orders are pushed (or why they are not)."""

    orders: int
    webhook: str


def seed(
    container: Container,
    principals: Principals,
    receiver: str | None = None,
    samples: Sequence[Sample] | None = None,
) -> Seeded:
    """Play the samples through the order commands: the past with a clock set back, then the present.

    `receiver`: the base URL of this process, whose demo receiver the platform's webhook is set to once the past
    is played (the present orders are then pushed to it for real). Call it only when `seeding_refusal` is None.
    """
    samples = scenario() if samples is None else samples
    now = container.clock.now()
    platform_id = principals.platform.platform_id
    if platform_id is None or principals.issuer.authority_id is None:
        raise ValueError("the demo needs a platform key and an issuer key")
    authority = Authority(id=principals.issuer.authority_id, name=principals.issuer.authority_name or "")
    clock = FrozenClock(now)
    # The same services over the same database, only their clock set back; its loops never start.
    past = bootstrap(container.settings, clock=clock, engine=container.db.engine)
    order_ids: dict[int, str] = {}
    answered: dict[int, set[str]] = {}
    swept = history_start(now)

    def sweep_until(until: datetime) -> None:
        # Escalations fall due in the past as they would have, looked for as a slow sweeper would.
        nonlocal swept
        while swept + SWEEP_EVERY < until:
            swept += SWEEP_EVERY
            clock.set(swept)
            past.sweep.run_once()

    webhook = "none: the present orders wait in the platform's inbox"
    present = False
    for at, index, step in timeline(samples, now):
        live = samples[index].issued_hours_ago == 0
        sweep_until(now if live else at)
        if live and not present:
            present = True  # the past is played: what it queued is settled, the webhook set for the present
            _settle_pushes(past)
            if receiver is not None:
                webhook = _set_webhook(container, platform_id, f"{receiver}/demo/receiver/{platform_id}")
        c = container if live else past
        if not live:
            clock.set(at)
        if step is None:
            fields = order_fields(samples[index], platform_id, authority)
            document, _ = c.orders.issue(principals.issuer, fields, None)
            order_ids[index] = document["id"]
            continue
        done = answered.setdefault(index, set())
        _play(c, principals, order_ids[index], samples[index], step.action, done, c.clock.now())
    sweep_until(now)
    # Numbered now (PostgreSQL; SQLite numbers at commit): were the feeder to sign its first checkpoint before the
    # sequencer reached the history, it would refuse all of it as backdated.
    container.sequencer.catch_up()
    log.info("demo: %d sample orders issued; webhook %s", len(order_ids), webhook)
    return Seeded(len(order_ids), webhook)


def _settle_pushes(past: Container) -> None:
    """Settle the pushes the past queued, in the past: the platform had no webhook, so each waits in its inbox."""

    async def settle() -> None:
        pool = httpx.AsyncHTTPTransport()  # never used: an attempt at an endpoint without a URL sends nothing
        while jobs := await asyncio.to_thread(past.notifier.claim, 500):
            for job in jobs:
                # A supervisor's copy of an escalation is left to the live notifier once its lease lapses: sent
                # now with a past timestamp, a receiver would refuse it as a replay.
                if job.endpoint is None or not job.endpoint.url:
                    await past.notifier.attempt(pool, job)
        await pool.aclose()

    asyncio.run(settle())


def _set_webhook(container: Container, platform_id: str, url: str) -> str:
    """Point the demo platform's webhook at this process's receiver, if the allow-list lets the notifier call it."""
    settings = container.settings
    allowed, why = is_allowed_destination(url, settings.webhook_allow_list, https_only=settings.production)
    if not allowed:
        return f"none ({why}: allow-list it with TAKEDOWN_WEBHOOK_ALLOW_LIST); the present orders wait in the inbox"
    container.registry.update("demo", platform_id, {"webhook_url": url})
    return url


def _play(
    c: Container, who: Principals, order_id: str, sample: Sample, action: Action, done: set[str], now: datetime
) -> None:
    """One step of a sample order, as its actor would take it through the service."""
    items = [f"item-{n}" for n in range(1, sample.items + 1) if f"item-{n}" not in done]
    command: Command
    if action == "inbox":
        c.orders.get(who.platform, order_id)  # the platform's read notifies it
        return
    if action == "notice":
        c.orders.record_notice(
            who.admin,
            order_id,
            "email",
            "rep@demo.example",
            f"demo: e-mail to the representative about {sample.reference}",
        )
        return
    if action == "acknowledge":
        command = Acknowledge(note="Received; the trust and safety team is on it.")
    elif action in ("remove", "remove_first", "not_found", "decline"):
        chosen = items[:1] if action == "remove_first" else items
        done |= set(chosen)
        done_outcome: Outcome = "restricted" if sample.requested_action == "restrict" else "removed"

        def outcome(item_id: str) -> OutcomeReport:
            if action == "decline":
                return OutcomeReport(item_id, "declined", now, "Satire by a public figure: not illegal in our view.")
            if action == "not_found" and item_id == chosen[-1]:
                return OutcomeReport(item_id, "not_found", now)
            return OutcomeReport(item_id, done_outcome, now)

        command = ReportOutcomes(tuple(outcome(i) for i in chosen))
    elif action == "contest":
        command = Contest("not_illegal", "The post reports on a court case; it names no minor.")
    elif action == "uphold":
        command = Uphold("The review found the content unlawful as ordered.")
    elif action == "accept_declines":
        command = AcceptDeclines("The platform's reading is accepted.")
    else:
        command = Withdraw("Issued in error: the content belongs to another order.")
    issuer_acts = action in ("uphold", "accept_declines", "withdraw")
    c.orders.act(who.issuer if issuer_acts else who.platform, order_id, command)
