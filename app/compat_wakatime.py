"""WakaTime compatibility: existing WakaTime plugins and command-line clients report to devpulse unchanged.

    POST /api/compat/wakatime/v1/users/current/heartbeats.bulk   a JSON array of heartbeats (one batch)
    POST /api/compat/wakatime/v1/users/current/heartbeats        one heartbeat
    GET  /api/compat/wakatime/v1/users/current/statusbar/today   today's coding time, as the plugins show it

Auth: `Authorization: Basic base64(<token>)` (what WakaTime clients send) or `Bearer <token>`, with a *developer*
token; an admin token gets 403 (a heartbeat must belong to a developer).

Each heartbeat becomes one `editor.heartbeat` event (schema 1.1) whose payload is the heartbeat itself, and the
request becomes one native batch body that goes through `prepare_batch(..., source="wakatime")` and `ingest()`:
the same validation, persistence, pipeline, metrics and alerts as the native endpoint.

Identifiers (deterministic, so the plugins' offline-queue resends deduplicate exactly; like every batch and event id
they are deduplicated per developer, and they also name the developer, so two developers' identical heartbeats
never share an id):
- namespace: WAKATIME_NAMESPACE = c5683437-f003-51eb-8338-4998b98e3703 (= uuid5(NAMESPACE_URL,
  "urn:devpulse:compat:wakatime"));
- event_id = uuid5(WAKATIME_NAMESPACE, "heartbeat:" + canonical JSON of
  [developer_id, entity, type, category, project, branch, language, is_write, time]) with absent fields as null
  and a numeric `time` as a float (1700000000 and 1700000000.0 are the same heartbeat);
- batch_id = uuid5(WAKATIME_NAMESPACE, "batch:<developer_id>:" + sha256 hex of the canonical JSON of the
  request body). The canonical JSON of the parsed body is used rather than the raw bytes, which this module never
  sees (the shared body reader gunzips and parses them); the same heartbeats resent, even re-encoded or gzipped,
  get the same batch_id.
"Canonical JSON" is `json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)`.

Clock skew: a heartbeat's `time` comes from the client's clock, and WakaTime sends no per-request send time, so
the batch's `sent_at` is set to the server's receive time and clock-skew correction is a no-op for heartbeats:
the stored `corrected_ts` equals `time`.

Payload normalization, as WakaTime's own API is lenient in the same two ways (nothing else is touched; unknown
fields are kept as sent):
- WakaTime clients send null for optional values they do not know (e.g. `lineno`, `lines`); a null for an optional
  field that the catalog does not declare nullable is dropped (null means absent);
- the command-line client sends `--lineno`/`--cursorpos` as strings ("3"); a string of 1-15 ASCII digits in a
  count field (lines, lineno, cursorpos, line_additions, line_deletions) becomes that integer.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, g, jsonify, request

from activity.wakatime_mapping import (  # noqa: F401 (WAKATIME_NAMESPACE, request_batch_id: the documented ids)
    EVENT_ID_FIELDS,
    WAKATIME_NAMESPACE,
    heartbeat_event_id,
    native_batch_body,
    request_batch_id,
)
from activity.wakatime_mapping import rfc3339 as _rfc3339
from app.auth import current_principal
from app.errors import ApiError
from app.ingest import ingest
from app.ingest.prepare import prepare_batch
from app.ingest.refusals import audit_refusals
from app.rate_limit import read_json_body_within_limits
from app.settings import settings
from app.storage import storage
from models.developer_settings import preferences
from models.ingest import PreparedBatch, Rejection
from models.metrics_read import breakdown, metric_buckets

bp = Blueprint("compat_wakatime", __name__, url_prefix="/api/compat/wakatime/v1")

SOURCE = "wakatime"
# The fields echoed back in a heartbeat's "data" (WakaTime echoes the stored heartbeat).
_ECHOED_FIELDS = (*EVENT_ID_FIELDS, "lines", "lineno", "cursorpos", "line_additions", "line_deletions")


def build_batch_body(developer_id: str, heartbeats: list[Any], body: Any, received_at: datetime) -> dict[str, Any]:
    """The native batch body for these heartbeats (sent_at = received_at: see the module docstring)."""
    user_agent = request.headers.get("User-Agent", "")
    client: dict[str, str] = {"editor": "wakatime"}
    if user_agent:
        client["extension_version"] = user_agent[:64]
    return native_batch_body(developer_id, heartbeats, batch_id=request_batch_id(developer_id, body),
                             sent_at=received_at, client=client)


def _developer_id() -> str:
    principal = current_principal()
    # The one ingest rule (app/auth.py ensure_may_ingest_for): a token posts for its own developer. A WakaTime
    # request names no developer, so a token without one (admin, --ingest-for-all) has nobody to post for.
    if principal.developer_id is None:
        raise ApiError(403, "developer_token_required",
                       "Heartbeats belong to a developer: use a developer token, not an admin token.",
                       [{"field": "Authorization", "message": "not a developer token"}])
    return principal.developer_id


def _process(developer_id: str, heartbeats: list[Any], body: Any) -> tuple[dict[str, Any], PreparedBatch]:
    """Store the heartbeats as one batch; returns the native batch body and the prepared batch."""
    cfg = settings()
    received_at = datetime.now(UTC)
    native = build_batch_body(developer_id, heartbeats, body, received_at)
    prepared = prepare_batch(native, correlation_id=g.correlation_id, received_at=received_at, settings=cfg,
                             source=SOURCE)
    try:
        ingest(prepared)  # a batch resent as a whole answers "duplicate": its heartbeats are stored already
    except ApiError as exc:
        # No heartbeat valid: nothing is stored, and every heartbeat gets its own 400 entry.
        if exc.status != 422 or exc.code != "no_valid_events":
            raise
    return native, prepared


def _data(event_id: str, heartbeat: dict[str, Any]) -> dict[str, Any]:
    return {"id": event_id, **{k: heartbeat[k] for k in _ECHOED_FIELDS if k in heartbeat}}


def _error_text(rejection: Rejection) -> str:
    return f"{rejection.message} ({rejection.code})"


def _entries(native: dict[str, Any], prepared: PreparedBatch, heartbeats: list[Any]) -> list[Any]:
    rejected = {r.index: r for r in prepared.rejections}
    entries: list[Any] = []
    for index, (event, heartbeat) in enumerate(zip(native["events"], heartbeats, strict=True)):
        if index in rejected:
            entries.append([{"error": _error_text(rejected[index])}, 400])
        else:
            entries.append([{"data": _data(event["event_id"], heartbeat)}, 201])
    return entries


@bp.post("/users/current/heartbeats.bulk")
@audit_refusals
def heartbeats_bulk():
    developer_id = _developer_id()
    body = read_json_body_within_limits(settings(), lambda b: len(b) if isinstance(b, list) else 0)
    if not isinstance(body, list):
        raise ApiError(400, "invalid_heartbeats", "The request body must be a JSON array of heartbeats.",
                       [{"field": "_body", "message": "expected a JSON array"}])
    if not body:
        return jsonify({"responses": []}), 201
    native, prepared = _process(developer_id, body, body)
    return jsonify({"responses": _entries(native, prepared, body)}), 201


@bp.post("/users/current/heartbeats")
@audit_refusals
def heartbeat_single():
    developer_id = _developer_id()
    body = read_json_body_within_limits(settings(), lambda b: 1)
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_heartbeat", "The request body must be one heartbeat (a JSON object).",
                       [{"field": "_body", "message": "expected a JSON object"}])
    native, prepared = _process(developer_id, [body], body)
    if prepared.rejections:
        rejection = prepared.rejections[0]
        # ingest() found no valid event and wrote the `refused` record already.
        raise ApiError(400, "invalid_heartbeat", f"The heartbeat is invalid: {rejection.message}",
                       [rejection.as_dict()], audited=True)
    return jsonify({"data": _data(native["events"][0]["event_id"], body)}), 201


def _duration_text(total_seconds: float) -> dict[str, Any]:
    """WakaTime's grand_total block: 5400 s -> decimal "1.50", digital "1:30", text "1 hr 30 mins"."""
    whole = int(total_seconds)
    hours, minutes, seconds = whole // 3600, whole % 3600 // 60, whole % 60

    def unit(n: int, name: str) -> str:
        return f"{n} {name}{'' if n == 1 else 's'}"

    if hours or minutes:
        text = " ".join(unit(n, name) for n, name in ((hours, "hr"), (minutes, "min")) if n)
    else:
        text = unit(seconds, "sec")
    return {
        "decimal": f"{hours + minutes / 60:.2f}",
        "digital": f"{hours}:{minutes:02d}",
        "hours": hours,
        "minutes": minutes,
        "text": text,
        "total_seconds": float(total_seconds),
    }


