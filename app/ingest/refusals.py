"""The audit record of an ingest request refused as a whole (400, 403, 409, 413, 415, 422, 429).

409 and 422 are decided by the persisting statements, which write their record themselves (models/ingest.py);
the others are refused before anything is stored, and get one INSERT here on their way out. A 401 has no
developer to put on the record: its trace is the access line (app/observability.py), as is a 503's (the storage
that would hold the record is the one that failed; the admin alert `ingest_storage_unavailable` covers it).
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable
from typing import Any

from flask import g, request

from app.errors import ApiError
from app.storage import storage
from models.ingest import MAX_LISTED_REJECTIONS, record_refusal

log = logging.getLogger("devpulse.ingest")

AUDITED_STATUSES = frozenset({400, 403, 409, 413, 415, 422, 429})


def audit_refusals(view: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap an ingest view (inside `require_token`): a refusal it raises leaves an audit record first."""
    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return view(*args, **kwargs)
        except ApiError as exc:
            if exc.status in AUDITED_STATUSES and not exc.audited:
                _record(exc)
            raise

    return wrapper


def _named_batch() -> tuple[str | None, str | None]:
    """(developer_id, batch_id) the request named, as far as it was read: either may be None."""
    named = g.get("ingest_batch")
    if named is not None:
        return named
    body = g.get("ingest_body")
    if not isinstance(body, dict):
        return None, None
    developer = body.get("developer_id")
    batch = body.get("batch_id")
    try:
        batch_id = str(uuid.UUID(batch)) if isinstance(batch, str) else None
    except ValueError:
        batch_id = None
    return (developer[:128] if isinstance(developer, str) else None), batch_id


def _record(exc: ApiError) -> None:
    principal = g.get("principal")
    claimed, batch_id = _named_batch()
    # The token's developer; an admin token acts for the developer the body names.
    developer = principal.developer_id if principal is not None and principal.developer_id else claimed
    details_list = exc.details if isinstance(exc.details, list) else []
    details: dict[str, Any] = {
        "developer_id": developer, "status": exc.status, "code": exc.code, "message": exc.message[:500],
        "errors": details_list[:MAX_LISTED_REJECTIONS], "error_count": len(details_list),
        "route": request.path, "token_id": principal.token_id if principal is not None else None,
    }
    if claimed is not None and claimed != developer:
        details["claimed_developer_id"] = claimed
    try:
        storage().transaction(lambda session: record_refusal(
            session, correlation_id=g.correlation_id, batch_id=batch_id, details=details))
        g.refusal_audited = True
    except Exception:  # the refusal stands; its access line still records it
        log.warning("could not write the audit record of a refused request (%s %s)", exc.status, exc.code,
                    exc_info=True)
