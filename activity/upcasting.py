"""Upcasting: rewrite events of older schema versions into the current (1.1)
shape, so everything downstream of normalization knows only one schema.

Payloads are assumed already validated against their own version; upcasting
never raises on payload content, it only renames and reshapes.
"""

from __future__ import annotations

from typing import Any

from activity.catalog import resolve_schema_version


def _upcast_1_0(event_type: str, payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    if event_type == "file.edit":
        # 1.0 clients could not tell additions from deletions; counting all
        # changed lines as added keeps totals comparable with 1.1.
        new = {k: v for k, v in payload.items() if k != "lines_changed"}
        if "lines_changed" in payload:
            new["lines_added"] = payload["lines_changed"]
        new["lines_deleted"] = 0
        return event_type, new
    if event_type == "ai.completion":
        # Extra unknown fields travel along, as they do for every other event.
        rest = {k: v for k, v in payload.items() if k not in ("accepted", "chars")}
        if payload.get("accepted") is True:
            return "ai.suggestion_accepted", {"chars_inserted": payload.get("chars", 0), **rest}
        return "ai.suggestion_shown", {"chars": payload.get("chars", 0), **rest}
    return event_type, payload


def upcast(event_type: str, schema_version: str, payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The 1.1 event type and a new 1.1 payload dict; the input is never mutated.

    `schema_version` is the raw version string; an unsupported one raises
    ValueError because such an event must have been rejected at ingestion.
    """
    resolved = resolve_schema_version(schema_version)
    if resolved is None:
        raise ValueError(f"cannot upcast from unsupported schema_version {schema_version!r}")
    # A new top-level dict: callers may set or drop keys of the result; nested values are shared (no rule or
    # job mutates them), which spares a deep copy of every payload on the workers' hot path.
    fresh = dict(payload)
    if resolved == "1.0":
        return _upcast_1_0(event_type, fresh)
    return event_type, fresh
