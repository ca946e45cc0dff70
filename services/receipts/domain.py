"""The receipts kit's rules (pure, no I/O): what a served checkpoint, proof and event must satisfy to be kept, and
the statement a platform shows a court, built from what was kept and checked offline.

A statement (`FORMAT`) is one JSON document:

    format, platform_id, period {from, to}, generated_at, sla_hours
    log            {origin, verifier_key}: the log the kit was configured with (the verifier is given its own key)
    key_rotations  the log's signed key rotation statements (services/ledger/rotation.py), followed from the
                   verifier's key: each checkpoint must be signed by the key in force at its tree size
    checkpoints    the signed checkpoint notes the kit accepted, smallest tree first, each with the witnesses'
                   cosignature lines the log served with it (c2sp.org/tlog-cosignature)
    consistency    [{first, second, proof}]: an RFC 9162 consistency proof between each checkpoint and the next
    orders         [{order_id, receipts, events, summary}]:
      receipts     the webhooks received for the order: {webhook_id, webhook_timestamp, webhook_type, received_at,
                   body (as received), body_sha256}
      events       the order's events, version 1..n: {position, leaf_hash, leaf, envelope, tree_size, proof}, each
                   proven against the checkpoint of `tree_size` in `checkpoints`
      summary      received_at, issued_at, notified_at, acknowledged_at, answered_at, contested_at, deadline, met

What is proven and what is the platform's word: the events (when the service recorded the order, its delivery and
every answer of the platform) are leaves of a tree under a signed checkpoint, and every checkpoint is consistent
with the last one, whose cosignatures a verifier counts against its quorum: they stand even against the service.
`received_at` is the platform's own clock, bounded by the log: never before the event the webhook carries was
recorded, never after the service recorded the delivery of that very webhook (its `webhook-id`), each within
`max_skew_s`. The summary is recomputed from the proven events, so it can say nothing they do not.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import rfc8785

from services.ledger.bundle import b64
from services.ledger.bundle import parse as parse_json
from services.ledger.leaf import rfc3339_utc
from services.ledger.rotation import KeyChain, follow
from services.receipts.errors import LogInconsistency, StatementInvalid
from shared.tlog import merkle
from shared.tlog.note import (
    CheckpointBody,
    NoteError,
    Verifier,
    b64decode_strict,
    open_checkpoint,
    parse_checkpoint,
    split_note,
)
from shared.tlog.policy import WitnessPolicy

FORMAT = "takedown-receipts-statement/1"
# An order is followed until one of these is proven: nothing the platform must answer comes after it.
TERMINAL = frozenset({"order.closed", "order.withdrawn"})
ANSWER_TYPES = frozenset({"order.acknowledged", "order.item_outcome_reported", "order.contested"})
TOP_LEVEL = (
    "format",
    "platform_id",
    "period",
    "generated_at",
    "sla_hours",
    "log",
    "key_rotations",
    "checkpoints",
    "consistency",
    "orders",
)
ORDER = ("order_id", "receipts", "events", "summary")
RECEIPT = ("webhook_id", "webhook_timestamp", "webhook_type", "received_at", "body", "body_sha256")
EVENT = ("position", "leaf_hash", "leaf", "envelope", "tree_size", "proof")
MAX_SKEW_S = 300.0


def parse_time(text: str) -> datetime:
    """An RFC 3339 time as the service writes it (a 'Z' or an offset); naive times are refused."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"a time without its zone: {text!r}")
    return moment.astimezone(UTC)


# ----------------------------------------------------------------------------------------------- receiving


@dataclass(frozen=True)
class WebhookFacts:
    """What a received webhook says about itself: its type, its order and platform, the event it carries."""

    webhook_type: str | None
    order_id: str | None
    platform_id: str | None
    event_id: str | None
    leaf_hash: str | None


