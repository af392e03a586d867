"""Logging in with a pasted token: the signed, HttpOnly, SameSite=Lax session cookie keeps only the token's
SHA-256 (never the token, never anything JavaScript can read); every page POST carries a CSRF token."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from typing import Any

from flask import g, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError

from app.auth import SESSION_TOKEN_KEY, principal_for_hash
from app.pages import bp, csrf
from app.storage import storage
from models.login_links import redeem_login_link
from models.tokens import Principal, hash_token


@bp.before_request
def _check_csrf() -> None:
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        csrf.protect()  # raises CSRFError (400) when the form's token is missing or wrong


@bp.errorhandler(CSRFError)
def _csrf_failed(exc: CSRFError) -> ResponseReturnValue:
    return render_template("error.html", title="Form expired",
                           message=f"csrf_token: {exc.description} Reload the page and try again."), 400


def page_principal() -> Principal | None:
    key = session.get(SESSION_TOKEN_KEY)
    principal = principal_for_hash(key) if isinstance(key, str) else None
    if principal is not None:
        g.principal = principal
    return principal


def forbidden(message: str) -> ResponseReturnValue:
    return render_template("error.html", title="Not allowed", message=message), 403


def login_required(view: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if page_principal() is None:
            session.pop(SESSION_TOKEN_KEY, None)
            return redirect(url_for("pages.login", next=request.full_path if request.method == "GET" else None))
        return view(*args, **kwargs)

    return wrapper


def admin_required(view: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(view)
    @login_required
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not g.principal.is_admin:
            return forbidden("The operator view needs an admin token; this session's token is a developer's.")
        return view(*args, **kwargs)

    return wrapper


def _safe_next(target: str | None) -> str:
    # Only a path on this site (never //host or a scheme): no open redirect through ?next=.
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return url_for("pages.dashboard")


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    if request.method == "GET":
        return render_template("login.html", error=None, next=request.args.get("next", ""))
    token = request.form.get("token", "").strip()
    principal = principal_for_hash(hash_token(token)) if token else None
    if principal is None:
        error = "token: missing" if not token else "token: unknown, revoked or expired"
        return render_template("login.html", error=error, next=request.form.get("next", "")), 401
    return _start_session(hash_token(token), request.form.get("next"))


def _start_session(token_hash: str, next_page: str | None) -> ResponseReturnValue:
    session.clear()  # a fresh session (and CSRF secret) at every login
    session[SESSION_TOKEN_KEY] = token_hash
    session.permanent = True
    return redirect(_safe_next(next_page))


@bp.route("/login/link/<secret>", methods=["GET", "POST"])
def login_link(secret: str) -> ResponseReturnValue:
    """A one-time link (`make run` prints one). GET only shows a button: a link previewer that fetches the URL
    must not use it up; the POST (with its CSRF token) redeems it."""
    if request.method == "GET":
        return render_template("login_link.html")
    token_hash = storage().transaction(lambda s: redeem_login_link(s, secret, datetime.now(UTC)))
    if token_hash is None or principal_for_hash(token_hash) is None:
        return render_template("login.html", next="",
                               error="link: unknown, already used or expired; paste a token instead"), 401
    return _start_session(token_hash, None)


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    session.clear()
    return redirect(url_for("pages.login"))
