"""Circuit breakers whose state lives in Redis (core/breakers.py, core/breaker_state.py), on real Redis and
PostgreSQL. Two registries stand for two processes here; tests/faults/test_shared_breakers.py uses real ones."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pybreaker
import pytest
import redis
from sqlalchemy import text

from app.storage import Storage
from core.breakers import BreakerRegistry, is_connectivity_error, is_transient_error
from core.settings import Settings
from devstack.servers import EmbeddedRedis
from models.db import Database


def _refuse() -> None:
    raise ConnectionRefusedError("nobody listens")


def _ok() -> str:
    return "ok"


def _trip(breaker: pybreaker.CircuitBreaker) -> None:
    for _ in range(breaker.fail_max):
        with pytest.raises((ConnectionRefusedError, pybreaker.CircuitBreakerError)):
            breaker.call(_refuse)


@pytest.fixture
def name() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def registries(redis_url: str) -> Iterator[tuple[BreakerRegistry, BreakerRegistry]]:
    """Two registries on one Redis: what two processes (web and worker, two gunicorn workers) have."""
    a, b = BreakerRegistry(), BreakerRegistry()
    a.configure(redis_url)
    b.configure(redis_url)
    yield a, b
    a.configure(None)
    b.configure(None)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path / "redis").start()
    yield server
    server.stop()


def _settle() -> None:
    time.sleep(1.1)  # longer than the snapshot's refresh interval


# ------------------------------------------------------------------------------------------------- shared state


def test_a_breaker_opened_in_one_process_is_open_in_the_other_and_a_reset_closes_it_in_both(registries, name):
    a, b = registries
    in_a, in_b = a.get(name, fail_max=3, reset_timeout=30), b.get(name, fail_max=3, reset_timeout=30)
    assert in_b.call(_ok) == "ok"
    _trip(in_a)
    assert in_a.current_state == "open"
    _settle()
    with pytest.raises(pybreaker.CircuitBreakerError):
        in_b.call(_ok)  # refused without calling: b learnt the state from Redis
    described = {d["name"]: d for d in b.describe()}[name]
    assert (described["state"], described["failure_count"], described["source"]) == ("open", 3, "redis")
    assert "ConnectionRefusedError" in described["last_failure"]

    assert b.reset(name)
    _settle()
    assert in_a.current_state == "closed"
    assert in_a.call(_ok) == "ok"
    assert {d["name"]: d for d in a.describe()}[name]["failure_count"] == 0


def test_failures_in_two_processes_add_up_and_a_success_in_either_resets_the_count(registries, name):
    a, b = registries
    in_a, in_b = a.get(name, fail_max=4, reset_timeout=30), b.get(name, fail_max=4, reset_timeout=30)
    for breaker in (in_a, in_b, in_a):
        with pytest.raises(ConnectionRefusedError):
            breaker.call(_refuse)
    assert in_b.fail_counter == 3
    in_b.call(_ok)  # b counted a failure itself, so its success resets the shared count at once
    assert in_a.fail_counter == 0
    for breaker in (in_a, in_b, in_a):
        with pytest.raises(ConnectionRefusedError):
            breaker.call(_refuse)
    with pytest.raises(pybreaker.CircuitBreakerError):  # the 4th consecutive failure, in b: opens it for all
        in_b.call(_refuse)
    assert in_a.current_state == "open"


def test_a_success_makes_no_redis_round_trip(registries, name, redis_url):
    a, _ = registries
    breaker = a.get(name, fail_max=3, reset_timeout=30)
    breaker.call(_ok)
    client = redis.Redis.from_url(redis_url)

    def commands() -> int:
        return int(client.info("stats")["total_commands_processed"])

    before = commands()
    started = time.monotonic()
    for _ in range(2000):
        breaker.call(_ok)
    elapsed = time.monotonic() - started
    used = commands() - before - 1  # the INFO itself
    client.close()
    # At most one snapshot refresh per second of calls (other tests' clients may add a few).
    assert used <= 2 * (elapsed + 1) + 3, f"{used} Redis commands for 2000 calls in {elapsed:.2f} s"


# ---------------------------------------------------------------------------------------------------- half-open


@pytest.mark.parametrize("processes", [1, 2], ids=["threads of one process", "threads of two processes"])
def test_half_open_lets_exactly_one_trial_call_through(registries, name, processes):
    a, b = registries
    pair = [a.get(name, fail_max=2, reset_timeout=0.3), b.get(name, fail_max=2, reset_timeout=0.3)][:processes]
    _trip(pair[0])
    time.sleep(0.4)
    for breaker in pair:
        breaker.shared_state.refresh(force=True)
    calls, refused, barrier = [], [], threading.Barrier(8)

    def trial() -> None:
        calls.append(1)
        time.sleep(1.0)  # longer than any thread's lateness at the barrier on a busy machine

    def run(i: int) -> None:
        barrier.wait()
        try:
            pair[i % len(pair)].call(trial)
        except pybreaker.CircuitBreakerError:
            refused.append(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(calls) == 1, f"{len(calls)} calls went through the half-open breaker"
    assert len(refused) == 7
    assert all(breaker.current_state == "closed" for breaker in pair)  # the trial succeeded


def test_a_failed_trial_opens_the_breaker_again_for_everyone(registries, name):
    a, b = registries
    in_a, in_b = a.get(name, fail_max=2, reset_timeout=0.3), b.get(name, fail_max=2, reset_timeout=0.3)
    _trip(in_a)
    time.sleep(0.4)
    with pytest.raises(pybreaker.CircuitBreakerError, match="Trial call failed"):
        in_b.call(_refuse)
    with pytest.raises(pybreaker.CircuitBreakerError, match="still open"):
        in_a.call(_ok)


# -------------------------------------------------------------------------------------------- Redis unreachable


def test_the_protected_call_never_fails_or_waits_because_redis_is_down(own_redis, name, caplog):
    caplog.set_level("WARNING", logger="devpulse.breakers")
    registry = BreakerRegistry()
    registry.configure(own_redis.url())
    breaker = registry.get(name, fail_max=3, reset_timeout=0.5)
    assert breaker.call(_ok) == "ok"
    own_redis.stop()
    try:
        started = time.monotonic()
        for _ in range(200):
            assert breaker.call(_ok) == "ok"
        assert time.monotonic() - started < 0.5
        # The breaker still protects: failures are counted in this process and open it here.
        _trip(breaker)
        with pytest.raises(pybreaker.CircuitBreakerError):
            breaker.call(_ok)
        assert {d["name"]: d for d in registry.describe()}[name]["source"] == "this process (Redis unreachable)"
        time.sleep(0.6)
        assert breaker.call(_ok) == "ok"  # the local trial closes it
        assert breaker.current_state == "closed"
        shared = breaker.shared_state.shared
        assert shared is not None
        shared._offline_until = 0  # the 5 s pause is over, Redis still down: tried again, no second warning
        assert breaker.current_state == "closed"
        warnings = [r.getMessage() for r in caplog.records]
        assert len(warnings) == 1 and "Redis is unreachable" in warnings[0], warnings
        # Redis back (empty): after its offline pause the breaker uses the shared state again.
        own_redis.start()
        shared._offline_until = 0  # skip the 5 s pause
        _trip(breaker)
        assert "Redis answers again" in caplog.records[-1].getMessage()
        other = BreakerRegistry()
        other.configure(own_redis.url())
        assert other.get(name, fail_max=3, reset_timeout=0.5).current_state == "open"
        other.configure(None)
    finally:
        registry.configure(None)


def test_a_frozen_redis_costs_one_short_timeout_then_nothing(own_redis, name):
    import os
    import signal

    registry = BreakerRegistry()
    registry.configure(own_redis.url())
    breaker = registry.get(name, fail_max=3, reset_timeout=5)
    breaker.call(_ok)
    assert own_redis.process is not None
    os.kill(own_redis.process.pid, signal.SIGSTOP)
    try:
        _settle()
        started = time.monotonic()
        slowest = 0.0
        for _ in range(100):
            t0 = time.monotonic()
            assert breaker.call(_ok) == "ok"
            slowest = max(slowest, time.monotonic() - t0)
        assert slowest < 1.0, f"one call waited {slowest:.2f} s for Redis"  # one 0.25 s timeout, then none
        assert time.monotonic() - started < 1.2
    finally:
        os.kill(own_redis.process.pid, signal.SIGCONT)
        registry.configure(None)


# ---------------------------------------------------------------------------- what counts as a failure (PostgreSQL)


@pytest.fixture
def pg(database_url: str) -> Iterator[Database]:
    db = Database()
    db.configure(Settings(database_url=database_url).sqlalchemy_url)
    with db.transaction() as s:
        s.execute(text("CREATE TABLE IF NOT EXISTS breaker_deadlock (id int PRIMARY KEY, v int)"))
        s.execute(text("INSERT INTO breaker_deadlock VALUES (1, 0), (2, 0) ON CONFLICT DO NOTHING"))
    yield db
    with db.transaction() as s:
        s.execute(text("DROP TABLE IF EXISTS breaker_deadlock"))
    db.dispose()


def _deadlock(db: Database) -> BaseException:
    """Two real transactions locking two rows in opposite orders: PostgreSQL aborts one of them."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def run(first: int, second: int) -> None:
        try:
            with db.transaction() as s:
                s.execute(text("UPDATE breaker_deadlock SET v = v + 1 WHERE id = :id"), {"id": first})
                barrier.wait()
                s.execute(text("UPDATE breaker_deadlock SET v = v + 1 WHERE id = :id"), {"id": second})
        except BaseException as exc:  # the victim
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(1, 2)), threading.Thread(target=run, args=(2, 1))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(errors) == 1, errors
    return errors[0]