def webhook_facts(body: bytes) -> WebhookFacts:
    """Read a webhook body leniently: a signed body is kept whatever it holds, these only index it."""
    try:
        doc = json.loads(body)
    except ValueError:
        return WebhookFacts(None, None, None, None, None)
    data = doc.get("data") if isinstance(doc, dict) else None
    data = data if isinstance(data, dict) else {}
    order: dict[str, Any] = data["order"] if isinstance(data.get("order"), dict) else {}
    event: dict[str, Any] = data["event"] if isinstance(data.get("event"), dict) else {}

    def text(value: Any) -> str | None:
        return value if isinstance(value, str) else None

    return WebhookFacts(
        text(doc.get("type")) if isinstance(doc, dict) else None,
        text(order.get("id")),
        text(order.get("platform_id")),
        text(event.get("event_id")),
        text(event.get("leaf_hash")),
    )


def body_digest(body: bytes) -> str:
    """The SHA-256 of a webhook body as received, base64."""
    return b64(hashlib.sha256(body).digest())


# ----------------------------------------------------------------------------------------------- the log's view


@dataclass(frozen=True)
class Seen:
    """A checkpoint the kit accepted: its size, root and note (with the cosignature lines served with it)."""

    size: int
    root: bytes
    note: str


def key_chain(pinned: Verifier, rotations: Sequence[str]) -> KeyChain:
    """The log's keys followed from the pinned one through its signed rotations; LogInconsistency if one fails."""
    try:
        return follow(pinned, pinned.name, rotations)
    except NoteError as exc:
        raise LogInconsistency(
            "bad-key-rotation", f"the log's key rotations do not follow from its key: {exc}"
        ) from exc


def open_served(note: str, chain: KeyChain | Verifier) -> CheckpointBody:
    """A served checkpoint signed by the key the chain puts in force at its size (its origin is the key's name);
    LogInconsistency otherwise."""
    chain = KeyChain.single(chain) if isinstance(chain, Verifier) else chain
    try:
        claimed = parse_checkpoint(split_note(note)[0])
        key = chain.key_for(claimed.size)
        if key is None:
            raise NoteError(f"tree size {claimed.size} is before the pinned key signs")
        return open_checkpoint(note, key, key.name)
    except NoteError as exc:
        raise LogInconsistency("bad-checkpoint-signature", f"the served checkpoint does not verify: {exc}") from exc


def consistency_needed(latest: Seen | None, new: CheckpointBody) -> tuple[int, int] | None:
    """The (first, second) sizes of the proof that joins `new` to the latest checkpoint seen (None: none needed)."""
    if latest is None or latest.size == new.size or min(latest.size, new.size) == 0:
        return None
    return (min(latest.size, new.size), max(latest.size, new.size))


def check_consistent(latest: Seen | None, new: CheckpointBody, proof: Sequence[bytes]) -> None:
    """`new` and the latest checkpoint seen are of one history (either may be the larger); LogInconsistency("fork")."""
    if latest is None or min(latest.size, new.size) == 0:
        return  # the first checkpoint seen is taken on trust; every tree extends the empty one
    if latest.size == new.size:
        if latest.root != new.root:
            raise LogInconsistency("fork", f"two checkpoints of tree size {new.size} with different roots")
        return
    small, large = sorted([(latest.size, latest.root), (new.size, new.root)])
    try:
        merkle.verify_consistency(small[0], large[0], small[1], large[1], proof)
    except merkle.ProofError as exc:
        raise LogInconsistency(
            "fork", f"the tree of size {new.size} is not consistent with the one of size {latest.size}: {exc}"
        ) from exc


def signature_lines(note: str) -> list[str]:
    """A note's signature lines, each with its newline (the log's and the witnesses')."""
    return note[note.rfind("\n\n") + 2 :].splitlines(keepends=True)


