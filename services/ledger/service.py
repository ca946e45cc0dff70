"""The ledger service: the feeder, checkpoints on a schedule and on demand, proofs, and whole-store verification."""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from services.ledger import bundle, checkpoints, tree
from services.ledger.admission import Decision, decision_text
from services.ledger.checkpoints import Checkpoint, read_seeds
from services.ledger.errors import LedgerIdentityError, NoCheckpoint, NotQuarantinable, NotYetInLedger
from services.ledger.identity import (
    Identity,
    StoredKey,
    add_key,
    ensure_identity,
    leaf_formats,
    stored_chain,
    stored_keys,
)
from services.ledger.intake import Intake, Refusal, record_decision
from services.ledger.leaf import LeafFormats, leaf_hash, leaf_index
from services.ledger.rotation import KeyChain, follow_valid, sign_rotation
from services.ledger.tree import AuditPath, ConsistencyProof, InclusionProof, LedgerFeeder, TreeHead
from services.ledger.verify import VerifyReport, verify_ledger
from services.ledger.witnessing import Witness, Witnessing, cosignature_lines, cosigned, witness
from shared.auth import Principal
from shared.clock import Clock
from shared.db import Database
from shared.eventstore import EventStore
from shared.settings import Settings
from shared.tlog.note import NoteSigner, Verifier, check_key_name
from shared.tlog.policy import WitnessPolicy

log = logging.getLogger("takedown.ledger")

# Whether a caller may see the events of a stream; given by the wiring (for orders: the order's platform or issuer).
StreamVisibility = Callable[[Principal, str], bool]


def default_origin(public_base_url: str) -> str:
    """The checkpoint origin when none is configured: the public host and path, plus /ledger."""
    parts = urlsplit(public_base_url)
    return check_key_name(f"{parts.netloc}{parts.path.rstrip('/')}/ledger")


