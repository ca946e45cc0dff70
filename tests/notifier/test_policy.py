"""Retry schedule, Retry-After parsing and outcome classification."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from services.notifier.policy import (
    DEFAULT_POLICY,
    FRONT_LOADED_DELAYS,
    RetryPolicy,
    classify,
    next_delay,
    parse_retry_after,
)

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
EXACT = RetryPolicy(jitter=0.0)


def test_schedule_is_front_loaded_then_hourly() -> None:
    rng = random.Random(1)
    gaps = [EXACT.next_delay(attempt, rng) for attempt in range(10)]
    assert gaps == [0.0, 5.0, 30.0, 120.0, 600.0, 1800.0, 3600.0, 3600.0, 3600.0, 3600.0]
    assert FRONT_LOADED_DELAYS == (0.0, 5.0, 30.0, 120.0, 600.0, 1800.0, 3600.0)


def test_default_gives_up_after_30_attempts_a_little_over_24_hours() -> None:
    rng = random.Random(2)
    gaps = []
    attempt = 0
    while (gap := EXACT.next_delay(attempt, rng)) is not None:
        gaps.append(gap)
        attempt += 1
    assert attempt == DEFAULT_POLICY.max_attempts == 30
    # The first attempt's "at once" is gap 0; the 30th attempt starts after the sum of all gaps.
    assert timedelta(hours=24) < timedelta(seconds=sum(gaps)) < timedelta(hours=25)


def test_gives_up_at_max_attempts_even_with_retry_after() -> None:
    policy = RetryPolicy(max_attempts=3)
    rng = random.Random(3)
    assert policy.next_delay(2, rng) is not None
    assert policy.next_delay(3, rng) is None
    assert policy.next_delay(3, rng, retry_after=1.0) is None
    assert next_delay(30, rng) is None


@pytest.mark.parametrize("seed", range(50))
def test_jitter_stays_within_ten_percent(seed: int) -> None:
    rng = random.Random(seed)
    for attempt in range(1, 30):
        base = DEFAULT_POLICY.base_delay(attempt)
        gap = next_delay(attempt, rng)
        assert gap is not None
        assert base * 0.9 <= gap <= base * 1.1


def test_jitter_actually_varies_and_is_reproducible_from_the_seed() -> None:
    first = [next_delay(7, random.Random(seed)) for seed in range(20)]
    again = [next_delay(7, random.Random(seed)) for seed in range(20)]
    assert first == again
    assert len(set(first)) == 20


def test_at_once_stays_at_once_with_jitter() -> None:
    assert next_delay(0, random.Random(4)) == 0.0


def test_retry_after_is_a_floor_over_the_schedule() -> None:
    rng = random.Random(5)
    assert EXACT.next_delay(1, rng, retry_after=120.0) == 120.0
    # Asking for less than the schedule does not make us retry sooner.
    assert EXACT.next_delay(4, rng, retry_after=1.0) == 600.0


def test_retry_after_is_capped_at_one_hour() -> None:
    rng = random.Random(6)
    assert EXACT.next_delay(1, rng, retry_after=86_400.0) == 3600.0
    assert RetryPolicy(jitter=0.0, retry_after_cap=60.0).next_delay(1, rng, retry_after=600.0) == 60.0


def test_negative_attempt_is_refused() -> None:
    with pytest.raises(ValueError):
        next_delay(-1, random.Random(7))


@pytest.mark.parametrize("kwargs", [{"max_attempts": 0}, {"jitter": 1.0}, {"jitter": -0.1}, {"delays": (0.0, -1.0)}])
def test_nonsense_policies_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        (format_datetime(NOW + timedelta(seconds=90), usegmt=True), 90.0),
        ("Mon, 02 Mar 2026 09:05:00 GMT", 300.0),
        ("Monday, 02-Mar-26 09:05:00 GMT", 300.0),  # obsolete RFC 850 form, which recipients must accept
        ("Mon Mar  2 09:05:00 2026", 300.0),  # obsolete asctime form
        ("Mon, 02 Mar 2026 08:00:00 GMT", 0.0),  # already past
        ("-5", None),
        ("1.5", None),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


def test_parse_retry_after_needs_an_aware_now() -> None:
    with pytest.raises(ValueError):
        parse_retry_after("Mon, 02 Mar 2026 09:05:00 GMT", NOW.replace(tzinfo=None))


@pytest.mark.parametrize(
    ("status", "error", "outcome"),
    [
        (200, None, "delivered"),
        (202, None, "delivered"),
        (204, None, "delivered"),
        (299, None, "delivered"),
        (410, None, "gone"),
        (429, None, "retry_after"),
        (503, None, "retry_after"),
        (301, None, "retry"),
        (302, None, "retry"),
        (307, None, "retry"),
        (308, None, "retry"),
        (400, None, "retry"),
        (401, None, "retry"),
        (404, None, "retry"),
        (500, None, "retry"),
        (502, None, "retry"),
        (504, None, "retry"),
        (None, "timeout", "retry"),
        (None, "connect", "retry"),
        (None, "read", "retry"),
        (None, "protocol", "retry"),
        (200, "timeout", "retry"),  # the 2xx body never finished arriving within the deadline
    ],
)
def test_classify(status: int | None, error: str | None, outcome: str) -> None:
    assert classify(status, error) == outcome


def test_classify_needs_a_status_or_an_error() -> None:
    with pytest.raises(ValueError):
        classify(None, None)
