"""From a decoded request body to a `PreparedBatch`: envelope checks, then each event on its own."""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from marshmallow import ValidationError

from activity.catalog import (
    SUPPORTED_SCHEMA_VERSIONS,
    resolve_schema_version,
    stored_unprocessed,
    validate_event_payload,
)
from activity.clock import check_event_time, correct_timestamp, utc_offset_minutes
from app.errors import ApiError
from app.ingest.fast_path import fast_envelope, fast_event
from app.ingest.schemas import envelope_schema, event_schema, flatten_errors
from core.settings import Settings
from models.ingest import PreparedBatch, PreparedEvent, Rejection


def content_hash(developer_id: str, body: dict[str, Any]) -> str:
    """What makes two sends 'the same batch': everything but the per-send clock (`sent_at`)."""
    canonical = json.dumps(
        {"developer_id": developer_id, "schema_version": body.get("schema_version"), "events": body.get("events")},
        sort_keys=True, separators=(",", ":"), ensure_ascii=False,
    )
    # surrogatepass: an unpaired surrogate (legal as a JSON escape) is rejected per event later, not a crash here.
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def _storable_text(value: str) -> bool:
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def unstorable(value: Any, path: str) -> tuple[str, str] | None:
    """(field, reason) of the first value PostgreSQL's jsonb cannot hold, or None.

    Valid JSON may still carry "\\u0000", an unpaired surrogate such as "\\ud800", or a number that overflows
    to infinity (1e400); the database rejects all three, which would fail the whole batch.
    """
    # A C-speed screen first: the walk below builds a path per node, too slow to run on every event.
    text = json.dumps(value, ensure_ascii=False)  # NUL comes out as \u0000 and an infinite float as Infinity
    if "\\u0000" not in text and "Infinity" not in text and _storable_text(text):
        return None
    stack: list[tuple[str, Any]] = [(path, value)]
    while stack:
        here, node = stack.pop()
        if isinstance(node, str):
            if not _storable_text(node):
                return here, "contains a NUL character or an unpaired surrogate"
        elif isinstance(node, float):
            if not math.isfinite(node):
                return here, "is a number too large to store"
        elif isinstance(node, dict):
            for key, child in node.items():
                if not _storable_text(key):
                    return here, "has a key with a NUL character or an unpaired surrogate"
                stack.append((f"{here}.{key}"[:200], child))
        elif isinstance(node, list):
            stack.extend((f"{here}[{i}]"[:200], child) for i, child in enumerate(node))
    return None


def compact_json(value: Any) -> bytes:
    """Compact UTF-8 JSON with non-ASCII kept: how an event is stored and its payload measured.

    orjson (ten times json's speed) for everything it takes; json for what it refuses: integers beyond 64 bits,
    and (never reaching here: `stored_json` screens them first) unpaired surrogates and overflowing numbers.
    """
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def stored_json(raw: dict[str, Any]) -> str | tuple[str, str]:
    """The event as stored (compact JSON text), or (field, reason) when PostgreSQL's jsonb cannot hold it."""
    try:
        text = orjson.dumps(raw)
    except TypeError:
        # An unpaired surrogate, an overflowing number (app/request_body.py parses it as OverflowingFloat) or an
        # integer beyond 64 bits: the careful walk decides.
        return unstorable(raw, "") or compact_json(raw).decode("utf-8")
    if b"\\u0000" in text:  # a NUL character (or a backslash followed by "u0000", which is fine)
        problem = unstorable(raw, "")
        if problem is not None:
            return problem
    return text.decode("utf-8")


