"""GET/PUT /api/developers/<id>/settings: time zone and idle timeout, with the recompute's progress."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue
from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates
from sqlalchemy.orm import Session

from app.auth import ensure_may_act_for, require_token
from app.errors import ApiError
from app.ingest.schemas import flatten_errors
from app.storage import storage
from models.developer_settings import preferences
from models.recompute import progress, request_recompute
from models.tables import DeveloperSettings

bp = Blueprint("developer_settings", __name__)


class SettingsUpdateSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    timezone = fields.Str(validate=validate.Length(min=1, max=64))
    idle_timeout_seconds = fields.Int(strict=True, validate=validate.Range(min=60, max=3600))

    @validates("timezone")
    def _known_zone(self, value: str, **_: Any) -> None:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValidationError(f"unknown time zone '{value[:64]}' (an IANA name such as Europe/Berlin)") from None


_schema = SettingsUpdateSchema()


def settings_view(session: Session, developer_id: str) -> dict[str, Any]:
    prefs = preferences(session, developer_id)
    return {"developer_id": developer_id, "timezone": prefs.timezone,
            "idle_timeout_seconds": prefs.idle_timeout_seconds,
            "recompute": progress(session.get(DeveloperSettings, developer_id))}


@bp.get("/api/developers/<developer_id>/settings")
@require_token
def get_settings(developer_id: str) -> ResponseReturnValue:
    ensure_may_act_for(developer_id)
    return jsonify(storage().transaction(lambda s: settings_view(s, developer_id)))


@bp.put("/api/developers/<developer_id>/settings")
@require_token
def put_settings(developer_id: str) -> ResponseReturnValue:
    """Change settings; a change that alters derived rows starts a background recompute of the history."""
    ensure_may_act_for(developer_id)
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_body", "The body must be a JSON object.",
                       [{"field": "_schema", "message": "expected a JSON object"}])
    update = load_settings_update(body)
    return jsonify(storage().transaction(lambda s: apply_settings(s, developer_id, update)))


def load_settings_update(body: dict[str, Any]) -> dict[str, Any]:
    """The validated update (the API's JSON body or the dashboard's form); 400 `invalid_settings` naming fields."""
    try:
        return _schema.load(body)
    except ValidationError as exc:
        details = [{"field": f, "message": m} for f, m in flatten_errors(exc.messages)]
        raise ApiError(400, "invalid_settings", "; ".join(f"{d['field']}: {d['message']}" for d in details),
                       details) from exc


def apply_settings(session: Session, developer_id: str, update: dict[str, Any]) -> dict[str, Any]:
    """Store the update; a change that alters derived rows starts a background recompute of the history."""
    row = session.get(DeveloperSettings, developer_id, with_for_update=True)
    if row is None:
        row = DeveloperSettings(developer_id=developer_id, timezone="UTC", idle_timeout_seconds=300)
        session.add(row)
    changed = any(getattr(row, key) != value for key, value in update.items())
    for key, value in update.items():
        setattr(row, key, value)
    row.updated_at = datetime.now(UTC)
    session.flush()
    if changed:
        request_recompute(session, developer_id)
    return settings_view(session, developer_id)
