"""Named circuit breakers around the services we call out to (database, broker, webhooks).

One registry per process so every breaker is visible to operators by name; the breakers' state is shared by
every web and worker process through Redis once `breakers.configure(redis_url)` ran (core/breaker_state.py).
Only connectivity failures count: a constraint violation, a validation error, a deadlock or a cancelled query
says nothing about the health of the server behind the breaker.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

import pybreaker
from sqlalchemy import exc as sa_exc

from core.breaker_state import CLOSED, HALF_OPEN, OPEN, BreakerState, Shared

T = TypeVar("T")

# SQLSTATEs of an unwell server or of the way to it: connection exceptions (08), insufficient resources
# (53: too many connections, out of memory, disk full), shutdown and start-up (57P01-57P03).
_UNHEALTHY_SQLSTATES = ("08", "53", "57P01", "57P02", "57P03")
# Worth another attempt, but nothing wrong with the server: serialization failure, deadlock, query cancelled
# (statement_timeout, pg_cancel_backend), lock not available (lock_timeout).
_RETRYABLE_SQLSTATES = frozenset({"40001", "40P01", "57014", "55P03"})


def _sqlstate(exc: BaseException) -> str | None:
    source = exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc
    code = getattr(source, "pgcode", None)
    return code if isinstance(code, str) else None


def _is_dbapi_operational(exc: BaseException) -> bool:
    try:
        import psycopg2
    except ImportError:  # pragma: no cover - a dependency
        return False
    return isinstance(exc, psycopg2.OperationalError | psycopg2.InterfaceError)


def is_connectivity_error(exc: BaseException) -> bool:
    """The server behind the call is unreachable or unwell: what a breaker counts."""
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        if not isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError):
            return False
        code = _sqlstate(exc)
        return code is None or code.startswith(_UNHEALTHY_SQLSTATES)
    if _is_dbapi_operational(exc):  # raw psycopg2 cursors (models.db.dbapi_cursor) are not wrapped
        code = _sqlstate(exc)
        return code is None or code.startswith(_UNHEALTHY_SQLSTATES)
    if isinstance(exc, sa_exc.DisconnectionError | sa_exc.TimeoutError):
        return True
    try:
        import kombu.exceptions
        import redis.exceptions

        if isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
            return True
        if isinstance(exc, kombu.exceptions.OperationalError):
            return True
    except ImportError:  # pragma: no cover - both are dependencies
        pass
    return isinstance(exc, ConnectionError | TimeoutError | OSError)


def is_transient_error(exc: BaseException) -> bool:
    """Worth retrying later: a connectivity error, an open breaker, or a deadlock / serialization failure /
    cancelled query (which a breaker does not count)."""
    return (is_connectivity_error(exc) or isinstance(exc, pybreaker.CircuitBreakerError)
            or _sqlstate(exc) in _RETRYABLE_SQLSTATES)


class Breaker(pybreaker.CircuitBreaker):
    """pybreaker's breaker with its state in a `BreakerState` (shared through Redis), the guarded call outside
    any lock, and exactly one trial call while half-open.

    pybreaker's `call` holds its lock for the whole call, so every guarded operation of a process ran one at a
    time. Here nothing is held during the call. An excluded error (one that says nothing about the server's
    health) neither counts as a failure nor resets the count of consecutive failures; on the trial call it
    closes the breaker (the server answered).
    """

    def __init__(self, *, fail_max: int, reset_timeout: float, name: str,
                 exclude: list[Any], listeners: list[pybreaker.CircuitBreakerListener]) -> None:
        self.shared_state = BreakerState(name)
        super().__init__(fail_max=fail_max, reset_timeout=reset_timeout, name=name, exclude=exclude,
                         listeners=listeners, state_storage=self.shared_state)

    @property
    def trial_seconds(self) -> float:
        """How long a trial may run before another process may try (its process may have died)."""
        return max(2 * float(self.reset_timeout), 10.0)

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        """The breaker around a block: `with breaker.guard(): ...` (raises CircuitBreakerError when open)."""
        ticket = self.shared_state.admit(float(self.reset_timeout), self.trial_seconds)
        try:
            yield
        except BaseException as exc:
            self._failed(exc, ticket)
            raise
        self.shared_state.succeeded(ticket)

    def call(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        # The same as `with self.guard(): return func(...)`, without a generator per call (the ingest path).
        ticket = self.shared_state.admit(float(self.reset_timeout), self.trial_seconds)
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:
            self._failed(exc, ticket)
            raise
        self.shared_state.succeeded(ticket)
        return result

    def _failed(self, exc: BaseException, ticket: str | None) -> None:
        if self.is_system_error(exc):
            for listener in self.listeners:
                listener.failure(self, exc)
            if self.shared_state.failed(exc, self.fail_max, ticket):
                raise pybreaker.CircuitBreakerError(
                    "Trial call failed, circuit breaker opened" if ticket
                    else "Failures threshold reached, circuit breaker opened") from exc
        elif ticket is not None:
            self.shared_state.succeeded(ticket)  # the server answered: the trial closes the breaker

    @property
    def current_state(self) -> str:
        """As Redis has it now (one round trip: for operators and tests, not for the calls)."""
        self.shared_state.refresh(force=True)
        return self.shared_state.local.state

    @property
    def fail_counter(self) -> int:
        self.shared_state.refresh(force=True)
        return self.shared_state.local.failures

    def open(self) -> bool:
        self.shared_state.force_open()
        return True

    def half_open(self) -> None:  # pybreaker API; the move to half-open is BreakerState.admit's
        raise NotImplementedError("a breaker half-opens by itself, for one trial call")

    def close(self) -> None:
        self.shared_state.reset()


class BreakerRegistry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._breakers: dict[str, Breaker] = {}
        self._shared: Shared | None = None

    def configure(self, redis_url: str | None) -> None:
        """Share every breaker's state through this Redis (None: each process alone). Idempotent per URL."""
        with self._lock:
            if (self._shared.url if self._shared else None) == redis_url:
                return
            old, self._shared = self._shared, Shared(redis_url) if redis_url else None
            for breaker in self._breakers.values():
                breaker.shared_state.attach(self._shared)
        if old is not None:
            old.close()

    def get(self, name: str, *, fail_max: int = 5, reset_timeout: float = 5.0) -> Breaker:
        with self._lock:
            breaker = self._breakers.get(name)
            if breaker is None:
                breaker = Breaker(fail_max=fail_max, reset_timeout=reset_timeout, name=name,
                                  exclude=[lambda e: not is_connectivity_error(e)], listeners=[])
                breaker.shared_state.attach(self._shared)
                self._breakers[name] = breaker
            return breaker

    def describe(self) -> list[dict[str, Any]]:
        """Every breaker as Redis has it now (as this process has it while Redis is unreachable)."""
        with self._lock:
            items = sorted(self._breakers.items())
        out = []
        for name, b in items:
            state = b.shared_state
            state.refresh(force=True)
            snap = state.local
            out.append({
                "name": name,
                "state": snap.state,
                "failure_count": snap.failures,
                "fail_max": b.fail_max,
                "reset_timeout": b.reset_timeout,
                "last_failure_at": (datetime.fromtimestamp(snap.last_failure_at, UTC).isoformat()
                                    if snap.last_failure_at is not None else None),
                "last_failure": snap.last_failure,
                "source": ("redis" if state.source == "redis" else "this process" if state.shared is None
                           else "this process (Redis unreachable)"),
            })
        return out

    def reset(self, name: str) -> bool:
        with self._lock:
            breaker = self._breakers.get(name)
        if breaker is None:
            return False
        breaker.close()
        return True

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._breakers)


breakers = BreakerRegistry()

__all__ = ["CLOSED", "HALF_OPEN", "OPEN", "Breaker", "BreakerRegistry", "breakers", "is_connectivity_error",
           "is_transient_error"]
