"""The witness's rules without I/O: the body parsed strictly, and each of the spec's verdicts."""

from __future__ import annotations

import base64

import pytest

from services.witness.domain import Latest, check_signature, decide, parse_submission, trusted_logs
from services.witness.errors import (
    BadProof,
    MalformedSubmission,
    NotTrusted,
    OldSizeBeyond,
    OldSizeMismatch,
    RootMismatch,
    UnknownLog,
)
from shared.tlog.cosignature import Cosigner
from shared.tlog.merkle import EMPTY_ROOT
from shared.tlog.note import NoteSigner
from tests.witness.conftest import ORIGIN, Log, seed


def latest(log: Log, size: int) -> Latest:
    return Latest(size, log.root(size), log.checkpoint(size))


def test_a_well_formed_body_is_parsed(log: Log) -> None:
    submission = parse_submission(log.submission(3, 7))
    assert submission.old_size == 3
    assert submission.proof == tuple(log.proof(3, 7)) and len(submission.proof) > 1
    assert submission.note == log.checkpoint(7)
    assert (submission.checkpoint.origin, submission.checkpoint.size) == (ORIGIN, 7)
    assert submission.checkpoint.root == log.root(7)


def _with_header(log: Log, header: str) -> bytes:
    return f"{header}\n{log.checkpoint(4)}".encode()


HASH = base64.b64encode(b"\x01" * 32).decode()


@pytest.mark.parametrize(
    "header",
    [
        "old 01\n",  # a leading zero
        "old -1\n",
        "Old 1\n",
        "old  1\n",
        "old 1 \n",
        "old\n",
        "old ١\n",  # a non-ASCII digit
        "old 1\r\n",
        f"old 1\n{HASH[:-1]}\n",  # not base64
        f"old 1\n{base64.b64encode(b'x' * 31).decode()}\n",  # not a SHA-256 hash
        "old 1\nAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQF=\n",  # non-canonical base64 of 32 bytes
        f"old 1\n{HASH}\n" * 1 + f"{HASH}\n" * 63,  # 64 proof lines
        f"old 0\n{HASH}\n",  # a proof from size 0 must be empty
        "",  # no old size line at all
    ],
)
def test_a_malformed_header_is_refused(log: Log, header: str) -> None:
    with pytest.raises(MalformedSubmission):
        parse_submission(_with_header(log, header))


def test_sixty_three_proof_lines_are_allowed(log: Log) -> None:
    assert len(parse_submission(_with_header(log, "old 1\n" + f"{HASH}\n" * 63)).proof) == 63


@pytest.mark.parametrize(
    "body",
    [
        b"old 0\n",  # no blank line, no checkpoint
        b"old 0\n\n",
        b"old 0\n\n\xff\xfe",  # not UTF-8
        b"old 0\n\nexample.org/takedown/ledger\n1\n" + base64.b64encode(b"r" * 32) + b"\n",  # not signed
        b"old 0\n\nexample.org/takedown/ledger\n01\nAAAA\n\n\xe2\x80\x94 k AAAAAAA=\n",  # a bad size
    ],
)
def test_a_malformed_body_is_refused(body: bytes) -> None:
    with pytest.raises(MalformedSubmission):
        parse_submission(body)


def test_a_size_beyond_64_bits_is_refused(log: Log) -> None:
    with pytest.raises(MalformedSubmission, match="2\\^63"):
        parse_submission(_with_header(log, f"old {2**63}\n"))


def test_an_unknown_origin_is_404(log: Log) -> None:
    other = Log(NoteSigner("other.example/log", seed("other")), origin="other.example/log")
    with pytest.raises(UnknownLog):
        check_signature(parse_submission(other.submission(0, 3)), {ORIGIN: [log.signer.verifier]})


def test_a_checkpoint_not_signed_by_the_log_key_is_403(log: Log) -> None:
    impostor = NoteSigner(ORIGIN, seed("impostor"))  # same name, another key
    body = f"old 0\n\n{log.checkpoint(3, signer=impostor)}".encode()
    with pytest.raises(NotTrusted):
        check_signature(parse_submission(body), {ORIGIN: [log.signer.verifier]})


