"""The textbook peer: a plain Flask + marshmallow + SQLAlchemy ORM ingest endpoint. NOT part of devpulse.

It exists only so that `make bench` can report the product's ingest figures beside a well-known baseline
(bench/run.py, `peer_phase`). It is what a tutorial would write, on purpose:

- POST /api/workflow/events/orchestrate (the product's path and request format, so bench/load.py drives both);
- authentication kept trivial: ANY non-empty `Authorization: Bearer <token>` is accepted, with no lookup and
  no check that the token belongs to `developer_id` (the product looks its tokens up, cached per process, and
  matches the developer; this favours the peer slightly);
- `schema.load(body)` with the events as a nested list: one bad event rejects the whole batch (422);
- SQLAlchemy ORM with a scoped session per request, its OWN tables `peer_batches` and `peer_events` (unique
  (developer_id, event_id)) in whatever database DATABASE_URL names; never the product's tables;
- per event one SELECT for (developer_id, event_id) and one `session.add(...)` for a new row, one `commit()`
  per request. The session keeps SQLAlchemy's default autoflush, so each SELECT first flushes the row added
  before it as its own INSERT: about two statements per event, which also makes a duplicate event id inside
  one batch visible to the next SELECT;
- 202 with the accepted / duplicate counts. No Celery, no outbox, no after-commit work.

Run by bench/stack.py as `gunicorn --workers 2 --threads 4 'bench.peers.textbook:create_app()'` (the
product's ingest concurrency: its 4 request slots per worker).
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from typing import Any

from flask import Flask, jsonify, request
from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate
from sqlalchemy import BigInteger, DateTime, ForeignKey, Integer, String, UniqueConstraint, create_engine, select, text
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, scoped_session, sessionmaker

from app.ingest.schemas import DEVELOPER_ID_RE, ClientSchema, EventSchema

PATH = "/api/workflow/events/orchestrate"


# -- schemas: the product's own client and event schemas, nested the textbook way (one load of the whole batch) --
class BatchSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    batch_id = fields.UUID(required=True)
    developer_id = fields.Str(required=True, validate=validate.Regexp(DEVELOPER_ID_RE))
    sent_at = fields.AwareDateTime(required=True)
    schema_version = fields.Str(validate=validate.Length(min=1, max=16))
    client = fields.Nested(ClientSchema)
    events = fields.List(fields.Nested(EventSchema), required=True, validate=validate.Length(min=1))


batch_schema = BatchSchema()


# -- models: the peer's own tables ----------------------------------------------------------------------------
class Base(DeclarativeBase):
    """The peer's own metadata: `create_all` on it can never touch the product's tables."""


class PeerBatch(Base):
    __tablename__ = "peer_batches"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    batch_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    developer_id: Mapped[str] = mapped_column(String(128))
    sent_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    schema_version: Mapped[str | None] = mapped_column(String(16))
    client: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    received: Mapped[int] = mapped_column(Integer)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PeerEvent(Base):
    __tablename__ = "peer_events"
    __table_args__ = (UniqueConstraint("developer_id", "event_id", name="uq_peer_events_developer_event"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    batch_pk: Mapped[int] = mapped_column(ForeignKey("peer_batches.id"))
    developer_id: Mapped[str] = mapped_column(String(128))
    event_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    type: Mapped[str] = mapped_column(String(64))
    timestamp: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    schema_version: Mapped[str | None] = mapped_column(String(16))
    session_id: Mapped[str | None] = mapped_column(String(128))
    project: Mapped[str | None] = mapped_column(String(128))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    batch: Mapped[PeerBatch] = relationship()


# -- the app --------------------------------------------------------------------------------------------------
def create_app(database_url: str | None = None) -> Flask:
    engine = create_engine(database_url or os.environ["DATABASE_URL"])
    # The peer is outside the product (whose schema changes only through Alembic), so create_all at start-up
    # is fine here. gunicorn loads the app in each of its workers at once: a transaction-scoped advisory lock
    # keeps two create_all calls from racing on the same CREATE TABLE.
    with engine.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('bench.peers.textbook'))"))
        Base.metadata.create_all(conn)
    session = scoped_session(sessionmaker(bind=engine))

    app = Flask(__name__)

    @app.teardown_appcontext
    def remove_session(_exc: BaseException | None) -> None:
        session.remove()

    @app.get("/healthz")
    def healthz() -> Any:
        return jsonify(status="ok")

    @app.post(PATH)
    def ingest() -> Any:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or not auth[7:].strip():
            return jsonify(error="missing bearer token"), 401
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return jsonify(error="the body must be a JSON object"), 400
        try:
            data = batch_schema.load(body)
        except ValidationError as exc:
            return jsonify(error="validation failed", messages=exc.messages), 422

        now = datetime.now(UTC)
        developer_id = data["developer_id"]
        batch = PeerBatch(batch_id=data["batch_id"], developer_id=developer_id, sent_at=data["sent_at"],
                          schema_version=data.get("schema_version"), client=data.get("client"),
                          received=len(data["events"]), received_at=now)
        accepted = duplicates = 0
        try:
            session.add(batch)
            for event in data["events"]:
                exists = session.execute(
                    select(PeerEvent.id).where(PeerEvent.developer_id == developer_id,
                                               PeerEvent.event_id == event["event_id"])
                ).first()
                if exists is not None:
                    duplicates += 1
                    continue
                session.add(PeerEvent(batch=batch, developer_id=developer_id, event_id=event["event_id"],
                                      type=event["type"], timestamp=event["timestamp"],
                                      schema_version=event.get("schema_version"),
                                      session_id=event.get("session_id"), project=event.get("project"),
                                      payload=event["payload"], received_at=now))
                accepted += 1
            session.commit()
        except IntegrityError:  # a concurrent request stored one of these events first (at a flush or the commit)
            session.rollback()
            return jsonify(error="conflict with a concurrent request, retry"), 409
        return jsonify(batch_id=str(data["batch_id"]), status="accepted", received=len(data["events"]),
                       accepted=accepted, duplicates=duplicates), 202

    return app
