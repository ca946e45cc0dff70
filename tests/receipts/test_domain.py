"""The kit's rules, pure: which served checkpoints, proofs and events it keeps, and what it refuses as evidence."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
import rfc8785

from services.receipts.domain import (
    Seen,
    check_consistent,
    consistency_needed,
    open_served,
    prove_event,
    signature_lines,
    webhook_facts,
)
from services.receipts.errors import LogInconsistency
from shared.tlog import merkle
from shared.tlog.note import CheckpointBody, NoteSigner, sign_checkpoint

LOG = NoteSigner("log.test/takedown", hashlib.sha256(b"log").digest())
ORDER = "order-1"


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def envelope(version: int, **data: Any) -> dict[str, Any]:
    return {
        "event_id": f"e{version}",
        "stream_id": ORDER,
        "version": version,
        "type": "order.issued" if version == 1 else "order.acknowledged",
        "schema_version": 1,
        "data": data or {"n": version},
        "recorded_at": f"2026-03-02T09:00:0{version}.000000Z",
    }


# A tree of 5 leaves whose leaves 0 and 1 are the order's events.
LEAVES = [rfc8785.dumps(envelope(1)), rfc8785.dumps(envelope(2)), b"x", b"y", b"z"]
HASHES = [merkle.leaf_hash(leaf) for leaf in LEAVES]


def tree(size: int) -> Seen:
    root = merkle.root_of(HASHES[:size])
    return Seen(size, root, sign_checkpoint(CheckpointBody(LOG.name, size, root), LOG))


def node(level: int, index: int) -> bytes:
    return merkle.root_of(HASHES[index << level : (index + 1) << level])


def shown(version: int) -> dict[str, Any]:
    e = envelope(version)
    return {**{k: e[k] for k in ("event_id", "type", "version", "data", "recorded_at")}, "position": version,
            "leaf_hash": b64(HASHES[version - 1])}  # fmt: skip


def inclusion(position: int, size: int) -> dict[str, Any]:
    proof = merkle.inclusion_proof(position - 1, size, node)
    return {"position": position, "leaf_hash": b64(HASHES[position - 1]), "proof": [b64(h) for h in proof]}


def leaf_entry(version: int) -> dict[str, Any]:
    return {"envelope": envelope(version), "leaf": LEAVES[version - 1].decode()}


def test_an_event_shown_with_its_leaf_and_proof_is_kept() -> None:
    at = tree(5)
    proven = prove_event(ORDER, shown(2), leaf_entry(2), inclusion(2, 5), at)
    assert (proven.position, proven.tree_size, proven.leaf_hash) == (2, 5, b64(HASHES[1]))


@pytest.mark.parametrize(
    ("change", "kind"),
    [
        (lambda s, f, i: s["data"].update(n=99), "leaf-mismatch"),  # the API shows other data than the leaf holds
        (lambda s, f, i: s.update(leaf_hash=b64(HASHES[0])), "leaf-mismatch"),  # a receipt of another leaf
        (lambda s, f, i: f["envelope"].update(stream_id="other"), "leaf-mismatch"),
        (lambda s, f, i: i.update(leaf_hash=b64(HASHES[0])), "leaf-mismatch"),  # a proof of another leaf
        (lambda s, f, i: i["proof"].pop(), "bad-inclusion-proof"),
        (lambda s, f, i: i["proof"].__setitem__(0, b64(bytes(32))), "bad-inclusion-proof"),
        (lambda s, f, i: s.update(position=7), "leaf-mismatch"),  # beyond the tree
    ],
)
def test_an_event_that_disagrees_with_its_leaf_or_proof_is_refused(change: Any, kind: str) -> None:
    s, leaf, inc = shown(2), leaf_entry(2), inclusion(2, 5)
    change(s, leaf, inc)
    with pytest.raises(LogInconsistency) as refused:
        prove_event(ORDER, s, leaf, inc, tree(5))
    assert refused.value.kind == kind


def test_a_checkpoint_consistent_with_the_last_is_taken_and_a_fork_is_refused() -> None:
    old, new = tree(3), tree(5)
    body = CheckpointBody(LOG.name, 5, new.root)
    assert consistency_needed(None, body) is None and consistency_needed(old, body) == (3, 5)
    proof = merkle.consistency_proof(3, 5, node)
    check_consistent(old, body, proof)
    check_consistent(new, CheckpointBody(LOG.name, 3, old.root), proof)  # an older view, shown a prefix
    with pytest.raises(LogInconsistency, match="not consistent") as fork:
        check_consistent(old, CheckpointBody(LOG.name, 5, hashlib.sha256(b"other").digest()), proof)
    assert fork.value.kind == "fork"
    with pytest.raises(LogInconsistency, match="different roots"):
        check_consistent(old, CheckpointBody(LOG.name, 3, new.root), [])


def test_a_checkpoint_not_signed_by_the_log_is_refused() -> None:
    assert open_served(tree(3).note, LOG.verifier).size == 3
    other = NoteSigner(LOG.name, hashlib.sha256(b"other").digest())
    forged = sign_checkpoint(CheckpointBody(LOG.name, 3, tree(3).root), other)
    with pytest.raises(LogInconsistency) as refused:
        open_served(forged, LOG.verifier)
    assert refused.value.kind == "bad-checkpoint-signature"
    assert signature_lines(forged) == [forged.splitlines(keepends=True)[-1]]


def test_a_webhook_body_is_indexed_leniently() -> None:
    body = b'{"type": "order.issued", "data": {"order": {"id": "o", "platform_id": "p"}, "event": {"event_id": "e"}}}'
    facts = webhook_facts(body)
    assert (facts.webhook_type, facts.order_id, facts.platform_id, facts.event_id) == ("order.issued", "o", "p", "e")
    assert webhook_facts(b"not json").order_id is None
    assert webhook_facts(b'{"data": []}').order_id is None
