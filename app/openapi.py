"""The OpenAPI 3 description of every endpoint, generated from the marshmallow schemas.

Served at /openapi.json and browsable at /docs. Request schemas are the ones
the endpoints validate with; response schemas are declared here.
"""

from __future__ import annotations

import html
import json
from functools import cache
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, Response, jsonify
from marshmallow import Schema, fields

from app.ingest.schemas import EnvelopeSchema, EventSchema, Rfc3339
from models.tables import BatchStatus

bp = Blueprint("openapi", __name__)


class ErrorDetailSchema(Schema):
    field = fields.Str(required=True)
    message = fields.Str(required=True)


class ErrorBodySchema(Schema):
    code = fields.Str(required=True)
    message = fields.Str(required=True)
    details = fields.List(fields.Raw(), required=True)


class ErrorSchema(Schema):
    error = fields.Nested(ErrorBodySchema, required=True)
    correlation_id = fields.Str(allow_none=True, required=True)


class EventErrorSchema(Schema):
    index = fields.Int(required=True)
    event_id = fields.Str(allow_none=True, required=True)
    code = fields.Str(required=True)
    field = fields.Str(required=True)
    message = fields.Str(required=True)


class IngestResultSchema(Schema):
    batch_id = fields.UUID(required=True)
    correlation_id = fields.Str(required=True)
    status = fields.Str(required=True, metadata={"enum": ["accepted", "partially_accepted", "duplicate", "rejected"]})
    received = fields.Int(required=True)
    accepted = fields.Int(required=True)
    duplicates = fields.Int(required=True)
    rejected = fields.Int(required=True)
    errors = fields.List(fields.Nested(EventErrorSchema), required=True)
    duplicate_event_ids = fields.List(fields.Str(), required=True)
    supported_schema_versions = fields.List(fields.Str())
    stored_unprocessed = fields.Int(metadata={"description": "accepted events of a type a newer 1.x minor added, "
                                                             "stored and processed once the server knows the type"})
    # A 200 duplicate: the counts, errors and duplicate ids above are the first reply's, replayed.
    original_correlation_id = fields.Str()
    replay_of_first_reply = fields.Bool()
    original_status = fields.Str(metadata={"enum": ["accepted", "partially_accepted"]})
    original_received_at = fields.Str()
    first_reply_details_unknown = fields.Bool()


class JobSchema(Schema):
    status = fields.Str(required=True)
    attempts = fields.Int(required=True)
    task_id = fields.Str(allow_none=True)
    is_replay = fields.Bool()
    started_at = fields.Str(allow_none=True)
    finished_at = fields.Str(allow_none=True)
    duration_ms = fields.Int(allow_none=True)
    error = fields.Str(allow_none=True)


class BatchSchema(Schema):
    batch_id = fields.UUID(required=True)
    developer_id = fields.Str(required=True)
    correlation_id = fields.Str(required=True)
    status = fields.Str(required=True, metadata={"enum": [s.value for s in BatchStatus]})
    source = fields.Str(required=True)
    received = fields.Int(required=True)
    accepted = fields.Int(required=True)
    duplicates = fields.Int(required=True)
    rejected = fields.Int(required=True)
    quarantined = fields.Int(required=True, metadata={
        "description": "Accepted events that a job could not process: recorded, alerted and skipped"})
    first_ts = fields.Str(allow_none=True, required=True)
    last_ts = fields.Str(allow_none=True, required=True)
    received_at = fields.Str(allow_none=True, required=True)
    sent_at = fields.Str(allow_none=True, required=True)
    dispatched_at = fields.Str(allow_none=True, required=True)
    processing_started_at = fields.Str(allow_none=True, required=True)
    completed_at = fields.Str(allow_none=True, required=True)
    updated_at = fields.Str(allow_none=True, required=True)
    replay_count = fields.Int(required=True)
    dispatch_count = fields.Int(required=True)
    last_error = fields.Str(allow_none=True, required=True)
    jobs = fields.Dict(keys=fields.Str(), values=fields.Nested(JobSchema), required=True)
    correlation_id_of_request = fields.Str(required=True)


