"""The `database` breaker and bounded retries of app.storage, against a real PostgreSQL and a closed port."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from marshmallow import ValidationError
from sqlalchemy import event as sa_event
from sqlalchemy import exc as sa_exc
from sqlalchemy import select, text

from app.storage import Storage, StorageUnavailable
from core.breakers import breakers, is_connectivity_error
from core.settings import Settings
from models.db import Database
from models.tables import ApiToken
from models.tokens import hash_token
from tests.support.factories import auth, batch, event

URL = "/api/workflow/events/orchestrate"
DEAD_URL = "postgresql+psycopg2://postgres@127.0.0.1:1/nowhere"


@pytest.fixture
def breaker() -> Iterator[Any]:
    """The process's `database` breaker, closed before and after (it is shared by every app of the process)."""
    b = breakers.get("database")
    b.close()
    yield b
    breakers.reset("database")


@pytest.fixture
def dead_db() -> Iterator[Database]:
    db = Database()
    db.configure(DEAD_URL)
    yield db
    db.dispose()


class Counted:
    """A unit of work that records each attempt, then runs a query."""

    def __init__(self, sql: str = "SELECT 1") -> None:
        self.sql = sql
        self.attempts = 0

    def __call__(self, session) -> Any:
        self.attempts += 1
        return session.execute(text(self.sql)).scalar()


def _settings(**overrides: Any) -> Settings:
    return Settings.from_env(database_url=DEAD_URL, **overrides)


def _dead_app(redis_url: str):
    from app import create_app

    application = create_app({"database_url": DEAD_URL, "redis_url": redis_url})
    application.config["TESTING"] = True
    return application


# ----------------------------------------------------------------------------------------------- retries, 503


def test_connectivity_errors_are_retried_within_the_budget_then_unavailable(breaker, dead_db, monkeypatch):
    monkeypatch.setattr(breaker, "fail_max", 1000)  # here the budget, not the breaker, ends the call
    storage = Storage(dead_db, _settings(db_retry_budget_ms=300))
    work = Counted()
    started = time.monotonic()
    with pytest.raises(StorageUnavailable) as info:
        storage.transaction(work)
    elapsed = time.monotonic() - started
    assert work.attempts >= 2, "a connectivity error is retried"
    assert elapsed < 0.3 + 0.15, f"{elapsed:.3f} s: the 300 ms budget was overrun"
    assert info.value.retry_after >= 1
    assert is_connectivity_error(info.value.__cause__)
    assert breaker.fail_counter == work.attempts  # each failed attempt is one consecutive failure


def test_ingest_is_503_with_retry_after_while_the_database_is_down(client, make_token, redis_url, breaker, clean_db):
    token = make_token("dev-1")
    # Authenticate once against the real database: the token is then in app.auth's (per-process) cache.
    assert client.get("/api/developers/dev-1/alerts", headers=auth(token)).status_code == 200
    dead = _dead_app(redis_url)
    try:
        started = time.monotonic()
        r = dead.test_client().post(URL, json=batch([event()]), headers=auth(token))
        elapsed = time.monotonic() - started
        # A token not in the cache needs the database too: still a 503, never a 500.
        r_uncached = dead.test_client().post(URL, json=batch([event()]), headers=auth("dp_" + "u" * 43))
    finally:
        dead.extensions["devpulse.db"].dispose()
    assert r.status_code == 503, r.get_json()
    assert int(r.headers["Retry-After"]) >= 1
    assert r.get_json()["error"]["code"] == "storage_unavailable"
    assert r.get_json()["error"]["details"] == [{"field": "_storage", "message": "unavailable"}]
    assert elapsed < 1.0
    assert r_uncached.status_code == 503
    assert int(r_uncached.headers["Retry-After"]) >= 1
    with clean_db.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM batches")).scalar_one() == 0


# ------------------------------------------------------------------------------------------------- the breaker


def test_after_fail_max_failures_the_breaker_answers_fast_without_the_database(breaker, dead_db, app, make_token):
    storage = Storage(dead_db, _settings(db_retry_budget_ms=0))  # no retry: one attempt, one failure per call
    work = Counted()
    for i in range(breaker.fail_max):
        assert breaker.current_state == "closed"
        with pytest.raises(StorageUnavailable):
            storage.transaction(work)
        assert breaker.fail_counter == i + 1
    assert breaker.current_state == "open"
    assert work.attempts == breaker.fail_max

    started = time.monotonic()
    with pytest.raises(StorageUnavailable) as info:
        storage.transaction(work)
    assert time.monotonic() - started < 0.05
    assert work.attempts == breaker.fail_max, "the database was tried while the breaker was open"
    assert "circuit open" in str(info.value)
    assert info.value.retry_after == max(1, int(breaker.reset_timeout))

    # The breaker is the process's: the real app answers 503 at once too, without checking out a connection.
    from app.auth import _cache
    from models.tokens import Principal

    token = make_token("dev-1")
    db = app.extensions["devpulse.db"]
    with db.transaction() as s:
        token_id = s.execute(select(ApiToken.id).where(ApiToken.token_hash == hash_token(token))).scalar_one()
    # Cached as a first request would have (the lookup itself needs the database the breaker now refuses).
    _cache[hash_token(token)] = (time.monotonic() + 30, Principal(token_id, "dev-1", False))
    checkouts: list[Any] = []

    def on_checkout(*args: Any) -> None:
        checkouts.append(args)

    sa_event.listen(db.engine, "checkout", on_checkout)
    try:
        started = time.monotonic()
        r = app.test_client().post(URL, json=batch([event()]), headers=auth(token))
        elapsed = time.monotonic() - started
    finally:
        sa_event.remove(db.engine, "checkout", on_checkout)
    assert r.status_code == 503
    assert int(r.headers["Retry-After"]) == max(1, int(breaker.reset_timeout))
    assert elapsed < 0.1, f"{elapsed:.3f} s"
    assert checkouts == []


