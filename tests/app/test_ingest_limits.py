"""POST /api/workflow/events/orchestrate against the real PostgreSQL.

Size and nesting limits, encodings, content types, malformed bodies.
"""

from __future__ import annotations

import gzip
import json
import tracemalloc
import zlib
from typing import Any

import pytest

from tests.support.factories import auth, batch, event
from tests.support.ingest import URL, counts, edit, nothing_written, post, query, stored_events


def test_1000_events_are_accepted_and_1001_are_413(client, token, clean_db):
    r = post(client, token, batch([event() for _ in range(1001)]))
    assert r.status_code == 413
    assert r.get_json()["error"]["code"] == "too_many_events"
    assert r.get_json()["error"]["details"][0]["field"] == "events"
    nothing_written(clean_db)
    r = post(client, token, batch([event() for _ in range(1000)]))
    assert r.status_code == 202
    assert r.get_json()["accepted"] == 1000
    assert counts(clean_db)["raw_events"] == 1000


def _padded(body: dict[str, Any], size: int) -> bytes:
    """`body` as JSON, padded with insignificant whitespace to exactly `size` bytes."""
    data = json.dumps(body).encode()
    assert len(data) <= size
    return data + b" " * (size - len(data))


def test_body_up_to_5mb_is_accepted_and_larger_is_413(client, token, clean_db):
    limit = 5 * 1024 * 1024
    r = client.post(URL, data=_padded(batch([event()]), limit + 1), headers=auth(token),
                    content_type="application/json")
    assert r.status_code == 413
    assert r.get_json()["error"]["code"] == "payload_too_large"
    nothing_written(clean_db)
    r = client.post(URL, data=_padded(batch([event()]), limit), headers=auth(token), content_type="application/json")
    assert r.status_code == 202


def gz_headers(token: str) -> dict[str, str]:
    return {**auth(token), "Content-Encoding": "gzip"}


def test_gzip_body_is_accepted(client, token, clean_db):
    events = [event(), edit()]
    r = client.post(URL, data=gzip.compress(json.dumps(batch(events)).encode()), headers=gz_headers(token),
                    content_type="application/json")
    assert r.status_code == 202
    assert r.get_json()["accepted"] == 2
    assert sorted(row.raw["event_id"] for row in stored_events(clean_db)) == sorted(e["event_id"] for e in events)


def test_gzip_that_expands_beyond_5mb_is_413(client, token, clean_db):
    data = gzip.compress(_padded(batch([event()]), 5 * 1024 * 1024 + 1))
    assert len(data) < 100_000
    r = client.post(URL, data=data, headers=gz_headers(token), content_type="application/json")
    assert r.status_code == 413
    nothing_written(clean_db)


def test_gzip_bomb_is_413_without_being_expanded(client, token, clean_db):
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = b"\0" * (1024 * 1024)
    bomb = b"".join(compressor.compress(chunk) for _ in range(50)) + compressor.flush()
    assert len(bomb) < 100_000  # 50 MB of zeros
    tracemalloc.start()
    try:
        r = client.post(URL, data=bomb, headers=gz_headers(token), content_type="application/json")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert r.status_code == 413
    assert r.get_json()["error"]["code"] == "payload_too_large"
    assert peak < 20 * 1024 * 1024, f"peak {peak} bytes: the bomb was expanded"
    nothing_written(clean_db)


def test_invalid_gzip_is_400(client, token, clean_db):
    r = client.post(URL, data=b"not gzip at all", headers=gz_headers(token), content_type="application/json")
    assert r.status_code == 400
    assert r.get_json()["error"]["code"] == "invalid_gzip"


def test_unknown_content_encoding_is_415(client, token, clean_db):
    r = client.post(URL, data=b"{}", headers={**auth(token), "Content-Encoding": "br"},
                    content_type="application/json")
    assert r.status_code == 415


def test_payload_over_16kb_rejects_that_event_alone(client, token, clean_db):
    base = len(json.dumps({"file": "x", "pad": ""}, separators=(",", ":")))
    at_limit = event(file="x", pad="a" * (16 * 1024 - base))
    over = event(file="x", pad="a" * (16 * 1024 - base + 1))
    small = event()
    body = post(client, token, batch([at_limit, over, small])).get_json()
    assert (body["accepted"], body["rejected"]) == (2, 1)
    assert [(e["index"], e["event_id"], e["code"], e["field"]) for e in body["errors"]] == [
        (1, over["event_id"], "payload_too_large", "payload")]
    assert {str(r.event_id) for r in stored_events(clean_db)} == {at_limit["event_id"], small["event_id"]}


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_non_json_content_type_is_415(client, token, clean_db, content_type):
    kwargs = {"content_type": content_type} if content_type else {}
    r = client.post(URL, data=json.dumps(batch([event()])), headers=auth(token), **kwargs)
    assert r.status_code == 415
    assert r.get_json()["error"]["code"] == "unsupported_media_type"
    assert r.get_json()["error"]["details"][0]["field"] == "Content-Type"
    nothing_written(clean_db)