class AuditRecordSchema(Schema):
    id = fields.Int(required=True)
    created_at = fields.Str(required=True)
    correlation_id = fields.Str(allow_none=True, required=True)
    batch_id = fields.Str(required=True)
    step = fields.Str(required=True)
    is_replay = fields.Bool(required=True)
    details = fields.Dict(allow_none=True, required=True)
    sealed = fields.Bool(required=True)
    seal_seq = fields.Int(allow_none=True, required=True)
    content_hash = fields.Str(allow_none=True, required=True)
    prev_hash = fields.Str(allow_none=True, required=True)
    sealed_at = fields.Str(allow_none=True, required=True)
    intact = fields.Bool(allow_none=True, required=True)


class AuditTrailSchema(Schema):
    batch_id = fields.UUID(required=True)
    developer_id = fields.Str(required=True)
    records = fields.List(fields.Nested(AuditRecordSchema), required=True)


class MetricBucketSchema(Schema):
    bucket_start = fields.Str(required=True, metadata={
        "description": "Start of the bucket with its UTC offset: a UTC hour, or local midnight in the developer's "
                       "time zone for days and ISO weeks (Monday)"})
    events = fields.Int(required=True, metadata={"description": "Stored events in the bucket"})
    active_seconds = fields.Float(required=True, metadata={
        "description": "Sum of the gaps between consecutive events that are at most the idle timeout, split across "
                       "buckets by wall clock; never more than the bucket's length"})
    edits = fields.Int(required=True, metadata={"description": "file.edit events"})
    lines_added = fields.Int(required=True, metadata={"description": "Sum of file.edit lines_added"})
    lines_deleted = fields.Int(required=True, metadata={"description": "Sum of file.edit lines_deleted"})
    saves = fields.Int(required=True, metadata={"description": "file.save events"})
    error_events = fields.Int(required=True, metadata={
        "description": "Failed builds, test runs with failures, non-zero terminal exits, diagnostics with errors"})
    builds = fields.Int(required=True, metadata={"description": "build.result events"})
    build_failures = fields.Int(required=True, metadata={"description": "build.result events with success false"})
    tests_passed = fields.Int(required=True, metadata={"description": "Sum of test.result passed"})
    tests_failed = fields.Int(required=True, metadata={"description": "Sum of test.result failed"})
    debug_seconds = fields.Float(required=True, metadata={
        "description": "Wall-clock time covered by at least one debug session (start to the earliest of its stop, "
                       "the developer's first idle gap, 8 hours) or debugging-heartbeat run"})
    typed_chars = fields.Int(required=True, metadata={"description": "Sum of file.edit chars_typed"})
    ai_chars_inserted = fields.Int(required=True, metadata={
        "description": "Sum of chars_inserted of ai.suggestion_accepted and ai.chat_insert"})
    ai_share = fields.Float(required=True, allow_none=True, metadata={
        "description": "ai_chars_inserted / (ai_chars_inserted + typed_chars); null when both are 0"})
    commits = fields.Int(required=True, metadata={"description": "git.commit events"})


class MetricsSchema(Schema):
    developer_id = fields.Str(required=True)
    granularity = fields.Str(required=True, metadata={"enum": ["hour", "day", "week"]})
    timezone = fields.Str(required=True, metadata={"description": "The developer's IANA time zone"})
    # Echo of the query's bounds (null when not given).
    from_ = fields.Str(data_key="from", allow_none=True, required=True)
    to = fields.Str(allow_none=True, required=True)
    buckets = fields.List(fields.Nested(MetricBucketSchema), required=True)


class BreakdownItemSchema(Schema):
    name = fields.Str(required=True, metadata={"description": "Language or project; 'unknown' when none was sent"})
    active_seconds = fields.Float(required=True)


class BreakdownDaySchema(Schema):
    day_start = fields.Str(required=True, metadata={"description": "Local midnight with its UTC offset"})
    total_seconds = fields.Float(required=True)
    items = fields.List(fields.Nested(BreakdownItemSchema), required=True)


class BreakdownSchema(Schema):
    developer_id = fields.Str(required=True)
    by = fields.Str(required=True, metadata={"enum": ["language", "project"]})
    timezone = fields.Str(required=True)
    from_ = fields.Str(data_key="from", allow_none=True, required=True)
    to = fields.Str(allow_none=True, required=True)
    days = fields.List(fields.Nested(BreakdownDaySchema), required=True)


