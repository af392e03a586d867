"""Hostile and malformed input against the real PostgreSQL: always a clear 4xx or a verbatim store, never a 5xx.

Every response in this module is also checked for "no 5xx" by the `no_5xx` fixture, which wraps the test client.
"""

from __future__ import annotations

import json
import time
import tracemalloc
import uuid
import zlib
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import pytest
from sqlalchemy import text

from activity.catalog import MAX_COUNT, MAX_EPOCH_NUMBER, SUPPORTED_SCHEMA_VERSIONS, field_specs
from app.auth import clear_token_cache
from models.tokens import create_token, revoke_token
from tests.support.database import TABLES
from tests.support.factories import auth, batch, event, now

URL = "/api/workflow/events/orchestrate"
JSON = "application/json"


# ---------------------------------------------------------------------------------------------------------- helpers


@pytest.fixture
def client(app):
    """The suite's test client, except that any 5xx fails the test on the spot."""
    base = app.test_client()

    class NoServerErrors:
        def open(self, *args: Any, **kwargs: Any):
            r = base.open(*args, **kwargs)
            assert r.status_code < 500, (r.status_code, r.get_data(as_text=True)[:500])
            return r

        def get(self, *args: Any, **kwargs: Any):
            return self.open(*args, method="GET", **kwargs)

        def post(self, *args: Any, **kwargs: Any):
            return self.open(*args, method="POST", **kwargs)

    return NoServerErrors()


@pytest.fixture
def token(make_token) -> str:
    return make_token("dev-1")


def post_raw(client, token: str, data: bytes | str, **headers: str):
    return client.post(URL, data=data, headers={**auth(token), **headers}, content_type=JSON)


def count(db, table: str) -> int:
    with db.engine.connect() as conn:
        return conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()


def nothing_written(db) -> None:
    """Nothing stored; the audit trail holds the refusal's record only (app/ingest/refusals.py)."""
    kept = ("api_tokens", "audit_log")
    assert {t: count(db, t) for t in TABLES if t not in kept} == {t: 0 for t in TABLES if t not in kept}
    with db.engine.connect() as conn:
        assert set(conn.execute(text("SELECT DISTINCT step FROM audit_log")).scalars()) <= {"refused"}


def raw_events(db) -> dict[str, Any]:
    with db.engine.connect() as conn:
        return {str(r.event_id): r.raw for r in conn.execute(text("SELECT event_id, raw FROM raw_events"))}


def error_fields(r) -> list[str]:
    return [d["field"] for d in r.get_json()["error"]["details"]]


# ------------------------------------------------------------------------------------------------- the raw body


@pytest.mark.parametrize("data", [
    b'{"batch_id": "\xff"}',
    b'{"developer_id": "\xc0\xaf"}',  # overlong encoding of '/'
    b'{"a": "\xed\xa0\x80"}',  # a surrogate encoded as UTF-8 (CESU-8)
    b"\xfe\xff\x00{\x00}",  # UTF-16 with a byte-order mark
    b'{"a": "\xf4\x90\x80\x80"}',  # beyond U+10FFFF
])
def test_invalid_utf8_is_400(client, token, clean_db, data):
    r = post_raw(client, token, data)
    assert r.status_code == 400
    assert r.get_json()["error"]["code"] == "invalid_json"
    assert error_fields(r) == ["_body"]
    nothing_written(clean_db)


@pytest.mark.parametrize("opening", [b"[", b'{"a":', b'{"events": [{"payload": '])
def test_100000_levels_of_nesting_are_400_quickly(client, token, clean_db, opening):
    closing = {b"[": b"]", b'{"a":': b"}", b'{"events": [{"payload": ': b"}"}[opening]
    data = opening * 100_000 + b"1" + closing * 100_000
    started = time.monotonic()
    r = post_raw(client, token, data)
    assert time.monotonic() - started < 2
    if sum(data.count(c) for c in (b"[", b"{", b",")) > 250_000:  # too many values: refused before parsing
        assert (r.status_code, r.get_json()["error"]["code"]) == (413, "too_many_json_elements")
    else:
        assert (r.status_code, r.get_json()["error"]["code"]) == (400, "invalid_json")
    nothing_written(clean_db)


