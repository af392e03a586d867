"""API tokens: created once, shown once, stored only as a SHA-256 hash."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from models.tables import ApiToken

LAST_USED_RESOLUTION = timedelta(minutes=5)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Principal:
    token_id: int
    developer_id: str | None
    is_admin: bool
    expires_at: datetime | None = None
    ingest_for_all: bool = False

    def may_act_for(self, developer_id: str) -> bool:
        """Read and manage a developer's data: their own token, or an admin token."""
        return self.is_admin or self.developer_id == developer_id

    def may_ingest_for(self, developer_id: str) -> bool:
        """Post events as a developer: their own token, or a token given `ingest_for_all` (admin alone is not)."""
        return self.ingest_for_all or self.developer_id == developer_id


def create_token(
    session: Session, developer_id: str | None, *, admin: bool = False, label: str = "",
    expires_at: datetime | None = None, ingest_for_all: bool = False,
) -> str:
    # A random UUIDv4 (122 random bits): the WakaTime plugins accept only API keys of that form,
    # so one token works for the native API and for every WakaTime plugin alike.
    token = str(uuid.UUID(bytes=secrets.token_bytes(16), version=4))
    session.add(ApiToken(token_hash=hash_token(token), developer_id=developer_id, is_admin=admin, label=label,
                         expires_at=expires_at, ingest_for_all=ingest_for_all))
    session.flush()
    return token


def find_principal(session: Session, token: str, now: datetime | None = None, *,
                   record_use: bool = False) -> Principal | None:
    return find_principal_by_hash(session, hash_token(token), now, record_use=record_use)


def find_principal_by_hash(session: Session, token_hash: str, now: datetime | None = None, *,
                           record_use: bool = False) -> Principal | None:
    """The principal of a token known only by its hash (what a dashboard session keeps, never the token)."""
    now = now or datetime.now(UTC)
    row = session.execute(select(ApiToken).where(ApiToken.token_hash == token_hash)).scalar_one_or_none()
    if row is None or row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
        return None
    if record_use:
        touch_last_used(session, row.id, now)
    return Principal(token_id=row.id, developer_id=row.developer_id, is_admin=row.is_admin,
                     expires_at=row.expires_at, ingest_for_all=row.ingest_for_all)


def principal_by_id(session: Session, token_id: int, now: datetime | None = None) -> Principal | None:
    """The token's principal while it is still valid (not revoked, not expired): long-lived requests re-check."""
    now = now or datetime.now(UTC)
    row = session.get(ApiToken, token_id)
    if row is None or row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
        return None
    return Principal(token_id=row.id, developer_id=row.developer_id, is_admin=row.is_admin,
                     expires_at=row.expires_at)


def revoke_token(session: Session, token: str) -> bool:
    row = session.execute(select(ApiToken).where(ApiToken.token_hash == hash_token(token))).scalar_one_or_none()
    if row is None:
        return False
    row.revoked_at = datetime.now(UTC)
    return True


def list_tokens(session: Session) -> list[ApiToken]:
    return list(session.execute(select(ApiToken).order_by(ApiToken.id)).scalars())


def revoke_token_id(session: Session, token_id: int) -> bool:
    row = session.get(ApiToken, token_id, with_for_update=True)
    if row is None:
        return False
    if row.revoked_at is None:
        row.revoked_at = datetime.now(UTC)
    return True


def touch_last_used(session: Session, token_id: int, now: datetime) -> None:
    """Record use at most every few minutes: a lookup (cache miss) is the only write on the request path."""
    session.execute(update(ApiToken).where(
        ApiToken.id == token_id,
        (ApiToken.last_used_at.is_(None)) | (ApiToken.last_used_at < now - LAST_USED_RESOLUTION),
    ).values(last_used_at=now))
