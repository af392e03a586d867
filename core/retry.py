"""The one backoff rule of devpulse: exponential steps, capped, with jitter.

Every retry loop (request-side database retries, the outbox relay, pipeline job retries, webhook deliveries)
draws its delay here, so a change of policy is made once.
"""

from __future__ import annotations

import random
from typing import Literal

Jitter = Literal["full", "equal", "none"]


def backoff_delay(retries: int, *, base: float, cap: float, jitter: Jitter = "full",
                  rng: random.Random | None = None) -> float:
    """Seconds to wait before retry number `retries + 1` (`retries` = retries already made, >= 0).

    The step is `min(cap, base * 2**retries)`. "full" jitter draws uniformly in [0, step]: the widest spread,
    best against thundering herds. "equal" keeps half the step fixed and draws the other half, so retries are
    guaranteed to span at least about the sum of the half steps (full jitter may draw near-zero delays several
    times in a row and spend every retry inside one short outage). "none" waits exactly the step.
    """
    if retries < 0:
        raise ValueError("retries must be >= 0")
    if base < 0 or cap < 0:
        raise ValueError("base and cap must be >= 0")
    # Exponent capped so a huge retry count cannot overflow a float before the cap applies.
    step = min(cap, base * (2.0 ** min(retries, 64)))
    draw = (rng or random).uniform
    if jitter == "full":
        return draw(0.0, step)
    if jitter == "equal":
        return step / 2 + draw(0.0, step / 2)
    return step