@dataclass(frozen=True)
class ProvenEvent:
    """An event of an order as the kit keeps it: shown by the API, its leaf from the evidence, proven in a tree."""

    event_id: str
    order_id: str
    version: int
    type: str
    position: int
    leaf_hash: str
    leaf: str
    envelope: dict[str, Any]
    tree_size: int
    proof: list[str]

    def entry(self) -> dict[str, Any]:
        """Its entry in a statement."""
        return {
            "position": self.position,
            "leaf_hash": self.leaf_hash,
            "leaf": self.leaf,
            "envelope": self.envelope,
            "tree_size": self.tree_size,
            "proof": self.proof,
        }


def prove_event(
    order_id: str, shown: Mapping[str, Any], leaf_entry: Mapping[str, Any], inclusion: Mapping[str, Any], at: Seen
) -> ProvenEvent:
    """Check an event the API listed against its leaf and its inclusion proof in the accepted checkpoint `at`.

    `shown` is the event as GET /v1/orders/{id}/events lists it, `leaf_entry` its entry of the order's evidence
    (envelope and canonical leaf), `inclusion` the GET /v1/ledger/proofs/inclusion answer. LogInconsistency with
    kind leaf-mismatch or bad-inclusion-proof when they disagree.
    """
    envelope = leaf_entry.get("envelope")
    leaf = leaf_entry.get("leaf")
    if not isinstance(envelope, dict) or not isinstance(leaf, str):
        raise LogInconsistency("leaf-mismatch", f"event {shown.get('event_id')}: the evidence has no leaf for it")
    try:
        canonical = rfc8785.dumps(envelope)
        receipt = b64decode_strict(str(shown.get("leaf_hash")))
        recorded = parse_time(str(shown.get("recorded_at"))) == parse_time(str(envelope.get("recorded_at")))
    except (rfc8785.CanonicalizationError, NoteError, ValueError, TypeError) as exc:
        raise LogInconsistency("leaf-mismatch", f"event {shown.get('event_id')}: unreadable ({exc})") from exc
    hashed = merkle.leaf_hash(canonical)
    same = {k: envelope.get(k) == shown.get(k) for k in ("event_id", "type", "version", "data")}
    if leaf.encode() != canonical or hashed != receipt:
        raise LogInconsistency("leaf-mismatch", f"event {shown.get('event_id')}: its leaf is not the receipt shown")
    if not all(same.values()) or not recorded or envelope.get("stream_id") != order_id:
        wrong = sorted(k for k, ok in same.items() if not ok) + ([] if recorded else ["recorded_at"])
        raise LogInconsistency(
            "leaf-mismatch", f"event {shown.get('event_id')}: the leaf is not the event shown ({wrong or 'stream'})"
        )
    position = shown.get("position")
    if not isinstance(position, int) or not 1 <= position <= at.size:
        raise LogInconsistency("leaf-mismatch", f"event {shown.get('event_id')}: position {position} not in the tree")
    try:
        proof = [b64decode_strict(h) for h in inclusion["proof"]]
        if b64decode_strict(inclusion["leaf_hash"]) != hashed or inclusion["position"] != position:
            raise LogInconsistency("leaf-mismatch", f"event {shown['event_id']}: the proof is of another leaf")
        merkle.verify_inclusion(position - 1, at.size, hashed, proof, at.root)
    except (KeyError, TypeError, NoteError, merkle.ProofError) as exc:
        raise LogInconsistency(
            "bad-inclusion-proof",
            f"event {shown.get('event_id')} at position {position}: not proven in the tree of size {at.size} ({exc})",
        ) from exc
    return ProvenEvent(
        event_id=str(envelope["event_id"]),
        order_id=order_id,
        version=int(envelope["version"]),
        type=str(envelope["type"]),
        position=position,
        leaf_hash=b64(hashed),
        leaf=leaf,
        envelope=dict(envelope),
        tree_size=at.size,
        proof=[b64(h) for h in proof],
    )


# ----------------------------------------------------------------------------------------------- the statement