def test_signatures_of_unknown_keys_are_ignored(log: Log) -> None:
    cosigned = log.checkpoint(3) + Cosigner("someone.example/w", seed("someone")).cosign(
        log.checkpoint(3).split("\n\n")[0] + "\n", 1
    )
    check_signature(parse_submission(f"old 0\n\n{cosigned}".encode()), {ORIGIN: [log.signer.verifier]})


def test_the_first_checkpoint_is_accepted_from_old_size_zero(log: Log) -> None:
    new = decide(parse_submission(log.submission(0, 5)), None)
    assert new == latest(log, 5)


def test_an_old_size_beyond_the_checkpoint_is_400(log: Log) -> None:
    with pytest.raises(OldSizeBeyond):
        decide(parse_submission(_with_header(log, f"old 5\n{HASH}\n")), latest(log, 5))


@pytest.mark.parametrize(("stored", "old", "new"), [(None, 3, 8), (8, 3, 12), (8, 0, 12), (8, 10, 12)])
def test_an_old_size_that_is_not_the_latest_is_409_with_the_latest(
    log: Log, stored: int | None, old: int, new: int
) -> None:
    with pytest.raises(OldSizeMismatch) as refused:
        decide(parse_submission(log.submission(old, new)), None if stored is None else latest(log, stored))
    assert refused.value.latest_size == (stored or 0)


def test_the_same_checkpoint_again_is_accepted(log: Log) -> None:
    assert decide(parse_submission(log.submission(8, 8)), latest(log, 8)) == latest(log, 8)


def test_the_same_size_with_another_root_is_409(log: Log) -> None:
    fork = Log(log.signer, salt=b"fork")
    with pytest.raises(RootMismatch):
        decide(parse_submission(fork.submission(8, 8)), latest(log, 8))


def test_a_growth_with_a_proof_that_verifies_is_accepted(log: Log) -> None:
    for old, new in [(1, 2), (4, 8), (5, 13), (8, 8), (7, 64)]:
        assert decide(parse_submission(log.submission(old, new)), latest(log, old)) == latest(log, new)


def test_a_proof_from_another_tree_is_422(log: Log) -> None:
    fork = Log(log.signer, salt=b"fork")
    with pytest.raises(BadProof):
        decide(parse_submission(fork.submission(5, 13)), latest(log, 5))


def test_a_changed_proof_hash_is_422(log: Log) -> None:
    proof = log.proof(5, 13)
    proof[-1] = bytes(32)
    with pytest.raises(BadProof):
        decide(parse_submission(log.submission(5, 13, proof)), latest(log, 5))


@pytest.mark.parametrize(("old", "new", "proof"), [(5, 13, []), (8, 8, [bytes(32)])])
def test_a_missing_or_extra_proof_is_422(log: Log, old: int, new: int, proof: list[bytes]) -> None:
    with pytest.raises(BadProof):
        decide(parse_submission(log.submission(old, new, proof)), latest(log, old))


def test_a_log_that_started_empty_grows_without_a_proof(log: Log) -> None:
    empty = Latest(0, EMPTY_ROOT, log.checkpoint(0))
    assert log.root(0) == EMPTY_ROOT
    assert decide(parse_submission(log.submission(0, 3)), empty) == latest(log, 3)


def test_trusted_logs_need_a_note_key_of_type_1(log: Log, cosigner: Cosigner) -> None:
    assert trusted_logs({ORIGIN: log.signer.verifier.verifier_key}) == {ORIGIN: [log.signer.verifier]}
    with pytest.raises(ValueError, match="witnessed log"):
        trusted_logs({ORIGIN: cosigner.verifier.vkey})  # a cosigner key (0x04) is not a log's
    with pytest.raises(ValueError, match="witnessed log"):
        trusted_logs({"has space": log.signer.verifier.verifier_key})
