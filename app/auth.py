"""Bearer-token authentication: token -> developer (or admin)."""

from __future__ import annotations

import base64
import binascii
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from typing import Any

from flask import g, request, session

from app.errors import ApiError
from app.storage import storage
from models.erasure import developer_known
from models.tokens import Principal, find_principal_by_hash, hash_token

# Token lookups are cached briefly so the hot path does not pay a round trip per
# request; a revoked token stops working within this many seconds.
TOKEN_CACHE_SECONDS = 30.0
_cache: dict[str, tuple[float, Principal | None]] = {}
_cache_lock = threading.Lock()


def clear_token_cache() -> None:
    with _cache_lock:
        _cache.clear()


def _token_from_header(header: str) -> str | None:
    scheme, _, value = header.partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return value
    if scheme.lower() == "basic" and value:
        # WakaTime clients send base64(token), sometimes as "token:" user/password pairs.
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.split(":", 1)[0] or None
    return None


# The dashboard's signed session cookie keeps the token's SHA-256 under this key (app/pages/session_auth.py).
SESSION_TOKEN_KEY = "token_sha256"


def principal_for_hash(key: str) -> Principal | None:
    """The principal of the token with this SHA-256, through the short cache (None: unknown, revoked, expired)."""
    now = time.monotonic()
    with _cache_lock:
        cached = _cache.get(key)
    if cached is not None and cached[0] > now:
        return cached[1]
    principal = storage().transaction(lambda s: find_principal_by_hash(s, key, record_use=True))
    keep = TOKEN_CACHE_SECONDS
    if principal is not None and principal.expires_at is not None:
        # Never serve a token from the cache past its own expiry.
        keep = min(keep, (principal.expires_at - datetime.now(UTC)).total_seconds())
    with _cache_lock:
        if len(_cache) > 10_000:
            _cache.clear()
        _cache[key] = (now + keep, principal)
    return principal


def _session_principal() -> Principal | None:
    """A dashboard session stands in for the header on reads only (GET, e.g. the page's alert EventSource, which
    cannot send headers): a request that changes anything must carry the token itself, so a cross-site form can
    never act with the cookie."""
    if request.method not in ("GET", "HEAD") or not request.cookies:
        return None
    key = session.get(SESSION_TOKEN_KEY)
    return principal_for_hash(key) if isinstance(key, str) else None


def current_principal() -> Principal:
    header = request.headers.get("Authorization", "")
    if not header and (from_session := _session_principal()) is not None:
        g.principal = from_session
        return from_session
    if not header:
        raise ApiError(401, "missing_token", "The Authorization header is required: 'Bearer <token>'.",
                       [{"field": "Authorization", "message": "missing"}],
                       headers={"WWW-Authenticate": 'Bearer realm="devpulse"'})
    token = _token_from_header(header)
    if token is None:
        raise ApiError(401, "invalid_token", "The Authorization header must be 'Bearer <token>'.",
                       [{"field": "Authorization", "message": "malformed"}],
                       headers={"WWW-Authenticate": 'Bearer realm="devpulse"'})
    principal = principal_for_hash(hash_token(token))
    if principal is None:
        raise ApiError(401, "invalid_token", "The token is unknown, revoked or expired.",
                       [{"field": "Authorization", "message": "unknown, revoked or expired token"}],
                       headers={"WWW-Authenticate": 'Bearer realm="devpulse"'})
    g.principal = principal
    return principal


def require_token(view: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        current_principal()
        return view(*args, **kwargs)

    return wrapper


def require_admin(view: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not current_principal().is_admin:
            raise ApiError(403, "admin_required", "This endpoint requires an admin token.",
                           [{"field": "Authorization", "message": "not an admin token"}])
        return view(*args, **kwargs)

    return wrapper


def ensure_may_act_for(developer_id: str, field: str = "developer_id") -> None:
    """403 unless the token may act for the developer; for an admin reading another developer, 404 when nothing of
    that developer is stored (never created, or erased). Ingest checks `ensure_may_ingest_for` instead."""
    principal: Principal = g.principal
    if not principal.may_act_for(developer_id):
        raise ApiError(403, "forbidden_developer",
                       f"This token belongs to another developer and may not act for '{developer_id}'.",
                       [{"field": field, "message": "does not match the token's developer"}])
    if principal.developer_id != developer_id and not storage().transaction(
            lambda s: developer_known(s, developer_id)):
        raise ApiError(404, "developer_not_found", f"Nothing is stored for developer '{developer_id}'.",
                       [{"field": field, "message": "unknown developer"}])


def ensure_may_ingest_for(developer_id: str) -> None:
    """Ingest (native and WakaTime) takes a token for its own developer, or one created with --ingest-for-all."""
    principal: Principal = g.principal
    if not principal.may_ingest_for(developer_id):
        raise ApiError(403, "forbidden_developer",
                       f"This token may not post events for '{developer_id}': only a token of that developer, or "
                       "one created with --ingest-for-all, may (an admin token alone may not).",
                       [{"field": "developer_id", "message": "does not match the token's developer"}])