def test_a_5000_digit_integer_is_400(client, token, clean_db):
    body = json.dumps(batch([event("file.edit", file="a.py", lines_added=1, lines_deleted=0)]))
    r = post_raw(client, token, body.replace('"lines_added": 1', '"lines_added": ' + "9" * 5000))
    assert r.status_code == 400
    assert r.get_json()["error"]["code"] == "invalid_json"
    nothing_written(clean_db)


def test_huge_numbers_reject_only_their_event(client, token, clean_db):
    """A 4000-digit count and 1e400 are refused per event; a huge unknown field is stored exactly."""
    ok = event()
    big_count = event("file.edit", file="a.py", lines_added=1, lines_deleted=0)
    inf_count = event("file.edit", file="a.py", lines_added=2, lines_deleted=0)
    neg_inf = event(file="b.py", weight=3)
    kept = event(file="c.py", serial=4)
    body = (json.dumps(batch([ok, big_count, inf_count, neg_inf, kept]))
            .replace('"lines_added": 1', '"lines_added": ' + "7" * 4000)
            .replace('"lines_added": 2', '"lines_added": 1e400')
            .replace('"weight": 3', '"weight": -1e400')
            .replace('"serial": 4', '"serial": ' + "8" * 4000))
    r = post_raw(client, token, body)
    assert r.status_code == 202, r.get_json()
    got = r.get_json()
    assert [(e["index"], e["field"], e["code"]) for e in got["errors"]] == [
        (1, "payload.lines_added", "out_of_range"),
        (2, "payload.lines_added", "invalid_value"),
        (3, "payload.weight", "invalid_value"),
    ]
    stored = raw_events(clean_db)
    assert set(stored) == {ok["event_id"], kept["event_id"]}
    assert stored[kept["event_id"]]["payload"]["serial"] == int("8" * 4000)  # jsonb numeric keeps every digit


def test_a_10mb_body_is_413_before_it_is_read(client, token, clean_db):
    body = json.dumps(batch([event(file="x" * (10 * 1024 * 1024))]))
    started = time.monotonic()
    r = post_raw(client, token, body)
    assert time.monotonic() - started < 2
    assert r.status_code == 413
    assert r.get_json()["error"]["code"] == "payload_too_large"
    assert error_fields(r) == ["_body"]
    nothing_written(clean_db)


def test_a_10mb_chunked_body_without_content_length_is_413(app, token, clean_db):
    """Chunked uploads carry no Content-Length: the reader must stop at the cap by itself."""
    from werkzeug.test import EnvironBuilder

    data = json.dumps(batch([event(file="x" * (10 * 1024 * 1024))])).encode()
    environ = EnvironBuilder(path=URL, method="POST", data=data, headers=auth(token), content_type=JSON).get_environ()
    del environ["CONTENT_LENGTH"]
    environ["wsgi.input_terminated"] = True  # what a server sets when it de-chunks the body itself
    assert "CONTENT_LENGTH" not in environ
    r = app.test_client().open(environ)
    assert r.status_code == 413
    assert r.get_json()["error"]["code"] == "payload_too_large"
    nothing_written(clean_db)