def utf8_length(text: str) -> int:
    """Bytes of `text` in UTF-8; an ASCII string (most events) is measured without encoding it."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _json_size(value: Any) -> int:
    """Bytes of `value` as compact JSON, whatever it holds (also text PostgreSQL would refuse)."""
    try:
        return len(orjson.dumps(value))
    except TypeError:
        return utf8_length(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


def _largest_key(value: dict[str, Any]) -> tuple[str, int]:
    """The key whose value is largest as JSON, and that size: the field a size rejection names (rare path)."""
    sizes = {key: _json_size(child) for key, child in value.items()}
    key = max(sizes, key=lambda k: sizes[k])
    return key, sizes[key]


def check_envelope_size(body: dict[str, Any], settings: Settings) -> None:
    """413 when the envelope (every key but `events`: `client`, extra keys) is over its limit; once per request."""
    rest = {key: value for key, value in body.items() if key != "events"}
    size = _json_size(rest) if rest else 0
    if size > settings.max_envelope_bytes:
        field, field_size = _largest_key(rest)
        field = field[:64]
        raise ApiError(413, "envelope_too_large",
                       f"The batch envelope (everything but events) is {size} bytes; at most "
                       f"{settings.max_envelope_bytes} are allowed ({field} is {field_size} bytes).",
                       [{"field": field, "message": f"{field_size} bytes; the envelope may be at most "
                                                    f"{settings.max_envelope_bytes} bytes"}])


def _oversized_event(raw: dict[str, Any], size: int, settings: Settings) -> tuple[str, str, str]:
    """(code, field, message) for an event over `max_event_bytes`, naming its largest field."""
    payload_size = _json_size(raw.get("payload", {}))
    if payload_size > settings.max_event_payload_bytes:
        return ("payload_too_large", "payload",
                f"the payload is {payload_size} bytes; at most {settings.max_event_payload_bytes} are allowed")
    field, field_size = _largest_key(raw)
    field = field[:64]
    return ("event_too_large", field,
            f"the event is {size} bytes as stored; at most {settings.max_event_bytes} are allowed "
            f"({field} is {field_size} bytes)")


def validate_envelope(body: Any, settings: Settings) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_envelope", "The request body must be a JSON object.",
                       [{"field": "_schema", "message": "expected a JSON object"}])
    check_envelope_size(body, settings)
    events = body.get("events")
    if isinstance(events, list) and len(events) > settings.max_events_per_batch:
        raise ApiError(413, "too_many_events",
                       f"A batch may hold at most {settings.max_events_per_batch} events; this one has {len(events)}.",
                       [{"field": "events", "message": f"at most {settings.max_events_per_batch} events"}])
    fast = fast_envelope(body)
    try:
        envelope = fast if fast is not None else envelope_schema.load(body)
    except ValidationError as exc:
        details = [{"field": f, "message": m} for f, m in flatten_errors(exc.messages)]
        summary = "; ".join(f"{d['field']}: {d['message']}" for d in details)
        raise ApiError(400, "invalid_envelope", f"The batch envelope is invalid: {summary}", details) from exc
    # The stored or echoed envelope fields (events are checked one by one).
    for name in ("client", "schema_version"):
        problem = unstorable(body.get(name), name)
        if problem is not None:
            raise ApiError(400, "invalid_envelope", f"The batch envelope is invalid: {problem[0]} {problem[1]}",
                           [{"field": problem[0], "message": problem[1]}])
    return envelope


def prepare_batch(
    body: Any, *, correlation_id: str, received_at: datetime, settings: Settings, source: str = "native",
) -> PreparedBatch:
    envelope = validate_envelope(body, settings)
    default_version = envelope.get("schema_version")
    sent_at: datetime = envelope["sent_at"]
    try:
        sent_at_utc = sent_at.astimezone(UTC)  # stored in UTC: PostgreSQL refuses offsets past ±15:59
    except OverflowError:
        raise ApiError(400, "invalid_envelope", "The batch envelope is invalid: sent_at is out of range in UTC",
                       [{"field": "sent_at", "message": "out of range in UTC"}]) from None
    events: list[PreparedEvent] = []
    rejections: list[Rejection] = []
    in_batch_duplicates: list[str] = []
    unprocessed_ids: list[str] = []
    seen: set[uuid.UUID] = set()
    for index, raw in enumerate(envelope["events"]):
        prepared = _prepare_event(index, raw, default_version, sent_at, received_at, settings)
        if isinstance(prepared, Rejection):
            rejections.append(prepared)
        elif prepared.event_id in seen:
            in_batch_duplicates.append(str(prepared.event_id))
        else:
            seen.add(prepared.event_id)
            events.append(prepared)
            if prepared.unprocessed:
                unprocessed_ids.append(str(prepared.event_id))
    return PreparedBatch(
        batch_id=envelope["batch_id"],
        developer_id=envelope["developer_id"],
        correlation_id=correlation_id,
        content_hash=content_hash(envelope["developer_id"], body),
        received_at=received_at,
        sent_at=sent_at_utc,
        client=body.get("client") if isinstance(body.get("client"), dict) else {},
        received=len(envelope["events"]),
        events=events,
        rejections=rejections,
        in_batch_duplicates=in_batch_duplicates,
        source=source,
        validated_at=datetime.now(UTC),
        unprocessed_ids=unprocessed_ids,
    )


def _raw_event_id(raw: Any) -> str | None:
    if isinstance(raw, dict) and isinstance(raw.get("event_id"), str) and _storable_text(raw["event_id"]):
        return raw["event_id"][:64]
    return None


def _prepare_event(
    index: int, raw: Any, default_version: str | None, sent_at: datetime, received_at: datetime, settings: Settings,
) -> PreparedEvent | Rejection:
    event_id = _raw_event_id(raw)

    def reject(code: str, field: str, message: str) -> Rejection:
        return Rejection(index=index, event_id=event_id, code=code, field=field, message=message)

    if not isinstance(raw, dict):
        return reject("invalid_event", f"events[{index}]", "each event must be a JSON object")
    text = stored_json(raw)
    if isinstance(text, tuple):
        field = text[0].lstrip(".") or f"events[{index}]"
        return reject("invalid_value", field, f"{field} {text[1]}")
    size = utf8_length(text)  # the event as stored: payload, known fields and any extra keys
    if size > settings.max_event_bytes:
        return reject(*_oversized_event(raw, size, settings))
    fast = fast_event(raw)
    try:
        event = fast if fast is not None else event_schema.load(raw)
    except ValidationError as exc:
        field, message = flatten_errors(exc.messages)[0]
        code = "missing_field" if "Missing data" in message else "invalid_field"
        return reject(code, field, f"{field}: {message}")

    version = event.get("schema_version") or default_version
    if version is None:
        return reject("missing_field", "schema_version",
                      "schema_version is required on the event when the batch sets no default")
    if resolve_schema_version(version) is None:
        return reject("unsupported_schema_version", "schema_version",
                      f"schema_version '{version[:16]}' is not supported; supported: "
                      f"{', '.join(SUPPORTED_SCHEMA_VERSIONS)} (and newer 1.x minors)")
    payload = event["payload"]
    # The payload is part of the stored event: only an event larger than the payload limit can hold a payload
    # over it, so most events skip serialising their payload a second time.
    if size > settings.max_event_payload_bytes:
        payload_size = len(compact_json(raw.get("payload", {})))
        if payload_size > settings.max_event_payload_bytes:
            return reject("payload_too_large", "payload", f"the payload is {payload_size} bytes; at most "
                                                          f"{settings.max_event_payload_bytes} are allowed")
    errors = validate_event_payload(event["type"], version, payload)
    unprocessed = False
    if errors:
        first = errors[0]
        if first.code != "unknown_event_type" or not stored_unprocessed(event["type"], version):
            return reject(first.code, first.field, first.message)
        unprocessed = True  # a type a newer minor added: kept raw, processed once the catalog knows it

    client_ts: datetime = event["timestamp"]
    try:
        corrected = correct_timestamp(client_ts, sent_at, received_at)
        # Stored in UTC (the offset is kept in client_utc_offset_minutes): PostgreSQL refuses offsets past ±15:59.
        client_ts_utc = client_ts.astimezone(UTC)
    except (ValueError, OverflowError):
        return reject("invalid_timestamp", "timestamp", "timestamp is out of range once corrected for clock skew")
    time_error = check_event_time(corrected, received_at, settings.max_event_age_days)
    if time_error is not None:
        return reject(time_error.code, time_error.field, time_error.message)
    return PreparedEvent(
        event_id=event["event_id"],
        seq=index,
        type=event["type"],
        schema_version=version,
        session_id=event.get("session_id"),
        client_ts=client_ts_utc,
        client_utc_offset_minutes=utc_offset_minutes(client_ts),
        corrected_ts=corrected,
        raw=raw,
        raw_json=text,
        unprocessed=unprocessed,
    )
