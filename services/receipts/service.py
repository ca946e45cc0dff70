"""The receipts kit: keeps every signed webhook, forwards it, follows its orders into the log and checks the log.

`receive` is the webhook route's one command. `sync` is one deterministic pass over the log (tests call it; the
background thread calls it with backoff, as the ledger's feeder lags behind the events): fetch the checkpoint,
check its signature and its consistency with the last one accepted, then prove every event of the orders still
followed. Whatever the log shows that contradicts itself or an earlier view is refused, kept with its evidence,
logged at ERROR and shown by `status`: the kit is a witness of its own view.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import Connection

from services.ledger.bundle import b64
from services.receipts import store
from services.receipts.client import LogClient, forward
from services.receipts.domain import (
    ProvenEvent,
    Seen,
    StoredReceipt,
    body_digest,
    build_statement,
    check_consistent,
    consistency_needed,
    key_chain,
    open_served,
    prove_event,
    signature_lines,
    webhook_facts,
)
from services.receipts.errors import BadSignature, FetchFailed, LogInconsistency
from services.webhooks.signing import verify
from shared.clock import Clock
from shared.db import Database
from shared.tlog.cosignature import add_cosignatures
from shared.tlog.note import Verifier, b64decode_strict

log = logging.getLogger("takedown.receipts")
FORWARDED_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature", "content-type")


def backoff_s(failures: int, cap_s: float) -> float:
    """How long to wait after this many failed passes in a row: doubling from 1 s, capped."""
    return 0.0 if failures == 0 else min(cap_s, 2.0 ** (failures - 1))


@dataclass
class SyncReport:
    """What one pass over the log did."""

    checkpoint_size: int | None = None
    proven: int = 0
    pending: int = 0  # events listed but not yet in an accepted checkpoint (or not fetchable yet)
    alerts: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class ReceiptsKit:
    """A platform's receipts kit over its own SQLite store, the service's API and (optionally) a forward URL."""

    def __init__(
        self,
        db: Database,
        client: LogClient,
        verifier: Verifier,
        secrets: Sequence[str],
        clock: Clock,
        *,
        forward_url: str | None = None,
        forward_timeout_s: float = 10.0,
        poll_s: float = 10.0,
        backoff_max_s: float = 300.0,
    ) -> None:
        self.db, self.client, self.verifier, self.secrets, self.clock = db, client, verifier, list(secrets), clock
        self.forward_url, self.poll_s, self.backoff_max_s = forward_url, poll_s, backoff_max_s
        self._forwarder = httpx.Client(timeout=forward_timeout_s)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.failures = 0
        self.last_sync_at: datetime | None = None

    # ------------------------------------------------------------------------------------------- receiving

    def receive(self, headers: Mapping[str, str], body: bytes) -> bool:
        """Keep a webhook signed with the platform's secret (BadSignature otherwise, nothing kept); False if its
        webhook-id was received before (the first receipt stands)."""
        lowered = {k.lower(): v for k, v in headers.items()}
        now = self.clock.now()
        if not verify(self.secrets, lowered, body, int(now.timestamp())):
            log.warning("refused a webhook: bad signature", extra={"webhook_id": lowered.get("webhook-id")})
            raise BadSignature()
        facts = webhook_facts(body)
        receipt = StoredReceipt(
            webhook_id=lowered["webhook-id"],
            webhook_timestamp=int(lowered["webhook-timestamp"]),
            webhook_type=facts.webhook_type,
            order_id=facts.order_id,
            received_at=now,
            body=body,
            body_sha256=body_digest(body),
        )
        kept = {k: lowered[k] for k in FORWARDED_HEADERS if k in lowered}
        with self.db.transaction() as conn:
            new = store.add_receipt(
                conn, receipt, facts.platform_id, facts.event_id, kept, self.forward_url is not None
            )
        log.info("webhook %s received: %s for order %s", receipt.webhook_id, facts.webhook_type, facts.order_id)
        self._wake.set()
        return new

    def forward_pending(self) -> int:
        """Forward every due receipt to the platform's system; a failure is recorded and retried with backoff.
        Returns how many were forwarded."""
        if self.forward_url is None:
            return 0
        now = self.clock.now()
        with self.db.read() as conn:
            due = store.due_forwards(conn, now)
        done = 0
        for job in due:
            error = forward(self._forwarder, self.forward_url, job.body, job.headers)
            next_at = now + timedelta(seconds=max(1.0, backoff_s(job.attempts + 1, self.backoff_max_s)))
            with self.db.transaction() as conn:
                store.record_forward(conn, job.id, at=now, error=error, next_at=None if error is None else next_at)
            if error is None:
                done += 1
            else:
                log.warning("forwarding webhook %s failed (attempt %d): %s", job.webhook_id, job.attempts + 1, error)
        return done

    # ------------------------------------------------------------------------------------------- the log

    def sync(self) -> SyncReport:
        """One pass: fetch and check the log's checkpoint, then prove the followed orders' events in it."""
        report = SyncReport()
        self.last_sync_at = self.clock.now()
        try:
            latest = self._checkpoint(report)
        except FetchFailed as exc:
            report.errors.append(str(exc))
            return report
        if latest is None:
            return report
        report.checkpoint_size = latest.size
        with self.db.read() as conn:
            orders = store.followed_orders(conn)
            proven = store.proven_of(conn, orders)
        for order_id in orders:
            try:
                self._prove_order(order_id, latest, {e.event_id for e in proven.get(order_id, [])}, report)
            except FetchFailed as exc:
                report.errors.append(str(exc))
        return report

    def _checkpoint(self, report: SyncReport) -> Seen | None:
        """The latest accepted checkpoint after looking at the served one (accepted if consistent)."""
        note = self.client.checkpoint()
        with self.db.read() as conn:
            latest = store.latest_checkpoint(conn)
        proof: list[str] = []
        rotations: list[str] = []
        try:
            rotations = self.client.rotations()
            body = open_served(note, key_chain(self.verifier, rotations))
            needed = consistency_needed(latest, body)
            if needed is not None:
                proof = self.client.consistency(*needed)
            try:
                hashes = [b64decode_strict(h) for h in proof]
            except ValueError as exc:
                raise LogInconsistency("fork", f"the consistency proof is not base64 hashes: {exc}") from exc
            check_consistent(latest, body, hashes)
        except LogInconsistency as exc:
            self._alert(exc, note, latest.note if latest else None, {"consistency_proof": proof}, report)
            return latest
        now = self.clock.now()
        with self.db.transaction() as conn:
            store.keep_rotations(conn, rotations)
            if latest is not None and body.size == latest.size:
                merged = add_cosignatures(latest.note, signature_lines(note))
                if merged != latest.note:
                    store.update_note(conn, latest.size, merged)
                return Seen(latest.size, latest.root, merged)
            if latest is not None and body.size < latest.size:
                return latest  # an older view, shown consistent: nothing new to keep
            seen = Seen(body.size, body.root, note)
            link = (needed[0], needed[1], proof) if needed is not None else None
            store.accept_checkpoint(conn, seen, now, link)
            return seen

    def _prove_order(self, order_id: str, at: Seen, done: set[str], report: SyncReport) -> None:
        shown = self.client.events(order_id)
        todo = [e for e in shown if e["event_id"] not in done]
        ready = [e for e in todo if isinstance(e.get("position"), int) and e["position"] <= at.size]
        report.pending += len(todo) - len(ready)
        if not ready:
            return
        leaves = self.client.leaves(order_id)
        with self.db.read() as conn:
            pushed = {
                facts.event_id: facts.leaf_hash
                for r in store.receipts_of(conn, [order_id]).get(order_id, [])
                if (facts := webhook_facts(r.body)).event_id is not None
            }
        for event in ready:
            leaf = leaves.get(str(event["event_id"]), {})
            inclusion = self.client.inclusion(int(event["position"]), at.size)
            try:
                proven = prove_event(order_id, event, leaf, inclusion, at)
                receipt = pushed.get(proven.event_id, proven.leaf_hash)
                if receipt != proven.leaf_hash:
                    raise LogInconsistency(
                        "leaf-mismatch",
                        f"event {proven.event_id}: the webhook's receipt {receipt} is not its leaf in the log",
                    )
            except LogInconsistency as exc:
                detail = {"event": event, "leaf": leaf, "inclusion": inclusion}
                self._alert(exc, at.note, None, detail, report)
                continue
            with self.db.transaction() as conn:
                store.add_proven(conn, proven)
            report.proven += 1

    def _alert(
        self, exc: LogInconsistency, note: str, earlier: str | None, detail: dict[str, Any], report: SyncReport
    ) -> None:
        now = self.clock.now()
        with self.db.transaction() as conn:
            store.record_alert(
                conn,
                at=now,
                kind=exc.kind,
                reason=exc.reason,
                checkpoint=note,
                earlier_checkpoint=earlier,
                detail=detail,
            )
        log.error("the log showed an inconsistency (%s): %s", exc.kind, exc.reason, extra={"checkpoint": note})
        report.alerts.append(f"{exc.kind}: {exc.reason}")

    # ------------------------------------------------------------------------------------------- reading

    def status(self) -> dict[str, Any]:
        """What the kit holds, its latest accepted checkpoint and its alerts (newest first)."""
        with self.db.read() as conn:
            counts = store.counts(conn)
            latest = store.latest_checkpoint(conn)
            alerts = store.list_alerts(conn)
        return {
            "ok": counts["alerts"] == 0,
            **counts,
            "checkpoint": None if latest is None else {"tree_size": latest.size, "root_hash": b64(latest.root)},
            "last_sync_at": self.last_sync_at,
            "sync_failures": self.failures,
            "latest_alerts": alerts,
        }

    def statement(self, platform_id: str, start: datetime, end: datetime, sla_hours: float = 24.0) -> dict[str, Any]:
        """The offline-verifiable statement of the platform's orders first received in [start, end), from the store alone."""
        with self.db.read() as conn:
            return statement_from(conn, self.verifier, platform_id, start, end, self.clock.now(), sla_hours)

    # ------------------------------------------------------------------------------------------- the loop

    def start(self) -> None:
        """Forward and sync in a background thread: every poll_s, or at once after a receipt; backoff on failure."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="receipts-sync", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the background thread and release the connections."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        self._forwarder.close()
        self.client.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.forward_pending()
                report = self.sync()
                failed = bool(report.errors) or report.pending > 0
                if report.errors:
                    log.warning("a receipts sync pass could not fetch what it needs (retried): %s", report.errors[0])
            except Exception:  # the loop outlives any one pass; the next tries again
                log.exception("a receipts sync pass failed")
                failed = True
            self.failures = self.failures + 1 if failed else 0
            wait = backoff_s(self.failures, self.backoff_max_s) if failed else self.poll_s
            self._wake.wait(max(wait, 0.05))
            self._wake.clear()


def statement_from(
    conn: Connection,
    verifier: Verifier,
    platform_id: str,
    start: datetime,
    end: datetime,
    now: datetime,
    sla_hours: float,
) -> dict[str, Any]:
    """Build a statement from the kit's store (no network)."""
    order_ids = store.orders_received(conn, platform_id, start, end)
    receipts = store.receipts_of(conn, order_ids)
    proven: dict[str, list[ProvenEvent]] = store.proven_of(conn, order_ids)
    return build_statement(
        platform_id=platform_id,
        start=start,
        end=end,
        generated_at=now,
        sla_hours=sla_hours,
        origin=verifier.name,
        verifier_key=verifier.verifier_key,
        key_rotations=store.rotations(conn),
        checkpoints=store.all_checkpoints(conn),
        consistency=store.consistency_proofs(conn),
        orders={o: (receipts.get(o, []), proven.get(o, [])) for o in order_ids if proven.get(o)},
    )