@cache
def _gzip_bomb() -> bytes:
    """100 MB of zeros, gzipped to ~100 KB."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = bytes(1024 * 1024)
    return b"".join(compressor.compress(chunk) for _ in range(100)) + compressor.flush()


def test_a_gzip_bomb_is_413_fast_and_never_expanded(client, token, clean_db):
    bomb = _gzip_bomb()
    assert len(bomb) < 200_000
    tracemalloc.start()
    started = time.monotonic()
    try:
        r = post_raw(client, token, bomb, **{"Content-Encoding": "gzip"})
        elapsed = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert r.status_code == 413
    assert r.get_json()["error"]["code"] == "payload_too_large"
    assert elapsed < 2, f"{elapsed:.2f} s"
    assert peak < 30 * 1024 * 1024, f"peak {peak / 1e6:.0f} MB: the bomb was expanded"
    nothing_written(clean_db)


# ----------------------------------------------------------------------------------------------- wrong types


WRONG = [None, 0, -1, 1.5, True, False, [], [1], {}, {"a": 1}, "", "x", "\u0000"]


def _wrong_for(field: str) -> list[Any]:
    # Values of the right type that are valid for the field are left out.
    # "x" is a well-formed developer_id, and a well-formed (if unsupported: a per-event 422) schema_version.
    return [v for v in WRONG if not (field in ("developer_id", "schema_version") and v == "x")]


ENVELOPE_CASES = [(f, v) for f in ("batch_id", "developer_id", "sent_at", "schema_version", "client", "events")
                  for v in _wrong_for(f) if not (f == "client" and v == {}) and not (f == "client" and v == {"a": 1})
                  and not (f == "events" and v == [1])]


@pytest.mark.parametrize(("field", "value"), ENVELOPE_CASES, ids=[f"{f}={json.dumps(v)}" for f, v in ENVELOPE_CASES])
def test_a_wrong_type_in_any_envelope_field_is_400_naming_it(client, token, clean_db, field, value):
    body = batch([event()])
    body[field] = value
    r = client.post(URL, json=body, headers=auth(token))
    assert r.status_code == 400, r.get_json()
    error = r.get_json()["error"]
    assert error["code"] == "invalid_envelope"
    assert any(f == field or f.startswith(field + ".") for f in error_fields(r)), error


def test_a_wrong_type_in_any_event_field_rejects_that_event_alone(client, token, clean_db):
    """One batch: a valid event first, then every event field with every wrong type, each in its own event."""
    cases: list[tuple[str, Any]] = []
    for field in ("event_id", "type", "timestamp", "schema_version", "session_id", "payload"):
        for value in WRONG:
            if (field == "session_id" and (value is None or (isinstance(value, str) and value != "\u0000"))) \
                    or (field == "payload" and isinstance(value, dict)) or (field == "type" and value == "x"):
                continue  # valid (or, for type "x", refused as an unknown type: covered below)
            cases.append((field, value))
    good = event()
    events = [good]
    for field, value in cases:
        ev = event()
        ev[field] = value
        events.append(ev)
    r = client.post(URL, json=batch(events), headers=auth(token))
    assert r.status_code == 202, r.get_json()
    body = r.get_json()
    assert body["accepted"] == 1
    assert body["rejected"] == len(cases)
    for error, (field, value) in zip(body["errors"], cases, strict=True):
        assert error["field"] == field or error["field"].startswith(field), (field, value, error)
        sent_id = events[error["index"]]["event_id"]
        assert error["event_id"] == (sent_id if isinstance(sent_id, str) and "\u0000" not in sent_id else None)
    assert set(raw_events(clean_db)) == {good["event_id"]}


def _valid_payload(event_type: str) -> dict[str, Any]:
    values = {"str": "x", "count": 1, "int": -1, "bool": True, "number": time.time()}
    return {name: (spec.choices[0] if spec.choices else values[spec.kind])
            for name, spec in field_specs(event_type, "1.1").items()}


_WRONG_BY_KIND: dict[str, list[Any]] = {
    "str": [1, 1.5, True, [], {}, "a\u0000b", "x" * 4097],
    "count": ["1", -1, 1.5, True, None, [], {}, MAX_COUNT + 1, 10**4000],
    "int": ["1", 1.5, True, None, [], 2**63, -(2**63) - 1],
    "bool": [1, 0, "true", None, [], {}],
    "number": ["1", True, None, [], {}, MAX_EPOCH_NUMBER * 2],
}


def test_a_wrong_type_in_any_payload_field_rejects_that_event_alone(client, token, clean_db):
    """Every payload field of every 1.1 event type, with every wrong value for its kind, each in its own event."""
    from activity.catalog import event_types

    bad: list[tuple[dict[str, Any], str]] = []
    for event_type in sorted(event_types("1.1")):
        for name, spec in field_specs(event_type, "1.1").items():
            for value in _WRONG_BY_KIND[spec.kind]:
                if value is None and spec.nullable:
                    continue
                ev = event(event_type)
                ev["payload"] = {**_valid_payload(event_type), name: value}
                bad.append((ev, f"payload.{name}"))
    good_ids = set()
    for start in range(0, len(bad), 900):  # at most 1000 events a batch
        chunk = bad[start:start + 900]
        good = event()
        good_ids.add(good["event_id"])
        r = client.post(URL, json=batch([good] + [ev for ev, _ in chunk]), headers=auth(token))
        assert r.status_code == 202, r.get_json()
        body = r.get_json()
        assert body["accepted"] == 1, body["errors"][:3]
        assert [(e["index"], e["field"]) for e in body["errors"]] == [
            (i, field) for i, (_, field) in enumerate(chunk, start=1)]
        assert {e["code"] for e in body["errors"]} <= {"invalid_type", "out_of_range", "invalid_value"}
    assert set(raw_events(clean_db)) == good_ids


@pytest.mark.parametrize("events", [[], [1], ["x"], [None], [[]]], ids=["none", "int", "str", "null", "list"])
def test_events_that_are_not_objects_never_5xx(client, token, clean_db, events):
    r = client.post(URL, json=batch(events), headers=auth(token))
    assert r.status_code in (400, 422)
    nothing_written(clean_db)


def test_utc_offsets_postgresql_cannot_store_never_500(client, token, clean_db):
    """RFC 3339 allows offsets up to ±23:59; PostgreSQL refuses anything from ±16:00 on.

    Stored (in UTC, the offset kept apart) or refused by name are both fine; a 500 is not.
    """
    stamp = (now() - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%S")
    ok, far = event(), event()
    far["timestamp"] = stamp + "+23:59"
    r = client.post(URL, json=batch([ok, far]), headers=auth(token))
    assert r.status_code == 202
    assert [(e["index"], e["field"]) for e in r.get_json()["errors"]] in ([], [(1, "timestamp")])
    if not r.get_json()["errors"]:
        with clean_db.engine.connect() as conn:
            offset = conn.execute(text("SELECT client_utc_offset_minutes FROM raw_events WHERE event_id = :e"),
                                  {"e": far["event_id"]}).scalar_one()
        assert offset == 23 * 60 + 59

    body = batch([event()])
    body["sent_at"] = now().strftime("%Y-%m-%dT%H:%M:%S") + "-16:00"
    r = client.post(URL, json=body, headers=auth(token))
    assert r.status_code in (202, 400)
    if r.status_code == 400:
        assert error_fields(r) == ["sent_at"]

    for url in ("/api/developers/dev-1/alerts?since=2024-01-01T00:00:00%2B20:46",
                "/api/developers/dev-1/metrics?from=2024-01-01T00:00:00-23:00",
                "/api/developers/dev-1/metrics?to=2024-01-01T00:00:00%2B16:00",
                "/api/developers/dev-1/metrics?from=0001-01-01T00:00:00%2B01:00",
                "/api/developers/dev-1/alerts?since=9999-12-31T23:59:59-01:00"):
        r = client.get(url, headers=auth(token))
        assert r.status_code in (200, 400), url


# --------------------------------------------------------------------------- SQL-ish text and control characters


HOSTILE_TEXT = [
    "'; DROP TABLE raw_events; --",
    "Robert'); DROP TABLE batches;--",
    '" OR 1=1 --',
    "1; SELECT pg_sleep(30); --",
    "$$; DELETE FROM audit_log; $$",
    "%s %(x)s {0} {x} %n",
    "\\x00 \\u0000 \\",
    "\x01\x07\x08\x1b[31mred\x1b[0m\x7f",
    "\t\n\r\x0b\x0c",
    "\u202eevil\u202c \ufeff \u200b",
    "\U0001f4a9 日本語 ﷽",
    "<script>alert(1)</script>",
    "../../etc/passwd",
]


def test_sqlish_and_control_characters_are_stored_verbatim_and_never_executed(client, token, clean_db):
    events = []
    for i, value in enumerate(HOSTILE_TEXT):
        ev = event(file=value, language=value, **{value: value, "n": i})
        ev["session_id"] = value[:128]
        events.append(ev)
    body = batch(events)
    body["client"] = {"editor": HOSTILE_TEXT[0], "os": HOSTILE_TEXT[7], "extension_version": HOSTILE_TEXT[9]}
    r = client.post(URL, json=body, headers={**auth(token), "User-Agent": HOSTILE_TEXT[0]})
    assert r.status_code == 202, r.get_json()
    assert r.get_json()["accepted"] == len(HOSTILE_TEXT)
    stored = raw_events(clean_db)
    assert stored == {ev["event_id"]: ev for ev in events}  # the raw JSON is exactly what was sent
    for table in TABLES:  # every table is still there
        count(clean_db, table)
    assert count(clean_db, "batches") == 1
    assert count(clean_db, "audit_log") >= 3
    with clean_db.engine.connect() as conn:
        session_ids = set(conn.execute(text("SELECT session_id FROM raw_events")).scalars())
    assert session_ids == {v[:128] for v in HOSTILE_TEXT}


@pytest.mark.parametrize("value", HOSTILE_TEXT[:5])
def test_sqlish_text_in_paths_and_queries_is_harmless(client, make_token, clean_db, value):
    from urllib.parse import quote

    admin = make_token(None, admin=True)
    for url in (f"/api/developers/{quote(value, safe='')}/metrics?granularity={quote(value)}",
                f"/api/developers/{quote(value, safe='')}/alerts?status={quote(value)}",
                f"/api/developers/{quote(value, safe='')}/alerts?since={quote(value)}",
                f"/api/developers/dev-1/metrics?from={quote(value)}",
                f"/api/workflow/batches/{quote(value, safe='')}",
                f"/api/admin/circuit-breakers/{quote(value, safe='')}/reset"):
        method = "POST" if url.endswith("/reset") else "GET"
        r = client.open(url, method=method, headers=auth(admin))
        assert r.status_code in (400, 404), (url, r.status_code)
    r = client.get(f"/api/developers/{quote(value, safe='')}/alerts", headers=auth(admin))
    assert r.status_code in (200, 404)
    for table in TABLES:
        count(clean_db, table)


def test_nul_characters_are_a_per_event_rejection_never_a_500(client, token, clean_db):
    """PostgreSQL's jsonb cannot hold U+0000: the event is refused by name, the others are stored."""
    ok = event()
    in_value = event(file="a\u0000b")
    in_key = event(**{"k\u0000": 1})
    in_unknown_deep = event(meta={"list": ["fine", {"deep": "\u0000"}]})
    in_session = event()
    in_session["session_id"] = "s\u0000"
    in_type = event()
    in_type["type"] = "file.save\u0000"
    in_id = event()
    in_id["event_id"] = in_id["event_id"] + "\u0000"
    r = client.post(URL, json=batch([ok, in_value, in_key, in_unknown_deep, in_session, in_type, in_id]),
                    headers=auth(token))
    assert r.status_code == 202, r.get_json()
    errors = r.get_json()["errors"]
    assert [(e["index"], e["code"]) for e in errors] == [(i, "invalid_value") for i in range(1, 7)]
    assert [e["field"] for e in errors[:5]] == ["payload.file", "payload", "payload.meta.list[1].deep",
                                               "session_id", "type"]
    assert errors[5]["event_id"] is None
    assert set(raw_events(clean_db)) == {ok["event_id"]}

    # Only NUL events: 422 and nothing written; NUL in the envelope: 400.
    r = client.post(URL, json=batch([event(file="\u0000"), event(**{"\u0000": 1})]), headers=auth(token))
    assert r.status_code == 422
    assert r.get_json()["rejected"] == 2
    assert count(clean_db, "batches") == 1
    body = batch([event()])
    body["client"] = {"os": "linux\u0000"}
    assert client.post(URL, json=body, headers=auth(token)).status_code == 400
    body = batch([event()], developer_id="dev\u0000")
    assert client.post(URL, json=body, headers=auth(token)).status_code == 400
    body = batch([event()], schema_version="1.1\u0000")
    assert client.post(URL, json=body, headers=auth(token)).status_code == 400