def _cancelled(db: Database) -> BaseException:
    with pytest.raises(Exception) as info, db.transaction() as s:
        s.execute(text("SET LOCAL statement_timeout = 50"))
        s.execute(text("SELECT pg_sleep(2)"))
    return info.value


@pytest.mark.parametrize("fault", [_deadlock, _cancelled], ids=["deadlock", "query cancelled"])
def test_deadlocks_and_cancelled_queries_are_not_connectivity_failures(pg, fault):
    exc = fault(pg)
    assert not is_connectivity_error(exc), f"{type(exc).__name__} counted as a connectivity failure"
    assert is_transient_error(exc), "still worth another attempt"


@pytest.mark.parametrize("fault", [_deadlock, _cancelled], ids=["deadlock", "query cancelled"])
def test_deadlocks_and_cancelled_queries_never_open_the_database_breaker(pg, fault, name, redis_url):
    registry = BreakerRegistry()
    registry.configure(redis_url)
    guarded = Database()
    guarded.configure(str(pg.engine.url.render_as_string(hide_password=False)),
                      breaker=registry.get(name, fail_max=2, reset_timeout=30))
    try:
        for _ in range(3):
            fault(guarded)
        breaker = registry.get(name)
        assert (breaker.current_state, breaker.fail_counter) == ("closed", 0)
    finally:
        guarded.dispose()
        registry.configure(None)


def test_the_web_retries_a_deadlock_within_its_budget(pg, app):
    storage: Storage = app.extensions["devpulse.storage"]
    attempts: list[int] = []
    deadlock = _deadlock(pg)  # a real one (PostgreSQL takes deadlock_timeout, 1 s, to find it), raised below

    def work(session) -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise deadlock
        return "done"

    assert storage.transaction(work) == "done"
    assert len(attempts) == 2
    assert storage.breaker.fail_counter == 0
