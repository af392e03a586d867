"""Per-token rate limiting: token buckets in Redis for requests (default 20/s, burst 40), events (200/s, burst
2000) and body bytes (1 MiB/s, burst 10 MiB), all three checked and taken in ONE script call per request.

When Redis is unreachable, ingestion goes on without limits rather than
failing: the `rate_limiter` breaker makes that cost nothing while it is down.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pybreaker
import redis
from flask import Flask, current_app, g

from app.errors import ApiError
from app.request_body import read_json_body
from app.settings import settings
from core.breakers import breakers
from core.settings import Settings

# KEYS[1] the token's hash; ARGV: (rate per second, burst, cost) for requests, events and bytes in that order
# (rate <= 0: that bucket is off). A request passes only when every bucket holds its cost (a cost above the burst
# is taken as the burst: the largest request passes when the bucket is full), and then pays all three.
# Returns {allowed, retry_after_ms, which bucket refused (1 requests, 2 events, 3 bytes; the longest wait)}.
# The clock is Redis's own (TIME), never the caller's: callers on several processes or hosts send their
# timestamps out of order, and a `ts` that moved backwards would refill the same interval twice.
_TOKEN_BUCKETS = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'ts', 'requests', 'events', 'bytes')
local ts = math.min(tonumber(state[1]) or now, now)
local names = {'requests', 'events', 'bytes'}
local levels, costs = {}, {}
local wait_ms, which, ttl_ms = 0, 0, 1000
for i = 1, 3 do
  local rate, burst = tonumber(ARGV[3 * i - 2]), tonumber(ARGV[3 * i - 1])
  if rate > 0 then
    local level = math.min(burst, (tonumber(state[i + 1]) or burst) + (now - ts) * rate)
    local cost = math.min(tonumber(ARGV[3 * i]), burst)
    levels[i], costs[i] = level, cost
    if level < cost then
      local wait = math.ceil((cost - level) / rate * 1000)
      if wait > wait_ms then wait_ms, which = wait, i end
    end
    ttl_ms = math.max(ttl_ms, math.ceil(burst / rate * 1000) + 1000)
  end
end
local fields = {'ts', now}
for i = 1, 3 do
  if levels[i] ~= nil then
    if which == 0 then levels[i] = levels[i] - costs[i] end
    table.insert(fields, names[i])
    table.insert(fields, levels[i])
  end
end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('PEXPIRE', KEYS[1], ttl_ms)
if which == 0 then return {1, 0, 0} end
return {0, wait_ms, which}
"""

# What a refusal names, per bucket: (field, unit).
_REFUSED = {1: ("Authorization", "requests"), 2: ("events", "events"), 3: ("_body", "bytes of body")}


class RateLimiter:
    def __init__(self, redis_url: str, rate: float, burst: int, *, events_rate: float = 0.0,
                 events_burst: int = 0, bytes_rate: float = 0.0, bytes_burst: int = 0) -> None:
        self.limits = {1: (rate, burst), 2: (events_rate, events_burst), 3: (bytes_rate, bytes_burst)}
        self.client = redis.Redis.from_url(redis_url, socket_connect_timeout=0.2, socket_timeout=0.2)
        self.script = self.client.register_script(_TOKEN_BUCKETS)
        self.breaker = breakers.get("rate_limiter", fail_max=3, reset_timeout=10)

    @classmethod
    def from_settings(cls, cfg: Settings) -> RateLimiter:
        return cls(cfg.redis_url, cfg.rate_limit_per_second, cfg.rate_limit_burst,
                   events_rate=cfg.rate_limit_events_per_second, events_burst=cfg.rate_limit_events_burst,
                   bytes_rate=cfg.rate_limit_bytes_per_second, bytes_burst=cfg.rate_limit_bytes_burst)

    def check(self, token_id: int, events: int = 0, nbytes: int = 0) -> None:
        """One request of `events` events and `nbytes` body bytes: taken from the token's buckets, or 429."""
        if all(rate <= 0 for rate, _ in self.limits.values()):
            return
        args: list[float] = []
        for which, cost in ((1, 1), (2, events), (3, nbytes)):
            rate, burst = self.limits[which]
            args += [rate, burst, cost]
        try:
            allowed, retry_ms, which = self.breaker.call(
                self.script, keys=[f"devpulse:ratelimit:{token_id}"], args=args
            )
        except (pybreaker.CircuitBreakerError, redis.RedisError, OSError):
            return  # Redis down: accept rather than fail; PostgreSQL still protects correctness
        if not allowed:
            retry_after = max(1, math.ceil(int(retry_ms) / 1000))
            rate, burst = self.limits[int(which)]
            field, unit = _REFUSED[int(which)]
            raise ApiError(429, "rate_limited",
                           f"Too many {unit} for this token: at most {rate:g}/s (burst {burst}).",
                           [{"field": field, "message": f"more than {rate:g} {unit}/s (burst {burst}); "
                                                       f"retry after {retry_after} s"}],
                           headers={"Retry-After": str(retry_after)})


def init_app(app: Flask) -> None:
    app.extensions["devpulse.rate_limiter"] = RateLimiter.from_settings(settings(app))


def check_rate_limit(token_id: int, events: int = 0, nbytes: int = 0) -> None:
    current_app.extensions["devpulse.rate_limiter"].check(token_id, events, nbytes)


def read_json_body_within_limits(cfg: Settings, count_events: Callable[[Any], int]) -> Any:
    """The request's JSON body, after charging the token one request, its events and its bytes (one Redis call).

    The body is read first (its size and event count are the charge); a body refused as too large or malformed
    is charged too (one request, the bytes read), so refused requests are limited like the others.
    """
    token_id = g.principal.token_id
    try:
        body = read_json_body(cfg.max_body_bytes, cfg.max_json_elements)
    except ApiError:
        check_rate_limit(token_id, 0, g.get("request_body_bytes", 0))
        raise
    # What the body names (developer, batch id) goes into the audit record of a refusal, a 429 included
    # (app/ingest/refusals.py).
    g.ingest_body = body
    check_rate_limit(token_id, count_events(body), g.request_body_bytes)
    return body