def test_nul_and_control_characters_in_headers_never_5xx(client, token, clean_db):
    for correlation in ("a\x01b", "x" * 1000, "'; DROP TABLE batches; --", "\u00e9"):
        r = client.post(URL, json=batch([event()]), headers={**auth(token), "X-Correlation-ID": correlation})
        assert r.status_code == 202
        assert r.headers["X-Correlation-ID"] != correlation  # unsafe ids are replaced, never echoed
    for header in ("Bearer \x01\x02", "Bearer " + "x" * 10_000, "Basic " + "A" * 10_001, "Bearer '; --",
                   "Basic Zm9vOg==", "bearer\ttoken"):
        r = client.post(URL, json=batch([event()]), headers={"Authorization": header})
        assert r.status_code == 401, header
    for encoding in ("gzip, gzip", "br", "deflate", "\x01"):
        r = post_raw(client, token, b"{}", **{"Content-Encoding": encoding})
        assert r.status_code == 415
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        r = client.post(URL, data=b"a=1", headers=auth(token), content_type=content_type)
        assert r.status_code == 415
    assert client.get(URL, headers=auth(token)).status_code == 405
    assert client.open(URL, method="PUT", headers=auth(token)).status_code == 405
    assert count(clean_db, "batches") == 4  # only the four correlation-id posts wrote anything


