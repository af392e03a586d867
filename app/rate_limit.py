"""Per-token rate limiting: a token bucket in Redis (default 20 requests/s, burst 40).

When Redis is unreachable, ingestion goes on without limits rather than
failing: the `rate_limiter` breaker makes that cost nothing while it is down.
"""

from __future__ import annotations

import math

import pybreaker
import redis
from flask import Flask, current_app

from app.errors import ApiError
from app.settings import settings
from core.breakers import breakers

# KEYS[1] bucket key; ARGV: rate per second, burst. Returns {allowed, retry_after_ms}.
# The clock is Redis's own (TIME), never the caller's: callers on several processes or hosts send their
# timestamps out of order, and a `ts` that moved backwards would refill the same interval twice.
_TOKEN_BUCKET = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = math.min(tonumber(state[2]) or now, now)
tokens = math.min(burst, tokens + (now - ts) * rate)
local allowed = 0
local retry_ms = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  retry_ms = math.ceil((1 - tokens) / rate * 1000)
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, retry_ms}
"""


class RateLimiter:
    def __init__(self, redis_url: str, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self.client = redis.Redis.from_url(redis_url, socket_connect_timeout=0.2, socket_timeout=0.2)
        self.script = self.client.register_script(_TOKEN_BUCKET)
        self.breaker = breakers.get("rate_limiter", fail_max=3, reset_timeout=10)

    def check(self, token_id: int) -> None:
        if self.rate <= 0:
            return
        try:
            allowed, retry_ms = self.breaker.call(
                self.script, keys=[f"devpulse:ratelimit:{token_id}"], args=[self.rate, self.burst]
            )
        except (pybreaker.CircuitBreakerError, redis.RedisError, OSError):
            return  # Redis down: accept rather than fail; PostgreSQL still protects correctness
        if not allowed:
            retry_after = max(1, math.ceil(int(retry_ms) / 1000))
            raise ApiError(429, "rate_limited",
                           f"Too many requests for this token: at most {self.rate:g}/s (burst {self.burst}).",
                           [{"field": "Authorization", "message": f"retry after {retry_after} s"}],
                           headers={"Retry-After": str(retry_after)})


def init_app(app: Flask) -> None:
    cfg = settings(app)
    app.extensions["devpulse.rate_limiter"] = RateLimiter(cfg.redis_url, cfg.rate_limit_per_second,
                                                          cfg.rate_limit_burst)


def check_rate_limit(token_id: int) -> None:
    current_app.extensions["devpulse.rate_limiter"].check(token_id)
