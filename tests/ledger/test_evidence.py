"""Evidence bundles over HTTP (both backends): they verify offline with `verify-bundle` and with the README's
snippet; any changed byte fails; tenancy; the webhook's receipt is the listing's leaf hash.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from services.cli import cli
from services.http.schemas.evidence import EvidenceBundle
from services.ledger import bundle as bundles
from services.ledger.leaf import V2, leaf_hash
from services.notifier.worker import NotifierConfig
from tests.notifier.receiver import Receiver, Respond
from tests.notifier.test_delivery import drain
from tests.support import Api

from . import offline_verify

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


@pytest.fixture
def api(api: Api) -> Api:
    """The app with its frozen clock at the real time (webhook timestamps are checked against it)."""
    api.clock.set(datetime.now(UTC).replace(microsecond=123456))
    return api


async def delivered_order(api: Api, receiver: Receiver, pool: httpx.AsyncHTTPTransport) -> str:
    """An order pushed to a real receiver: one failed attempt (500), then delivered; every event numbered."""
    r = api.call("PATCH", f"/v1/platforms/{api.platform_a}", "admin", json={"webhook_url": receiver.url("/hook")})
    assert r.status_code == 200, r.text
    receiver.script("/hook", Respond(500, b"try later"), Respond(200))
    api.container.notifier.config = NotifierConfig(timeout_s=2, allow_list=("127.0.0.1",))
    order_id = str(api.issue().json()["id"])
    await drain(api.container.notifier, pool)
    api.advance(seconds=6)
    assert await drain(api.container.notifier, pool) == 1
    api.container.sequencer.catch_up()
    return order_id


def evidence(api: Api, order_id: str, who: str = "platform_a") -> bytes:
    r = api.call("GET", f"/v1/orders/{order_id}/evidence", who)
    assert r.status_code == 200, r.text
    return bytes(r.content)


def verifier_key(api: Api) -> str:
    return str(api.call("GET", "/v1/ledger/public-key", None).json()["verifier_key"])


def verify_cli(path: Path, key: str) -> Any:
    return CliRunner().invoke(cli, ["ledger", "verify-bundle", str(path), "--key", key])


async def test_a_bundle_verifies_offline_with_verify_bundle_and_the_readme_snippet(
    api: Api, receiver: Receiver, pool: httpx.AsyncHTTPTransport, tmp_path: Path
) -> None:
    order_id = await delivered_order(api, receiver, pool)
    raw = evidence(api, order_id)
    doc = json.loads(raw)
    EvidenceBundle.model_validate(doc)  # the declared response model is the document served
    assert [e["envelope"]["type"] for e in doc["events"]] == [
        "order.issued",
        "order.delivery_attempt_failed",
        "order.delivered",
    ]
    assert doc["on_record"]["webhook_url"] == receiver.url("/hook")
    assert doc["on_record"]["representative"]["name"] == "Rep"
    assert [e["envelope"]["type"] for e in doc["platform_events"]][:2] == ["platform.registered", "platform.changed"]
    assert [a["status_code"] for a in doc["deliveries"][0]["attempt_log"]] == [500, 200]
    key = verifier_key(api)
    path = tmp_path / "bundle.json"
    path.write_bytes(raw)
    result = verify_cli(path, key)
    assert result.exit_code == 0, result.output
    proven = len(doc["events"]) + len(doc["platform_events"])
    assert f"ok: order {order_id}: {proven} events proven" in result.output
    key_file = tmp_path / "ledger.pub"
    key_file.write_text(key + "\n")
    assert verify_cli(path, str(key_file)).exit_code == 0
    offline_verify.verify(json.loads(raw), key)


async def test_any_changed_byte_fails_verify_bundle(
    api: Api, receiver: Receiver, pool: httpx.AsyncHTTPTransport, tmp_path: Path
) -> None:
    order_id = await delivered_order(api, receiver, pool)
    raw = evidence(api, order_id)
    key = verifier_key(api)
    original = json.loads(raw)
    assert bundles.verify_bundle(raw, key).ok
    checked = still_json = 0
    for i, byte in enumerate(raw):
        for other in _substitutes(byte, i):
            changed = raw[:i] + bytes([other]) + raw[i + 1 :]
            report = bundles.verify_bundle(changed, key)
            checked += 1
            if report.ok:
                # Only a change that leaves the same JSON value may pass; with these substitutions there is none.
                assert json.loads(changed) == original, f"byte {i}: {raw[max(0, i - 40) : i + 40]!r} -> {other:#x}"
                pytest.fail(f"byte {i} changed to {other:#x} leaves the same JSON and passes")
            with _json_or_none(changed) as value:
                still_json += value is not None
    assert checked >= 2 * len(raw)
    assert still_json > len(raw) // 2, "most substitutions should keep the JSON valid, to test more than the parser"
    # The command itself, on a few of them (each names what failed and exits 1).
    for i in random.Random(7).sample(range(len(raw)), 5):
        path = tmp_path / f"changed-{i}.json"
        path.write_bytes(raw[:i] + bytes([_substitutes(raw[i], i)[0]]) + raw[i + 1 :])
        result = verify_cli(path, key)
        assert result.exit_code == 1 and "FAILED" in result.output, result.output


class _json_or_none:
    """`with _json_or_none(raw) as value`: the parsed JSON, or None if it is not JSON."""

    def __init__(self, raw: bytes) -> None:
        try:
            self.value: Any = json.loads(raw)
        except ValueError:
            self.value = None

    def __enter__(self) -> Any:
        return self.value

    def __exit__(self, *exc: object) -> None:
        return None


def _substitutes(byte: int, salt: int) -> list[int]:
    """Two other bytes for this one, of its own kind where there is one, so that most changes keep the JSON valid:
    a digit for a digit, a letter for a letter of the same case, base64 for base64; then a byte that flips one bit."""
    char = chr(byte)
    for alphabet in ("0123456789", "abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "+/=-:. _"):
        if char in alphabet:
            others = [c for c in alphabet if c != char]
            same_kind = ord(others[salt % len(others)])
            break
    else:
        same_kind = byte ^ 0x02
    flipped = byte ^ 0x01
    return [same_kind, flipped] if flipped != same_kind else [same_kind, byte ^ 0x04]


async def test_a_changed_event_fails_its_proof_even_when_the_service_re_signs_the_bundle(
    api: Api, receiver: Receiver, pool: httpx.AsyncHTTPTransport
) -> None:
    """The attestation is the service's word; the events stand on the Merkle tree and the checkpoint alone."""
    order_id = await delivered_order(api, receiver, pool)
    doc = json.loads(evidence(api, order_id))
    issued = doc["events"][0]
    issued["envelope"]["data"]["statement_of_reasons"] = "Something milder."
    issued["leaf"] = bundles.rfc8785.dumps(issued["envelope"]).decode()
    issued["leaf_hash"] = bundles.b64(bundles.merkle.leaf_hash(issued["leaf"].encode()))
    forged = api.container.ledger.attest(doc)  # signed with the real key, as a dishonest operator could
    report = bundles.verify_bundle(json.dumps(forged), verifier_key(api))
    assert not report.ok
    assert report.problems == ["events[0]: not in the checkpoint's tree (the audit path leads to another root)"]
    with pytest.raises(ValueError, match="not in the checkpoint's tree"):
        offline_verify.verify(forged, verifier_key(api))


