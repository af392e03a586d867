"""DELETE /api/admin/developers/<id>: erase a developer's data (admin; models/erasure.py says what goes)."""

from __future__ import annotations

from flask import Blueprint, g, jsonify
from flask.typing import ResponseReturnValue

from app.auth import clear_token_cache, require_admin
from app.errors import ApiError
from app.storage import storage
from models.erasure import erase_developer

bp = Blueprint("admin_developers_api", __name__)


@bp.delete("/api/admin/developers/<developer_id>")
@require_admin
def erase(developer_id: str) -> ResponseReturnValue:
    erasure = storage().transaction(lambda s: erase_developer(
        s, developer_id, requested_by=f"admin token {g.principal.token_id}", correlation_id=g.correlation_id))
    if not erasure.found:
        raise ApiError(404, "developer_not_found", f"Nothing is stored for developer '{developer_id}'.",
                       [{"field": "developer_id", "message": "unknown developer"}])
    # This process forgets the erased tokens at once; other processes within their cache time (README).
    clear_token_cache()
    return jsonify({"developer_id": developer_id, "erased": True, "developer_sha256": erasure.developer_hash,
                    "deleted": erasure.deleted})
