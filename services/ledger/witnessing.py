"""Witnesses of the ledger's checkpoints (C2SP tlog-witness): asking them to cosign and storing what they answer.

The pure part decides what to send (the old size the witness last cosigned, the consistency proof from there), reads
an answer as the spec defines it (200: cosignature lines; 409 `text/x.tlog.size`: the size the witness holds), and
spaces out retries (exponential backoff with a cap). `Witnessing` is the thin loop around it: after each checkpoint,
outside the transaction that signed it, it posts the newest checkpoint to each witness with a timeout, records each
cosignature and each witness's size, and never lets a witness that is down hold anything else up.
"""

from __future__ import annotations

import base64
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
from prometheus_client import Gauge
from sqlalchemy import Connection, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from services.ledger import checkpoints, tree
from services.ledger.checkpoints import Checkpoint
from services.ledger.errors import NoCheckpoint
from services.ledger.tables import ledger_cosignatures, ledger_witness_state
from shared.clock import Clock
from shared.db import Database
from shared.loop import BackgroundLoop
from shared.tlog.cosignature import CosignatureVerifier, add_cosignatures, cosignatures, parse_cosigner_vkey
from shared.tlog.note import SIGNATURE_PREFIX, NoteError

log = logging.getLogger("takedown.ledger.witnessing")

SIZE_CONTENT_TYPE = "text/x.tlog.size"
MAX_PROOF_LINES = 63  # the spec's limit; a proof of a tree below 2^63 leaves never needs more

COSIGNED_SIZE = Gauge(
    "takedown_ledger_witness_cosigned_size", "The largest tree size each witness has cosigned (0: none)", ["witness"]
)
COSIGNATURE_AGE = Gauge(
    "takedown_ledger_witness_cosignature_age_seconds",
    "Time since each witness's newest cosignature reached the ledger (NaN: none yet)",
    ["witness"],
)


@dataclass(frozen=True)
class Witness:
    """A witness the log submits to: its name, its cosignature/v1 key and its submission prefix."""

    name: str
    verifier: CosignatureVerifier
    url: str

    @property
    def endpoint(self) -> str:
        """Where add-checkpoint is posted."""
        return self.url.rstrip("/") + "/add-checkpoint"


def witness(name: str, vkey: str, url: str) -> Witness:
    """A witness from its configured name, verifier key and URL (NoteError if the key is not the name's)."""
    verifier = parse_cosigner_vkey(vkey)
    if verifier.name != name:
        raise NoteError(f"witness {name!r}: its verifier key names {verifier.name!r}")
    return Witness(name, verifier, url)


# ----------------------------------------------------------------------------------------------- the protocol (pure)


def request_body(old_size: int, proof: Sequence[bytes], note: str) -> bytes:
    """The add-checkpoint body: "old N", the consistency proof lines, a blank line, the signed checkpoint."""
    if old_size < 0 or len(proof) > MAX_PROOF_LINES or (old_size == 0 and proof):
        raise ValueError("an old size is >= 0, its proof at most 63 hashes, and empty from size 0")
    lines = [f"old {old_size}\n", *(base64.b64encode(h).decode() + "\n" for h in proof), "\n"]
    return ("".join(lines) + note).encode()


@dataclass(frozen=True)
class Cosigned:
    """The witness cosigned: its signature line and the time it states."""

    line: str
    timestamp: int


@dataclass(frozen=True)
class Conflict:
    """409 with the size the witness last cosigned: the old size sent was not it."""

    size: int


@dataclass(frozen=True)
class Failed:
    """Anything else: unreachable, a timeout, another status, a cosignature that does not verify."""

    reason: str


Outcome = Cosigned | Conflict | Failed