async def test_another_key_verifies_nothing(api: Api, receiver: Receiver, pool: httpx.AsyncHTTPTransport) -> None:
    from shared.tlog.note import NoteSigner

    raw = evidence(api, await delivered_order(api, receiver, pool))
    other = NoteSigner(api.container.ledger.origin, bytes(32)).verifier.verifier_key
    report = bundles.verify_bundle(raw, other)
    assert not report.ok
    assert report.problems[0] == "verifier_key: the bundle names another key than the one given"
    assert any(p.startswith("checkpoint:") for p in report.problems)
    assert any(p.startswith("attestation:") for p in report.problems)
    with pytest.raises(ValueError, match="not signed by this key"):
        offline_verify.verify(json.loads(raw), other)
    assert not bundles.verify_bundle(raw, "not a key").ok


async def test_who_may_read_an_order_evidence(api: Api, receiver: Receiver, pool: httpx.AsyncHTTPTransport) -> None:
    order_id = await delivered_order(api, receiver, pool)
    for who in ("platform_a", "issuer", "auditor", "admin"):
        assert bundles.verify_bundle(evidence(api, order_id, who), verifier_key(api)).ok
    for who in ("platform_b", "issuer2"):
        r = api.call("GET", f"/v1/orders/{order_id}/evidence", who)
        assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json", r.text
    assert api.call("GET", "/v1/orders/no-such-order/evidence", "auditor").status_code == 404
    assert api.call("GET", f"/v1/orders/{order_id}/evidence", None).status_code == 401
    spec = api.call("GET", "/openapi.json", None).json()["paths"]["/v1/orders/{order_id}/evidence"]["get"]
    assert {"200", "404", "409"} <= set(spec["responses"])
    assert "application/problem+json" in spec["responses"]["409"]["content"]


