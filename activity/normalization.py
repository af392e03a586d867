"""What the normalization job stores for one event: canonical language, workspace-relative path, clean payload.

Pure: the job (models/normalization.py) reads the upcast event and writes what this returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from activity.events import NormalizedEvent
from activity.languages import canonical_language, normalize_file_path

_FILE_KEYS = ("file", "entity")


@dataclass(frozen=True)
class NormalizedFields:
    language: str | None
    file_path: str | None
    payload: dict[str, Any]


def _text(payload: dict[str, Any], key: str) -> str | None:
    value = payload.get(key)
    return value if isinstance(value, str) else None


def normalize(event: NormalizedEvent) -> NormalizedFields:
    payload = dict(event.payload)
    raw_file = next((payload[k] for k in _FILE_KEYS if isinstance(payload.get(k), str)), None)
    if event.type == "editor.heartbeat" and payload.get("type") not in (None, "file"):
        raw_file = None  # a heartbeat's entity is a domain or an app name, not a path
    file_path = normalize_file_path(raw_file, _text(payload, "workspace"))
    language = canonical_language(_text(payload, "language"), file_path)
    if file_path is not None and "file" in payload:
        payload["file"] = file_path
    if language is not None and "language" in payload:
        payload["language"] = language
    return NormalizedFields(language=language, file_path=file_path, payload=payload)
