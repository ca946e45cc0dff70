"""Evidence bundles (pure, no I/O): how one is put together and signed, and its offline verification.

A bundle is one JSON document about one order (`FORMAT`):

    format, order_id, generated_at,
    verifier_key     the key in force when the bundle was made (it signs the attestation)
    key_rotations    the signed rotation statements from the ledger's first key to verifier_key (rotation.py)
    checkpoint       {origin, tree_size, root_hash, note, cosigned_note}: one signed checkpoint (C2SP note), and
                     the same note with the witnesses' cosignatures appended (c2sp.org/tlog-cosignature)
    earlier_checkpoints  for each event, the newest cosigned checkpoint (note) whose tree does not hold it yet
    events           the order's events, version 1..n, each {position, leaf_hash, leaf, envelope, proof}
    platform_events  the platform's registry events up to the order's delivery (same shape)
    on_record        {platform_id, at, name, monthly_users, representative, webhook_url} at the delivery, or null
    deliveries       the webhook deliveries of the order with every attempt (the notifier's log)
    attestation      a signed note over the SHA-256 of everything above (RFC 8785 canonical JSON)

Each event entry carries its envelope (the fields the ledger commits to, `services.ledger.leaf`), the leaf
itself (the envelope's RFC 8785 bytes, as a string, so a verifier without a canonicaliser can hash it and
compare its content with the envelope), its leaf hash, its position (leaf index = position - 1) and its
RFC 9162 inclusion proof against the checkpoint. Hashes and signatures are standard base64.

What is proven and what is only attested: the events (and so the delivery time, every failed attempt and
who was on record, which the verifier replays from the platform's events) are proven by the Merkle tree
under a signed checkpoint, so they stand even against the service itself. The delivery log's other
details (response excerpts, durations of successful attempts, worker names) are the service's word, signed
with the same key (the attestation), which also makes any change to any part of the bundle detectable.
The attestation's note text can never parse as a checkpoint (its second line is not a tree size).

The verifier is given the key it trusts (the ledger's first key, or a later one) and follows `key_rotations`
from it; the checkpoint must be signed by the key in force at its tree size, the attestation by verifier_key,
which must be the chain's last. An envelope is in leaf format 1 or 2 (leaf.py); a format 2 envelope carries the
event's meta and the writer's seal, and a seal must name this event's digest (writer.py) at its index: with the
writer keys given, its signature is checked too. Bundles of format "takedown-evidence/1" (before key rotation:
no key_rotations, format 1 envelopes only) verify as they always did, and so do format 2 bundles made before
witnesses (no cosigned_note, no earlier_checkpoints).

With a witness policy (shared/tlog/policy.py), the checkpoint counts only with its quorum of valid cosignatures,
and an event recorded earlier than an earlier checkpoint that does not hold it was cosigned (by the quorum, minus
the maximum lag) is backdated: the witnesses, not the service's clock, bound when it could have been recorded.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import rfc8785

from services.ledger.leaf import V2, StoredEvent, envelope, leaf_bytes
from services.ledger.rotation import KeyChain, follow
from shared.eventstore import writer
from shared.tlog import merkle
from shared.tlog.note import (
    NoteError,
    NoteSigner,
    Verifier,
    b64decode_strict,
    open_checkpoint,
    open_note,
    parse_verifier_key,
    split_note,
)
from shared.tlog.policy import WitnessPolicy

FORMAT = "takedown-evidence/2"
FORMAT_V1 = "takedown-evidence/1"
TOP_LEVEL_V1 = (
    "format",
    "order_id",
    "generated_at",
    "verifier_key",
    "checkpoint",
    "events",
    "platform_events",
    "on_record",
    "deliveries",
    "attestation",
)
TOP_LEVEL_PRE_WITNESS = (*TOP_LEVEL_V1[:4], "key_rotations", *TOP_LEVEL_V1[4:])
TOP_LEVEL = (*TOP_LEVEL_PRE_WITNESS[:6], "earlier_checkpoints", *TOP_LEVEL_PRE_WITNESS[6:])
EVENT_ENTRY = ("position", "leaf_hash", "leaf", "envelope", "proof")
ENVELOPE = ("event_id", "stream_id", "version", "type", "schema_version", "data", "recorded_at")
ENVELOPE_V2 = ("leaf_format", *ENVELOPE, "meta", "seal")
CHECKPOINT_PRE_WITNESS = ("origin", "tree_size", "root_hash", "note")
CHECKPOINT = (*CHECKPOINT_PRE_WITNESS, "cosigned_note")
ON_RECORD_FIELDS = ("name", "monthly_users", "representative", "webhook_url")


def b64(raw: bytes) -> str:
    """Standard base64 with padding (the encoding of every hash in a bundle)."""
    return base64.b64encode(raw).decode()


# ----------------------------------------------------------------------------------------------- building


def event_entry(event: StoredEvent, position: int, proof: Sequence[bytes], fmt: int) -> dict[str, Any]:
    """One event of a bundle: envelope (in its leaf's format), canonical leaf, leaf hash, position and proof."""
    leaf = leaf_bytes(event, fmt)
    return {
        "position": position,
        "leaf_hash": b64(merkle.leaf_hash(leaf)),
        "leaf": leaf.decode("utf-8"),
        "envelope": envelope(event, fmt),
        "proof": [b64(h) for h in proof],
    }


def content_digest(bundle: Mapping[str, Any]) -> bytes:
    """SHA-256 of the RFC 8785 form of the bundle without its attestation."""
    content = {k: v for k, v in bundle.items() if k != "attestation"}
    return hashlib.sha256(rfc8785.dumps(content)).digest()


def attestation_text(origin: str, order_id: str, digest: bytes) -> str:
    """The note text the service signs for a bundle (never a valid checkpoint: line 2 is not a number)."""
    return f"{FORMAT}\norigin {origin}\norder {order_id}\nsha256 {b64(digest)}\n"


def attest(bundle: Mapping[str, Any], signer: NoteSigner) -> dict[str, Any]:
    """The bundle with its attestation: a signed note over the digest of everything else."""
    text = attestation_text(signer.name, str(bundle["order_id"]), content_digest(bundle))
    return {**{k: v for k, v in bundle.items() if k != "attestation"}, "attestation": signer.sign(text)}


def replay_on_record(platform_events: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Name, users, representative and webhook URL after these platform events (as `registry.on_record` folds them)."""
    state: dict[str, Any] = {}
    for event in platform_events:
        data = event["data"]
        if event["type"] == "platform.registered":
            state = {k: data[k] for k in ON_RECORD_FIELDS if k in data}
        elif event["type"] == "platform.changed":
            state |= {k: v for k, v in data["changes"].items() if k in ON_RECORD_FIELDS}
    return state


# ----------------------------------------------------------------------------------------------- verifying


@dataclass
class BundleReport:
    """What `verify_bundle` found; `ok` when nothing failed."""

    order_id: str | None = None
    tree_size: int | None = None
    events_checked: int = 0
    cosigned_by: list[str] = field(default_factory=list)  # the pinned witnesses whose cosignature verified
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every check passed."""
        return not self.problems


class _Invalid(ValueError):
    """A part of the bundle that is not what the format says."""


def _strict_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise _Invalid(f"the key {key!r} appears twice in one object")
        found[key] = value
    return found


def _refuse_constant(name: str) -> Any:
    raise _Invalid(f"{name} is not JSON")


def parse(raw: bytes | str) -> Any:
    """Strict JSON: UTF-8, no duplicate keys, no NaN or Infinity."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _Invalid("the bundle is not UTF-8") from exc
    try:
        return json.loads(raw, object_pairs_hook=_strict_object, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise _Invalid(f"the bundle is not JSON: {exc}") from exc


def _object(value: Any, keys: Sequence[str], what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Invalid(f"{what} is not an object")
    if set(value) != set(keys):
        extra, missing = sorted(set(value) - set(keys)), sorted(set(keys) - set(value))
        raise _Invalid(f"{what} has unexpected keys {extra} or lacks {missing}")
    return value


def _int(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _Invalid(f"{what} is not an integer")
    return value


def _str(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"{what} is not a string")
    return value


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise _Invalid(f"{what} is not a list")
    return value


def _hash(value: Any, what: str) -> bytes:
    try:
        raw = b64decode_strict(_str(value, what))
    except NoteError as exc:
        raise _Invalid(f"{what} is not canonical base64") from exc
    if len(raw) != merkle.HASH_SIZE:
        raise _Invalid(f"{what} is not a SHA-256 hash")
    return raw


def _check_seal(env: dict[str, Any], what: str, writer_keys: Mapping[str, bytes] | None) -> None:
    """A format 2 envelope's seal must vouch for this very event (and, with the writer keys, be theirs)."""
    seal = env["seal"]
    if seal is None:
        return
    meta = env["meta"]
    if not isinstance(meta, dict) or not isinstance(env["data"], dict):
        raise _Invalid(f"{what}: the envelope's data and meta are objects")
    try:
        at = datetime.strptime(_str(env["recorded_at"], f"{what}: recorded_at"), "%Y-%m-%dT%H:%M:%S.%fZ")
        digest = writer.event_digest(
            writer.canonical_event(
                env["event_id"],
                env["stream_id"],
                env["version"],
                env["type"],
                env["schema_version"],
                env["data"],
                meta,
                at.replace(tzinfo=UTC),
            )
        )
    except (ValueError, TypeError, rfc8785.CanonicalizationError) as exc:
        raise _Invalid(f"{what}: the envelope cannot be put in the writer's canonical form: {exc}") from exc
    if writer_keys is None:
        # Without the writer keys only the seal's own claim can be checked: it names this event's digest.
        try:
            named = base64.b64decode(seal["batch"][seal["i"]], validate=True)
        except (KeyError, IndexError, TypeError, ValueError):
            named = b""
        if named != digest:
            raise _Invalid(f"{what}: the writer's seal does not name this event")
        return
    why = writer.check_seal(seal, digest, writer_keys)
    if why is not None:
        raise _Invalid(f"{what}: the writer's seal is {why}")


def _check_event(
    entry: Any, what: str, size: int, root: bytes, v2: bool, writer_keys: Mapping[str, bytes] | None
) -> dict[str, Any]:
    """Recompute one event's leaf from its envelope and walk its proof to the checkpoint's root; its envelope."""
    entry = _object(entry, EVENT_ENTRY, what)
    raw_env = entry["envelope"]
    if v2 and isinstance(raw_env, dict) and "leaf_format" in raw_env:
        env = _object(raw_env, ENVELOPE_V2, f"{what}: the envelope")
        if env["leaf_format"] != V2 or isinstance(env["leaf_format"], bool):
            raise _Invalid(f"{what}: leaf_format {env['leaf_format']!r} is not a known leaf format")
    else:
        env = _object(raw_env, ENVELOPE, f"{what}: the envelope")
    position = _int(entry["position"], f"{what}: position")
    try:
        canonical = rfc8785.dumps(env)
    except (rfc8785.CanonicalizationError, ValueError, TypeError) as exc:
        raise _Invalid(f"{what}: the envelope cannot be canonicalised: {exc}") from exc
    if _str(entry["leaf"], f"{what}: leaf").encode("utf-8") != canonical:
        raise _Invalid(f"{what}: the leaf is not the canonical form of its envelope")
    hashed = merkle.leaf_hash(canonical)
    if _hash(entry["leaf_hash"], f"{what}: leaf_hash") != hashed:
        raise _Invalid(f"{what}: leaf_hash is not the hash of its leaf")
    proof = [_hash(h, f"{what}: proof[{n}]") for n, h in enumerate(_list(entry["proof"], f"{what}: proof"))]
    if not 1 <= position <= size:
        raise _Invalid(f"{what}: position {position} is outside the checkpoint's {size} leaves")
    try:
        merkle.verify_inclusion(position - 1, size, hashed, proof, root)
    except merkle.ProofError as exc:
        raise _Invalid(f"{what}: not in the checkpoint's tree ({exc})") from exc
    if "seal" in env:
        _check_seal(env, what, writer_keys)  # after the proof: a changed event is first of all not in the tree
    return env


def _events(
    entries: Any,
    section: str,
    stream_id: str | None,
    size: int,
    root: bytes,
    report: BundleReport,
    v2: bool = False,
    writer_keys: Mapping[str, bytes] | None = None,
) -> list[dict[str, Any]] | None:
    """Check every event of a section; its envelopes (None if any failed), in order."""
    found: list[dict[str, Any]] = []
    failed = False
    for n, entry in enumerate(_list(entries, section)):
        what = f"{section}[{n}]"
        try:
            env = _check_event(entry, what, size, root, v2, writer_keys)
            if stream_id is not None and env["stream_id"] != stream_id:
                raise _Invalid(f"{what}: belongs to stream {env['stream_id']!r}, not {stream_id!r}")
            if env["version"] != n + 1:
                raise _Invalid(f"{what}: is version {env['version']}, not {n + 1} (an event is missing or moved)")
        except _Invalid as exc:
            report.problems.append(str(exc))
            failed = True
            continue
        report.events_checked += 1
        found.append(env)
    return None if failed else found


def _checkpoint(
    value: Any, chain: KeyChain, origin: str, report: BundleReport, policy: WitnessPolicy
) -> tuple[int, bytes]:
    keys = CHECKPOINT if isinstance(value, dict) and "cosigned_note" in value else CHECKPOINT_PRE_WITNESS
    cp = _object(value, keys, "checkpoint")
    size = _int(cp["tree_size"], "checkpoint: tree_size")
    cosigned = _str(cp.get("cosigned_note", cp["note"]), "checkpoint: cosigned_note")
    try:
        if split_note(cosigned)[0] != split_note(_str(cp["note"], "checkpoint: note"))[0]:
            raise _Invalid("checkpoint: cosigned_note is not the same checkpoint as note")
    except NoteError as exc:
        raise _Invalid(f"checkpoint: cosigned_note: {exc}") from exc
    report.cosigned_by = sorted(policy.counted(cosigned))
    problem = policy.problem(cosigned, f"checkpoint at tree size {size}")
    if problem is not None:
        report.problems.append(problem)
    verifier = chain.key_for(size)
    if verifier is None:
        raise _Invalid(f"checkpoint: tree size {size} is before the trusted key signed (from {chain.first_size})")
    try:
        body = open_checkpoint(_str(cp["note"], "checkpoint: note"), verifier, origin)
    except NoteError as exc:
        raise _Invalid(f"checkpoint: {exc}") from exc
    if (cp["origin"], cp["tree_size"], cp["root_hash"]) != (body.origin, body.size, b64(body.root)):
        raise _Invalid("checkpoint: its origin, tree_size or root_hash differ from its signed note")
    report.tree_size = body.size
    return body.size, body.root


def _on_record(bundle: dict[str, Any], events: list[dict[str, Any]], platform: list[dict[str, Any]]) -> None:
    """The representative on record must be what the proven platform events say at the proven delivery time."""
    issued = events[0] if events else None
    if issued is None or issued["type"] != "order.issued":
        raise _Invalid("events: the first event is not order.issued")
    platform_id = issued["data"].get("platform_id")
    delivered = next((e for e in events if e["type"] == "order.delivered"), None)
    on_record = bundle["on_record"]
    if delivered is None:
        if on_record is not None or platform:
            raise _Invalid("on_record: the order was never delivered, so nothing is on record at delivery")
        return
    record = _object(on_record, ("platform_id", "at", *ON_RECORD_FIELDS), "on_record")
    if record["platform_id"] != platform_id or record["at"] != delivered["recorded_at"]:
        raise _Invalid("on_record: not the order's platform at the time order.delivered was recorded")
    if any(e["recorded_at"] > record["at"] for e in platform):
        raise _Invalid("platform_events: an event recorded after the delivery")
    if any(e["stream_id"] != f"platform-{platform_id}" for e in platform):
        raise _Invalid("platform_events: an event of another stream than the order's platform")
    replayed = replay_on_record(platform)
    if {k: record[k] for k in ON_RECORD_FIELDS} != {k: replayed.get(k) for k in ON_RECORD_FIELDS}:
        raise _Invalid("on_record: differs from what the platform's events say at the delivery")


def _deliveries(value: Any, order_id: str, events: list[dict[str, Any]]) -> None:
    """Every delivery is this order's, and every attempt the events record appears in the delivery log."""
    logged: dict[tuple[str, int], dict[str, Any]] = {}
    for n, delivery in enumerate(_list(value, "deliveries")):
        if not isinstance(delivery, dict) or delivery.get("order_id") != order_id:
            raise _Invalid(f"deliveries[{n}]: not a delivery of order {order_id}")
        for attempt in _list(delivery.get("attempt_log"), f"deliveries[{n}]: attempt_log"):
            if isinstance(attempt, dict):
                logged[(str(delivery.get("id")), attempt.get("attempt", -1))] = attempt
    for e in events:
        if e["type"] not in ("order.delivery_attempt_failed", "order.delivered") or not e["data"].get("delivery_id"):
            continue
        attempt = logged.get((e["data"]["delivery_id"], e["data"].get("attempt", -1)))
        if attempt is None:
            raise _Invalid(f"deliveries: the attempt recorded by event {e['event_id']} ({e['type']}) is missing")
        if e["type"] == "order.delivery_attempt_failed" and attempt.get("status_code") != e["data"].get("status_code"):
            raise _Invalid(f"deliveries: the attempt recorded by event {e['event_id']} has another status code")


def verify_bundle(
    raw: bytes | str,
    verifier_key: str,
    writer_keys: Mapping[str, bytes] | None = None,
    witnesses: WitnessPolicy | None = None,
    max_lag_s: float = 300.0,
) -> BundleReport:
    """Check a bundle with nothing but a trusted verifier key: every signature, leaf, proof and cross-check.

    The key is the ledger's first key or any later one; the bundle's key rotations lead from it to the key in
    force. With `writer_keys` ({key id: public key}), every seal's signature is checked too. With `witnesses`, the
    checkpoint needs its quorum of cosignatures and the events' times are bounded by the earlier cosigned checkpoints
    (`max_lag_s`: the feeder's maximum lag). Every problem found is reported (not just the first); the bundle is good
    only if `ok`.
    """
    report = BundleReport()
    policy = witnesses or WitnessPolicy()
    try:
        trusted = parse_verifier_key(verifier_key)
    except NoteError as exc:
        report.problems.append(f"verifier key: {exc}")
        return report
    try:
        parsed = parse(raw)
        if not isinstance(parsed, dict) or parsed.get("format") not in (FORMAT, FORMAT_V1):
            raise _Invalid(f"format: neither {FORMAT} nor {FORMAT_V1}")
        v2 = parsed["format"] == FORMAT
        keys = (TOP_LEVEL if "earlier_checkpoints" in parsed else TOP_LEVEL_PRE_WITNESS) if v2 else TOP_LEVEL_V1
        bundle = _object(parsed, keys, "the bundle")
        order_id = report.order_id = _str(bundle["order_id"], "order_id")
        _str(bundle["generated_at"], "generated_at")
    except _Invalid as exc:
        report.problems.append(str(exc))
        return report

    def check(step: Any, *args: Any) -> Any:
        try:
            return step(*args)
        except _Invalid as exc:
            report.problems.append(str(exc))
            return None

    origin = trusted.name
    chain = KeyChain.single(trusted)
    if v2:
        try:
            statements = [_str(n, "key_rotations[]") for n in _list(bundle["key_rotations"], "key_rotations")]
            chain = follow(trusted, origin, statements)
        except (_Invalid, NoteError) as exc:
            report.problems.append(f"key_rotations: {exc}")
    verifier = chain.current
    if bundle["verifier_key"] != verifier.verifier_key:
        report.problems.append("verifier_key: the bundle names another key than the one given")
    tree = check(_checkpoint, bundle["checkpoint"], chain, origin, report, policy)
    if tree is not None:
        size, root = tree
        events = check(_events, bundle["events"], "events", order_id, size, root, report, v2, writer_keys)
        platform = check(
            _events, bundle["platform_events"], "platform_events", None, size, root, report, v2, writer_keys
        )
        if events is not None and platform is not None:
            check(_on_record, bundle, events, platform)
            check(_deliveries, bundle["deliveries"], order_id, events)
            if policy.quorum:
                check(_backdating, bundle, chain, origin, policy, max_lag_s, report)
    check(_attestation, bundle, verifier, order_id)
    return report


def _attestation(bundle: dict[str, Any], verifier: Verifier, order_id: str) -> None:
    try:
        text = open_note(_str(bundle["attestation"], "attestation"), verifier)
        expected = attestation_text(verifier.name, order_id, content_digest(bundle))
    except (NoteError, rfc8785.CanonicalizationError, ValueError, TypeError) as exc:
        raise _Invalid(f"attestation: {exc}") from exc
    if text != expected:
        raise _Invalid("attestation: the signed digest is not the digest of this bundle (something in it changed)")


def _backdating(
    bundle: dict[str, Any], chain: KeyChain, origin: str, policy: WitnessPolicy, max_lag_s: float, report: BundleReport
) -> None:
    """Flag every event recorded before an earlier checkpoint that does not hold it was cosigned (minus the lag)."""
    witnessed: list[tuple[int, int]] = []  # (tree size, the time its quorum cosigned it by)
    for n, note in enumerate(_list(bundle.get("earlier_checkpoints", []), "earlier_checkpoints")):
        what = f"earlier_checkpoints[{n}]"
        try:
            text, _ = split_note(_str(note, what))
            size = int(text.split("\n")[1])
            key = chain.key_for(size)
            if key is None:
                raise _Invalid(f"{what}: tree size {size} is before the trusted key signed")
            body = open_checkpoint(note, key, origin)
        except (NoteError, ValueError, IndexError) as exc:
            raise _Invalid(f"{what}: {exc}") from exc
        at = policy.witnessed_at(note)
        if at is not None:
            witnessed.append((body.size, at))
    for section in ("events", "platform_events"):
        for entry in bundle[section]:
            env, position = entry["envelope"], entry["position"]
            bounds = [(size, at) for size, at in witnessed if size < position]
            if not bounds:
                continue
            size, at = max(bounds, key=lambda b: b[1])
            recorded = datetime.strptime(env["recorded_at"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
            if recorded.timestamp() < at - max_lag_s:
                report.problems.append(
                    f"{section}: event {env['event_id']} at position {position} is backdated: recorded at"
                    f" {env['recorded_at']}, but the checkpoint of tree size {size} that does not hold it was"
                    f" cosigned at {datetime.fromtimestamp(at, UTC).isoformat()}"
                )
