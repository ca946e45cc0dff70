"""The witness's rules (pure): the add-checkpoint body parsed strictly, and the verdict against the latest state.

c2sp.org/tlog-witness: the body is "old <size>\\n", at most 63 base64 hash lines (an RFC 6962 consistency proof
from the old size), an empty line, then the signed checkpoint. The checks and their statuses, in the spec's order:
origin unknown 404, no trusted signature 403, old size beyond the checkpoint 400, old size not the latest cosigned
409 (with that size), same size but another root 409, proof that does not verify 422. Nothing here does I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from services.witness.errors import (
    BadProof,
    MalformedSubmission,
    NotTrusted,
    OldSizeBeyond,
    OldSizeMismatch,
    RootMismatch,
    UnknownLog,
)
from shared.tlog.merkle import HASH_SIZE, ProofError, verify_consistency
from shared.tlog.note import (
    CheckpointBody,
    NoteError,
    Verifier,
    b64decode_strict,
    check_key_name,
    open_checkpoint,
    parse_checkpoint,
    parse_verifier_key,
    split_note,
)

MAX_PROOF_LINES = 63
# Sizes are stored as signed 64-bit integers; no real log comes near this.
MAX_TREE_SIZE = 2**63 - 1
_OLD_SIZE = re.compile(r"old (0|[1-9][0-9]*)")  # [0-9], not \d: only ASCII digits


@dataclass(frozen=True)
class Submission:
    """An add-checkpoint request as parsed: the old size, the proof, the signed note, its body and what it states."""

    old_size: int
    proof: tuple[bytes, ...]
    note: str
    body: str  # the note's text as signed, extension lines included: what a cosignature signs
    checkpoint: CheckpointBody


@dataclass(frozen=True)
class Latest:
    """The latest checkpoint the witness cosigned for one log."""

    size: int
    root: bytes
    note: str


def parse_submission(body: bytes) -> Submission:
    """Parse an add-checkpoint body exactly as the spec writes it; MalformedSubmission (400) otherwise."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedSubmission("the body is not UTF-8") from exc
    # Header lines are never empty, so the first blank line ends them (the note has its own blank line later).
    head, blank, note = text.partition("\n\n")
    if not blank:
        raise MalformedSubmission("the old size and proof lines end with an empty line before the checkpoint")
    lines = head.split("\n")
    old = _OLD_SIZE.fullmatch(lines[0])
    if old is None:
        raise MalformedSubmission("the first line is 'old <size>' in decimal without leading zeroes")
    old_size = int(old.group(1))
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise MalformedSubmission(f"at most {MAX_PROOF_LINES} consistency proof lines")
    proof = tuple(_proof_hash(line) for line in lines[1:])
    if old_size == 0 and proof:
        raise MalformedSubmission("the proof from old size 0 is empty")
    try:
        body_text, _ = split_note(note)
        checkpoint = parse_checkpoint(body_text)
    except NoteError as exc:
        raise MalformedSubmission(f"the checkpoint is malformed: {exc}") from exc
    if old_size > MAX_TREE_SIZE or checkpoint.size > MAX_TREE_SIZE:
        raise MalformedSubmission("a tree size is below 2^63")
    return Submission(old_size, proof, note, body_text, checkpoint)


def _proof_hash(line: str) -> bytes:
    try:
        raw = b64decode_strict(line)
    except NoteError as exc:
        raise MalformedSubmission(f"a consistency proof line is one base64 hash: {line!r}") from exc
    if len(raw) != HASH_SIZE:
        raise MalformedSubmission("a consistency proof line is a SHA-256 hash")
    return raw


def check_signature(submission: Submission, logs: Mapping[str, Sequence[Verifier]]) -> None:
    """The checkpoint is of a configured log (UnknownLog, 404) and signed by one of its keys (NotTrusted, 403)."""
    origin = submission.checkpoint.origin
    verifiers = logs.get(origin)
    if not verifiers:
        raise UnknownLog(f"this witness does not witness {origin!r}")
    for verifier in verifiers:
        try:
            open_checkpoint(submission.note, verifier, origin)
        except NoteError:
            continue
        return
    raise NotTrusted(f"no signature on the checkpoint verifies with the key of {origin!r}")


def decide(submission: Submission, latest: Latest | None) -> Latest:
    """The new latest checkpoint if the submission extends `latest` (None: nothing cosigned yet); else the refusal.

    Call after check_signature: this only judges consistency.
    """
    new = submission.checkpoint
    old_size = submission.old_size
    if old_size > new.size:
        raise OldSizeBeyond(f"old size {old_size} is beyond the checkpoint's size {new.size}")
    latest_size = latest.size if latest is not None else 0
    if old_size != latest_size:
        raise OldSizeMismatch(latest_size, old_size)
    accepted = Latest(new.size, new.root, submission.note)
    if latest is None:
        return accepted  # the first checkpoint of a log: old size 0, empty proof (checked when parsed)
    if new.size == latest.size and new.root != latest.root:
        raise RootMismatch(f"a checkpoint of size {new.size} with another root than the one cosigned")
    if latest.size == 0:
        return accepted  # every tree extends the empty one; its proof is empty (checked when parsed)
    try:
        verify_consistency(latest.size, new.size, latest.root, new.root, submission.proof)
    except ProofError as exc:
        raise BadProof(f"the proof from size {latest.size} to {new.size} does not verify: {exc}") from exc
    return accepted


def trusted_logs(entries: Mapping[str, str]) -> dict[str, list[Verifier]]:
    """The logs to witness from {origin: note verifier key (type 0x01)}; ValueError naming a bad entry."""
    logs: dict[str, list[Verifier]] = {}
    for origin, vkey in entries.items():
        try:
            logs[check_key_name(origin)] = [parse_verifier_key(vkey)]
        except NoteError as exc:
            raise ValueError(f"the witnessed log {origin!r}: {exc}") from exc
    return logs
