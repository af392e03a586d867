"""Where a breaker's state lives: one Redis hash per breaker, shared by every web and worker process, read
through a local snapshot.

pybreaker ships `CircuitRedisStorage`, and this is the same idea with four differences that the hot path and
the faults need:

* pybreaker reads the state from Redis on every call and writes the failure counter on every success (two round
  trips per database transaction). Here calls read a local snapshot, refreshed from Redis at most every
  `REFRESH_SECONDS`; a success writes to Redis only when there is something to reset (a failure was counted).
* While Redis is unreachable pybreaker answers a fixed fallback state and logs a traceback on every call. Here
  the breaker keeps working on its last known state, counting and opening in this process alone, logs one
  warning, and does not try Redis again for `OFFLINE_SECONDS`: a breaker whose storage is down never makes the
  protected call fail or wait for that reason. When Redis answers again, its state wins.
* pybreaker's half-open state lets every concurrent call through. Here the move to half-open hands out one
  trial ticket (`SET NX` with an expiry, so a trial whose process died is retried after `trial_seconds`);
  every other call is refused until the trial ends.
* Changes are Lua scripts, so a count, the move to open and the trial are atomic across processes.

Consequences: another process sees an opened breaker within `REFRESH_SECONDS` (at once on its next failure), and
a reset applies everywhere within the same delay; a success resets the shared count of consecutive failures.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from dataclasses import dataclass, replace
from typing import Any

import pybreaker
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

log = logging.getLogger("devpulse.breakers")

CLOSED, OPEN, HALF_OPEN = pybreaker.STATE_CLOSED, pybreaker.STATE_OPEN, pybreaker.STATE_HALF_OPEN
KEY_PREFIX = "devpulse:breaker:"

# KEYS: hash, trial key. ARGV: now (epoch s), reset_timeout (s), trial expiry (ms), ticket.
# Who may call while the breaker is not closed: 'closed' (it was closed meanwhile), 'open' (still cooling
# down), 'trial' (this caller holds the one trial), 'busy' (another caller's trial is under way).
_ADMIT = """
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
if state == 'closed' then return {'closed', '0', ''} end
local opened = redis.call('HGET', KEYS[1], 'opened_at') or '0'
if state == 'open' and tonumber(ARGV[1]) < tonumber(opened) + tonumber(ARGV[2]) then
  return {'open', redis.call('HGET', KEYS[1], 'failures') or '0', opened}
end
if redis.call('SET', KEYS[2], ARGV[4], 'NX', 'PX', ARGV[3]) then
  redis.call('HSET', KEYS[1], 'state', 'half-open')
  return {'trial', redis.call('HGET', KEYS[1], 'failures') or '0', opened}
end
return {'busy', redis.call('HGET', KEYS[1], 'failures') or '0', opened}
"""

# KEYS: hash, trial key. ARGV: now, fail_max, error text, ticket ('' unless the caller holds the trial).
# Returns {state, failures, opened_at, tripped} where tripped = '1' when this failure opened the breaker.
_FAILURE = """
local n = redis.call('HINCRBY', KEYS[1], 'failures', 1)
redis.call('HSET', KEYS[1], 'last_failure_at', ARGV[1], 'last_failure', ARGV[3])
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
if ARGV[4] ~= '' or (state == 'closed' and n >= tonumber(ARGV[2])) then
  redis.call('HSET', KEYS[1], 'state', 'open', 'opened_at', ARGV[1])
  if ARGV[4] ~= '' and redis.call('GET', KEYS[2]) == ARGV[4] then redis.call('DEL', KEYS[2]) end
  return {'open', tostring(n), ARGV[1], '1'}
end
return {state, tostring(n), redis.call('HGET', KEYS[1], 'opened_at') or '', '0'}
"""

# KEYS: hash, trial key. ARGV: ticket ('' unless the caller holds the trial). A trial's success closes the
# breaker; any other success resets the count of consecutive failures while it is closed.
_SUCCESS = """
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
if ARGV[1] ~= '' then
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'state', 'closed', 'failures', 0)
  redis.call('HDEL', KEYS[1], 'opened_at')
  return {'closed', '0', ''}
