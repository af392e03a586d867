"""core/retry.py: the one backoff rule, its bounds for every jitter variant."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.retry import backoff_delay

retries = st.integers(min_value=0, max_value=200)
bases = st.floats(min_value=0.0, max_value=100.0)
caps = st.floats(min_value=0.0, max_value=3600.0)


@given(retries, bases, caps, st.integers())
def test_full_jitter_stays_within_zero_and_the_capped_step(n: int, base: float, cap: float, seed: int) -> None:
    delay = backoff_delay(n, base=base, cap=cap, jitter="full", rng=random.Random(seed))
    assert 0.0 <= delay <= min(cap, base * 2.0 ** min(n, 64))


@given(retries, bases, caps, st.integers())
def test_equal_jitter_keeps_half_the_step(n: int, base: float, cap: float, seed: int) -> None:
    step = min(cap, base * 2.0 ** min(n, 64))
    delay = backoff_delay(n, base=base, cap=cap, jitter="equal", rng=random.Random(seed))
    assert step / 2 <= delay <= step


def test_no_jitter_is_the_exponential_step_up_to_the_cap() -> None:
    assert [backoff_delay(n, base=1.0, cap=10.0, jitter="none") for n in range(6)] == [1, 2, 4, 8, 10, 10]


def test_huge_retry_counts_do_not_overflow() -> None:
    assert backoff_delay(10_000, base=2.0, cap=300.0, jitter="none") == 300.0


def test_equal_jitter_retries_span_at_least_the_half_steps() -> None:
    # What the pipeline relies on: five retries with base 1 s never all fire inside a ~15 s outage.
    worst = sum(backoff_delay(n, base=1.0, cap=60.0, jitter="equal", rng=_Zero()) for n in range(5))
    assert worst == pytest.approx(0.5 + 1 + 2 + 4 + 8)


@pytest.mark.parametrize("kwargs", [{"retries": -1, "base": 1.0, "cap": 1.0},
                                    {"retries": 0, "base": -1.0, "cap": 1.0},
                                    {"retries": 0, "base": 1.0, "cap": -1.0}])
def test_nonsense_is_refused(kwargs: dict[str, float]) -> None:
    retries_ = int(kwargs.pop("retries"))
    with pytest.raises(ValueError):
        backoff_delay(retries_, **kwargs)


class _Zero(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return a