# ---------------------------------------------------------------------------------------------- tokens and roles


def test_another_developers_token_is_403_everywhere(client, token, make_token, clean_db):
    mine = client.post(URL, json=batch([event()], developer_id="dev-1"), headers=auth(token))
    assert mine.status_code == 202
    other = make_token("dev-2")
    r = client.post(URL, json=batch([event()], developer_id="dev-1"), headers=auth(other))
    assert r.status_code == 403
    assert r.get_json()["error"]["code"] == "forbidden_developer"
    assert error_fields(r) == ["developer_id"]
    for url in ("/api/developers/dev-1/metrics", "/api/developers/dev-1/alerts"):
        assert client.get(url, headers=auth(other)).status_code == 403
    assert client.post(f"/api/developers/dev-1/alerts/{uuid.uuid4()}/ack", headers=auth(other)).status_code == 403
    # Another developer's batch is not theirs to learn about.
    assert client.get(f"/api/workflow/batches/{mine.get_json()['batch_id']}", headers=auth(other)).status_code == 404
    assert count(clean_db, "batches") == 1


def test_unknown_expired_and_revoked_tokens_are_401(client, clean_db):
    with clean_db.transaction() as s:
        expired = create_token(s, "dev-1", expires_at=datetime.now(UTC) - timedelta(seconds=1))
        revoked = create_token(s, "dev-1")
        revoked_admin = create_token(s, None, admin=True)
    with clean_db.transaction() as s:
        assert revoke_token(s, revoked)
        assert revoke_token(s, revoked_admin)
    clear_token_cache()
    for tok in ("dp_" + "A" * 43, expired, revoked, revoked_admin, expired + "x", ""):
        for method, url in (("POST", URL), ("GET", "/api/developers/dev-1/metrics"),
                            ("GET", "/api/admin/circuit-breakers")):
            kwargs: dict[str, Any] = {"json": batch([event()])} if method == "POST" else {}
            r = client.open(url, method=method, headers={"Authorization": f"Bearer {tok}"}, **kwargs)
            assert r.status_code == 401, (tok, url)
            assert r.get_json()["error"]["code"] in ("invalid_token", "missing_token")
            assert r.headers["WWW-Authenticate"].startswith("Bearer")
    nothing_written(clean_db)