@dataclass(frozen=True)
class StoredReceipt:
    """One webhook as the kit stored it."""

    webhook_id: str
    webhook_timestamp: int
    webhook_type: str | None
    order_id: str | None
    received_at: datetime
    body: bytes
    body_sha256: str

    def entry(self) -> dict[str, Any]:
        """Its entry in a statement."""
        return {
            "webhook_id": self.webhook_id,
            "webhook_timestamp": self.webhook_timestamp,
            "webhook_type": self.webhook_type,
            "received_at": rfc3339_utc(self.received_at),
            "body": self.body.decode("utf-8", "replace"),
            "body_sha256": self.body_sha256,
        }


def summarize(
    receipts: Sequence[Mapping[str, Any]], envelopes: Sequence[Mapping[str, Any]], sla_hours: float
) -> dict[str, Any]:
    """When the order was received, notified, acknowledged and fully answered, from receipts and proven envelopes.

    `answered_at` is when the service recorded the last missing item outcome (the SLA judges the answer by the
    service's record, never the platform's own `actioned_at`); `met`: answered by notified_at + sla_hours.
    """

    def first(kind: str) -> str | None:
        return next((str(e["recorded_at"]) for e in envelopes if e["type"] == kind), None)

    issued = next((e for e in envelopes if e["type"] == "order.issued"), None)
    delivered = next((e for e in envelopes if e["type"] == "order.delivered"), None)
    items = {str(i.get("item_id")) for i in (issued or {}).get("data", {}).get("items", []) if isinstance(i, dict)}
    answered: str | None = None
    done: set[str] = set()
    for e in envelopes:
        if e["type"] == "order.item_outcome_reported":
            done.add(str(e["data"].get("item_id")))
            if items and items <= done:
                answered = str(e["recorded_at"])
                break
    notified = str(delivered["data"].get("notified_at")) if delivered is not None else None
    deadline = rfc3339_utc(parse_time(notified) + timedelta(hours=sla_hours)) if notified is not None else None
    met = answered is not None and deadline is not None and parse_time(answered) <= parse_time(deadline)
    received = sorted(str(r["received_at"]) for r in receipts if r.get("webhook_type") == "order.issued")
    return {
        "received_at": received[0] if received else None,
        "issued_at": first("order.issued"),
        "notified_at": rfc3339_utc(parse_time(notified)) if notified is not None else None,
        "acknowledged_at": first("order.acknowledged"),
        "answered_at": answered,
        "contested_at": first("order.contested"),
        "deadline": deadline,
        "met": met,
    }


def build_statement(
    *,
    platform_id: str,
    start: datetime,
    end: datetime,
    generated_at: datetime,
    sla_hours: float,
    origin: str,
    verifier_key: str,
    key_rotations: Sequence[str],
    checkpoints: Sequence[Seen],
    consistency: Mapping[tuple[int, int], Sequence[str]],
    orders: Mapping[str, tuple[Sequence[StoredReceipt], Sequence[ProvenEvent]]],
) -> dict[str, Any]:
    """The statement of these orders, with the chain of checkpoints from the first any of their events is proven
    in to the latest the kit accepted (each joined to the next by its consistency proof)."""
    entries = []
    for order_id in sorted(orders, key=lambda o: min(r.received_at for r in orders[o][0])):
        receipts, proven = orders[order_id]
        events = sorted(proven, key=lambda e: e.version)
        # A webhook whose event is not proven yet proves nothing yet; the next statement carries it.
        known = {e.event_id for e in events}
        shown = [r.entry() for r in sorted(receipts, key=lambda r: r.received_at) if _event_id(r.body) in known]
        entries.append(
            {
                "order_id": order_id,
                "receipts": shown,
                "events": [e.entry() for e in events],
                "summary": summarize(shown, [e.envelope for e in events], sla_hours),
            }
        )
    used = [e.tree_size for _, proven in orders.values() for e in proven]
    chain = sorted(checkpoints, key=lambda c: c.size)
    # From the first checkpoint an event is proven in to the latest accepted (without events: the latest alone).
    chain = [c for c in chain if c.size >= min(used)] if used else chain[-1:]
    links = [
        {"first": a.size, "second": b.size, "proof": list(consistency.get((a.size, b.size), []))}
        for a, b in itertools.pairwise(chain)
    ]
    return {
        "format": FORMAT,
        "platform_id": platform_id,
        "period": {"from": rfc3339_utc(start), "to": rfc3339_utc(end)},
        "generated_at": rfc3339_utc(generated_at),
        "sla_hours": sla_hours,
        "log": {"origin": origin, "verifier_key": verifier_key},
        "key_rotations": list(key_rotations),
        "checkpoints": [c.note for c in chain],
        "consistency": links,
        "orders": entries,
    }


