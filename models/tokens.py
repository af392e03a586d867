"""API tokens: created once, shown once, stored only as a SHA-256 hash."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.tables import ApiToken


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Principal:
    token_id: int
    developer_id: str | None
    is_admin: bool
    expires_at: datetime | None = None

    def may_act_for(self, developer_id: str) -> bool:
        return self.is_admin or self.developer_id == developer_id


def create_token(
    session: Session, developer_id: str | None, *, admin: bool = False, label: str = "",
    expires_at: datetime | None = None,
) -> str:
    # A random UUIDv4 (122 random bits): the WakaTime plugins accept only API keys of that form,
    # so one token works for the native API and for every WakaTime plugin alike.
    token = str(uuid.UUID(bytes=secrets.token_bytes(16), version=4))
    session.add(ApiToken(token_hash=hash_token(token), developer_id=developer_id, is_admin=admin, label=label,
                         expires_at=expires_at))
    session.flush()
    return token


def find_principal(session: Session, token: str, now: datetime | None = None) -> Principal | None:
    now = now or datetime.now(UTC)
    row = session.execute(select(ApiToken).where(ApiToken.token_hash == hash_token(token))).scalar_one_or_none()
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