end
if state == 'closed' then redis.call('HSET', KEYS[1], 'failures', 0) end
return {state, redis.call('HGET', KEYS[1], 'failures') or '0', redis.call('HGET', KEYS[1], 'opened_at') or ''}
"""

_OPEN = """
redis.call('HSET', KEYS[1], 'state', 'open', 'opened_at', ARGV[1])
return 1
"""

_RESET = """
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[1], 'state', 'closed', 'failures', 0)
redis.call('HDEL', KEYS[1], 'opened_at')
return 1
"""


@dataclass(frozen=True)
class Snapshot:
    state: str = CLOSED
    failures: int = 0
    opened_at: float | None = None  # epoch seconds
    last_failure_at: float | None = None
    last_failure: str | None = None


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _number(value: Any) -> float | None:
    text = _text(value) if value is not None else ""
    return float(text) if text else None


class Shared:
    """The Redis connection the breakers of a process share, and whether Redis is thought reachable."""

    REFRESH_SECONDS = 1.0
    OFFLINE_SECONDS = 5.0

    def __init__(self, url: str) -> None:
        self.url = url
        # Short timeouts and no retries: a frozen Redis may cost one call 0.25 s once per OFFLINE_SECONDS.
        self.client = redis.Redis.from_url(url, socket_connect_timeout=0.25, socket_timeout=0.25,
                                           retry=Retry(NoBackoff(), 0))
        self.admit = self.client.register_script(_ADMIT)
        self.failure = self.client.register_script(_FAILURE)
        self.success = self.client.register_script(_SUCCESS)
        self.reset = self.client.register_script(_RESET)
        self.open = self.client.register_script(_OPEN)
        self._offline_until = 0.0
        self._down = False  # reported unreachable (one warning per outage, one line when it answers again)
        self._lock = threading.Lock()

    @property
    def online(self) -> bool:
        return time.monotonic() >= self._offline_until

    def went_offline(self, exc: BaseException) -> None:
        with self._lock:
            report, self._down = not self._down, True
            self._offline_until = time.monotonic() + self.OFFLINE_SECONDS
        if report:
            log.warning("circuit breakers: Redis is unreachable (%s); each process keeps its own breaker state "
                        "until it answers again", type(exc).__name__)

    def answered(self) -> None:
        if self._down:
            with self._lock:
                report, self._down = self._down, False
            if report:
                log.warning("circuit breakers: Redis answers again; breaker state is shared again")

    def close(self) -> None:
        self.client.close()


class BreakerState(pybreaker.CircuitBreakerStorage):
    """One breaker's state: the shared hash in Redis when there is one (see module doc), else this process's."""

    def __init__(self, name: str) -> None:
        super().__init__("shared")
        self.breaker_name = name
        self.keys = [f"{KEY_PREFIX}{name}", f"{KEY_PREFIX}{name}:trial"]
        self.shared: Shared | None = None
        self.local = Snapshot()  # replaced whole, never mutated: readers need no lock
        self.source = "this process"
        self._lock = threading.Lock()
        self._fetched_at = -math.inf
        self._refreshing = threading.Lock()
        self._local_trial: str | None = None

    # ------------------------------------------------------------------------------------------ Redis plumbing

    def attach(self, shared: Shared | None) -> None:
        with self._lock:
            self.shared = shared
            self._fetched_at = -math.inf
            self.source = "this process"

    def _online(self) -> Shared | None:
        shared = self.shared
        return shared if shared is not None and shared.online else None

    def _run(self, shared: Shared, script: Any, args: list[Any]) -> list[Any] | None:
        try:
            got = script(keys=self.keys, args=args)
        except (redis.RedisError, OSError) as exc:
            shared.went_offline(exc)
            self.source = "this process"
            return None
        shared.answered()
        return list(got) if isinstance(got, list | tuple) else [got]

    def _adopt(self, state: Any, failures: Any, opened_at: Any) -> None:
        with self._lock:
            self.local = replace(self.local, state=_text(state), failures=int(float(_text(failures) or 0)),
                                 opened_at=_number(opened_at))
            self._fetched_at = time.monotonic()
            self.source = "redis"

    def refresh(self, *, force: bool = False) -> None:
        """Read the shared state into the snapshot (at most every REFRESH_SECONDS unless forced)."""
        shared = self._online()
        if shared is None or (not force and time.monotonic() - self._fetched_at < shared.REFRESH_SECONDS):
            return
        if not self._refreshing.acquire(blocking=force):
            return  # another thread is refreshing: this call uses the snapshot as it is
        try:
            self._fetched_at = time.monotonic()
            try:
                data = shared.client.hgetall(self.keys[0])
            except (redis.RedisError, OSError) as exc:
                shared.went_offline(exc)
                self.source = "this process"
                return
            shared.answered()
            values = {_text(k): v for k, v in data.items()}
            with self._lock:
                self.local = Snapshot(
                    state=_text(values.get("state", CLOSED)), failures=int(float(_text(values.get("failures", 0)))),
                    opened_at=_number(values.get("opened_at")), last_failure_at=_number(values.get("last_failure_at")),
                    last_failure=_text(values["last_failure"]) if "last_failure" in values else None)
                self.source = "redis"
        finally:
            self._refreshing.release()

    # ---------------------------------------------------------------------------------------- the breaker's use

    def admit(self, reset_timeout: float, trial_seconds: float) -> str | None:
        """None: call normally; a ticket: this call is the half-open trial. Raises CircuitBreakerError."""
        self.refresh()
        local = self.local
        if local.state == CLOSED:
            return None
        now = time.time()
        if local.state == OPEN and local.opened_at is not None and now < local.opened_at + reset_timeout:
            raise pybreaker.CircuitBreakerError("Timeout not elapsed yet, circuit breaker still open")
        ticket = uuid.uuid4().hex
        shared = self._online()
        if shared is not None:
            got = self._run(shared, shared.admit, [repr(now), repr(reset_timeout),
                                                   max(1, int(trial_seconds * 1000)), ticket])
            if got is not None:
                verdict = _text(got[0])
                self._adopt(CLOSED if verdict == "closed" else HALF_OPEN if verdict != "open" else OPEN,
                            got[1], got[2])
                if verdict == "closed":
                    return None
                if verdict == "trial":
                    return ticket
                raise pybreaker.CircuitBreakerError(
                    "Timeout not elapsed yet, circuit breaker still open" if verdict == "open"
                    else "A trial call is under way, circuit breaker half-open")
        with self._lock:  # Redis unreachable: one trial per process
            if self._local_trial is not None:
                raise pybreaker.CircuitBreakerError("A trial call is under way, circuit breaker half-open")
            self._local_trial = ticket
            self.local = replace(self.local, state=HALF_OPEN)
        return ticket

    def failed(self, exc: BaseException, fail_max: int, ticket: str | None) -> bool:
        """Count a failure; True when it opened the breaker."""
        now = time.time()
        error = f"{type(exc).__name__}: {exc}"[:500]
        shared = self._online()
        if shared is not None:
            got = self._run(shared, shared.failure, [repr(now), fail_max, error, ticket or ""])
            if got is not None:
                self._adopt(got[0], got[1], got[2])
                with self._lock:
                    self.local = replace(self.local, last_failure_at=now, last_failure=error)
                    if ticket is not None and self._local_trial == ticket:
                        self._local_trial = None
                return _text(got[3]) == "1"
        with self._lock:
            failures = self.local.failures + 1
            trip = ticket is not None or (self.local.state == CLOSED and failures >= fail_max)
            self.local = replace(self.local, failures=failures, last_failure_at=now, last_failure=error)
            if trip:
                self.local = replace(self.local, state=OPEN, opened_at=now)
            if ticket is not None and self._local_trial == ticket:
                self._local_trial = None
            return trip

    def succeeded(self, ticket: str | None) -> None:
        local = self.local
        if ticket is None and local.failures == 0 and local.state == CLOSED:
            return  # the hot path: nothing to reset, no round trip
        shared = self._online()
        if shared is not None:
            got = self._run(shared, shared.success, [ticket or ""])
            if got is not None:
                self._adopt(got[0], got[1], got[2])
                with self._lock:
                    if ticket is not None and self._local_trial == ticket:
                        self._local_trial = None
                return
        with self._lock:
            if ticket is not None:
                self.local = replace(self.local, state=CLOSED, failures=0, opened_at=None)
                if self._local_trial == ticket:
                    self._local_trial = None
            elif self.local.state == CLOSED:
                self.local = replace(self.local, failures=0)

    def reset(self) -> None:
        """Close the breaker everywhere (and here, whether or not Redis answers)."""
        shared = self._online()
        if shared is not None:
            self._run(shared, shared.reset, [])
        with self._lock:
            self.local = replace(self.local, state=CLOSED, failures=0, opened_at=None)
            self._local_trial = None

    def force_open(self) -> None:
        now = time.time()
        shared = self._online()
        if shared is not None:
            self._run(shared, shared.open, [repr(now)])
        with self._lock:
            self.local = replace(self.local, state=OPEN, opened_at=now)

    # ------------------------------------------------------------ pybreaker's storage interface (for its code)

    @property
    def state(self) -> str:
        self.refresh()
        return self.local.state

    @state.setter
    def state(self, state: str) -> None:
        if state == CLOSED:
            self.reset()
        elif state == OPEN:
            self.force_open()
        else:
            with self._lock:
                self.local = replace(self.local, state=state)

    def increment_counter(self) -> None:
        with self._lock:
            self.local = replace(self.local, failures=self.local.failures + 1)

    def reset_counter(self) -> None:
        with self._lock:
            self.local = replace(self.local, failures=0)

    def increment_success_counter(self) -> None:
        pass

    def reset_success_counter(self) -> None:
        pass

    @property
    def counter(self) -> int:
        self.refresh()
        return self.local.failures

    @property
    def success_counter(self) -> int:
        return 0

    @property
    def opened_at(self) -> Any:
        from datetime import UTC, datetime

        at = self.local.opened_at
        return datetime.fromtimestamp(at, UTC) if at is not None else None

    @opened_at.setter
    def opened_at(self, value: Any) -> None:
        with self._lock:
            self.local = replace(self.local, opened_at=value.timestamp())