class AlertSchema(Schema):
    alert_id = fields.UUID(required=True)
    developer_id = fields.Str(required=True)
    pattern = fields.Str(required=True)
    severity = fields.Str(required=True, metadata={"enum": ["low", "medium", "high", "critical"]})
    window_start = fields.Str(required=True)
    window_end = fields.Str(required=True)
    details = fields.Dict(required=True)
    recommendation = fields.Str(required=True)
    batch_id = fields.UUID(required=True, allow_none=True, metadata={
        "description": "The batch whose processing last changed the alert; null when a background recompute did"})
    correlation_id = fields.Str(required=True)
    detected_at = fields.Str(required=True)
    updated_at = fields.Str(allow_none=True, required=True)
    status = fields.Str(required=True, metadata={"enum": ["open", "acknowledged", "withdrawn"]})
    acknowledged_at = fields.Str(allow_none=True, required=True)
    stale = fields.Bool(required=True)
    version = fields.Int(required=True, metadata={"description": "Bumped by every change of the alert"})
    deliveries = fields.List(fields.Raw(), required=True)


class StoredEventSchema(Schema):
    event_id = fields.UUID(required=True)
    batch_id = fields.UUID(required=True)
    seq = fields.Int(required=True, metadata={"description": "Position of the event in its batch"})
    type = fields.Str(required=True)
    schema_version = fields.Str(required=True)
    corrected_timestamp = fields.Str(required=True, metadata={"description": "Clock-skew corrected time (UTC)"})
    received_at = fields.Str(required=True)
    event = fields.Dict(required=True, metadata={"description": "The event exactly as the client sent it"})


class EventPageSchema(Schema):
    events = fields.List(fields.Nested(StoredEventSchema), required=True)
    next_cursor = fields.Str(allow_none=True, required=True, metadata={
        "description": "Pass as `cursor` for the next page; null on the last page"})
    batch_id = fields.UUID()
    alert_id = fields.UUID()
    pattern = fields.Str()
    window_start = fields.Str()
    window_end = fields.Str()


class RecomputeSchema(Schema):
    pending = fields.Bool(required=True)
    progress = fields.Float(required=True, metadata={"description": "0..1 of the history recomputed"})
    from_ = fields.Str(data_key="from")
    until = fields.Str()
    done_until = fields.Str()


class DeveloperSettingsSchema(Schema):
    developer_id = fields.Str(required=True)
    timezone = fields.Str(required=True, metadata={"description": "IANA time zone of the developer's local days"})
    idle_timeout_seconds = fields.Int(required=True, metadata={"minimum": 60, "maximum": 3600})
    recompute = fields.Nested(RecomputeSchema, required=True)


class ImportJobSchema(Schema):
    job_id = fields.UUID(required=True)
    developer_id = fields.Str(required=True)
    source = fields.Str(required=True)
    status = fields.Str(required=True, metadata={"enum": ["pending", "running", "done", "failed"]})
    file_bytes = fields.Int(required=True)
    bytes_read = fields.Int(required=True)
    progress = fields.Float(required=True, metadata={"description": "0..1 of the file read and stored"})
    batches_done = fields.Int(required=True)
    read = fields.Int(required=True, metadata={"description": "Heartbeats read from the file"})
    accepted = fields.Int(required=True)
    duplicates = fields.Int(required=True, metadata={"description": "Already stored (an earlier import or live)"})
    rejected = fields.Int(required=True)
    errors = fields.List(fields.Dict(), required=True, metadata={
        "description": "The first 100 rejections: day_index, date, heartbeat_index, code, field, message"})
    failure = fields.Str(allow_none=True, required=True, metadata={"description": "Why the file could not be read"})
    created_at = fields.Str(required=True)
    started_at = fields.Str(allow_none=True, required=True)
    finished_at = fields.Str(allow_none=True, required=True)


class AlertListSchema(Schema):
    developer_id = fields.Str(required=True)
    alerts = fields.List(fields.Nested(AlertSchema), required=True)


def _errors(*codes: int) -> dict[str, Any]:
    text = {400: "Malformed request: the details name the field", 401: "Missing or unknown token",
            403: "Token may not act for this developer / not admin", 404: "Not found",
            408: "Headers or body not received in time", 409: "batch_id reused for different content",
            413: "Too many events, body, envelope or JSON values too large", 415: "Not JSON",
            429: "Rate limited: requests, events or bytes per second (Retry-After)",
            503: "Storage unavailable (Retry-After)"}
    return {str(c): {"description": text[c], "content": {"application/json": {"schema": "Error"}}} for c in codes}