def parse_response(witness: Witness, note: str, status: int, content_type: str | None, body: bytes) -> Outcome:
    """Read a witness's answer to add-checkpoint (c2sp.org/tlog-witness), checking its cosignature of `note`."""
    text = body.decode("utf-8", errors="replace")
    if status == 409 and (content_type or "").split(";")[0].strip().lower() == SIZE_CONTENT_TYPE:
        size = text[:-1] if text.endswith("\n") else None
        if size is None or not size.isdigit() or (size != "0" and size.startswith("0")):
            return Failed(f"409 with a malformed size: {text[:80]!r}")
        return Conflict(int(size))
    if status != 200:
        return Failed(f"HTTP {status}: {text.strip()[:200]}")
    lines = [line + "\n" for line in text.split("\n")[:-1]] if text.endswith("\n") else []
    if not lines or any(not line.startswith(SIGNATURE_PREFIX) for line in lines):
        return Failed(f"200 without note signature lines: {text[:80]!r}")
    for line in lines:
        # Lines by other keys are ignored (a witness may hold several); ours must verify over this checkpoint.
        try:
            found = cosignatures(add_cosignatures(note, [line]), [witness.verifier])
        except NoteError:
            continue
        if witness.name in found:
            return Cosigned(line, found[witness.name])
    return Failed("200 without a valid cosignature by the witness's key")


def backoff_s(failures: int, cap_s: float, base_s: float = 1.0) -> float:
    """How long to wait after this many failures in a row: 1 s, 2 s, 4 s, ... up to the cap (0 after none)."""
    if failures <= 0:
        return 0.0
    return float(min(cap_s, base_s * 2.0 ** min(failures - 1, 62)))


# ----------------------------------------------------------------------------------------------- storage


@dataclass(frozen=True)
class WitnessState:
    """What the ledger remembers of one witness: the size it holds, and its failures since its last cosignature
    (to cosign the checkpoint of `attempted`: retried after `retry_at`, or at once for a newer checkpoint)."""

    size: int = 0
    failures: int = 0
    retry_at: datetime | None = None
    last_error: str | None = None
    attempted: int | None = None


@dataclass(frozen=True)
class WitnessStatus:
    """One witness as the metrics show it: its newest cosignature's tree size and when it arrived."""

    name: str
    cosigned_size: int
    received_at: datetime | None
    state: WitnessState = field(default_factory=WitnessState)


def _insert(conn: Connection) -> Any:
    return pg_insert if conn.dialect.name == "postgresql" else sqlite_insert


def states(conn: Connection) -> dict[str, WitnessState]:
    """Every witness's stored state."""
    rows = conn.execute(select(ledger_witness_state))
    return {
        r.witness: WitnessState(
            int(r.tree_size),
            int(r.failures),
            r.retry_at,
            r.last_error,
            None if r.attempted_size is None else int(r.attempted_size),
        )
        for r in rows
    }


def save_state(conn: Connection, name: str, state: WitnessState, now: datetime) -> None:
    """Store one witness's state (insert or replace)."""
    values = {
        "witness": name,
        "tree_size": state.size,
        "failures": state.failures,
        "retry_at": state.retry_at,
        "last_error": state.last_error,
        "attempted_size": state.attempted,
        "updated_at": now,
    }
    stmt = _insert(conn)(ledger_witness_state).values(values)
    conn.execute(stmt.on_conflict_do_update(index_elements=["witness"], set_={k: stmt.excluded[k] for k in values}))


def record_cosignature(conn: Connection, name: str, size: int, cosigned: Cosigned, now: datetime) -> None:
    """Store a witness's cosignature of the checkpoint of this size (a second one for the same size is ignored)."""
    values = {"witness": name, "tree_size": size, "line": cosigned.line, "timestamp": cosigned.timestamp}
    stmt = _insert(conn)(ledger_cosignatures).values({**values, "received_at": now})
    conn.execute(stmt.on_conflict_do_nothing(index_elements=["witness", "tree_size"]))


def cosignature_lines(conn: Connection, sizes: Iterable[int] | None = None) -> dict[int, list[str]]:
    """The stored cosignature lines by tree size (of these sizes, or all), in witness-name order."""
    stmt = select(ledger_cosignatures.c.tree_size, ledger_cosignatures.c.line).order_by(
        ledger_cosignatures.c.tree_size, ledger_cosignatures.c.witness
    )
    if sizes is not None:
        stmt = stmt.where(ledger_cosignatures.c.tree_size.in_(sorted(set(sizes))))
    found: dict[int, list[str]] = {}
    for row in conn.execute(stmt):
        found.setdefault(int(row.tree_size), []).append(row.line)
    return found


