"""The dashboard: server-rendered pages on the same functions as the JSON API (templates in app/templates/).

Modules: session_auth (login, logout, the page decorators), developer (a developer's day, alerts, settings),
batches (a developer's batches and a batch's events), operator (pipeline health, breakers, replay).
"""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta

from flask import Blueprint, Flask, redirect, url_for
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFProtect

from core.settings import Settings

bp = Blueprint("pages", __name__)
csrf = CSRFProtect()
log = logging.getLogger("devpulse.pages")

SESSION_HOURS = 12


@bp.get("/")
def index() -> ResponseReturnValue:
    return redirect(url_for("pages.dashboard"))


def init_app(app: Flask, settings: Settings) -> None:
    if not settings.secret_key:
        log.warning("SECRET_KEY is not set: dashboard sessions use a random key of this process only")
    app.secret_key = settings.secret_key or secrets.token_hex(32)
    app.config.update(
        SESSION_COOKIE_NAME="devpulse_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.session_cookie_secure,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=SESSION_HOURS),
        # The JSON API authenticates with a bearer header, never the cookie, so only the pages' forms are
        # checked (csrf.protect() in the pages' before_request): the API and its hot ingest path pay nothing.
        WTF_CSRF_CHECK_DEFAULT=False,
        WTF_CSRF_TIME_LIMIT=SESSION_HOURS * 3600,
    )
    csrf.init_app(app)
    from app.pages import batches, developer, formatting, operator, session_auth  # noqa: F401 - they add to bp

    app.register_blueprint(bp)
