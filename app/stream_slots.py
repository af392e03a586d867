"""How many alert streams a token holds open, across every web process: leases in a Redis sorted set.

Each open stream holds a lease (a member of the token's sorted set, scored by its expiry on Redis's clock) and
renews it while it runs; a stream that ends removes it. A process that dies without ending its streams leaves
leases that expire after LEASE_SECONDS, so a token never stays locked out for longer than that.
"""

from __future__ import annotations

import uuid

import redis

# A stream renews its lease every RENEW_SECONDS; a lease not renewed for LEASE_SECONDS is gone.
LEASE_SECONDS = 30.0
RENEW_SECONDS = 10.0

# KEYS[1] the token's set; ARGV: limit, lease seconds, member. 1: the member holds a lease (new or renewed).
# A member already holding a lease is renewed even at the limit; a new one only below it.
_ACQUIRE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[3]) and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2])) + 1)
return 1
"""


class StreamSlot:
    """One stream's lease on one of its token's slots."""

    def __init__(self, client: redis.Redis, token_id: int, limit: int) -> None:
        self.client = client
        self.key = f"devpulse:streams:token:{token_id}"
        self.limit = limit
        self.member = uuid.uuid4().hex
        self._script = client.register_script(_ACQUIRE)

    def acquire(self) -> bool:
        """Take (or renew) the lease; False when the token already holds `limit` other live ones."""
        return bool(self._script(keys=[self.key], args=[self.limit, LEASE_SECONDS, self.member]))

    def release(self) -> None:
        self.client.zrem(self.key, self.member)
