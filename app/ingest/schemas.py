"""Marshmallow schemas of the ingest request: the envelope, and one event at a time.

Events are validated one by one (not as a nested list) so that a bad event is
rejected alone and never blocks the valid ones beside it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

from activity.clock import parse_rfc3339

DEVELOPER_ID_RE = r"^[A-Za-z0-9._@-]{1,128}$"


class Rfc3339(fields.Field):
    """An RFC 3339 timestamp with an explicit UTC offset."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        if not isinstance(value, str):
            raise ValidationError("must be an RFC 3339 timestamp string with an offset")
        try:
            return parse_rfc3339(value)
        except ValueError as exc:
            raise ValidationError(str(exc)) from exc

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return None if value is None else value.isoformat()


class ClientSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    extension_version = fields.Str(validate=validate.Length(max=64))
    editor = fields.Str(validate=validate.Length(max=64))
    editor_version = fields.Str(validate=validate.Length(max=64))
    os = fields.Str(validate=validate.Length(max=64))


class EnvelopeSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    batch_id = fields.UUID(required=True)
    developer_id = fields.Str(required=True, validate=validate.Regexp(
        DEVELOPER_ID_RE, error="must be 1-128 characters of A-Z, a-z, 0-9, '.', '_', '@', '-'"))
    sent_at = Rfc3339(required=True)
    schema_version = fields.Str(validate=validate.Length(min=1, max=16))
    client = fields.Nested(ClientSchema)
    events = fields.List(
        fields.Raw(), required=True, validate=validate.Length(min=1, error="must hold at least 1 event")
    )


class EventSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    event_id = fields.UUID(required=True)
    type = fields.Str(required=True, validate=validate.Length(min=1, max=64))
    timestamp = Rfc3339(required=True)
    schema_version = fields.Str(validate=validate.Length(min=1, max=16))
    session_id = fields.Str(allow_none=True, validate=validate.Length(max=128))
    # Schema 1.1: the project the event belongs to (breakdowns by project); WakaTime heartbeats carry theirs.
    project = fields.Str(allow_none=True, validate=validate.Length(min=1, max=128))
    payload = fields.Dict(keys=fields.Str(), load_default=dict)


envelope_schema = EnvelopeSchema()
event_schema = EventSchema()


def flatten_errors(messages: Any, prefix: str = "") -> list[tuple[str, str]]:
    """marshmallow's nested message dict -> [(dotted.field, message)]."""
    out: list[tuple[str, str]] = []
    if isinstance(messages, dict):
        for key, value in messages.items():
            # marshmallow reports a nested field of the wrong type (e.g. "client": "x") under "_schema".
            name = prefix if key == "_schema" and prefix else f"{prefix}.{key}" if prefix else str(key)
            out.extend(flatten_errors(value, name))
    elif isinstance(messages, list):
        for item in messages:
            if isinstance(item, dict | list):
                out.extend(flatten_errors(item, prefix))
            else:
                out.append((prefix or "_schema", str(item)))
    else:
        out.append((prefix or "_schema", str(messages)))
    return out
