"""The ledger over HTTP (both backends): a checkpoint that verifies with the served key, proofs, tenancy, problems."""

from __future__ import annotations

import base64
from typing import Any

from shared.eventstore import EventStore
from shared.tlog import merkle, note
from tests.support import Api


def _b(value: str) -> bytes:
    return base64.b64decode(value)


def _orders(api: Api) -> tuple[str, str]:
    """One order to platform A, one to platform B, every event numbered, fed and checkpointed."""
    a = api.issue(issuer_reference="L-1").json()["id"]
    b = api.issue(platform=api.platform_b, issuer_reference="L-2").json()["id"]
    api.container.sequencer.catch_up()
    api.container.ledger.checkpoint()
    return a, b


def _position(api: Api, order_id: str) -> int:
    with api.container.db.read() as conn:
        position = EventStore(api.container.db.dialect).read_stream(conn, order_id)[0].position
    assert position is not None
    return position


def test_checkpoint_verifies_with_the_served_key_and_proofs_verify_against_it(api: Api) -> None:
    a, _ = _orders(api)
    key = api.call("GET", "/v1/ledger/public-key", None)
    assert key.status_code == 200
    verifier = note.parse_verifier_key(key.json()["verifier_key"])
    cp = api.call("GET", "/v1/ledger/checkpoint", None).json()
    origin = api.container.ledger.origin
    body = note.open_checkpoint(cp["note"], verifier, origin)
    assert (body.size, body.root) == (cp["tree_size"], _b(cp["root_hash"])) and body.size >= 2
    for who in ("auditor", "admin", "platform_a"):
        r = api.call(
            "GET", "/v1/ledger/proofs/inclusion", who, params={"position": _position(api, a), "tree_size": body.size}
        )
        assert r.status_code == 200, r.text
        p = r.json()
        merkle.verify_inclusion(p["leaf_index"], body.size, _b(p["leaf_hash"]), [_b(h) for h in p["proof"]], body.root)
    first = body.size - 1
    c = api.call("GET", "/v1/ledger/proofs/consistency", None, params={"first": first, "second": body.size}).json()
    merkle.verify_consistency(first, body.size, _b(c["first_root"]), body.root, [_b(h) for h in c["proof"]])


def test_leaf_hash_of_an_event_is_what_the_ledger_proves(api: Api) -> None:
    from services.ledger.leaf import leaf_hash

    a, _ = _orders(api)
    with api.container.db.read() as conn:
        event = EventStore(api.container.db.dialect).read_stream(conn, a)[0]
    size = api.container.ledger.head().size
    p = api.call(
        "GET", "/v1/ledger/proofs/inclusion", "auditor", params={"position": event.position, "tree_size": size}
    )
    assert _b(p.json()["leaf_hash"]) == leaf_hash(
        event, api.container.ledger.leaf_formats().of_position(event.position)
    )


def _problem(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = r.json()
    return body


def test_tenancy_and_roles_on_inclusion_proofs(api: Api) -> None:
    a, b = _orders(api)
    size = api.container.ledger.head().size
    mine = {"position": _position(api, a), "tree_size": size}
    theirs = {"position": _position(api, b), "tree_size": size}
    assert api.call("GET", "/v1/ledger/proofs/inclusion", "platform_b", params=theirs).status_code == 200
    _problem(api.call("GET", "/v1/ledger/proofs/inclusion", "platform_b", params=mine), 404)
    _problem(api.call("GET", "/v1/ledger/proofs/inclusion", "issuer", params=mine), 403)
    _problem(api.call("GET", "/v1/ledger/proofs/inclusion", None, params=mine), 401)


def test_errors_are_problem_documents(api: Api) -> None:
    _problem(api.call("GET", "/v1/ledger/checkpoint", None), 404)
    _orders(api)
    size = api.container.ledger.head().size
    p = _problem(api.call("GET", "/v1/ledger/proofs/consistency", None, params={"first": 1, "second": size + 5}), 409)
    assert p["type"] == "/problems/tree-too-small"
    p = _problem(api.call("GET", "/v1/ledger/proofs/consistency", None, params={"first": 2, "second": 1}), 422)
    assert p["type"] == "/problems/invalid-range"
    _problem(api.call("GET", "/v1/ledger/proofs/consistency", None, params={"first": 0, "second": 1}), 422)
    params = {"position": size + 1, "tree_size": size}
    _problem(api.call("GET", "/v1/ledger/proofs/inclusion", "auditor", params=params), 422)


def test_openapi_declares_models_and_problem_responses(api: Api) -> None:
    spec = api.call("GET", "/openapi.json", None).json()
    ops = {op["operationId"]: op for path in spec["paths"].values() for op in path.values() if "ledger" in op["tags"]}
    assert set(ops) == {"ledger_checkpoint", "ledger_public_key", "ledger_consistency_proof", "ledger_inclusion_proof"}
    for op in ops.values():
        assert "$ref" in op["responses"]["200"]["content"]["application/json"]["schema"]
    for op_id, statuses in {
        "ledger_checkpoint": ["404"],
        "ledger_consistency_proof": ["409", "422"],
        "ledger_inclusion_proof": ["401", "403", "404", "409", "422"],
    }.items():
        for status in statuses:
            assert "application/problem+json" in ops[op_id]["responses"][status]["content"], (op_id, status)


def test_the_served_writer_key_verifies_the_seal_of_every_event_the_api_wrote(api: Api) -> None:
    from sqlalchemy import select

    from shared.eventstore.tables import events
    from shared.eventstore.writer import canonical_event, check_seal, event_digest, parse_public_key

    _orders(api)
    served = api.call("GET", "/v1/ledger/public-key", None).json()["writer_keys"]
    assert len(served) == 1
    public = parse_public_key(served[0])
    known = {served[0].split("+")[0]: public}
    with api.container.db.read() as conn:
        rows = conn.execute(select(events)).all()
    assert rows
    for r in rows:
        digest = event_digest(
            canonical_event(r.event_id, r.stream_id, r.version, r.type, r.schema_version, r.data, r.meta, r.recorded_at)
        )
        assert check_seal(r.seal, digest, known) is None, r