def cosigned(checkpoint: Checkpoint, lines: Mapping[int, list[str]]) -> Checkpoint:
    """The checkpoint with its stored cosignature lines appended to its note."""
    extra = lines.get(checkpoint.tree_size, [])
    if not extra:
        return checkpoint
    return Checkpoint(
        checkpoint.origin,
        checkpoint.tree_size,
        checkpoint.root,
        add_cosignatures(checkpoint.note, extra),
        checkpoint.created_at,
    )


def latest_cosigned(conn: Connection) -> dict[str, tuple[int, datetime]]:
    """Per witness: the largest tree size it cosigned and when that cosignature arrived."""
    newest = (
        select(ledger_cosignatures.c.witness, func.max(ledger_cosignatures.c.tree_size).label("size"))
        .group_by(ledger_cosignatures.c.witness)
        .subquery()
    )
    rows = conn.execute(
        select(ledger_cosignatures.c.witness, ledger_cosignatures.c.tree_size, ledger_cosignatures.c.received_at).join(
            newest,
            (newest.c.witness == ledger_cosignatures.c.witness) & (newest.c.size == ledger_cosignatures.c.tree_size),
        )
    )
    return {r.witness: (int(r.tree_size), r.received_at) for r in rows}


# ----------------------------------------------------------------------------------------------- the client and loop


