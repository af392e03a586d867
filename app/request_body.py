"""Reading a JSON request body safely: size caps (also while gunzipping), strict JSON, clear 4xx."""

from __future__ import annotations

import json
import math
import re
import zlib
from typing import Any

from flask import g, request

from app.errors import ApiError

_CHUNK = 64 * 1024
# Far deeper than any real batch (the envelope, events, an event and its payload take 4 levels), and shallow
# enough that nothing after parsing (validation, json.dumps, the database driver) can hit Python's recursion limit.
MAX_JSON_DEPTH = 64


# A JSON string (escapes included): removed before counting again when the cheap count is over the limit.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')


def count_json_elements(raw: bytes, limit: int) -> int:
    """An upper bound of the values JSON text `raw` parses to: its commas and opening brackets, counted on the
    bytes (no Python object built). 0 when `raw` cannot hold more than `limit` (every body up to `limit` bytes).

    One C pass (`bytes.translate`, ~0.5 ms per MB) counts them everywhere, inside strings too; only a body over
    the limit on that count is counted again with its strings removed (~10 ms per MB), so prose full of commas
    is not refused for them.
    """
    if len(raw) <= limit:
        return 0
    count = len(raw) - len(raw.translate(None, b",[{"))
    if count <= limit:
        return count
    outside = _JSON_STRING.sub(b'""', raw)
    return len(outside) - len(outside.translate(None, b",[{"))


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"The request body may be at most {limit} bytes uncompressed.",
                    [{"field": "_body", "message": f"larger than {limit} bytes"}])


class OverflowingFloat(float):
    """A number literal too large for a float (e.g. 1e400): infinite, like json's own result, but of a type
    orjson refuses, so the event that holds it takes the careful path and is rejected alone, naming the field
    (app/ingest/prepare.py: `stored_json`). A plain inf would be written by orjson as null."""


def _parse_float(text: str) -> float:
    value = float(text)
    return OverflowingFloat(value) if math.isinf(value) else value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def read_json_body(limit: int, max_elements: int | None = None) -> Any:
    """The decoded JSON body. Its size (uncompressed bytes) is left in `g.request_body_bytes` for the rate
    limiter, also when the body is refused."""
    g.request_body_bytes = 0
    content_type = request.mimetype or ""
    if content_type != "application/json" and not content_type.endswith("+json"):
        raise ApiError(415, "unsupported_media_type", "The request body must be JSON (Content-Type: application/json).",
                       [{"field": "Content-Type", "message": f"got '{content_type or 'none'}'"}])
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    encoding = (request.headers.get("Content-Encoding") or "identity").strip().lower()
    if encoding not in ("identity", "gzip"):
        raise ApiError(415, "unsupported_content_encoding", "Content-Encoding must be gzip or absent.",
                       [{"field": "Content-Encoding", "message": f"got '{encoding}'"}])
    raw = request.stream.read(limit + 1)
    if len(raw) > limit:
        raise _too_large(limit)
    g.request_body_bytes = len(raw)
    if encoding == "gzip":
        raw = _gunzip_capped(raw, limit)
        g.request_body_bytes = len(raw)
    if max_elements is not None and count_json_elements(raw, max_elements) > max_elements:
        # Before parsing: 5 MB of `[{},{},...]` would become ~127 MB of Python objects.
        raise ApiError(413, "too_many_json_elements",
                       f"The body holds more than {max_elements} JSON values (counted as commas and opening "
                       "brackets outside strings).",
                       [{"field": "_body", "message": f"more than {max_elements} JSON values"}])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, "invalid_json", f"The body is not valid UTF-8 (byte {exc.start}).",
                       [{"field": "_body", "message": "invalid UTF-8"}]) from exc
    try:
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_parse_float)
    except RecursionError as exc:
        raise _too_deep() from exc
    except ValueError as exc:
        raise ApiError(400, "invalid_json", f"The body is not valid JSON: {str(exc)[:200]}",
                       [{"field": "_body", "message": str(exc)[:200]}]) from exc
    if _deeper_than(value, MAX_JSON_DEPTH):
        raise _too_deep()
    return value


def _too_deep() -> ApiError:
    return ApiError(400, "invalid_json", f"The JSON is nested too deeply (at most {MAX_JSON_DEPTH} levels).",
                    [{"field": "_body", "message": "nested too deeply"}])


def _deeper_than(value: Any, limit: int) -> bool:
    """Level by level, so checking a deep document cannot itself recurse (and a flat one costs one pass)."""
    level = [value] if isinstance(value, dict | list) else []
    depth = 1
    while level:
        if depth > limit:
            return True
        below: list[Any] = []
        for node in level:
            for child in node.values() if isinstance(node, dict) else node:
                # An empty container adds a level only when that level is already over the limit.
                if isinstance(child, dict | list) and (child or depth + 1 > limit):
                    below.append(child)
        level = below
        depth += 1
    return False


def _gunzip_capped(data: bytes, limit: int) -> bytes:
    """Decompress while counting, so a gzip bomb is stopped at `limit` bytes, never expanded in full."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = bytearray()
    try:
        view = memoryview(data)
        for start in range(0, len(data), _CHUNK):
            out += inflater.decompress(view[start:start + _CHUNK], limit + 1 - len(out))
            if len(out) > limit or inflater.unconsumed_tail:
                raise _too_large(limit)
        out += inflater.flush(limit + 1 - len(out))
    except zlib.error as exc:
        raise ApiError(400, "invalid_gzip", "The body is not valid gzip data.",
                       [{"field": "Content-Encoding", "message": str(exc)}]) from exc
    if len(out) > limit:
        raise _too_large(limit)
    return bytes(out)
