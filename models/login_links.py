"""One-time dashboard login links: a random secret in a URL, redeemed at most once before it expires.

Only SHA-256 hashes are stored (of the secret and of the token it logs in with), so the table gives nothing away.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.tables import LoginLink

LINK_LIFETIME = timedelta(minutes=10)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def create_login_link(session: Session, token_hash: str, now: datetime) -> str:
    """The secret of a new link for the token with this hash (put it in the URL; it is not stored)."""
    secret = secrets.token_urlsafe(32)
    session.add(LoginLink(link_hash=_hash(secret), token_hash=token_hash, expires_at=now + LINK_LIFETIME))
    session.flush()
    return secret


def redeem_login_link(session: Session, secret: str, now: datetime) -> str | None:
    """The token hash of an unused, unexpired link, which is used up by this call; else None."""
    link = session.execute(select(LoginLink).where(LoginLink.link_hash == _hash(secret))
                           .with_for_update()).scalar_one_or_none()
    if link is None or link.used_at is not None or link.expires_at <= now:
        return None
    link.used_at = now
    return link.token_hash
