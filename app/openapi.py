"""The OpenAPI 3 description of every endpoint, generated from the marshmallow schemas.

Served at /openapi.json, explorable at /docs (Swagger UI: paste a token, try requests) and listed without
JavaScript at /docs/reference. Request schemas are the ones the endpoints validate with; the events' schemas are
generated from the catalog (app/openapi_events.py); response schemas are declared in app/openapi_responses.py.
"""

from __future__ import annotations

import html
import json
from functools import cache
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, Response, jsonify, render_template

from app.ingest.schemas import EnvelopeSchema, EventSchema, Rfc3339
from app.openapi_events import EXAMPLE_TIMESTAMP, event_union, example_payload
from app.openapi_responses import (
    AlertListSchema,
    AlertSchema,
    AuditTrailSchema,
    BatchSchema,
    BreakdownSchema,
    DeveloperSettingsSchema,
    ErrorSchema,
    EventPageSchema,
    ImportJobSchema,
    IngestResultSchema,
    MetricsSchema,
)

bp = Blueprint("openapi", __name__)


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


# The values Swagger UI pre-fills for "Try it out" (any developer id works with an admin token).
_PARAM_EXAMPLES: dict[str, Any] = {
    "developer_id": "dev-1", "batch_id": "3f2c8a4e-9b1d-4c6e-8f0a-5d7b2e1c9a34",
    "alert_id": "b6a1d2c3-4e5f-4a7b-8c9d-0e1f2a3b4c5d", "name": "broker", "from": "2026-11-20", "to": "2026-11-27",
    "granularity": "day", "by": "language", "limit": "100", "status": "open", "since": EXAMPLE_TIMESTAMP,
    "max_seconds": 30, "job_id": "7c9e6679-7425-40de-944b-e07fc1f90ae7"}


def _path_param(name: str, fmt: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if fmt:
        schema["format"] = fmt
    return {"in": "path", "name": name, "required": True, "schema": schema, "example": _PARAM_EXAMPLES[name]}


def _query(name: str, description: str, **schema: Any) -> dict[str, Any]:
    param = {"in": "query", "name": name, "required": False, "description": description,
             "schema": {"type": "string", **schema}}
    if name in _PARAM_EXAMPLES:
        param["example"] = _PARAM_EXAMPLES[name]
    return param


def _wakatime_export_example() -> dict[str, Any]:
    """A WakaTime data export with one day of one heartbeat (the import reads `days[].heartbeats[]`)."""
    return {"user": {"username": "dev"}, "range": {"start": "2026-11-20", "end": "2026-11-20"}, "days": [
        {"date": "2026-11-20", "heartbeats": [
            {"entity": "/home/dev/project/src/app.py", "type": "file", "category": "coding",
             "time": 1795000000.0, "project": "project", "branch": "main", "language": "Python",
             "is_write": True}]}]}


def _envelope_example() -> dict[str, Any]:
    events = [("session.start", "11111111-1111-4111-8111-111111111111", "2026-11-27T09:00:00+01:00"),
              ("file.edit", "22222222-2222-4222-8222-222222222222", "2026-11-27T09:01:00+01:00"),
              ("build.result", "33333333-3333-4333-8333-333333333333", "2026-11-27T09:02:00+01:00")]
    return {"batch_id": "3f2c8a4e-9b1d-4c6e-8f0a-5d7b2e1c9a34", "developer_id": "dev-1",
            "sent_at": "2026-11-27T09:02:05+01:00", "schema_version": "1.1",
            "client": {"extension_version": "0.4.0", "editor": "vscode", "editor_version": "1.95.0", "os": "linux"},
            "events": [{"event_id": event_id, "type": event_type, "timestamp": ts, "project": "devpulse",
                        "payload": example_payload(event_type, "1.1")} for event_type, event_id, ts in events]}


def _with_event_catalog(document: dict[str, Any]) -> dict[str, Any]:
    """Replace the free-form Event (any type, any payload) with the catalog's discriminated union."""
    schemas = document["components"]["schemas"]
    schemas.update(event_union(schemas.pop("Event")))
    envelope = schemas["Envelope"]
    envelope["properties"]["events"]["items"] = {"$ref": "#/components/schemas/Event"}
    envelope["properties"]["schema_version"]["description"] = (
        "Default catalog version of the batch's events (an event's own schema_version wins): 1.0 or 1.1; a "
        "newer 1.x minor is validated as 1.1")
    envelope["example"] = _envelope_example()
    return document


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
        "description": "Each event is validated on its own against the catalog (see the `Event` schema and its "
                       "per-type `Event_<type>_<version>` schemas): invalid events are rejected alone, with the "
                       "field and the reason, and the valid ones beside them are accepted.",
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": "Envelope", "example": _envelope_example()}}},
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
            "application/json": {"schema": {"type": "object", "description": "The export: {user, range, days}"},
                                 "example": _wakatime_export_example()},
            "multipart/form-data": {"schema": {"type": "object", "properties": {
                "file": {"type": "string", "format": "binary"}}},
                "example": {"file": json.dumps(_wakatime_export_example())}}}},
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
    spec.path(path="/metrics", operations={"get": {"summary": "Prometheus metrics (Bearer METRICS_TOKEN when set)",
                                                    "responses": {"200": {"description": "text format"},
                                                                  **_errors(401)}}})
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
    return _with_event_catalog(spec.to_dict())


@bp.get("/openapi.json")
def openapi_json():
    return jsonify(build_spec())


@bp.get("/docs")
def docs():
    """Swagger UI (vendored from npm, app/static/vendor/swagger-ui/) over /openapi.json: paste a token, try requests."""
    return render_template("api_docs.html")


@bp.get("/docs/reference")
def docs_reference():
    """A self-contained page without JavaScript: every operation with its parameters and schemas."""
    spec = build_spec()
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>devpulse API</title>",
             "<style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}"
             "pre{background:#f5f5f5;padding:.75rem;overflow:auto}h3{margin-bottom:.2rem}</style></head><body>",
             "<h1>devpulse API</h1><p>Machine-readable: <a href='/openapi.json'>/openapi.json</a>; interactive: "
             "<a href='/docs'>/docs</a></p>"]
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