def test_the_breaker_half_opens_after_its_timeout_and_a_success_closes_it(breaker, dead_db, app, monkeypatch):
    monkeypatch.setattr(breaker, "reset_timeout", 0.2)
    dead = Storage(dead_db, _settings(db_retry_budget_ms=0))
    for _ in range(breaker.fail_max):
        with pytest.raises(StorageUnavailable):
            dead.transaction(Counted())
    assert breaker.current_state == "open"
    live: Storage = app.extensions["devpulse.storage"]
    with pytest.raises(StorageUnavailable):
        live.transaction(Counted())  # still open: refused even though this database is up
    time.sleep(0.25)
    assert live.transaction(Counted("SELECT 42")) == 42  # the trial call succeeds ...
    assert breaker.current_state == "closed"  # ... and closes the breaker
    assert breaker.fail_counter == 0
    # A failed trial opens it again at once.
    for _ in range(breaker.fail_max):
        with pytest.raises(StorageUnavailable):
            dead.transaction(Counted())
    time.sleep(0.25)
    with pytest.raises(StorageUnavailable):
        dead.transaction(Counted())
    assert breaker.current_state == "open"


def test_a_success_resets_the_count_of_consecutive_failures(breaker, dead_db, app):
    dead = Storage(dead_db, _settings(db_retry_budget_ms=0))
    live: Storage = app.extensions["devpulse.storage"]
    for _ in range(3):
        for _ in range(breaker.fail_max - 1):
            with pytest.raises(StorageUnavailable):
                dead.transaction(Counted())
        assert breaker.fail_counter == breaker.fail_max - 1
        live.transaction(Counted())
        assert breaker.fail_counter == 0
    assert breaker.current_state == "closed"


# --------------------------------------------------------------------------- errors that are not about health


def _duplicate_token(token_hash: str):
    def work(session):
        session.add(ApiToken(token_hash=token_hash, developer_id="dev-1"))
        session.flush()

    return work


def _invalid(session) -> None:
    raise ValidationError({"developer_id": ["invalid"]})


NOT_ABOUT_HEALTH = [
    ("integrity", None, sa_exc.IntegrityError),
    ("data", "SELECT 1/0", sa_exc.DataError),
    ("programming", "SELECT * FROM no_such_table", sa_exc.ProgrammingError),
    ("validation", _invalid, ValidationError),
    ("value", lambda s: int("x"), ValueError),
]


@pytest.mark.parametrize(("name", "work", "error"), NOT_ABOUT_HEALTH, ids=[n for n, _, _ in NOT_ABOUT_HEALTH])
def test_errors_that_say_nothing_about_the_database_never_count(breaker, dead_db, app, make_token, name, work,
                                                               error):
    live: Storage = app.extensions["devpulse.storage"]
    if name == "integrity":
        work = _duplicate_token(hash_token(make_token("dev-1")))
    elif isinstance(work, str):
        work = Counted(work)
    dead = Storage(dead_db, _settings(db_retry_budget_ms=0))
    for _ in range(2):  # two real failures first: the errors below must neither add to nor reset them
        with pytest.raises(StorageUnavailable):
            dead.transaction(Counted())
    for _ in range(breaker.fail_max + 2):
        started = time.monotonic()
        with pytest.raises(error):
            live.transaction(work)
        assert time.monotonic() - started < 0.5, "retried as if it were a connectivity error"
        assert breaker.fail_counter == 2
    assert breaker.current_state == "closed"


def test_rejected_and_conflicting_batches_do_not_touch_the_breaker(breaker, client, make_token, clean_db):
    token = make_token("dev-1")
    body = batch([event()])
    assert client.post(URL, json=body, headers=auth(token)).status_code == 202
    for _ in range(breaker.fail_max + 1):
        assert client.post(URL, json={**body, "events": [event()]}, headers=auth(token)).status_code == 409
        assert client.post(URL, json=batch([{"type": 1}]), headers=auth(token)).status_code == 422
        assert client.post(URL, json={"events": 1}, headers=auth(token)).status_code == 400
    assert breaker.fail_counter == 0
    assert breaker.current_state == "closed"


# ------------------------------------------------------------------------------------------------- concurrency


def test_transactions_of_concurrent_requests_run_in_parallel(breaker, app):
    """The breaker guards the database; it must not make every transaction of the process wait for the last."""
    live: Storage = app.extensions["devpulse.storage"]
    n, pause = 4, 0.4
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def run() -> None:
        barrier.wait()
        try:
            live.transaction(Counted(f"SELECT pg_sleep({pause})"))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(n)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    elapsed = time.monotonic() - started
    assert not errors
    assert elapsed < pause * 2, f"{n} transactions of {pause} s took {elapsed:.2f} s: they ran one at a time"


def test_a_hung_attempt_does_not_block_other_threads_breaker_checks(breaker, app, dead_db):
    """While one thread waits on the database, another's failure and the breaker's state stay observable."""
    live: Storage = app.extensions["devpulse.storage"]
    dead = Storage(dead_db, _settings(db_retry_budget_ms=0))
    started = threading.Event()

    def slow(session) -> None:
        started.set()
        session.execute(text("SELECT pg_sleep(0.5)"))

    t = threading.Thread(target=live.transaction, args=(slow,))
    t.start()
    assert started.wait(5)
    began = time.monotonic()
    with pytest.raises(StorageUnavailable):
        dead.transaction(Counted())
    assert time.monotonic() - began < 0.3
    t.join(10)
    assert breaker.fail_counter == 0  # the slow success came last and reset the count