async def test_the_webhook_receipt_is_the_listed_leaf_hash(
    api: Api, receiver: Receiver, pool: httpx.AsyncHTTPTransport
) -> None:
    order_id = await delivered_order(api, receiver, pool)
    first, second = receiver.requests("/hook")
    assert first.body == second.body  # the same payload on every attempt
    sent = json.loads(second.body)["data"]["event"]
    listed = api.call("GET", f"/v1/orders/{order_id}/events", "platform_a").json()
    issued = next(e for e in listed if e["event_id"] == sent["event_id"])
    assert sent["leaf_hash"] == issued["leaf_hash"]
    assert re.fullmatch(r"[A-Za-z0-9+/]{43}=", sent["leaf_hash"])
    assert sent["position"] in (None, issued["position"])  # known at send time on SQLite; null on PostgreSQL
    if api.container.db.dialect == "sqlite":
        assert sent["position"] == issued["position"]
    else:
        assert sent["position"] is None
    doc = json.loads(evidence(api, order_id))
    assert doc["events"][0]["leaf_hash"] == sent["leaf_hash"]
    # ... and what the proofs API proves for that position.
    size = doc["checkpoint"]["tree_size"]
    proof = api.call(
        "GET", "/v1/ledger/proofs/inclusion", "platform_a", params={"position": issued["position"], "tree_size": size}
    )
    assert proof.json()["leaf_hash"] == sent["leaf_hash"]
    with api.container.db.read() as conn:
        [stored, *_] = api.container.store.read_stream(conn, order_id)
    assert bundles.b64(leaf_hash(stored, V2)) == sent["leaf_hash"]


def test_one_checkpoint_until_the_order_outgrows_it_and_unnumbered_events_are_409(api: Api) -> None:
    order_id = api.issue().json()["id"]
    r = api.call("GET", f"/v1/orders/{order_id}/evidence", "auditor")
    if api.container.db.dialect == "postgresql":
        # PostgreSQL numbers events just after commit (the sequencer, off in these tests): not in the ledger yet.
        assert r.status_code == 409 and r.headers["content-type"] == "application/problem+json", r.text
        assert r.json()["type"] == "/problems/not-in-ledger-yet" and "retry" in r.json()["detail"]
        api.container.sequencer.catch_up()
        r = api.call("GET", f"/v1/orders/{order_id}/evidence", "auditor")
    assert r.status_code == 200, r.text
    first = r.json()
    assert first["on_record"] is None and first["platform_events"] == [] and first["deliveries"][0]["attempts"] == 0
    again = api.call("GET", f"/v1/orders/{order_id}/evidence", "auditor").json()
    assert again["checkpoint"] == first["checkpoint"], "a checkpoint that covers the order is reused"
    api.advance(minutes=5)
    api.call("POST", f"/v1/orders/{order_id}/acknowledge", "platform_a")  # notified through the inbox, now
    api.container.sequencer.catch_up()
    grown = api.call("GET", f"/v1/orders/{order_id}/evidence", "auditor").json()
    assert grown["checkpoint"]["tree_size"] > first["checkpoint"]["tree_size"]
    assert [e["envelope"]["type"] for e in grown["events"]] == ["order.issued", "order.delivered", "order.acknowledged"]
    assert grown["on_record"]["at"] == grown["events"][1]["envelope"]["recorded_at"]
    assert grown["on_record"]["representative"]["name"] == "Rep"
    assert bundles.verify_bundle(json.dumps(grown), verifier_key(api)).ok


def test_the_readme_snippet_is_the_tested_file() -> None:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- offline-verify:start -->\n```python\n(.*?)```\n<!-- offline-verify:end -->", readme, re.S)
    assert match is not None, "README.md lost its offline verification snippet"
    assert match.group(1) == (Path(__file__).parent / "offline_verify.py").read_text()