class Ledger:
    """Everything the API, the CLI and the workers ask of the ledger; each call owns its transaction.

    `origin` is what a new ledger's identity is made of; once stored (services/ledger/identity.py) the stored one
    is the origin. `origin_pinned`: the origin was configured explicitly, so a stored one that differs is refused
    (LedgerIdentityError) rather than silently used; a derived one (from PUBLIC_BASE_URL) only draws a warning.
    `seed` gives the seed(s) this process may sign with (the key file's, then a rotation's staged one).
    """

    def __init__(
        self,
        db: Database,
        store: EventStore,
        clock: Clock,
        *,
        origin: str,
        seed: Callable[[], bytes | Sequence[bytes]],
        stream_visible: StreamVisibility,
        checkpoint_interval_s: float = 60.0,
        origin_pinned: bool = True,
        writer_keys: Mapping[str, bytes] | None = None,
        max_lag_s: float = 300.0,
        witnesses: Sequence[Witness] = (),
        witness_timeout_s: float = 5.0,
        witness_backoff_max_s: float = 300.0,
    ) -> None:
        self.db, self.store, self.clock = db, store, clock
        self._proposed = check_key_name(origin)
        self._origin_pinned = origin_pinned
        self.stream_visible = stream_visible
        self.checkpoint_interval_s = checkpoint_interval_s
        self._seed = seed
        self._identity: Identity | None = None
        self._signers: dict[str, NoteSigner] = {}
        self._signer_lock = threading.Lock()
        self._last_checkpoint = float("-inf")
        if writer_keys is None:
            # By default the ledger trusts the key this process's store signs with, and no other.
            writer = store.writer
            writer_keys = {writer.key_id: writer.public_key} if writer is not None else {}
        self.intake = Intake(writer_keys, timedelta(seconds=max_lag_s))
        self.feeder = LedgerFeeder(db, store, self.intake, now=clock.now, on_idle=self._scheduled_checkpoint)
        # Its own thread, woken after each checkpoint commits: a witness that is down never holds the feeder up.
        self.witnessing = Witnessing(
            db, clock, witnesses, timeout_s=witness_timeout_s, backoff_max_s=witness_backoff_max_s
        )

    # ------------------------------------------------------------------------------------------- identity and keys

    def identity(self) -> Identity:
        """The stored origin and key name (stored now if this is the ledger's first use)."""
        if self._identity is None:
            with self.db.transaction() as conn:
                found = ensure_identity(conn, self._proposed, self.clock.now())
            if found.origin != self._proposed:
                if self._origin_pinned:
                    raise LedgerIdentityError(
                        f"TAKEDOWN_LEDGER_ORIGIN is {self._proposed!r}, but this ledger was created as"
                        f" {found.origin!r}: an origin never changes (unset it, or set it to the stored one)"
                    )
                log.warning(
                    "ledger origin %r is the stored one (%r derives from the settings)", found.origin, self._proposed
                )
            self._identity = found
        return self._identity

    @property
    def origin(self) -> str:
        """The checkpoint origin, as stored when the ledger was created."""
        return self.identity().origin

    def _seeds(self) -> list[bytes]:
        found = self._seed()
        return [found] if isinstance(found, bytes) else list(found)

    def _signer_for(self, key: Verifier | None) -> NoteSigner:
        """The signer of this key, from the seeds this process holds; LedgerIdentityError if it holds none."""
        if key is None:
            raise LedgerIdentityError("no key of the chain is in force at this tree size")
        with self._signer_lock:
            signer = self._signers.get(key.verifier_key)
            if signer is None:
                # The key file may have changed under us (a rotation by another process): read it again.
                for seed in self._seeds():
                    candidate = NoteSigner(self.identity().key_name, seed)
                    self._signers[candidate.verifier.verifier_key] = candidate
                signer = self._signers.get(key.verifier_key)
            if signer is None:
                raise LedgerIdentityError(
                    f"the ledger key file does not hold the key in force, {key.verifier_key}"
                    " (the chain in ledger_keys names it; restore that key file)"
                )
            return signer

    def key_chain(self) -> KeyChain:
        """The stored chain of checkpoint keys; on first use, the key file's key becomes its first key."""
        identity = self.identity()  # every use of a key settles (or checks) the identity first
        with self.db.read() as conn:
            chain = stored_chain(conn)
        if chain is not None:
            return chain
        first = NoteSigner(identity.key_name, self._seeds()[0])
        with self.db.transaction() as conn:
            add_key(conn, 0, first.verifier, 0, None, self.clock.now())
            chain = stored_chain(conn)
        assert chain is not None
        return chain

    def stored_keys(self) -> list[StoredKey]:
        """Every key of the chain as stored, with its rotation statement (made on first use, as `key_chain`)."""
        self.key_chain()
        with self.db.read() as conn:
            return stored_keys(conn)

    def rotation_statements(self) -> list[str]:
        """The signed rotation statements, oldest first (what a verifier follows from the first key)."""
        return [k.statement for k in self.stored_keys() if k.statement is not None]

    # The key is read (or made) on first use, not at wiring: tests and tools that never sign touch no file.
    @property
    def signer(self) -> NoteSigner:
        """The signer of the key in force now (loads or creates the key on first use)."""
        return self._signer_for(self.key_chain().current)

    @property
    def verifier(self) -> Verifier:
        """The public half of the key in force now."""
        return self.key_chain().current

    def public_key(self) -> str:
        """The note verifier key that clients pin."""
        return self.verifier.verifier_key

    def rotate_key(self, new_seed: bytes) -> Rotated:
        """Sign a last checkpoint with the current key, then have it sign a statement naming the new key."""
        self.feed()
        chain = self.key_chain()
        new = NoteSigner(self.identity().key_name, new_seed)
        if any(new.verifier == key for _, key in chain.keys):
            raise LedgerIdentityError("the new key is already in the chain: a rotation needs a key never used")
        with self.db.transaction() as conn:
            head = checkpoints.lock_for_signing(conn)
            chain = stored_chain(conn) or chain
            old = self._signer_for(chain.current)
            checkpoints.make_checkpoint(
                conn, lambda size: self._signer_for(chain.key_for(size)), self.origin, self.clock.now()
            )
            from_size = head.size + 1
            if from_size <= chain.keys[-1][0]:
                raise LedgerIdentityError(
                    f"the key in force signs from tree size {chain.keys[-1][0]} and the tree has not reached it:"
                    " rotate again once the ledger has grown"
                )
            statement = sign_rotation(old, self.origin, new.verifier, from_size)
            if not add_key(conn, len(chain.keys), new.verifier, from_size, statement, self.clock.now()):
                raise LedgerIdentityError("another rotation was stored at the same time; nothing was changed")
        with self._signer_lock:
            self._signers[new.verifier.verifier_key] = new
        return Rotated(old.verifier, new.verifier, from_size, statement)

    def head(self) -> TreeHead:
        """The current tree head."""
        with self.db.read() as conn:
            return tree.head(conn)

    def feed(self) -> int:
        """Feed every sequenced event into the tree now; returns how many leaves were added."""
        # The key chain first (its first key from this process's key file, if none is stored yet): the feeder
        # honours only decisions signed by a key of the chain followed from there.
        self.key_chain()
        return self.feeder.catch_up()

    def checkpoint(self) -> Checkpoint:
        """Feed what is sequenced, then sign and store a checkpoint of the tree head (on demand)."""
        self.feed()
        made = self._sign_head()
        self._last_checkpoint = time.monotonic()
        self.witnessing.wake()
        return made

    def _sign_head(self) -> Checkpoint:
        """Sign the tree head with the key the stored chain puts in force at its size (read under the head's lock)."""
        self.key_chain()
        origin = self.origin
        with self.db.transaction() as conn:

            def signer_for(size: int) -> NoteSigner:
                chain = stored_chain(conn)
                return self._signer_for(chain.key_for(size) if chain is not None else None)

            return checkpoints.make_checkpoint(conn, signer_for, origin, self.clock.now())

    def _scheduled_checkpoint(self) -> None:
        """Called by the feeder loop when idle: a checkpoint every `checkpoint_interval_s`, if the tree grew."""
        if time.monotonic() - self._last_checkpoint < self.checkpoint_interval_s:
            return
        self._sign_head()
        self._last_checkpoint = time.monotonic()
        self.witnessing.wake()

    def leaf_formats(self) -> LeafFormats:
        """Which leaf has which format (to hand out the right receipt for an event listed)."""
        with self.db.read() as conn:
            return leaf_formats(conn)

    def latest_checkpoint(self) -> Checkpoint:
        """The newest stored checkpoint (NoCheckpoint if none)."""
        with self.db.read() as conn:
            return checkpoints.latest(conn)

    def cosigned_checkpoint(self, checkpoint: Checkpoint | None = None) -> Checkpoint:
        """The newest (or this) checkpoint with the witnesses' stored cosignature lines appended to its note."""
        cp = checkpoint if checkpoint is not None else self.latest_checkpoint()
        with self.db.read() as conn:
            return cosigned(cp, cosignature_lines(conn, [cp.tree_size]))

    def cosigned_before(self, positions: Iterable[int]) -> list[str]:
        """For each position, the newest cosigned checkpoint that does not hold it yet: their cosigned notes, once
        each, smallest first (what a verifier bounds the events' recorded times with)."""
        with self.db.read() as conn:
            lines = cosignature_lines(conn)
            sizes = sorted(lines)
            wanted = {sizes[at - 1] for p in positions if (at := bisect.bisect_left(sizes, p))}
            found = [checkpoints.checkpoint_at(conn, size) for size in sorted(wanted)]
        return [cosigned(cp, lines).note for cp in found if cp is not None]

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

    def verify(self, trusted: Verifier | None = None, witnesses: WitnessPolicy | None = None) -> VerifyReport:
        """Recompute every leaf and node from the stored events and check every checkpoint against the key chain.

        The chain is followed from `trusted` (the key a verifier pinned); without it, from the stored first key,
        which is only the database's word (the report says so in `trusted_key`). With a witness policy, the newest
        checkpoint must carry its quorum of cosignatures, and an event recorded before a checkpoint without it was
        cosigned (minus the maximum lag) is backdated.
        """
        stored = self.stored_keys()
        origin = self.origin
        first = trusted if trusted is not None else stored[0].verifier
        statements = [k.statement for k in stored if k.statement is not None]
        chain, bad = follow_valid(first, origin, statements)
        problems: list[str] = [str(bad)] if bad is not None else []
        followed = {key.verifier_key: start for start, key in chain.keys}
        for key in stored:
            start = followed.get(key.verifier.verifier_key)
            if start is not None and start != key.from_size and key.statement is not None:
                problems.append(f"ledger_keys row {key.seq}: from size {key.from_size}, its statement says {start}")
            elif start is None and key.from_size >= chain.keys[0][0]:
                # Not the trusted key's past, and no statement the chain follows names it: a key slipped in.
                problems.append(f"ledger_keys row {key.seq}: a key no rotation statement of the chain names")
        with self.db.read() as conn:
            report = verify_ledger(conn, self.store, chain, origin, self.intake, witnesses=witnesses)
        for problem in problems:
            report.bad(None, problem)
        report.trusted_key = first.verifier_key
        report.keys_followed = len(chain.keys)
        return report

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
        signer, origin = self.signer, self.origin
        with self.db.transaction() as conn:
            size = tree.head(conn).size
            if position != size + 1:
                raise NotQuarantinable(
                    f"position {position} is not the one the feeder waits at (the tree holds {size} events)"
                )
            refused = self.intake.next_refusal(conn, self.store, size)
            if refused is None:
                raise NotQuarantinable(f"the feeder does not refuse the event at position {position}")
            event = self.store.read_all(conn, after=size, limit=1, seals=True)[0]
            decision = Decision(
                position=position,
                event_id=event.event_id,
                event_leaf=leaf_hash(event, leaf_formats(conn).at(size)),
                fault=refused.reason,
                reason=reason.strip(),
                decided_at=self.clock.now(),
            )
            if self.intake.decisions(conn, size, position):
                raise NotQuarantinable(f"position {position} is already quarantined")
            record_decision(conn, decision, signer.sign(decision_text(origin, decision)))
        log.warning("ledger position quarantined by the operator", extra=decision.fields())
        return decision

    def start(self) -> None:
        """Run the feeder (and the checkpoint schedule) in the background, once the identity and keys are settled."""
        self.key_chain()
        self.feeder.start()
        self.witnessing.start()

    def stop(self) -> None:
        """Stop the background feeder and the witnessing."""
        self.feeder.stop()
        self.witnessing.stop()


@dataclass(frozen=True)
class Rotated:
    """A finished key rotation: the old and new keys, the first tree size the new key signs, the statement."""

    old: Verifier
    new: Verifier
    from_size: int
    statement: str


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
        origin_pinned=settings.ledger_origin is not None,
        seed=lambda: read_seeds(key, settings.ledger_key_file),
        stream_visible=stream_visible,
        checkpoint_interval_s=settings.ledger_checkpoint_interval_s,
        max_lag_s=settings.ledger_max_lag_s,
        witnesses=[witness(w.name, w.vkey, w.url) for w in settings.ledger_witnesses],
        witness_timeout_s=settings.ledger_witness_timeout_s,
        witness_backoff_max_s=settings.ledger_witness_backoff_max_s,
    )