def _ok(schema: str, description: str, code: int = 200) -> dict[str, Any]:
    return {str(code): {"description": description, "content": {"application/json": {"schema": schema}}}}


def _path_param(name: str, fmt: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if fmt:
        schema["format"] = fmt
    return {"in": "path", "name": name, "required": True, "schema": schema}


def _query(name: str, description: str, **schema: Any) -> dict[str, Any]:
    return {"in": "query", "name": name, "required": False, "description": description,
            "schema": {"type": "string", **schema}}


@cache
def build_spec() -> dict[str, Any]:
    plugin = MarshmallowPlugin()
    spec = APISpec(title="devpulse", version="1.0.0", openapi_version="3.0.3", plugins=[plugin],
                   info={"description": "Developer-activity ingestion, metrics and alerts."})
    plugin.map_to_openapi_type(Rfc3339, "string", "date-time")
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    for name, schema in (("Envelope", EnvelopeSchema), ("Event", EventSchema), ("Error", ErrorSchema),
                         ("IngestResult", IngestResultSchema), ("Batch", BatchSchema), ("Metrics", MetricsSchema),
                         ("Breakdown", BreakdownSchema), ("EventPage", EventPageSchema),
                         ("DeveloperSettings", DeveloperSettingsSchema),
                         ("Alert", AlertSchema), ("AlertList", AlertListSchema),
                         ("AuditTrail", AuditTrailSchema), ("ImportJob", ImportJobSchema)):
        spec.components.schema(name, schema=schema)
    secured: list[dict[str, list[str]]] = [{"bearer": []}]
    spec.path(path="/api/workflow/events/orchestrate", operations={"post": {
        "summary": "Ingest one batch of events", "security": secured,
        "requestBody": {"required": True, "content": {"application/json": {"schema": "Envelope"}}},
        "responses": {**_ok("IngestResult", "Batch accepted (202) or partially accepted", 202),
                      **_ok("IngestResult", "Duplicate resend of a stored batch"),
                      "422": {"description": "No event valid", "content": {"application/json": {
                          "schema": "IngestResult"}}},
                      **_errors(400, 401, 403, 408, 409, 413, 415, 429, 503)}}})
    # A batch id is unique per developer only: an admin chooses among the developers who use one.
    owner = _query("developer_id", "Admin: whose batch of this id (needed when several developers use it; a "
                                   "developer token always reads its own)")
    ambiguous = {"409": {"description": "Admin: several developers use this batch id (ambiguous_batch_id, naming "
                                        "them); choose one with ?developer_id=",
                         "content": {"application/json": {"schema": "Error"}}}}
    spec.path(path="/api/workflow/batches/{batch_id}", operations={"get": {
        "summary": "A batch's lifecycle", "security": secured,
        "parameters": [_path_param("batch_id", "uuid"), owner],
        "responses": {**_ok("Batch", "The batch"), **_errors(400, 401, 404, 503), **ambiguous}}})
    spec.path(path="/api/workflow/batches/{batch_id}/audit", operations={"get": {
        "summary": "A batch's audit trail with each record's seal state (admin)", "security": secured,
        "parameters": [_path_param("batch_id", "uuid"), owner],
        "responses": {**_ok("AuditTrail", "The audit records in order"), **_errors(400, 401, 403, 404, 503),
                      **ambiguous}}})
    spec.path(path="/api/developers/{developer_id}/metrics", operations={"get": {
        "summary": "Metric buckets", "security": secured,
        "parameters": [_path_param("developer_id"),
                       _query("from", "RFC 3339 timestamp (encode '+' as %2B) or a date (local midnight)"),
                       _query("to", "RFC 3339 timestamp (encode '+' as %2B) or a date (local midnight)"),
                       _query("granularity", "hour (UTC), day or week (the developer's zone)",
                              enum=["hour", "day", "week"])],
        "responses": {**_ok("Metrics", "Buckets"), **_errors(400, 401, 403, 404, 503)}}})
    page = [_query("limit", "1..1000 (default 100)"), _query("cursor", "next_cursor of the previous page")]
    spec.path(path="/api/workflow/batches/{batch_id}/events", operations={"get": {
        "summary": "A batch's stored events in batch order, paginated", "security": secured,
        "parameters": [_path_param("batch_id", "uuid"), owner, *page],
        "responses": {**_ok("EventPage", "Events"), **_errors(400, 401, 404, 503), **ambiguous}}})
    spec.path(path="/api/alerts/{alert_id}/events", operations={"get": {
        "summary": "The stored events an alert was measured from, in time order, paginated", "security": secured,
        "parameters": [_path_param("alert_id", "uuid"), *page],
        "responses": {**_ok("EventPage", "Events"), **_errors(400, 401, 404, 503)}}})
    spec.path(path="/api/developers/{developer_id}/settings", operations={
        "get": {"summary": "Time zone, idle timeout and the progress of a background recompute", "security": secured,
                "parameters": [_path_param("developer_id")],
                "responses": {**_ok("DeveloperSettings", "Settings"), **_errors(401, 403, 404, 503)}},
        "put": {"summary": "Change settings; a change recomputes derived rows in the background",
                "security": secured, "parameters": [_path_param("developer_id")],
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "properties": {
                        "timezone": {"type": "string", "example": "Europe/Berlin"},
                        "idle_timeout_seconds": {"type": "integer", "minimum": 60, "maximum": 3600}}},
                    "example": {"timezone": "Europe/Berlin", "idle_timeout_seconds": 600}}}},
                "responses": {**_ok("DeveloperSettings", "Settings"), **_errors(400, 401, 403, 404, 503)}}})
    spec.path(path="/api/developers/{developer_id}/breakdown", operations={"get": {
        "summary": "Active seconds per local day by language or project", "security": secured,
        "parameters": [_path_param("developer_id"), _query("by", "language or project", enum=["language", "project"]),
                       _query("from", "RFC 3339 timestamp or a date"), _query("to", "RFC 3339 timestamp or a date")],
        "responses": {**_ok("Breakdown", "Days"), **_errors(400, 401, 403, 404, 503)}}})
    range_params = [_query("from", "RFC 3339 timestamp or a date (inclusive)"),
                    _query("to", "RFC 3339 timestamp or a date (exclusive)")]
    spec.path(path="/api/developers/{developer_id}/events/export", operations={"get": {
        "summary": "Every stored event once, streamed as an attachment", "security": secured,
        "parameters": [_path_param("developer_id"), *range_params,
                       _query("format", "ndjson (default), csv or parquet", enum=["ndjson", "csv", "parquet"])],
        "responses": {"200": {"description": "The events", "content": {
            "application/x-ndjson": {}, "text/csv": {}, "application/vnd.apache.parquet": {}}},
            **_errors(400, 401, 403, 404, 503)}}})
    spec.path(path="/api/developers/{developer_id}/metrics/export", operations={"get": {
        "summary": "Metric buckets, one row each, streamed as an attachment", "security": secured,
        "parameters": [_path_param("developer_id"), *range_params,
                       _query("granularity", "hour, day (default) or week", enum=["hour", "day", "week"]),
                       _query("format", "csv (default) or ndjson", enum=["csv", "ndjson"])],
        "responses": {"200": {"description": "The buckets", "content": {"text/csv": {}, "application/x-ndjson": {}}},
                      **_errors(400, 401, 403, 404, 503)}}})
    spec.path(path="/api/developers/{developer_id}/import/wakatime", operations={"post": {
        "summary": "Import a WakaTime data export in the background (status: the Location header)",
        "security": secured, "parameters": [_path_param("developer_id")],
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": {"type": "object", "description": "The export: {user, range, days}"}},
            "multipart/form-data": {"schema": {"type": "object", "properties": {
                "file": {"type": "string", "format": "binary"}}}}}},
        "responses": {**_ok("ImportJob", "Job recorded and queued", 202), **_errors(400, 401, 403, 503)}}})
    spec.path(path="/api/developers/{developer_id}/import/{job_id}", operations={"get": {
        "summary": "An import's status, counts, progress and first errors", "security": secured,
        "parameters": [_path_param("developer_id"), _path_param("job_id", "uuid")],
        "responses": {**_ok("ImportJob", "The job"), **_errors(400, 401, 403, 404, 503)}}})
    spec.path(path="/api/developers/{developer_id}/alerts", operations={"get": {
        "summary": "Alerts, highest severity first, then newest", "security": secured,
        "parameters": [_path_param("developer_id"), _query(
                           "status", "open, acknowledged or withdrawn (default: open and acknowledged)",
                           enum=["open", "acknowledged", "withdrawn"]),
                       _query("since", "RFC 3339", format="date-time")],
        "responses": {**_ok("AlertList", "Alerts"), **_errors(400, 401, 403, 404, 503)}}})
    spec.path(path="/api/developers/{developer_id}/alerts/{alert_id}/ack", operations={"post": {
        "summary": "Acknowledge an alert", "security": secured,
        "parameters": [_path_param("developer_id"), _path_param("alert_id", "uuid")],
        "responses": {**_ok("Alert", "The acknowledged alert"), **_errors(400, 401, 403, 404, 503)}}})
    spec.path(path="/api/developers/{developer_id}/alerts/stream", operations={"get": {
        "summary": "Server-Sent Events: alerts announced (new or escalated, not stale) after the stream's position",
        "description": "Each alert is `event: alert` with `id: <txid>-<alert_id>`; the first block carries the "
                       "position the stream opened at. Send the last id received as `Last-Event-ID` when "
                       "reconnecting: every alert announced since is sent first. The stream ends with `event: end` "
                       "(reason max_seconds, token_revoked, slot_lost or unavailable); at most STREAM_MAX_PER_TOKEN "
                       "open streams per token (429 beyond).",
        "security": secured,
        "parameters": [
            _path_param("developer_id"),
            _query("max_seconds", "end the stream after this long (0 or absent: the server's STREAM_MAX_SECONDS, "
                                  "which also caps it)", type="number", minimum=0),
            _query("last_event_id", "as the Last-Event-ID header, for clients that cannot set it"),
            {"name": "Last-Event-ID", "in": "header", "required": False, "schema": {"type": "string"},
             "description": "the `id` of the last block received: resume after it"},
        ],
        "responses": {"200": {"description": "text/event-stream", "content": {"text/event-stream": {}}},
                      **_errors(400, 401, 403, 404, 429, 503)}}})
    spec.path(path="/healthz", operations={"get": {"summary": "Process alive",
                                                    "responses": {"200": {"description": "ok"}}}})
    spec.path(path="/readyz", operations={"get": {"summary": "PostgreSQL, broker, migrations at head",
                                                   "responses": {"200": {"description": "ready"},
                                                                 "503": {"description": "not ready"}}}})
    spec.path(path="/metrics", operations={"get": {"summary": "Prometheus metrics",
                                                    "responses": {"200": {"description": "text format"}}}})
    spec.path(path="/api/admin/circuit-breakers", operations={"get": {
        "summary": "Named circuit breakers (admin)", "security": secured,
        "responses": {"200": {"description": "Breakers"}, **_errors(401, 403)}}})
    spec.path(path="/api/admin/circuit-breakers/{name}/reset", operations={"post": {
        "summary": "Close a breaker (admin)", "security": secured, "parameters": [_path_param("name")],
        "responses": {"200": {"description": "Reset"}, **_errors(401, 403, 404)}}})
    spec.path(path="/api/admin/developers/{developer_id}", operations={"delete": {
        "summary": "Erase everything stored of a developer (admin; audited, cannot be undone)", "security": secured,
        "parameters": [_path_param("developer_id")],
        "responses": {"200": {"description": "Counts of what was deleted"}, **_errors(401, 403, 404, 503)}}})
    return spec.to_dict()


@bp.get("/openapi.json")
def openapi_json():
    return jsonify(build_spec())


@bp.get("/docs")
def docs():
    """A self-contained page (no CDN): every operation with its parameters and schemas."""
    spec = build_spec()
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>devpulse API</title>",
             "<style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}"
             "pre{background:#f5f5f5;padding:.75rem;overflow:auto}h3{margin-bottom:.2rem}</style></head><body>",
             "<h1>devpulse API</h1><p>Machine-readable: <a href='/openapi.json'>/openapi.json</a></p>"]
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            codes = ", ".join(sorted(op.get("responses", {})))
            parts.append(f"<h3><code>{method.upper()} {html.escape(path)}</code></h3>"
                         f"<p>{html.escape(op.get('summary', ''))}<br>Responses: {codes}</p>")
    parts.append("<h2>Schemas</h2>")
    for name, schema in spec["components"]["schemas"].items():
        parts.append(f"<h3>{name}</h3><pre>{html.escape(json.dumps(schema, indent=2))}</pre>")
    parts.append("</body></html>")
    return Response("".join(parts), mimetype="text/html")
