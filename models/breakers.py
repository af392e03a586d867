"""Named circuit breakers around the services we call out to (database, broker, webhooks).

One registry per process so every breaker is visible to operators by name.
Only connectivity failures count: a constraint violation or a validation
error says nothing about the health of the server behind the breaker.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import pybreaker
from sqlalchemy import exc as sa_exc


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
        self._breakers: dict[str, pybreaker.CircuitBreaker] = {}
        self._last: dict[str, _LastFailure] = {}

    def get(self, name: str, *, fail_max: int = 5, reset_timeout: float = 5.0) -> pybreaker.CircuitBreaker:
        with self._lock:
            breaker = self._breakers.get(name)
            if breaker is None:
                last = _LastFailure()
                breaker = pybreaker.CircuitBreaker(
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