def _event_id(body: bytes) -> str | None:
    return webhook_facts(body).event_id


# ----------------------------------------------------------------------------------------------- verifying


@dataclass
class StatementReport:
    """What `verify_statement` found; `ok` when nothing failed."""

    platform_id: str | None = None
    orders_checked: int = 0
    events_checked: int = 0
    checkpoints_checked: int = 0
    head_size: int | None = None
    cosigned_by: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every check passed."""
        return not self.problems


def _object(value: Any, keys: Sequence[str], what: str) -> dict[str, Any]:
    if not isinstance(value, dict) or set(value) != set(keys):
        raise StatementInvalid(f"{what} is not an object with exactly the keys {sorted(keys)}")
    return value


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise StatementInvalid(f"{what} is not a list")
    return value


def _hash(value: Any, what: str) -> bytes:
    try:
        raw = b64decode_strict(value if isinstance(value, str) else "")
    except NoteError as exc:
        raise StatementInvalid(f"{what} is not canonical base64") from exc
    if len(raw) != merkle.HASH_SIZE:
        raise StatementInvalid(f"{what} is not a SHA-256 hash")
    return raw


def _time(value: Any, what: str) -> datetime:
    try:
        return parse_time(value if isinstance(value, str) else "")
    except ValueError as exc:
        raise StatementInvalid(f"{what} is not an RFC 3339 time") from exc


def _checkpoints(statement: dict[str, Any], verifier: Verifier, report: StatementReport) -> dict[int, bytes]:
    """Every checkpoint signed by the log's key in force at its size (the rotations followed from the trusted key),
    and each consistent with the next: {tree size: root}."""
    rotations = [r if isinstance(r, str) else "" for r in _list(statement["key_rotations"], "key_rotations")]
    try:
        chain = follow(verifier, verifier.name, rotations)
    except NoteError as exc:
        raise StatementInvalid(f"key_rotations: {exc}") from exc
    roots: dict[int, bytes] = {}
    bodies: list[CheckpointBody] = []
    for n, note in enumerate(_list(statement["checkpoints"], "checkpoints")):
        try:
            text = note if isinstance(note, str) else ""
            key = chain.key_for(parse_checkpoint(split_note(text)[0]).size)
            if key is None:
                raise NoteError("its tree size is before the trusted key signs")
            body = open_checkpoint(text, key, verifier.name)
        except NoteError as exc:
            raise StatementInvalid(f"checkpoints[{n}]: not signed by the log's key ({exc})") from exc
        if bodies and body.size <= bodies[-1].size:
            raise StatementInvalid(f"checkpoints[{n}]: tree sizes do not grow ({bodies[-1].size}, then {body.size})")
        bodies.append(body)
        roots[body.size] = body.root
    links = _list(statement["consistency"], "consistency")
    if len(links) != max(len(bodies) - 1, 0):
        raise StatementInvalid(f"consistency: {len(links)} proofs for {len(bodies)} checkpoints")
    for n, (link, (a, b)) in enumerate(zip(links, itertools.pairwise(bodies), strict=True)):
        link = _object(link, ("first", "second", "proof"), f"consistency[{n}]")
        if (link["first"], link["second"]) != (a.size, b.size):
            raise StatementInvalid(f"consistency[{n}]: not the proof from {a.size} to {b.size}")
        proof = [_hash(h, f"consistency[{n}].proof") for h in _list(link["proof"], f"consistency[{n}].proof")]
        try:
            merkle.verify_consistency(a.size, b.size, a.root, b.root, proof)
        except merkle.ProofError as exc:
            raise StatementInvalid(
                f"consistency[{n}]: tree {a.size} is not shown a prefix of tree {b.size} ({exc})"
            ) from exc
    report.checkpoints_checked = len(bodies)
    return roots


def _event(entry: Any, what: str, order_id: str, version: int, roots: Mapping[int, bytes]) -> dict[str, Any]:
    entry = _object(entry, EVENT, what)
    envelope = entry["envelope"]
    if not isinstance(envelope, dict):
        raise StatementInvalid(f"{what}: the envelope is not an object")
    try:
        canonical = rfc8785.dumps(envelope)
    except (rfc8785.CanonicalizationError, ValueError, TypeError) as exc:
        raise StatementInvalid(f"{what}: the envelope cannot be canonicalised ({exc})") from exc
    if not isinstance(entry["leaf"], str) or entry["leaf"].encode() != canonical:
        raise StatementInvalid(f"{what}: the leaf is not the canonical form of its envelope (the event changed)")
    hashed = merkle.leaf_hash(canonical)
    if _hash(entry["leaf_hash"], f"{what}: leaf_hash") != hashed:
        raise StatementInvalid(f"{what}: leaf_hash is not the hash of its leaf")
    size, position = entry["tree_size"], entry["position"]
    if size not in roots:
        raise StatementInvalid(f"{what}: proven against tree size {size}, which is not among the checkpoints")
    if not isinstance(position, int) or isinstance(position, bool) or not 1 <= position <= size:
        raise StatementInvalid(f"{what}: position {position!r} is outside the tree of size {size}")
    proof = [_hash(h, f"{what}: proof") for h in _list(entry["proof"], f"{what}: proof")]
    try:
        merkle.verify_inclusion(position - 1, size, hashed, proof, roots[size])
    except merkle.ProofError as exc:
        raise StatementInvalid(f"{what}: not in the checkpoint's tree of size {size} ({exc})") from exc
    if envelope.get("stream_id") != order_id:
        raise StatementInvalid(f"{what}: an event of {envelope.get('stream_id')!r}, not of order {order_id}")
    if envelope.get("version") != version:
        raise StatementInvalid(f"{what}: version {envelope.get('version')}, not {version} (an event is missing)")
    return envelope


def _receipt(
    entry: Any, what: str, order_id: str, by_id: Mapping[str, Mapping[str, Any]], max_skew_s: float
) -> dict[str, Any]:
    got = _object(entry, RECEIPT, what)
    body = got["body"]
    if (
        not isinstance(body, str)
        or _hash(got["body_sha256"], f"{what}: body_sha256") != hashlib.sha256(body.encode()).digest()
    ):
        raise StatementInvalid(f"{what}: body_sha256 is not the hash of the body")
    facts = webhook_facts(body.encode())
    event = by_id.get(facts.event_id or "")
    if facts.order_id != order_id or event is None:
        raise StatementInvalid(f"{what}: the webhook carries no proven event of order {order_id}")
    if got["webhook_type"] != facts.webhook_type or facts.webhook_type != event["type"]:
        raise StatementInvalid(f"{what}: the webhook's type is not its event's")
    leaf = base64.b64encode(merkle.leaf_hash(rfc8785.dumps(event))).decode()
    if facts.leaf_hash != leaf:
        raise StatementInvalid(f"{what}: the receipt in the webhook is not its event's leaf hash")
    received = _time(got["received_at"], f"{what}: received_at")
    skew = timedelta(seconds=max_skew_s)
    if received < parse_time(str(event["recorded_at"])) - skew:
        raise StatementInvalid(f"{what}: received_at {got['received_at']} is before the log recorded its event")
    delivered = [
        e
        for e in by_id.values()
        if e["type"] == "order.delivered" and e["data"].get("delivery_id") == got["webhook_id"]
    ]
    if delivered and received > parse_time(str(delivered[0]["recorded_at"])) + skew:
        raise StatementInvalid(
            f"{what}: received_at {got['received_at']} is after the log recorded this webhook's delivery at"
            f" {delivered[0]['recorded_at']}"
        )
    stamp = got["webhook_timestamp"]
    if not isinstance(stamp, int) or abs(received.timestamp() - stamp) > max_skew_s:
        raise StatementInvalid(f"{what}: received_at is not within {max_skew_s:g} s of the webhook's timestamp")
    return got


def verify_statement(
    raw: bytes | str, verifier_key: Verifier, policy: WitnessPolicy | None = None, max_skew_s: float = MAX_SKEW_S
) -> StatementReport:
    """Check a statement with nothing but the log's key (and the witnesses a verifier pins): every signature,
    consistency and inclusion proof, every leaf, every receipt's bounds and every summary. Every problem is named."""
    report = StatementReport()
    policy = policy or WitnessPolicy()
    try:
        statement = _object(parse_json(raw), TOP_LEVEL, "the statement")
        if statement["format"] != FORMAT:
            raise StatementInvalid(f"format: not {FORMAT}")
        report.platform_id = str(statement["platform_id"])
        period = _object(statement["period"], ("from", "to"), "period")
        start, end = _time(period["from"], "period.from"), _time(period["to"], "period.to")
        sla_hours = statement["sla_hours"]
        if not isinstance(sla_hours, (int, float)) or isinstance(sla_hours, bool) or sla_hours <= 0:
            raise StatementInvalid("sla_hours is not a positive number")
        roots = _checkpoints(statement, verifier_key, report)
    except (StatementInvalid, ValueError) as exc:
        report.problems.append(str(exc))
        return report
    notes = statement["checkpoints"]
    if notes:
        head = notes[-1]
        report.head_size = max(roots)
        report.cosigned_by = sorted(policy.counted(head))
        problem = policy.problem(head, f"checkpoint at tree size {report.head_size} (the latest)")
        if problem is not None:
            report.problems.append(problem)
    for n, order in enumerate(_list(statement["orders"], "orders")):
        what = f"orders[{n}]"
        try:
            order = _object(order, ORDER, what)
            order_id = str(order["order_id"])
            what = f"order {order_id}"
            envelopes = [
                _event(e, f"{what}: events[{k}]", order_id, k + 1, roots)
                for k, e in enumerate(_list(order["events"], f"{what}: events"))
            ]
            report.events_checked += len(envelopes)
            if not envelopes or envelopes[0]["type"] != "order.issued":
                raise StatementInvalid(f"{what}: its first event is not order.issued")
            if envelopes[0]["data"].get("platform_id") != report.platform_id:
                raise StatementInvalid(f"{what}: issued to another platform than {report.platform_id}")
            by_id = {str(e["event_id"]): e for e in envelopes}
            receipts = [
                _receipt(r, f"{what}: receipts[{k}]", order_id, by_id, max_skew_s)
                for k, r in enumerate(_list(order["receipts"], f"{what}: receipts"))
            ]
            summary = summarize(receipts, envelopes, float(sla_hours))
            if order["summary"] != summary:
                changed = sorted(
                    k
                    for k in summary
                    if not isinstance(order["summary"], dict) or order["summary"].get(k) != summary[k]
                )
                raise StatementInvalid(f"{what}: the summary is not what its receipts and events say ({changed})")
            received = summary["received_at"]
            if received is not None and not start <= parse_time(received) < end:
                raise StatementInvalid(f"{what}: received at {received}, outside the statement's period")
            report.orders_checked += 1
        except StatementInvalid as exc:
            report.problems.append(str(exc))
    return report
