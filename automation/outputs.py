"""The step output cap: an output whose canonical JSON exceeds MAX_OUTPUT_BYTES (256 KB) is replaced by a marker.

Executors pass every output through `cap_output` before recording it (history, step rows, the context of
later steps); the planner does the same for the outputs it builds (parallel joins, for_each lists).
The marker is `{"truncated": true, "original_bytes": <n>, "preview": "<the first bytes of the JSON, as text>"}`
and is itself within the cap.
"""

from __future__ import annotations

from typing import Any

from automation.definition import MAX_OUTPUT_BYTES
from automation.history import canonical_json

TRUNCATED_MARKER = "truncated"
_MARKER_ROOM = 200  # bytes kept free for the marker's own keys and the JSON escaping of the preview


def output_size(value: Any) -> int:
    return len(canonical_json(value))


def cap_output(value: Any, limit: int = MAX_OUTPUT_BYTES) -> Any:
    """`value` itself when its canonical JSON fits in `limit` bytes, else the truncation marker."""
    encoded = canonical_json(value)
    if len(encoded) <= limit:
        return value
    room = max(0, limit - _MARKER_ROOM)
    preview = encoded[:room].decode("utf-8", errors="ignore")
    # JSON escaping may grow the preview (quotes, backslashes, control characters): shrink until it fits.
    while preview and output_size({TRUNCATED_MARKER: True, "original_bytes": len(encoded), "preview": preview}) > limit:
        preview = preview[: len(preview) * 3 // 4]
    return {TRUNCATED_MARKER: True, "original_bytes": len(encoded), "preview": preview}


def is_truncated(value: Any) -> bool:
    return isinstance(value, dict) and value.get(TRUNCATED_MARKER) is True and "original_bytes" in value
