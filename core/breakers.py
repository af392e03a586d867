"""Named circuit breakers around the services we call out to (database, broker, webhooks).

One registry per process so every breaker is visible to operators by name.
Only connectivity failures count: a constraint violation or a validation
error says nothing about the health of the server behind the breaker.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pybreaker
from sqlalchemy import exc as sa_exc

T = TypeVar("T")


def is_connectivity_error(exc: BaseException) -> bool:
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        return isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError)
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


class Breaker(pybreaker.CircuitBreaker):
    """pybreaker's breaker, except that the guarded call runs outside the breaker's lock.

    pybreaker's `call` holds its lock for the whole call, so every guarded operation of a process ran one
    at a time: with the web's threads, every database transaction waited for the one before it. Here the
    lock covers only reading and changing the state. An excluded error (one that says nothing about the
    server's health) neither counts as a failure nor resets the count of consecutive failures.
    """

    def call(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with self._lock:
            if self.current_state == pybreaker.STATE_OPEN:
                opened_at = self._state_storage.opened_at
                if opened_at and datetime.now(UTC) < opened_at + timedelta(seconds=self.reset_timeout):
                    raise pybreaker.CircuitBreakerError("Timeout not elapsed yet, circuit breaker still open")
                self.half_open()  # this call is the trial
            for listener in self.listeners:
                listener.before_call(self, func, *args, **kwargs)
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:
            if self.is_system_error(exc):
                with self._lock:
                    self._inc_counter()
                    for failed in self.listeners:
                        failed.failure(self, exc)
                    self.state.on_failure(exc)  # opens at fail_max (or on a failed trial): CircuitBreakerError
            raise
        with self._lock:
            self.state._handle_success()  # resets the count; closes a half-open breaker
        return result


class _LastFailure(pybreaker.CircuitBreakerListener):
    def __init__(self) -> None:
        self.at: datetime | None = None
        self.error: str | None = None

    def failure(self, cb: pybreaker.CircuitBreaker, exc: BaseException) -> None:
        self.at = datetime.now(UTC)
        self.error = f"{type(exc).__name__}: {exc}"[:500]


class BreakerRegistry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._breakers: dict[str, Breaker] = {}
        self._last: dict[str, _LastFailure] = {}

    def get(self, name: str, *, fail_max: int = 5, reset_timeout: float = 5.0) -> Breaker:
        with self._lock:
            breaker = self._breakers.get(name)
            if breaker is None:
                last = _LastFailure()
                breaker = Breaker(
                    fail_max=fail_max, reset_timeout=reset_timeout, name=name,
                    exclude=[lambda e: not is_connectivity_error(e)], listeners=[last],
                )
                self._breakers[name] = breaker
                self._last[name] = last
            return breaker

    def describe(self) -> list[dict[str, Any]]:
        with self._lock:
            items = list(self._breakers.items())
        out = []
        for name, b in sorted(items):
            last = self._last[name]
            out.append({
                "name": name,
                "state": b.current_state,
                "failure_count": b.fail_counter,
                "fail_max": b.fail_max,
                "reset_timeout": b.reset_timeout,
                "last_failure_at": last.at.isoformat() if last.at else None,
                "last_failure": last.error,
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
