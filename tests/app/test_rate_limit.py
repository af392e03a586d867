"""Per-token rate limiting against the real Redis: 20/s with a burst of 40, failing open when Redis is down."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from sqlalchemy import text

from core.breakers import breakers
from tests.support.factories import auth, batch, event

URL = "/api/workflow/events/orchestrate"
RATE, BURST = 20, 40
LIMITS = {"rate_limit_per_second": RATE, "rate_limit_burst": BURST}


def _make_app(redis_url: str, **overrides: Any):
    from app import create_app

    application = create_app({"database_url": os.environ["DATABASE_URL"], "redis_url": redis_url, **overrides})
    application.config["TESTING"] = True
    return application


@pytest.fixture(autouse=True)
def _fresh_breakers() -> Iterator[None]:
    """The breakers are per process: leave none open for the next test (nor inherit one)."""
    for name in ("rate_limiter", "broker", "database"):
        breakers.reset(name)
    yield
    for name in ("rate_limiter", "broker", "database"):
        breakers.reset(name)


@pytest.fixture
def limited(app, redis_url):
    """An app with the production limits (the suite's environment sets huge ones); `app` empties the buckets."""
    application = _make_app(redis_url, **LIMITS)
    yield application
    application.extensions["devpulse.db"].dispose()


@pytest.fixture
def redis_down(app, redis_url):
    """An app whose Redis is a closed port (its Celery publisher is its own: nothing to restore)."""
    application = _make_app("redis://127.0.0.1:1/0", **LIMITS)
    yield application
    application.extensions["devpulse.db"].dispose()


def ingest(client, token: str):
    return client.post(URL, json=batch([event()]), headers=auth(token))


def _stored_batches(app) -> int:
    with app.extensions["devpulse.db"].engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM batches")).scalar_one()


def test_a_burst_of_40_passes_then_429_with_retry_after_naming_the_field(limited, make_token):
    token = make_token("dev-1")
    client = limited.test_client()
    started = time.monotonic()
    for i in range(BURST):
        assert ingest(client, token).status_code == 202, i
    # The bucket refills at 20/s while we send, so a few more may pass, never more than the refill allows.
    extra = 0
    while (r := ingest(client, token)).status_code == 202:
        extra += 1
        assert extra <= RATE * (time.monotonic() - started) + 1, "the limit is not enforced"
    assert r.status_code == 429
    assert 1 <= int(r.headers["Retry-After"]) <= 2
    error = r.get_json()["error"]
    assert error["code"] == "rate_limited"
    assert error["details"][0]["field"] == "Authorization"
    assert "20/s" in error["message"] and "burst 40" in error["message"]
    assert r.get_json()["correlation_id"] == r.headers["X-Correlation-ID"]
    assert _stored_batches(limited) == BURST + extra  # a limited request writes nothing


def test_the_limit_is_per_token(app, redis_url, make_token):
    # A slow refill (1/s): a refused request writes its audit record, and at 20/s the bucket could regain a
    # token between two requests on a loaded machine.
    slow = _make_app(redis_url, rate_limit_per_second=1, rate_limit_burst=BURST)
    try:
        busy, calm, same_developer = make_token("dev-1"), make_token("dev-2"), make_token("dev-1")
        client = slow.test_client()
        while ingest(client, busy).status_code != 429:
            pass
        assert ingest(client, busy).status_code == 429
        r = client.post(URL, json=batch([event()], developer_id="dev-2"), headers=auth(calm))
        assert r.status_code == 202
        assert ingest(client, same_developer).status_code == 202  # a token's bucket, not a developer's
    finally:
        slow.extensions["devpulse.db"].dispose()


def test_the_bucket_refills_over_time(limited, make_token):
    token = make_token("dev-1")
    client = limited.test_client()
    while ingest(client, token).status_code != 429:
        pass
    time.sleep(0.15)  # 20/s: three tokens' worth
    assert ingest(client, token).status_code == 202
    while ingest(client, token).status_code != 429:
        pass
    emptied = time.monotonic()
    time.sleep(1.0)  # twenty tokens' worth, well below a full burst
    passed = 0
    while ingest(client, token).status_code == 202:
        passed += 1
    # At least the sleep's worth; at most what the whole time since the bucket was empty refilled.
    assert RATE * 1.0 - 1 <= passed <= RATE * (time.monotonic() - emptied) + 1


def test_concurrent_requests_cannot_overdraw_the_bucket(limited, make_token):
    """The check-and-take is one Lua script in Redis: 8 threads at once still get at most burst + refill."""
    from app.rate_limit import RateLimiter

    token_id = 424242
    limiter: RateLimiter = limited.extensions["devpulse.rate_limiter"]
    allowed = [0] * 8
    barrier = threading.Barrier(8)

    def hammer(i: int) -> None:
        barrier.wait()
        for _ in range(25):
            try:
                limiter.check(token_id)
                allowed[i] += 1
            except Exception as exc:  # ApiError(429)
                assert getattr(exc, "status", None) == 429

    started = time.monotonic()
    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    elapsed = time.monotonic() - started
    assert BURST <= sum(allowed) <= BURST + RATE * elapsed + 1
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    try:
        assert 0 < client.pttl(f"devpulse:ratelimit:{token_id}") <= (BURST / RATE + 1) * 1000  # no key lives forever
    finally:
        client.close()


def test_when_redis_is_down_ingestion_goes_on_unlimited_and_fast(redis_down, make_token):
    token = make_token("dev-1")
    client = redis_down.test_client()
    timings = []
    for i in range(BURST + 20):  # more than the burst: no limit applies
        started = time.monotonic()
        r = ingest(client, token)
        timings.append(time.monotonic() - started)
        assert r.status_code == 202, (i, r.get_json())
    assert breakers.get("rate_limiter").current_state == "open"
    assert _stored_batches(redis_down) == BURST + 20
    assert max(timings[5:]) < 0.25, timings  # no request waits on Redis once the breaker is open


def test_a_hung_redis_costs_only_the_first_requests(app, make_token):
    """A Redis that accepts connections but never answers: socket timeouts until the breaker opens, then none."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)  # never accepted, never answered
    url = f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    hung = _make_app(url, **LIMITS)
    try:
        token = make_token("dev-1")
        client = hung.test_client()
        timings = []
        for _ in range(10):
            started = time.monotonic()
            assert ingest(client, token).status_code == 202
            timings.append(time.monotonic() - started)
        state = breakers.get("rate_limiter").current_state
    finally:
        hung.extensions["devpulse.db"].dispose()
        listener.close()
    assert state == "open"
    assert sum(timings[:3]) > 0.3  # the first ones did wait for Redis (0.2 s socket timeout each) ...
    # ... and once the breaker opened, nobody does (each would take at least the 0.2 s socket timeout).
    assert max(timings[3:]) < 0.2, timings


@pytest.fixture
def metered(app, redis_url):
    """Production request limits, and small events/s and bytes/s limits that a few batches reach."""
    application = _make_app(redis_url, **LIMITS, rate_limit_events_per_second=10, rate_limit_events_burst=30,
                            rate_limit_bytes_per_second=2000, rate_limit_bytes_burst=40_000)
    yield application
    application.extensions["devpulse.db"].dispose()


def test_events_per_second_are_limited_per_token_naming_the_field(metered, make_token):
    token, other = make_token("dev-1"), make_token("dev-1")
    client = metered.test_client()
    assert client.post(URL, json=batch([event() for _ in range(20)]), headers=auth(token)).status_code == 202
    r = client.post(URL, json=batch([event() for _ in range(20)]), headers=auth(token))
    assert r.status_code == 429, r.get_json()
    error = r.get_json()["error"]
    assert error["code"] == "rate_limited"
    assert error["details"][0]["field"] == "events"
    assert "10 events/s (burst 30)" in error["details"][0]["message"]
    assert 1 <= int(r.headers["Retry-After"]) <= 2  # 10 missing events at 10/s
    assert _stored_batches(metered) == 1
    assert client.post(URL, json=batch([event() for _ in range(20)]), headers=auth(other)).status_code == 202


def test_body_bytes_per_second_are_limited_per_token_naming_the_field(metered, make_token):
    token = make_token("dev-1")
    client = metered.test_client()
    heavy = [event(file="x", pad="p" * 10_000) for _ in range(3)]  # ~30 KB, 3 events
    assert client.post(URL, json=batch(heavy), headers=auth(token)).status_code == 202
    r = client.post(URL, json=batch(heavy), headers=auth(token))
    assert r.status_code == 429
    details = r.get_json()["error"]["details"]
    assert details[0]["field"] == "_body"
    assert "2000 bytes of body/s (burst 40000)" in details[0]["message"]
    assert int(r.headers["Retry-After"]) >= 5  # ~20 KB missing at 2000 bytes/s


def test_a_request_larger_than_a_burst_passes_when_the_bucket_is_full(metered, make_token):
    token = make_token("dev-1")
    client = metered.test_client()
    assert client.post(URL, json=batch([event() for _ in range(50)]), headers=auth(token)).status_code == 202
    assert client.post(URL, json=batch([event()]), headers=auth(token)).status_code == 429


def test_a_refused_body_is_counted_too(limited, make_token):
    token = make_token("dev-1")
    client = limited.test_client()
    statuses = [client.post(URL, data=b"{not json", headers=auth(token), content_type="application/json").status_code
                for _ in range(BURST + 10)]
    assert statuses[:BURST] == [400] * BURST
    assert 429 in statuses[BURST:]


def test_the_three_limits_cost_one_redis_call_per_request(metered, make_token, redis_url):
    token = make_token("dev-1")
    client = metered.test_client()
    assert client.post(URL, json=batch([event()]), headers=auth(token)).status_code == 202  # script loaded
    server = redis.Redis.from_url(redis_url)

    def calls() -> dict[str, int]:
        stats = server.info("commandstats")
        return {name: stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("evalsha", "eval", "hmget")}

    try:
        before = calls()
        for _ in range(5):
            assert client.post(URL, json=batch([event(), event()]), headers=auth(token)).status_code == 202
        after = calls()
        # One script call per request, reading the token's buckets once (commands inside a script count too).
        assert {name: after[name] - before[name] for name in after} == {"evalsha": 5, "eval": 0, "hmget": 5}
    finally:
        server.close()
