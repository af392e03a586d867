"""Retry delays stay within their bounds; what is retried and what is not."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from automation.retry_policy import RetryPolicy, nominal_delay, retry_delay, should_retry

policies = st.builds(RetryPolicy, strategy=st.sampled_from(["exponential", "linear", "fixed", "none"]),
                     max_attempts=st.integers(1, 10), delay_seconds=st.floats(0, 3600),
                     max_delay_seconds=st.floats(0, 86_400), jitter=st.booleans()).filter(
    lambda p: p.max_delay_seconds >= p.delay_seconds)


@given(policies, st.integers(1, 200), st.integers(0, 2**32))
def test_delays_stay_within_bounds(policy: RetryPolicy, attempt: int, seed: int) -> None:
    delay = retry_delay(policy, attempt, random.Random(seed))
    nominal = nominal_delay(policy, attempt)
    assert 0 <= delay <= nominal <= policy.max_delay_seconds
    if policy.jitter:
        assert delay >= nominal / 2
    else:
        assert delay == nominal


@given(policies, st.integers(1, 60))
def test_nominal_delays_never_shrink(policy: RetryPolicy, attempt: int) -> None:
    assert nominal_delay(policy, attempt + 1) >= nominal_delay(policy, attempt)


def test_nominal_delays_per_strategy() -> None:
    def delays(strategy: str) -> list[float]:
        policy = RetryPolicy(strategy, 10, 2.0, 10.0, False)  # type: ignore[arg-type]
        return [nominal_delay(policy, n) for n in range(1, 6)]

    assert delays("exponential") == [2, 4, 8, 10, 10]
    assert delays("linear") == [2, 4, 6, 8, 10]
    assert delays("fixed") == [2, 2, 2, 2, 2]
    assert delays("none") == [0, 0, 0, 0, 0]


def test_the_same_seed_gives_the_same_delay() -> None:
    policy = RetryPolicy("exponential", 5, 1.0, 60.0, True)
    assert retry_delay(policy, 3, random.Random("e:s:3")) == retry_delay(policy, 3, random.Random("e:s:3"))


@pytest.mark.parametrize(("kind", "status", "retried"), [
    ("http_status", 500, True), ("http_status", 503, True), ("http_status", 408, True), ("http_status", 429, True),
    ("http_status", 400, False), ("http_status", 404, False), ("http_status", 422, False),
    ("timeout", None, True), ("connection", None, True), ("circuit_open", None, True),
    ("expression", None, False), ("validation", None, False), ("not_allowed", None, False),
])
def test_what_is_retried(kind: str, status: int | None, retried: bool) -> None:
    assert should_retry(RetryPolicy(max_attempts=3), 1, kind, status) is retried


def test_attempts_run_out_and_circuit_open_uses_one() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert [should_retry(policy, n, "circuit_open") for n in (1, 2, 3)] == [True, True, False]
    assert not should_retry(RetryPolicy(strategy="none", max_attempts=5), 1, "timeout")
