"""Webhook retry policy: the front-loaded backoff schedule, Retry-After and outcome classification."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Literal

Outcome = Literal["delivered", "retry", "retry_after", "gone"]

# Gap before attempt n+1, indexed by n (attempts already made): at once, 5 s, 30 s, 2 min, 10 min, 30 min, 1 h.
FRONT_LOADED_DELAYS: tuple[float, ...] = (0.0, 5.0, 30.0, 120.0, 600.0, 1800.0, 3600.0)


@dataclass(frozen=True)
class RetryPolicy:
    """How long to wait between attempts of one delivery, and when to give up."""

    delays: Sequence[float] = FRONT_LOADED_DELAYS
    steady_delay: float = 3600.0
    # 30 attempts span about 24 h 43 min: the last one still lands after the 24-hour deadline.
    max_attempts: int = 30
    jitter: float = 0.10
    retry_after_cap: float = 3600.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if not 0.0 <= self.jitter < 1.0:
            raise ValueError("jitter must be in [0, 1)")
        if self.retry_after_cap < 0 or self.steady_delay < 0 or any(d < 0 for d in self.delays):
            raise ValueError("delays must not be negative")

    def base_delay(self, attempt: int) -> float:
        """Return the un-jittered gap before the next attempt, given the attempts already made."""
        if attempt < 0:
            raise ValueError("attempt must not be negative")
        return self.delays[attempt] if attempt < len(self.delays) else self.steady_delay

    def next_delay(self, attempt: int, rng: random.Random, retry_after: float | None = None) -> float | None:
        """Return seconds to wait before the next attempt, or None to give up (dead letter)."""
        if attempt < 0:
            raise ValueError("attempt must not be negative")
        if attempt >= self.max_attempts:
            return None
        base = self.base_delay(attempt)
        delay = base * (1.0 + rng.uniform(-self.jitter, self.jitter)) if base > 0 else 0.0
        if retry_after is not None:
            # Retry-After is a floor, not a replacement: a platform answering "Retry-After: 1" to every request
            # would otherwise burn the whole attempt budget in seconds, long before the 24-hour clock runs out.
            delay = max(delay, min(max(retry_after, 0.0), self.retry_after_cap))
        return delay


DEFAULT_POLICY = RetryPolicy()


def next_delay(
    attempt: int,
    rng: random.Random,
    retry_after: float | None = None,
    *,
    policy: RetryPolicy = DEFAULT_POLICY,
) -> float | None:
    """Return seconds to wait before the next attempt under `policy`, or None to give up."""
    return policy.next_delay(attempt, rng, retry_after)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Return the seconds a Retry-After value (delta-seconds or HTTP-date) asks for, or None if unusable."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        # RFC 9110 dates are always GMT; email.utils returns a naive datetime for "-0000".
        when = when.replace(tzinfo=UTC)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return max((when - now).total_seconds(), 0.0)


def classify(status_code: int | None, error_kind: str | None) -> Outcome:
    """Classify one attempt: 2xx delivered, 410 gone, 429/503 retry_after, anything else retry."""
    if error_kind is not None:
        # The exchange did not complete (even if a status line arrived), so the platform's answer is unknown.
        return "retry"
    if status_code is None:
        raise ValueError("an attempt has either a status code or an error kind")
    if 200 <= status_code < 300:
        return "delivered"
    if status_code == 410:
        return "gone"
    if status_code in (429, 503):
        return "retry_after"
    return "retry"