class WitnessClient:
    """POSTs add-checkpoint bodies over one keep-alive httpx client; answers (status, content type, body)."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._http = self._client()

    def _client(self) -> httpx.Client:
        # No proxies from the environment and no redirects: the configured URL is the witness.
        return httpx.Client(timeout=self.timeout_s, follow_redirects=False, trust_env=False)

    def post(self, url: str, body: bytes) -> tuple[int, str | None, bytes]:
        """One request; httpx.HTTPError if the witness cannot be reached or does not answer in time."""
        if self._http.is_closed:  # stopped, then started again
            self._http = self._client()
        response = self._http.post(url, content=body, headers={"content-type": "text/plain; charset=utf-8"})
        return response.status_code, response.headers.get("content-type"), response.content

    def close(self) -> None:
        """Release the connections."""
        self._http.close()


class Witnessing:
    """Submits the newest checkpoint to every configured witness and stores what they answer (one pass per wake).

    Runs in its own thread, woken after each checkpoint and polling for retries, so a witness that is down delays
    nothing but its own cosignature: each request has a timeout and each failure a growing wait (shared through the
    witness's stored state by every process that feeds the ledger).
    """

    def __init__(
        self,
        db: Database,
        clock: Clock,
        witnesses: Sequence[Witness],
        *,
        timeout_s: float = 5.0,
        backoff_max_s: float = 300.0,
        poll_s: float = 5.0,
        client: WitnessClient | None = None,
    ) -> None:
        self.db, self.clock, self.witnesses = db, clock, list(witnesses)
        self.backoff_max_s = backoff_max_s
        self.client = client or WitnessClient(timeout_s)
        self.loop = BackgroundLoop(
            "ledger-witnessing", self._pass, log, interval_s=poll_s, failure="witnessing: pass failed; retrying"
        )

    def wake(self) -> None:
        """Submit now (called after a checkpoint is committed; never waits for a witness)."""
        if self.witnesses:
            self.loop.wake()

    def start(self) -> None:
        """Run in a daemon thread until `stop` (only if witnesses are configured)."""
        if self.witnesses:
            self.loop.start()

    def stop(self) -> None:
        """Stop the thread and close the client."""
        self.loop.stop()
        self.client.close()

    def _pass(self) -> None:
        self.run_once()

    def run_once(self) -> dict[str, Outcome | None]:
        """Submit the newest checkpoint to each witness that has not cosigned it, unless that witness failed on this
        same checkpoint and waits out its backoff (a newer checkpoint is tried at once).

        Returns each witness's outcome (None: nothing to do for it now).
        """
        if not self.witnesses:
            return {}
        with self.db.read() as conn:
            try:
                latest = checkpoints.latest(conn)
            except NoCheckpoint:
                return {}
            known = states(conn)
            have = set(cosignature_lines(conn, [latest.tree_size]).get(latest.tree_size, []))
        outcomes: dict[str, Outcome | None] = {}
        for w in self.witnesses:
            state = known.get(w.name, WitnessState())
            now = self.clock.now()
            done = any(line.startswith(f"{SIGNATURE_PREFIX}{w.name} ") for line in have)
            waiting = state.retry_at is not None and now < state.retry_at and state.attempted == latest.tree_size
            if done or state.size > latest.tree_size or waiting:
                outcomes[w.name] = None
                continue
            outcomes[w.name] = self._submit(w, state, latest)
        self.report()
        return outcomes

    def _proof(self, old: int, new: int) -> list[bytes]:
        if old == 0 or old == new:
            return []
        with self.db.read() as conn:
            return tree.consistency_proof(conn, old, new).proof

    def _post(self, w: Witness, old: int, cp: Checkpoint) -> Outcome:
        try:
            body = request_body(old, self._proof(old, cp.tree_size), cp.note)
            status, content_type, answer = self.client.post(w.endpoint, body)
        except httpx.HTTPError as exc:
            return Failed(f"unreachable: {type(exc).__name__}: {exc}")
        return parse_response(w, cp.note, status, content_type, answer)

    def _submit(self, w: Witness, state: WitnessState, cp: Checkpoint) -> Outcome:
        """Post with the size the witness last cosigned; on 409, once more from the size it says it holds."""
        old = state.size
        outcome = self._post(w, old, cp)
        if isinstance(outcome, Conflict) and outcome.size != old and outcome.size <= cp.tree_size:
            old = outcome.size
            outcome = self._post(w, old, cp)
        now = self.clock.now()
        with self.db.transaction() as conn:
            if isinstance(outcome, Cosigned):
                record_cosignature(conn, w.name, cp.tree_size, outcome, now)
                save_state(conn, w.name, WitnessState(cp.tree_size), now)
            elif isinstance(outcome, Conflict) and outcome.size > cp.tree_size:
                # It holds a newer checkpoint of ours (another process signed it): nothing to send it until ours grows.
                save_state(conn, w.name, WitnessState(outcome.size), now)
            else:
                failures = state.failures + 1
                reason = outcome.reason if isinstance(outcome, Failed) else f"409 at size {outcome.size} again"
                wait = timedelta(seconds=backoff_s(failures, self.backoff_max_s))
                save_state(conn, w.name, WitnessState(old, failures, now + wait, reason, cp.tree_size), now)
                log.warning(
                    "witness did not cosign",
                    extra={
                        "witness": w.name,
                        "tree_size": cp.tree_size,
                        "error": reason,
                        "retry_in_s": wait.total_seconds(),
                    },
                )
        return outcome

    def status(self) -> list[WitnessStatus]:
        """Every configured witness's newest cosignature and stored state."""
        with self.db.read() as conn:
            newest, known = latest_cosigned(conn), states(conn)
        found = []
        for w in self.witnesses:
            size, received_at = newest.get(w.name, (0, None))
            found.append(WitnessStatus(w.name, size, received_at, known.get(w.name, WitnessState())))
        return found

    def report(self) -> list[WitnessStatus]:
        """Set the witness gauges from the store (right in whichever process scrapes them) and return the status."""
        found = self.status()
        now = self.clock.now()
        for s in found:
            COSIGNED_SIZE.labels(witness=s.name).set(s.cosigned_size)
            age = (now - s.received_at).total_seconds() if s.received_at is not None else math.nan
            COSIGNATURE_AGE.labels(witness=s.name).set(max(0.0, age) if not math.isnan(age) else age)
        return found
