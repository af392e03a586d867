"""Hardening of POST /api/workflow/events/orchestrate against oversized input, on the real PostgreSQL and Redis.

The whole stored event is bounded (extra keys too), the envelope (`client`, extra keys) is bounded, and the
number of JSON values is bounded on the raw bytes, before any Python object is built.
"""

from __future__ import annotations

import gzip
import json
import os
import tracemalloc
from typing import Any

import orjson
import pytest

from tests.support.factories import auth, batch, event
from tests.support.ingest import URL, nothing_written, post, stored_events

MB = 1024 * 1024


def _app_with(redis_url: str, **overrides: Any):
    from app import create_app

    application = create_app({"database_url": os.environ["DATABASE_URL"], "redis_url": redis_url, **overrides})
    application.config["TESTING"] = True
    return application


@pytest.fixture
def small_limits(app, redis_url):
    """An app whose JSON-values limit is small enough to reach with ordinary batches."""
    application = _app_with(redis_url, max_json_elements=1000)
    yield application
    application.extensions["devpulse.db"].dispose()


def test_2mb_of_junk_in_an_event_rejects_that_event_naming_the_field(client, token, clean_db):
    junk = event(file="x")
    junk["junk"] = "j" * (2 * MB)
    ok = event()
    r = post(client, token, batch([ok, junk]))
    assert r.status_code == 202, r.get_json()
    body = r.get_json()
    assert (body["accepted"], body["rejected"]) == (1, 1)
    [error] = body["errors"]
    assert (error["index"], error["event_id"], error["code"], error["field"]) == (
        1, junk["event_id"], "event_too_large", "junk")
    assert "20480" in error["message"] and "junk is 2097154 bytes" in error["message"]
    assert [str(r.event_id) for r in stored_events(clean_db)] == [ok["event_id"]]


def test_the_whole_stored_event_is_limited_to_20_kib(client, token, clean_db):
    limit = 20 * 1024

    def sized(total: int) -> dict[str, Any]:
        ev = event(file="x")
        ev["extra"] = ""
        ev["extra"] = "e" * (total - len(orjson.dumps(ev)))
        assert len(orjson.dumps(ev)) == total
        return ev

    at_limit, over = sized(limit), sized(limit + 1)
    body = post(client, token, batch([at_limit, over])).get_json()
    assert (body["accepted"], body["rejected"]) == (1, 1)
    assert [(e["index"], e["code"], e["field"]) for e in body["errors"]] == [(1, "event_too_large", "extra")]
    assert {str(r.event_id) for r in stored_events(clean_db)} == {at_limit["event_id"]}


def test_non_ascii_events_are_measured_in_utf8_bytes(client, token, clean_db):
    ev = event(file="x")
    ev["note"] = "é" * (11 * 1024)  # 11 Ki characters, 22 KiB in UTF-8
    body = post(client, token, batch([ev, event()])).get_json()
    assert [(e["code"], e["field"]) for e in body["errors"]] == [("event_too_large", "note")]


def test_an_oversized_payload_is_still_named_as_the_payload(client, token, clean_db):
    ev = event(file="x", pad="p" * (30 * 1024))
    body = post(client, token, batch([ev, event()])).get_json()
    assert [(e["code"], e["field"]) for e in body["errors"]] == [("payload_too_large", "payload")]
    assert "16384" in body["errors"][0]["message"]


@pytest.mark.parametrize("where", ["client", "top-level key"])
def test_2mb_of_junk_in_the_envelope_is_413_naming_the_field(client, token, clean_db, where):
    body = batch([event()])
    if where == "client":
        body["client"]["junk"] = "j" * (2 * MB)
        field = "client"
    else:
        body["junk"] = ["j" * 1024] * 2048
        field = "junk"
    r = post(client, token, body)
    assert r.status_code == 413, r.get_json()
    error = r.get_json()["error"]
    assert error["code"] == "envelope_too_large"
    assert [d["field"] for d in error["details"]] == [field]
    assert "4096" in error["message"] and "4096" in error["details"][0]["message"]
    nothing_written(clean_db)


def test_an_ordinary_envelope_fits(client, token, clean_db):
    body = batch([event()])
    body["client"] = {"extension_version": "v" * 64, "editor": "e" * 64, "editor_version": "x" * 64,
                      "os": "o" * 64, "extra": "z" * 1000}
    assert post(client, token, body).status_code == 202


def _element_bomb(size: int) -> bytes:
    head = json.dumps(batch([event()]))[:-1].encode()  # without the closing brace
    items = b",{}" * ((size - len(head)) // 3 - 20)
    return head.replace(b'"events": [', b'"events": [{}' + items, 1) + b"}"


def test_5mb_of_empty_objects_is_413_before_they_are_built(client, token, clean_db):
    data = _element_bomb(5 * MB - 100)
    assert len(data) <= 5 * MB
    tracemalloc.start()
    try:
        r = client.post(URL, data=data, headers=auth(token), content_type="application/json")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert r.status_code == 413, r.get_json()
    error = r.get_json()["error"]
    assert error["code"] == "too_many_json_elements"
    assert error["details"] == [{"field": "_body", "message": "more than 250000 JSON values"}]
    # The body's bytes and their text (~10 MB) at most; parsed, the 1.7 million objects take ~127 MB.
    assert peak < 30 * MB, f"peak {peak / MB:.0f} MB: the values were built"
    nothing_written(clean_db)


def test_the_element_bound_also_applies_once_gunzipped(client, token, clean_db):
    data = gzip.compress(_element_bomb(5 * MB - 100))
    r = client.post(URL, data=data, headers={**auth(token), "Content-Encoding": "gzip"},
                    content_type="application/json")
    assert r.status_code == 413
    assert r.get_json()["error"]["code"] == "too_many_json_elements"


def test_commas_and_brackets_inside_strings_do_not_count(small_limits, make_token, clean_db):
    token = make_token("dev-1")
    client = small_limits.test_client()
    prose = event(file="x", note="a, [b], {c}, " * 1000)  # 4000 commas and brackets, all inside one string
    assert post(client, token, batch([prose])).status_code == 202
    values = batch([event(file="x", counts=list(range(2000)))])  # 2000 numbers: over 1000 values
    r = post(client, token, values)
    assert r.status_code == 413
    assert r.get_json()["error"]["details"] == [{"field": "_body", "message": "more than 1000 JSON values"}]


def test_the_element_count_of_a_1mb_body_is_cheap():
    """The bound is checked on every body over 250,000 bytes: one C pass, a small fraction of parsing it."""
    import time

    from app.request_body import count_json_elements

    events = [event("file.edit", file=f"src/m{i}.py", lines_added=3, lines_deleted=1) for i in range(5800)]
    raw = json.dumps(batch(events)).encode()
    assert MB <= len(raw) < 1.2 * MB

    def best(run, times: int) -> float:
        timings = []
        for _ in range(times):
            started = time.perf_counter()
            run()
            timings.append(time.perf_counter() - started)
        return min(timings)

    scan = best(lambda: count_json_elements(raw, 250_000), 20)
    parse = best(lambda: json.loads(raw), 5)
    assert 0 < count_json_elements(raw, 250_000) <= 250_000
    assert scan < parse / 2, (scan, parse)
