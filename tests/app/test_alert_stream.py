"""The alert stream (SSE) on a real HTTP server, the real PostgreSQL and Redis: what it sends, resuming with
Last-Event-ID, its bounded life, the token re-check and the per-token cap.

Under the Procfile's gunicorn with 50 open streams and ingest alongside: tests/faults/test_alert_streams.py.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from werkzeug.serving import make_server

from app.alert_stream import KEEPALIVE_SECONDS
from core.settings import SettingsError
from models.tokens import revoke_token
from tests.support.alerts import base_time, notification, seed
from tests.support.factories import auth
from tests.support.sse import Stream


@pytest.fixture
def serve(clean_db, redis_url, celery_app) -> Iterator[Callable[..., int]]:
    """serve(**settings) -> the port of the app, with those settings, on a real threaded HTTP server."""
    import redis

    from app import create_app
    from app.auth import clear_token_cache

    clear_token_cache()
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter("devpulse:streams:*"):
        client.delete(key)
    servers = []

    def start(**overrides: Any) -> int:
        app = create_app({"database_url": os.environ["DATABASE_URL"], "redis_url": redis_url, **overrides})
        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append((server, app))
        return server.server_port

    yield start
    for server, app in servers:
        server.shutdown()
        server.server_close()
        app.extensions["devpulse.db"].dispose()


def test_stream_sends_the_developers_alerts_announced_after_it_opened(serve, make_token, clean_db):
    from tasks.alert_delivery import push

    port = serve()
    token = make_token("dev-1")
    before = seed(clean_db, "dev-1", "no_break", "medium", base_time())
    stream = Stream(port, "dev-1", token, query="?max_seconds=3")
    assert stream.status == 200
    assert stream.response.getheader("Content-Type", "").startswith("text/event-stream")
    assert stream.response.getheader("Cache-Control") == "no-cache"
    stream.wait(lambda s: s.blocks)
    first = stream.blocks[0]
    assert first["comments"] == ["connected"] and first["retry"] == "2000" and first["id"]
    mine = seed(clean_db, "dev-1", "excessive_errors", "high", base_time())
    theirs = seed(clean_db, "dev-2", "excessive_errors", "high", base_time())
    records = [notification(clean_db, "dev-2", [theirs]), notification(clean_db, "dev-1", [mine])]
    sent = time.monotonic()
    push(records)  # the wake-up (the notification records' publish); what is sent is read from PostgreSQL
    stream.wait(lambda s: s.alerts(), timeout=5)
    assert time.monotonic() - sent < 1.0
    stream.join(10)
    assert [b["data"] for b in stream.alerts()] == [mine]  # not the one stored before it opened, not dev-2's
    assert stream.alerts()[0]["id"].endswith(mine["alert_id"])
    assert stream.blocks[-1] == {"comments": [], "event": "end", "data": {"reason": "max_seconds"}}
    assert stream.ended_after is not None and 2.9 <= stream.ended_after < 5
    assert before["alert_id"] not in json.dumps(stream.blocks)


def test_a_reconnect_with_last_event_id_receives_every_alert_missed(serve, make_token, clean_db):
    """No Redis wake-up at all here: the alerts reach the resumed streams from PostgreSQL only."""
    port = serve()
    token = make_token("dev-1")
    opened = Stream(port, "dev-1", token, query="?max_seconds=0.5")
    opened.join(5)
    connect_id = opened.blocks[0]["id"]
    assert opened.alerts() == []
    # Announced while the client was away.
    first = seed(clean_db, "dev-1", "excessive_errors", "high", base_time())
    second = seed(clean_db, "dev-1", "no_break", "medium", base_time())

    resumed = Stream(port, "dev-1", token, query="?max_seconds=1", last_event_id=connect_id)
    resumed.join(5)
    assert [b["data"]["alert_id"] for b in resumed.alerts()] == [first["alert_id"], second["alert_id"]]
    first_id = resumed.alerts()[0]["id"]
    # From the first alert's id: only what came after it. A bare alert id (the ids this stream used to send) too.
    for last_event_id in (first_id, first["alert_id"]):
        again = Stream(port, "dev-1", token, query="?max_seconds=0.5", last_event_id=last_event_id)
        again.join(5)
        assert [b["data"]["alert_id"] for b in again.alerts()] == [second["alert_id"]], last_event_id
    # The query parameter, for clients that cannot set the header.
    by_param = Stream(port, "dev-1", token, query=f"?max_seconds=0.5&last_event_id={first_id}")
    by_param.join(5)
    assert [b["data"]["alert_id"] for b in by_param.alerts()] == [second["alert_id"]]


def test_a_bad_last_event_id_is_refused_naming_the_header(serve, make_token, clean_db):
    port = serve()
    token = make_token("dev-1")
    for bad in ("garbage", str(uuid.uuid4())):
        stream = Stream(port, "dev-1", token, last_event_id=bad)
        assert stream.status == 400
        error = stream.body["error"]
        assert error["code"] == "invalid_last_event_id" and error["details"][0]["field"] == "Last-Event-ID"


def test_a_stream_ends_by_itself_when_the_client_sets_no_bound(serve, make_token, clean_db):
    port = serve(stream_max_seconds=1.5)
    stream = Stream(port, "dev-1", make_token("dev-1"))
    stream.join(10)
    assert not stream.is_alive()
    assert stream.blocks[-1]["data"] == {"reason": "max_seconds"}
    assert stream.ended_after is not None and 1.3 <= stream.ended_after < 3
    # A longer max_seconds than the server's is cut to the server's.
    longer = Stream(port, "dev-1", make_token("dev-1"), query="?max_seconds=3600")
    longer.join(10)
    assert longer.ended_after is not None and longer.ended_after < 3


def test_a_revoked_tokens_stream_ends_at_the_next_check(serve, make_token, clean_db):
    port = serve(stream_token_recheck_seconds=0.5)
    token = make_token("dev-1")
    stream = Stream(port, "dev-1", token, query="?max_seconds=30")
    stream.wait(lambda s: s.blocks)
    with clean_db.transaction() as s:
        assert revoke_token(s, token)
    revoked = time.monotonic()
    stream.join(10)
    assert not stream.is_alive()
    assert time.monotonic() - revoked < 2.5
    assert stream.blocks[-1]["data"] == {"reason": "token_revoked"}


def test_streams_per_token_are_capped_and_a_closed_one_frees_its_slot(serve, make_token, clean_db):
    # Two app instances: the count is shared (in Redis), as it is between gunicorn workers.
    ports = [serve(stream_max_per_token=2), serve(stream_max_per_token=2)]
    token, other = make_token("dev-1"), make_token("dev-1")
    held = [Stream(ports[0], "dev-1", token, query="?max_seconds=20"),
            Stream(ports[1], "dev-1", token, query="?max_seconds=20")]
    assert [s.status for s in held] == [200, 200]
    refused = Stream(ports[0], "dev-1", token, query="?max_seconds=20")
    assert refused.status == 429
    assert refused.response.getheader("Retry-After")
    error = refused.body["error"]
    assert error["code"] == "too_many_streams" and error["details"][0]["field"] == "Authorization"
    assert "2" in error["details"][0]["message"]
    # Another token of the same developer has its own slots.
    theirs = Stream(ports[1], "dev-1", other, query="?max_seconds=1")
    assert theirs.status == 200
    # A stream the client closed gives its slot back once the server notices (its next keep-alive write fails).
    held[0].close()
    deadline = time.monotonic() + KEEPALIVE_SECONDS + 3
    while True:
        again = Stream(ports[1], "dev-1", token, query="?max_seconds=1")
        if again.status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert again.status == 200
    # One that ends by itself (max_seconds) gives it back at once.
    again.join(5)
    assert Stream(ports[0], "dev-1", token, query="?max_seconds=0.5").status == 200
    for stream in (*held, theirs, again):
        stream.close()


def test_a_process_serves_at_most_its_stream_limit(serve, make_token, clean_db):
    port = serve(stream_max_per_process=2)
    held = [Stream(port, f"dev-{i}", make_token(f"dev-{i}"), query="?max_seconds=1.5") for i in range(2)]
    assert [s.status for s in held] == [200, 200]
    busy = Stream(port, "dev-9", make_token("dev-9"), query="?max_seconds=1")
    assert busy.status == 503 and busy.response.getheader("Retry-After")
    assert busy.body["error"]["code"] == "streams_busy" and busy.body["error"]["details"][0]["field"] == "_streams"
    for stream in held:
        stream.join(5)
    assert Stream(port, "dev-9", make_token("dev-9"), query="?max_seconds=0.5").status == 200  # freed as they ended


def test_stream_is_only_for_the_developer(serve, make_token, clean_db):
    port = serve()
    stream = Stream(port, "dev-1", make_token("dev-2"), query="?max_seconds=1")
    assert stream.status == 403 and stream.body["error"]["code"] == "forbidden_developer"
    assert Stream(port, "dev-1", "bogus", query="?max_seconds=1").status == 401


@pytest.mark.parametrize("value", ["abc", "nan", "inf", "-1"])
def test_stream_rejects_a_bad_max_seconds(client, make_token, clean_db, value):
    token = make_token("dev-1")
    r = client.get(f"/api/developers/dev-1/alerts/stream?max_seconds={value}", headers=auth(token))
    if r.status_code != 400:
        r.close()
    assert r.status_code == 400
    error = r.get_json()["error"]
    assert error["code"] == "invalid_parameter" and error["details"][0]["field"] == "max_seconds"


@pytest.mark.parametrize(("name", "value"), [("stream_token_recheck_seconds", 61.0),
                                             ("stream_token_recheck_seconds", 0.0), ("stream_max_seconds", 0.0),
                                             ("stream_max_per_token", 0), ("web_request_slots", 0)])
def test_stream_settings_that_break_a_promise_stop_start_up(name, value):
    from app import create_app

    with pytest.raises(SettingsError, match=name.upper()):
        create_app({name: value})
