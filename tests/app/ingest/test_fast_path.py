"""The fast path in front of marshmallow answers exactly as the schemas do, wherever it answers.

For any input, `fast_event(x)` / `fast_envelope(x)` is either None (marshmallow decides) or equal to what
`event_schema.load(x)` / `envelope_schema.load(x)` returns; and for plainly well-formed input it answers, so
the fast path is actually taken. Pure: no servers.
"""

from __future__ import annotations

import uuid
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

from app.ingest.fast_path import fast_envelope, fast_event
from app.ingest.schemas import envelope_schema, event_schema

SETTINGS = settings(max_examples=400, deadline=None)

_TIMESTAMPS = st.one_of(
    st.sampled_from(["2026-11-27T10:00:00Z", "2026-11-27T10:00:00.123456+02:00", "2026-11-27T10:00:00.1234567Z",
                     "2026-02-30T10:00:00Z", "2026-11-27 10:00:00Z", "2026-11-27T10:00:00", "2026-11-27T10:00:00+24:00",
                     "2026-11-27T23:59:60Z", "", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59-23:59"]),
    st.text(max_size=40),
)
_UUIDS = st.one_of(st.uuids().map(str), st.uuids().map(lambda u: u.hex), st.uuids().map(lambda u: "{" + str(u) + "}"),
                   st.uuids().map(lambda u: str(u).upper()), st.text(max_size=40))
_ANY = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=5),
                 st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


def _strings(least: int, greatest: int) -> st.SearchStrategy[Any]:
    # Lengths around each bound, unicode included, and values of other JSON types.
    return st.one_of(st.text(min_size=max(0, least - 1), max_size=least + 1),
                     st.text(min_size=greatest - 1, max_size=greatest + 1), st.text(max_size=20), _ANY)


def _mutated(draw: st.DrawFn, valid: dict[str, Any], variants: dict[str, st.SearchStrategy[Any]]) -> dict[str, Any]:
    """A well-formed value with up to two fields changed (to anything) or dropped: mostly near the boundary."""
    out = dict(valid)
    for name in draw(st.lists(st.sampled_from(sorted(variants)), max_size=2, unique=True)):
        if draw(st.booleans()):
            out.pop(name, None)
        else:
            out[name] = draw(variants[name])
    return out


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    valid = {"event_id": draw(st.uuids()).__str__(), "type": draw(st.text(min_size=1, max_size=64)),
             "timestamp": "2026-11-27T10:00:00.25+01:00", "schema_version": draw(st.text(min_size=1, max_size=16)),
             "session_id": draw(st.one_of(st.none(), st.text(max_size=128))),
             "project": draw(st.one_of(st.none(), st.text(min_size=1, max_size=128))),
             "payload": draw(st.dictionaries(st.text(max_size=8), _ANY, max_size=4)), "extra": 1}
    return _mutated(draw, valid, {
        "event_id": _UUIDS, "type": _strings(1, 64), "timestamp": _TIMESTAMPS, "schema_version": _strings(1, 16),
        "session_id": _strings(0, 128), "project": _strings(1, 128), "payload": _ANY, "extra": _ANY})


@st.composite
def envelopes(draw: st.DrawFn) -> dict[str, Any]:
    valid = {"batch_id": str(draw(st.uuids())), "developer_id": draw(st.from_regex(r"[A-Za-z0-9._@-]{1,128}",
                                                                                  fullmatch=True)),
             "sent_at": "2026-11-27T10:00:00Z", "schema_version": "1.1",
             "client": draw(st.dictionaries(st.sampled_from(["editor", "os", "editor_version", "extension_version",
                                                             "other"]), st.text(max_size=64), max_size=5)),
             "events": draw(st.lists(st.dictionaries(st.text(max_size=3), _ANY, max_size=2), min_size=1, max_size=3))}
    clients = st.one_of(st.dictionaries(st.sampled_from(["editor", "os", "other"]), _strings(0, 64), max_size=3),
                        _ANY)
    event_lists = st.one_of(st.lists(st.one_of(st.dictionaries(st.text(max_size=3), _ANY, max_size=2), _ANY),
                                     max_size=3), _ANY)
    developer_ids = st.one_of(st.from_regex(r"[A-Za-z0-9._@-]{1,130}", fullmatch=True), _strings(1, 128),
                              st.just("dev-1\n"))
    return _mutated(draw, valid, {
        "batch_id": _UUIDS, "developer_id": developer_ids, "sent_at": _TIMESTAMPS, "schema_version": _strings(1, 16),
        "client": clients, "events": event_lists, "extra": _ANY})


def _load(schema: Any, value: dict[str, Any]) -> dict[str, Any] | None:
    try:
        return schema.load(value)  # type: ignore[no-any-return]
    except ValidationError:
        return None


@SETTINGS
@given(events())
def test_fast_event_equals_the_schema_wherever_it_answers(raw: dict[str, Any]) -> None:
    fast = fast_event(raw)
    if fast is not None:
        assert fast == _load(event_schema, raw)


@SETTINGS
@given(envelopes())
def test_fast_envelope_equals_the_schema_wherever_it_answers(body: dict[str, Any]) -> None:
    fast = fast_envelope(body)
    if fast is not None:
        assert fast == _load(envelope_schema, body)


def test_well_formed_input_takes_the_fast_path() -> None:
    raw = {"event_id": str(uuid.uuid4()), "type": "file.edit", "timestamp": "2026-11-27T10:00:00.5+01:00",
           "schema_version": "1.1", "session_id": None, "project": "devpulse", "payload": {"file": "a.py"},
           "unknown": 1}
    assert fast_event(raw) == event_schema.load(raw)
    body = {"batch_id": str(uuid.uuid4()), "developer_id": "dev-1", "sent_at": "2026-11-27T10:00:01Z",
            "schema_version": "1.1", "client": {"editor": "vscode", "other": 1}, "events": [raw]}
    assert fast_envelope(body) == envelope_schema.load(body)


def test_anything_unusual_is_left_to_marshmallow() -> None:
    good = {"event_id": str(uuid.uuid4()), "type": "file.edit", "timestamp": "2026-11-27T10:00:00Z"}
    for bad in ({**good, "payload": None}, {**good, "type": ""}, {**good, "session_id": "x" * 129},
                {**good, "timestamp": "yesterday"}, {**good, "schema_version": None}):
        assert fast_event(bad) is None
        assert _load(event_schema, bad) is None