@bp.get("/users/current/statusbar/today")
def statusbar_today():
    """Today's active coding time in the developer's time zone, with its languages and projects."""
    developer_id = _developer_id()

    def today(s):
        prefs = preferences(s, developer_id)
        zone = ZoneInfo(prefs.timezone)
        start = datetime.combine(datetime.now(zone).date(), time(), zone)
        end = datetime.combine(start.date() + timedelta(days=1), time(), zone)
        days = metric_buckets(s, developer_id, "day", timezone=prefs.timezone, start=start, end=end)
        parts = {by: breakdown(s, developer_id, by, timezone=prefs.timezone, start=start, end=end)
                 for by in ("language", "project")}
        return prefs, start, end, days, parts

    prefs, start, end, days, parts = storage().transaction(today)
    total = float(days[0].values["active_seconds"] or 0.0) if days else 0.0

    def items(rows: list[tuple[datetime, str, float]]) -> list[dict[str, Any]]:
        return [{"name": key, "percent": round(100 * seconds / total, 2) if total else 0.0,
                 **_duration_text(seconds)} for _, key, seconds in rows]

    return jsonify({
        "data": {
            "grand_total": _duration_text(total),
            "categories": [],
            "languages": items(parts["language"]),
            "projects": items(parts["project"]),
            "range": {
                "date": start.date().isoformat(),
                "start": _rfc3339(start),
                "end": _rfc3339(end - timedelta(seconds=1)),
                "text": "Today",
                "timezone": prefs.timezone,
            },
            "is_up_to_date": True,
        },
    }), 200
