"""The ledger service: the feeder, checkpoints on a schedule and on demand, proofs, and whole-store verification."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from services.ledger import bundle, checkpoints, tree
from services.ledger.admission import Decision, decision_text
from services.ledger.checkpoints import Checkpoint, load_or_create_seed
from services.ledger.errors import NoCheckpoint, NotQuarantinable, NotYetInLedger
from services.ledger.intake import Intake, Refusal, record_decision
from services.ledger.leaf import leaf_hash, leaf_index
from services.ledger.note import NoteSigner, Verifier, check_key_name
from services.ledger.tree import AuditPath, ConsistencyProof, InclusionProof, LedgerFeeder, TreeHead
from services.ledger.verify import VerifyReport, verify_ledger
from shared.auth import Principal
from shared.clock import Clock
from shared.db import Database
from shared.eventstore import EventStore
from shared.settings import Settings

log = logging.getLogger("takedown.ledger")

# Whether a caller may see the events of a stream; given by the wiring (for orders: the order's platform or issuer).
StreamVisibility = Callable[[Principal, str], bool]


def default_origin(public_base_url: str) -> str:
    """The checkpoint origin when none is configured: the public host and path, plus /ledger."""
    parts = urlsplit(public_base_url)
    return check_key_name(f"{parts.netloc}{parts.path.rstrip('/')}/ledger")


class Ledger:
    """Everything the API, the CLI and the workers ask of the ledger; each call owns its transaction."""

    def __init__(
        self,
        db: Database,
        store: EventStore,
        clock: Clock,
        *,
        origin: str,
        seed: Callable[[], bytes],
        stream_visible: StreamVisibility,
        checkpoint_interval_s: float = 60.0,
        writer_keys: Mapping[str, bytes] | None = None,
        max_lag_s: float = 300.0,
    ) -> None:
        self.db, self.store, self.clock = db, store, clock
        self.origin = check_key_name(origin)
        self.stream_visible = stream_visible
        self.checkpoint_interval_s = checkpoint_interval_s
        self._seed = seed
        self._signer: NoteSigner | None = None
        self._signer_lock = threading.Lock()
        self._last_checkpoint = float("-inf")
        if writer_keys is None:
            # By default the ledger trusts the key this process's store signs with, and no other.
            writer = store.writer
            writer_keys = {writer.key_id: writer.public_key} if writer is not None else {}
        self.intake = Intake(writer_keys, timedelta(seconds=max_lag_s), lambda: self.verifier, self.origin)
        self.feeder = LedgerFeeder(db, store, self.intake, now=clock.now, on_idle=self._scheduled_checkpoint)

    # The key is read (or made) on first use, not at wiring: tests and tools that never sign touch no file.
    @property
    def signer(self) -> NoteSigner:
        """The checkpoint signer (loads or creates the key on first use)."""
        with self._signer_lock:
            if self._signer is None:
                self._signer = NoteSigner(self.origin, self._seed())
            return self._signer

    @property
    def verifier(self) -> Verifier:
        """The public half of the signing key."""
        return self.signer.verifier

    def public_key(self) -> str:
        """The note verifier key that clients pin."""
        return self.verifier.verifier_key

    def head(self) -> TreeHead:
        """The current tree head."""
        with self.db.read() as conn:
            return tree.head(conn)

    def feed(self) -> int:
        """Feed every sequenced event into the tree now; returns how many leaves were added."""
        return self.feeder.catch_up()

    def checkpoint(self) -> Checkpoint:
        """Feed what is sequenced, then sign and store a checkpoint of the tree head (on demand)."""
        self.feed()
        signer = self.signer
        with self.db.transaction() as conn:
            tree.lock_head_waiting(conn)
            made = checkpoints.make_checkpoint(conn, signer, self.origin, self.clock.now())
        self._last_checkpoint = time.monotonic()
        return made

    def _scheduled_checkpoint(self) -> None:
        """Called by the feeder loop when idle: a checkpoint every `checkpoint_interval_s`, if the tree grew."""
        if time.monotonic() - self._last_checkpoint < self.checkpoint_interval_s:
            return
        signer = self.signer
        with self.db.transaction() as conn:
            tree.lock_head_waiting(conn)
            checkpoints.make_checkpoint(conn, signer, self.origin, self.clock.now())
        self._last_checkpoint = time.monotonic()

    def latest_checkpoint(self) -> Checkpoint:
        """The newest stored checkpoint (NoCheckpoint if none)."""
        with self.db.read() as conn:
            return checkpoints.latest(conn)

    def inclusion(self, position: int, tree_size: int) -> InclusionProof:
        """The audit path of the event at `position` against the tree of `tree_size` leaves."""
        with self.db.read() as conn:
            return tree.event_inclusion_proof(conn, self.store, position, tree_size)

    def checkpoint_covering(self, position: int) -> Checkpoint:
        """The latest checkpoint if its tree holds `position`; else feed the tree and sign a fresh one.

        NotYetInLedger if even the fed tree does not reach `position` (another feeder holds the tree for a moment).
        """
        try:
            latest = self.latest_checkpoint()
        except NoCheckpoint:
            latest = None
        if latest is not None and latest.tree_size >= position:
            return latest
        made = self.checkpoint()
        if made.tree_size < position:
            raise NotYetInLedger(f"position {position} is beyond the tree's {made.tree_size} leaves")
        return made

    def audit_paths(self, positions: Iterable[int], tree_size: int) -> dict[int, AuditPath]:
        """Inclusion proofs of the events at these positions against one tree size, in one read."""
        with self.db.read() as conn:
            return {p: tree.inclusion_proof(conn, leaf_index(p), tree_size) for p in positions}

    def attest(self, document: Mapping[str, Any]) -> dict[str, Any]:
        """An evidence bundle with its attestation signed by the checkpoint key (`bundle.attest`)."""
        return bundle.attest(document, self.signer)

    def consistency(self, first: int, second: int) -> ConsistencyProof:
        """The consistency proof between two tree sizes."""
        with self.db.read() as conn:
            return tree.consistency_proof(conn, first, second)

    def verify(self) -> VerifyReport:
        """Recompute every leaf and node from the stored events, screen every event, check every checkpoint."""
        verifier = self.verifier
        with self.db.read() as conn:
            return verify_ledger(conn, self.store, verifier, self.origin, self.intake)

    def blocked(self) -> Refusal | None:
        """The event the feeder refuses, read from the store (any process can tell); None if it is not stuck."""
        with self.db.read() as conn:
            refused = self.intake.next_refusal(conn, self.store, tree.head(conn).size)
        tree.report_block(refused)
        return refused

    def quarantined(self, positions: Iterable[int]) -> set[int]:
        """Which of these positions an operator set aside by a decision the checkpoint key signed."""
        wanted = set(positions)
        if not wanted:
            return set()
        with self.db.read() as conn:
            found = self.intake.decisions(conn, min(wanted) - 1, max(wanted))
        return {d.decision.position for d in found if d.signed and d.decision.position in wanted}

    def quarantine(self, position: int, reason: str) -> Decision:
        """Set the refused event at `position` aside as a decision signed by the checkpoint key; the feeder then
        puts a leaf committing to the decision at that position and moves on.

        Only the event the feeder is stopped at can be set aside (NotQuarantinable otherwise): an admitted event
        is never taken out, and a later one is judged once the feeder reaches it.
        """
        if not reason.strip():
            raise NotQuarantinable("a quarantine needs a reason")
        signer = self.signer
        with self.db.transaction() as conn:
            size = tree.head(conn).size
            if position != size + 1:
                raise NotQuarantinable(
                    f"position {position} is not the one the feeder waits at (the tree holds {size} events)"
                )
            refused = self.intake.next_refusal(conn, self.store, size)
            if refused is None:
                raise NotQuarantinable(f"the feeder does not refuse the event at position {position}")
            event = self.store.read_all(conn, after=size, limit=1)[0]
            decision = Decision(
                position=position,
                event_id=event.event_id,
                event_leaf=leaf_hash(event),
                fault=refused.reason,
                reason=reason.strip(),
                decided_at=self.clock.now(),
            )
            if self.intake.decisions(conn, size, position):
                raise NotQuarantinable(f"position {position} is already quarantined")
            record_decision(conn, decision, signer.sign(decision_text(self.origin, decision)))
        log.warning("ledger position quarantined by the operator", extra=decision.fields())
        return decision

    def start(self) -> None:
        """Run the feeder (and the checkpoint schedule) in the background."""
        self.feeder.start()

    def stop(self) -> None:
        """Stop the background feeder."""
        self.feeder.stop()


def ledger_from_settings(
    settings: Settings, db: Database, store: EventStore, clock: Clock, stream_visible: StreamVisibility
) -> Ledger:
    """The ledger as configured: origin, key source (environment value or key file) and checkpoint schedule."""
    key = settings.ledger_key.get_secret_value() if settings.ledger_key is not None else None
    return Ledger(
        db,
        store,
        clock,
        origin=settings.ledger_origin or default_origin(settings.public_base_url),
        seed=lambda: load_or_create_seed(key, settings.ledger_key_file),
        stream_visible=stream_visible,
        checkpoint_interval_s=settings.ledger_checkpoint_interval_s,
        max_lag_s=settings.ledger_max_lag_s,
    )