@pytest.mark.parametrize(("data", "why"), [
    (b'{"batch_id": "x", ', "truncated"),
    (b"", "empty"),
    (b'{"a": NaN}', "NaN"),
    (b'{"a": Infinity}', "Infinity"),
    (b'{"batch_id": "\xff\xfe"}', "invalid UTF-8"),
    (b'{"a": "\xc3"}', "truncated UTF-8 sequence"),
    (b"[" * 100_000 + b"]" * 100_000, "nested far too deeply"),
    (b'{"a": ' + b"[" * 70 + b"]" * 70 + b"}", "nested more than 64 levels"),
])
def test_malformed_bodies_are_400(client, token, clean_db, data, why):
    r = client.post(URL, data=data, headers=auth(token), content_type="application/json")
    assert r.status_code == 400, why
    assert r.get_json()["error"]["code"] == "invalid_json"
    assert r.get_json()["error"]["details"][0]["field"] == "_body"
    nothing_written(clean_db)


def test_deep_payload_inside_an_event_is_400_not_500(client, token, clean_db):
    for depth in (70, 500, 940):  # below json's own recursion limit, deep enough to break what comes after
        ev = event()
        raw = json.dumps(batch([ev])).replace('"file": "src/app.py"', '"file": "x", "d": ' + "[" * depth
                                              + "]" * depth)
        r = client.post(URL, data=raw, headers=auth(token), content_type="application/json")
        assert r.status_code == 400, depth
    nothing_written(clean_db)


def test_payload_nested_within_the_limit_is_stored(client, token, clean_db):
    nested: Any = 1
    for _ in range(55):
        nested = {"n": nested}
    ev = event(file="x", nested=nested)
    assert post(client, token, batch([ev])).status_code == 202
    assert stored_events(clean_db)[0].raw == ev


@pytest.mark.parametrize(("mutate", "field"), [
    (lambda b: b.pop("batch_id"), "batch_id"),
    (lambda b: b.update(batch_id="123"), "batch_id"),
    (lambda b: b.pop("developer_id"), "developer_id"),
    (lambda b: b.update(developer_id="dev 1"), "developer_id"),
    (lambda b: b.update(developer_id="d" * 129), "developer_id"),
    (lambda b: b.update(developer_id=""), "developer_id"),
    (lambda b: b.pop("sent_at"), "sent_at"),
    (lambda b: b.update(sent_at="2024-05-01T12:00:00"), "sent_at"),
    (lambda b: b.update(sent_at=1714564800), "sent_at"),
    (lambda b: b.pop("events"), "events"),
    (lambda b: b.update(events=[]), "events"),
    (lambda b: b.update(events={"0": {}}), "events"),
    (lambda b: b.update(schema_version=""), "schema_version"),
    (lambda b: b.update(client="vscode"), "client"),
    (lambda b: b.update(client={"editor": "e" * 65}), "client.editor"),
    (lambda b: b.update(client={"editor": "nul\u0000"}), "client.editor"),
])
def test_envelope_errors_are_400_naming_the_field(client, token, clean_db, mutate, field):
    body = batch([event()])
    mutate(body)
    r = post(client, token, body)
    assert r.status_code == 400, r.get_json()
    error = r.get_json()["error"]
    assert error["code"] == "invalid_envelope"
    assert field in [d["field"] for d in error["details"]]
    assert field in error["message"]
    nothing_written(clean_db)


def test_non_object_body_is_400(client, token, clean_db):
    r = post(client, token, [batch([event()])])
    assert r.status_code == 400
    assert r.get_json()["error"]["details"] == [{"field": "_schema", "message": "expected a JSON object"}]


def test_text_the_database_cannot_store_rejects_that_event_alone(client, token, clean_db):
    """Valid JSON that PostgreSQL's jsonb refuses (NUL, an unpaired surrogate, 1e400) must not fail the batch."""
    ok = event()
    nul = event(file="a\u0000b")
    surrogate = event(note="\ud800")
    bad_key = event(**{"k\u0000": 1})
    huge = event(big=1)
    raw = json.dumps(batch([ok, nul, surrogate, bad_key, huge])).replace('"big": 1', '"big": 1e400')
    r = client.post(URL, data=raw, headers=auth(token), content_type="application/json")
    assert r.status_code == 202
    body = r.get_json()
    assert [(e["index"], e["event_id"], e["code"], e["field"]) for e in body["errors"]] == [
        (1, nul["event_id"], "invalid_value", "payload.file"),
        (2, surrogate["event_id"], "invalid_value", "payload.note"),
        (3, bad_key["event_id"], "invalid_value", "payload"),
        (4, huge["event_id"], "invalid_value", "payload.big"),
    ]
    assert [str(r.event_id) for r in stored_events(clean_db)] == [ok["event_id"]]
    validated = query(clean_db, "SELECT details FROM audit_log WHERE step = 'validated'")[0][0]
    assert validated["rejected"] == 4
