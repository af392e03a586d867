"""Retry policies of workflow steps: how long to wait before the next attempt, and whether there is one.

A policy comes from the definition (`retry` at the top, or a step's own `retry` override). Attempts are
numbered from 1. `retry_delay(policy, attempt, rng)` is the pause after attempt `attempt` failed and before
attempt `attempt + 1`; `should_retry(policy, attempt, error_kind, http_status)` says whether that next
attempt happens at all.

Delays never exceed `max_delay_seconds`. With jitter, half of the nominal delay is fixed and the other half
drawn ("equal" jitter of core/retry.py): retries of many executions spread out, yet never bunch near zero.
Every strategy draws its jitter through core.retry.backoff_delay, the one backoff function of devpulse
(linear and fixed pass their nominal step as both base and cap with retries=0, which makes it exactly that
step before jitter).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from core.retry import backoff_delay

Strategy = Literal["exponential", "linear", "fixed", "none"]
STRATEGIES: tuple[Strategy, ...] = ("exponential", "linear", "fixed", "none")

# What went wrong in a failed attempt. Executors classify their failures into these kinds.
ErrorKind = Literal[
    "timeout",  # the step or its HTTP call ran out of time (also: a worker died mid-step and its lease expired)
    "connection",  # the request never got an answer (refused, reset, DNS)
    "http_status",  # an answer with a status outside expect_status
    "circuit_open",  # the service's breaker is open: the step failed fast, which counts as an attempt
    "expression",  # an expression failed on this context: deterministic, retrying cannot help
    "validation",  # a validation step's data broke its schema: deterministic
    "not_allowed",  # outbound safety refused the host: deterministic
    "output_invalid",  # the response could not be read as promised
    "internal",  # anything else (a bug, an unexpected exception)
]
NOT_RETRIED_KINDS: frozenset[str] = frozenset({"expression", "validation", "not_allowed"})
# 4xx answers mean the request itself is wrong, except these two, which mean "later".
RETRIED_4XX: frozenset[int] = frozenset({408, 429})

MAX_ATTEMPTS_LIMIT = 10
MAX_DELAY_LIMIT_SECONDS = 86_400.0


@dataclass(frozen=True)
class RetryPolicy:
    strategy: Strategy = "exponential"
    max_attempts: int = 3
    delay_seconds: float = 1.0
    max_delay_seconds: float = 60.0
    jitter: bool = True


DEFAULT_POLICY = RetryPolicy()


def nominal_delay(policy: RetryPolicy, attempt: int) -> float:
    """The delay after failed attempt `attempt` (>= 1) before jitter: the upper bound of `retry_delay`."""
    if attempt < 1:
        raise ValueError("attempt must be >= 1")
    if policy.strategy == "none":
        return 0.0
    if policy.strategy == "exponential":
        return min(policy.max_delay_seconds, policy.delay_seconds * (2.0 ** min(attempt - 1, 64)))
    if policy.strategy == "linear":
        return min(policy.max_delay_seconds, policy.delay_seconds * attempt)
    return min(policy.max_delay_seconds, policy.delay_seconds)


def retry_delay(policy: RetryPolicy, attempt: int, rng: random.Random | None = None) -> float:
    """Seconds to wait after failed attempt `attempt` (>= 1) before attempt `attempt + 1`.

    Bounds: `nominal_delay / 2 <= delay <= nominal_delay` with jitter, exactly `nominal_delay` without.
    Pass a seeded `rng` to make the draw reproducible (the planner seeds it with execution, step and attempt).
    """
    if attempt < 1:
        raise ValueError("attempt must be >= 1")
    jitter: Literal["equal", "none"] = "equal" if policy.jitter else "none"
    if policy.strategy == "none":
        return 0.0
    if policy.strategy == "exponential":
        return backoff_delay(attempt - 1, base=policy.delay_seconds, cap=policy.max_delay_seconds,
                             jitter=jitter, rng=rng)
    step = nominal_delay(policy, attempt)
    return backoff_delay(0, base=step, cap=step, jitter=jitter, rng=rng)


def is_retryable_error(error_kind: str, http_status: int | None = None) -> bool:
    """Whether a failure of this kind may succeed when tried again (ignoring the attempt budget)."""
    if error_kind in NOT_RETRIED_KINDS:
        return False
    return not (http_status is not None and 400 <= http_status < 500 and http_status not in RETRIED_4XX)


def should_retry(policy: RetryPolicy, attempt: int, error_kind: str, http_status: int | None = None) -> bool:
    """Whether failed attempt `attempt` (>= 1) is followed by another.

    No for strategy "none", once `max_attempts` attempts were made, for deterministic failures (expression,
    validation, not_allowed) and for 4xx answers other than 408 and 429. A `circuit_open` failure is an
    attempt like any other: it uses up one of `max_attempts` and is retried while attempts remain.
    """
    if attempt < 1:
        raise ValueError("attempt must be >= 1")
    if policy.strategy == "none" or attempt >= policy.max_attempts:
        return False
    return is_retryable_error(error_kind, http_status)
