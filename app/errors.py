"""One error shape for every 4xx/5xx: {"error": {"code", "message", "details"}, "correlation_id"}."""

from __future__ import annotations

from typing import Any

from flask import Flask, g, jsonify
from werkzeug.exceptions import HTTPException

from app.storage import StorageUnavailable


class ApiError(Exception):
    def __init__(
        self, status: int, code: str, message: str, details: Any = None, *, headers: dict[str, str] | None = None,
        body: dict[str, Any] | None = None, audited: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details if details is not None else []
        self.headers = headers or {}
        # A complete body replaces the default error envelope (e.g. the 422 that mirrors a 202).
        self.body = body
        # Its audit record is written already (by the statement that decided it); see app/ingest/refusals.py.
        self.audited = audited


class RequestReadTimeout(Exception):
    """A request's headers or body did not arrive within its deadline (app/web_worker.py). Not an OSError, so
    that gunicorn hands it to the worker's error handler rather than dropping the connection silently."""

    def __init__(self, part: str, seconds: float) -> None:
        super().__init__(f"The request's {part} did not arrive within {seconds:g} s.")
        self.field = "_headers" if part == "headers" else "_body"
        self.reason = f"not received within {seconds:g} s"


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {
        "error": {"code": code, "message": message, "details": details if details is not None else []},
        "correlation_id": getattr(g, "correlation_id", None),
    }


def init_app(app: Flask) -> None:
    @app.errorhandler(StorageUnavailable)
    def _storage_unavailable(exc: StorageUnavailable):
        g.error_code = "storage_unavailable"
        # Raised outside the views' own handling too (e.g. the token lookup): always a 503, never a 500.
        body = error_body("storage_unavailable", str(exc), [{"field": "_storage", "message": "unavailable"}])
        return jsonify(body), 503, {"Retry-After": str(exc.retry_after)}

    @app.errorhandler(RequestReadTimeout)
    def _read_timeout(exc: RequestReadTimeout):
        # The body stopped arriving (the worker's deadline); the worker closes the connection after this answer.
        body = error_body("request_timeout", str(exc), [{"field": exc.field, "message": exc.reason}])
        return jsonify(body), 408

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        g.error_code = exc.code  # for the access line (app/observability.py)
        body = exc.body if exc.body is not None else error_body(exc.code, exc.message, exc.details)
        return jsonify(body), exc.status, exc.headers

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        code = (exc.name or "error").lower().replace(" ", "_")
        g.error_code = code
        return jsonify(error_body(code, exc.description or exc.name)), exc.code or 500

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        app.logger.exception("unhandled error")
        g.error_code = "internal_error"
        return jsonify(error_body("internal_error", "An unexpected error occurred; it has been logged.")), 500