def test_admin_endpoints_refuse_developer_tokens(client, token, make_token, clean_db):
    stored = client.post(URL, json=batch([event()]), headers=auth(token))
    assert stored.status_code == 202
    batch_id = stored.get_json()["batch_id"]
    for method, url in (("GET", "/api/admin/circuit-breakers"),
                        ("POST", "/api/admin/circuit-breakers/database/reset"),
                        ("GET", f"/api/workflow/batches/{batch_id}/audit")):
        r = client.open(url, method=method, headers=auth(token))
        assert r.status_code == 403, url
        assert r.get_json()["error"]["code"] == "admin_required"
        assert client.open(url, method=method).status_code == 401
    admin = make_token(None, admin=True)
    assert client.get(f"/api/workflow/batches/{batch_id}/audit", headers=auth(admin)).status_code == 200
    assert client.get("/api/admin/circuit-breakers", headers=auth(admin)).status_code == 200


def test_supported_versions_are_listed_when_every_event_has_a_bad_version(client, token, clean_db):
    events = [event(version=v) for v in ("2.0", "1.01", "\u0661.\u0661", "1.1 ", "01.1")]
    r = client.post(URL, json=batch(events, schema_version=None), headers=auth(token))
    assert r.status_code == 422
    assert r.get_json()["supported_schema_versions"] == list(SUPPORTED_SCHEMA_VERSIONS)
    nothing_written(clean_db)
