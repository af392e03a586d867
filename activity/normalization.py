"""What the normalization job stores for one event: canonical language, workspace-relative path, clean payload.

Pure: the job (models/normalization.py) reads the upcast event and writes what this returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from activity.catalog import MAX_LANGUAGE_LENGTH
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


def _raw_file(event: NormalizedEvent) -> str | None:
    payload = event.payload
    if event.type == "editor.heartbeat" and payload.get("type") not in (None, "file"):
        return None  # a heartbeat's entity is a domain or an app name, not a path
    return next((payload[k] for k in _FILE_KEYS if isinstance(payload.get(k), str)), None)


def declared_language(event: NormalizedEvent, file_path: str | None = None) -> str | None:
    """The event's canonical language: its payload's `language`, else its file's extension.

    A `language` longer than any the catalog accepts (an unknown extra field on a type that defines none, which
    ingest keeps unchecked) is ignored, so no accepted value can overflow the column that stores it.
    """
    stated = _text(event.payload, "language")
    if stated is not None and len(stated) > MAX_LANGUAGE_LENGTH:
        stated = None
    language = canonical_language(stated, file_path if file_path is not None else _raw_file(event))
    return language if language is None or len(language) <= MAX_LANGUAGE_LENGTH else None


def normalize(event: NormalizedEvent) -> NormalizedFields:
    payload = dict(event.payload)
    raw_file = _raw_file(event)
    file_path = normalize_file_path(raw_file, _text(payload, "workspace"))
    language = declared_language(event, file_path)
    if file_path is not None and "file" in payload:
        payload["file"] = file_path
    if language is not None and "language" in payload:
        payload["language"] = language
    return NormalizedFields(language=language, file_path=file_path, payload=payload)
