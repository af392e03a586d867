"""Builders for request bodies used across the suite."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any


def iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def event(
    type_: str = "file.save", ts: datetime | None = None, *, event_id: str | None = None, version: str | None = None,
    **payload: Any,
) -> dict[str, Any]:
    if type_ in ("file.save", "file.open", "file.close") and "file" not in payload:
        payload["file"] = "src/app.py"
    ev: dict[str, Any] = {
        "event_id": event_id or str(uuid.uuid4()),
        "type": type_,
        "timestamp": iso(ts or now() - timedelta(minutes=1)),
        "payload": payload,
    }
    if version:
        ev["schema_version"] = version
    return ev


def batch(events: list[dict[str, Any]], *, developer_id: str = "dev-1", batch_id: str | None = None,
          sent_at: datetime | None = None, schema_version: str | None = "1.1") -> dict[str, Any]:
    body: dict[str, Any] = {
        "batch_id": batch_id or str(uuid.uuid4()),
        "developer_id": developer_id,
        "sent_at": iso(sent_at or now()),
        "events": events,
        "client": {"extension_version": "0.1.0", "editor": "vscode", "editor_version": "1.95.0", "os": "linux"},
    }
    if schema_version:
        body["schema_version"] = schema_version
    return body


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
