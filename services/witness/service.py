"""The witness's one command, add-checkpoint (load, decide, store, commit in one place), and what it publishes."""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection

from services.witness import store
from services.witness.domain import Latest, Submission, check_signature, decide, parse_submission
from services.witness.errors import BadProof, RootMismatch, WitnessError
from services.witness.store import Refusal
from shared.clock import Clock
from shared.db import Database, TransientError
from shared.tlog.cosignature import Cosigner
from shared.tlog.note import Verifier


@dataclass(frozen=True)
class _Refused:
    """A refusal decided inside the transaction, raised once the record of it has committed."""

    error: WitnessError


log = logging.getLogger("takedown.witness")


class Witness:
    """Cosigns checkpoints of the configured logs that extend the latest it cosigned, atomically with the update."""

    def __init__(self, db: Database, logs: Mapping[str, Sequence[Verifier]], cosigner: Cosigner, clock: Clock) -> None:
        self.db, self.logs, self.cosigner, self.clock = db, dict(logs), cosigner, clock

    @property
    def vkey(self) -> str:
        """The witness's cosignature/v1 verifier key."""
        return self.cosigner.verifier.vkey

    def add_checkpoint(self, body: bytes) -> str:
        """The cosignature line of a submitted checkpoint, once it is the log's latest; a WitnessError if refused.

        Refusals of a checkpoint the log signed are kept: two signed checkpoints that disagree prove a fork.
        """
        submission = parse_submission(body)
        check_signature(submission, self.logs)  # unsigned submissions prove nothing and are not kept

        def work(conn: Connection) -> Latest | _Refused:
            origin = submission.checkpoint.origin
            latest = store.load_latest(conn, origin)
            try:
                new = decide(submission, latest)
            except WitnessError as exc:
                self._record(conn, submission, latest, exc)
                return _Refused(exc)
            if not store.save_latest(conn, origin, latest, new, self.clock.now()):
                # Another submission changed the latest between our read and write: decide again on what it wrote.
                raise TransientError(f"the latest checkpoint of {origin!r} changed meanwhile")
            return new

        outcome = self.db.run(work)
        if isinstance(outcome, _Refused):
            # A fork's two signed checkpoints are evidence against the log; a stale old size is routine catch-up.
            fork = isinstance(outcome.error, (RootMismatch, BadProof))
            log.log(
                logging.WARNING if fork else logging.INFO,
                "refused a checkpoint of %s: %s",
                submission.checkpoint.origin,
                outcome.error.reason,
                extra={
                    "origin": submission.checkpoint.origin,
                    "code": outcome.error.code,
                    "checkpoint": submission.note,
                },
            )
            raise outcome.error
        # Persisted before answering (the spec's MUST): the cosignature is made only after the commit.
        timestamp = int(self.clock.now().timestamp())
        return self.cosigner.cosign(submission.body, timestamp)

    def _record(
        self,
        conn: Connection,
        submission: Submission,
        latest: Latest | None,
        error: WitnessError,
    ) -> None:
        store.record_refusal(
            conn,
            at=self.clock.now(),
            origin=submission.checkpoint.origin,
            code=error.code,
            reason=error.reason,
            old_size=submission.old_size,
            note=submission.note,
            proof=[base64.b64encode(h).decode() for h in submission.proof],
            latest_note=None if latest is None else latest.note,
        )

    def refusals(self, origin: str | None = None, after: int = 0, limit: int = 100) -> list[Refusal]:
        """The refused signed submissions, oldest first (anyone may read them)."""
        with self.db.read() as conn:
            return store.list_refusals(conn, origin=origin, after=after, limit=limit)
