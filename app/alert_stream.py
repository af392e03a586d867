"""GET /api/developers/<id>/alerts/stream: the developer's alerts as Server-Sent Events.

What is sent comes from PostgreSQL (models/alert_stream.py): the alerts announced after the stream's position, in
commit-safe order, each as `event: alert` with `id: <position>`. A client that reconnects with `Last-Event-ID`
(browsers' EventSource do it by themselves) receives every alert announced since that id, so nothing is lost
across a reconnect; the first block of every stream already carries an `id:`, so even a client that received no
alert resumes from where it opened. Redis pub/sub only wakes the stream up (any message on the developer's
channel: a read follows); a read every POLL_SECONDS covers a wake-up lost with Redis.

Bounded: each stream ends after `STREAM_MAX_SECONDS` (or the client's shorter `max_seconds`) with `event: end`,
re-checks its token every `STREAM_TOKEN_RECHECK_SECONDS` (a revoked or expired token's stream ends), holds one of
its token's `STREAM_MAX_PER_TOKEN` slots (429 beyond; app/stream_slots.py) and one of its process's
`STREAM_MAX_PER_PROCESS` (503 beyond): a stream runs on a thread of the web's pool, never in one of the request
slots ingest runs in (app/serving.py).
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import redis
from flask import Blueprint, Response, current_app, g, request, stream_with_context

from app.auth import ensure_may_act_for, require_token
from app.errors import ApiError
from app.settings import settings
from app.storage import StorageUnavailable, storage
from app.stream_slots import RENEW_SECONDS, StreamSlot
from core.settings import Settings, SettingsError
from models.alert_stream import StreamPosition, announced_after, position_of, start_position
from models.alerts import alert_channel, alert_document
from models.tokens import Principal, principal_by_id

bp = Blueprint("alert_stream", __name__)

# A client that went away is noticed only when a write fails: this bounds how long its slot stays taken.
KEEPALIVE_SECONDS = 5.0
# A read without a wake-up (one lost with Redis); and soon again while an older announcing transaction is open.
POLL_SECONDS = 10.0
HELD_BACK_POLL_SECONDS = 0.25
# EventSource's reconnection delay, sent with the first block.
RETRY_MS = 2000
MAX_TOKEN_RECHECK_SECONDS = 60.0


class _OpenStreams:
    """Streams open in this process (bounded below gunicorn's threads, minus the request slots)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0

    def enter(self, limit: int) -> bool:
        with self._lock:
            if self.count >= limit:
                return False
            self.count += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self.count -= 1


def _open_streams() -> _OpenStreams:
    """This app's count (one app per gunicorn worker process; dict.setdefault is atomic)."""
    return current_app.extensions.setdefault("devpulse.open_streams", _OpenStreams())


def check_settings(cfg: Settings) -> None:
    """At start-up: stream settings that could not keep their promises stop the app, naming the variable."""
    if not 0 < cfg.stream_token_recheck_seconds <= MAX_TOKEN_RECHECK_SECONDS:
        raise SettingsError(f"STREAM_TOKEN_RECHECK_SECONDS={cfg.stream_token_recheck_seconds:g} must be in "
                            f"(0, {MAX_TOKEN_RECHECK_SECONDS:g}]: a revoked token's stream must end within a minute")
    if not (math.isfinite(cfg.stream_max_seconds) and cfg.stream_max_seconds > 0):
        raise SettingsError(f"STREAM_MAX_SECONDS={cfg.stream_max_seconds:g} must be a number of seconds > 0")
    for name in ("stream_max_per_token", "stream_max_per_process", "web_request_slots"):
        if getattr(cfg, name) < 1:
            raise SettingsError(f"{name.upper()}={getattr(cfg, name)} must be at least 1")


def _lifetime(cfg: Settings) -> float:
    raw = request.args.get("max_seconds", "") or "0"
    try:
        asked = float(raw)
    except ValueError:
        asked = math.nan
    if not (math.isfinite(asked) and asked >= 0):
        raise ApiError(400, "invalid_parameter", "'max_seconds' must be a finite number of seconds >= 0.",
                       [{"field": "max_seconds", "message": f"got '{raw[:20]}'"}])
    if asked and asked <= cfg.stream_max_seconds:
        return asked
    # Spread the server's own ends over the last tenth, so that streams opened together do not all reconnect at once.
    return cfg.stream_max_seconds * random.uniform(0.9, 1.0)


def _resume_position(developer_id: str) -> StreamPosition | None:
    """The position after `Last-Event-ID` (or `?last_event_id=`), None when the client sent none."""
    field = "Last-Event-ID" if request.headers.get("Last-Event-ID") else "last_event_id"
    raw = (request.headers.get("Last-Event-ID") or request.args.get("last_event_id") or "").strip()
    if not raw:
        return None
    position = StreamPosition.parse(raw)
    if position is not None:
        return position
    try:
        alert_id = uuid.UUID(raw)  # an alert id, as the stream's ids were before positions
    except ValueError:
        alert_id = None
    if alert_id is not None:
        found = storage().transaction(lambda s: position_of(s, developer_id, alert_id))
        if found is not None:
            return found
    raise ApiError(400, "invalid_last_event_id", "Last-Event-ID must be an id this stream sent.",
                   [{"field": field, "message": f"not a stream position: '{raw[:60]}'"}])


@bp.get("/api/developers/<developer_id>/alerts/stream")
@require_token
def stream_alerts(developer_id: str) -> Response:
    """Alerts announced for the developer (new or escalated, not stale), as they are committed."""
    ensure_may_act_for(developer_id)
    cfg = settings()
    lifetime = _lifetime(cfg)
    resume = _resume_position(developer_id)
    principal: Principal = g.principal
    open_streams = _open_streams()
    if not open_streams.enter(cfg.stream_max_per_process):
        raise ApiError(503, "streams_busy", "This server holds as many alert streams as it serves; retry shortly.",
                       [{"field": "_streams", "message": "the process's stream limit is reached"}],
                       headers={"Retry-After": "5"})
    try:
        stream = _Stream(cfg, developer_id, principal, lifetime, open_streams)
    except BaseException:
        open_streams.leave()
        raise
    try:
        try:
            acquired = stream.slot.acquire()
            if acquired:  # subscribed before the first read: no wake-up falls in between
                stream.pubsub.subscribe(alert_channel(developer_id))
        except redis.RedisError as exc:
            raise ApiError(503, "stream_unavailable", "The alert stream is unavailable; poll the alerts list.",
                           [{"field": "_redis", "message": "unreachable"}], headers={"Retry-After": "5"}) from exc
        if not acquired:
            raise ApiError(429, "too_many_streams",
                           f"This token already holds {cfg.stream_max_per_token} open alert streams.",
                           [{"field": "Authorization", "message": f"at most {cfg.stream_max_per_token} open "
                                                                  "alert streams per token (STREAM_MAX_PER_TOKEN)"}],
                           headers={"Retry-After": str(int(RENEW_SECONDS))})
        stream.position = resume if resume is not None else storage().transaction(start_position)
    except BaseException:
        stream.close()
        raise
    response = Response(stream_with_context(stream.events()), mimetype="text/event-stream",
                        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    # Also when the body is never iterated (the client left at once): a generator not started has no finally.
    response.call_on_close(stream.close)
    return response


class _Stream:
    """One open stream: its lease, its Redis subscription and its place in this process's count."""

    def __init__(self, cfg: Settings, developer_id: str, principal: Principal, lifetime: float,
                 open_streams: _OpenStreams) -> None:
        self.cfg = cfg
        self.open_streams = open_streams
        self.developer_id = developer_id
        self.principal = principal
        self.lifetime = lifetime
        self.position = StreamPosition(0, uuid.UUID(int=0))
        self.client = redis.Redis.from_url(cfg.redis_url, socket_connect_timeout=2, socket_timeout=5)
        self.slot = StreamSlot(self.client, principal.token_id, cfg.stream_max_per_token)
        self.pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        self._closed = False

    def close(self) -> None:
        """Give back the lease and the process's slot; once, whichever of the ways to end comes first."""
        if self._closed:
            return
        self._closed = True
        try:
            self.slot.release()
        except redis.RedisError:
            pass  # the lease expires by itself
        finally:
            self.pubsub.close()
            self.client.close()
            self.open_streams.leave()

    def events(self) -> Iterator[str]:
        started = time.monotonic()
        deadline = started + self.lifetime
        next_token_check = started + self.cfg.stream_token_recheck_seconds
        next_renew = started + RENEW_SECONDS
        next_read = started  # catch up at once
        last_write = started
        reason = "max_seconds"
        try:
            # The first block sets the client's last event id: a reconnect resumes from here even if no alert came.
            yield f": connected\nretry: {RETRY_MS}\nid: {self.position}\n\n"
            try:
                while (now := time.monotonic()) < deadline:
                    if now >= next_token_check:
                        if not self._token_valid():
                            reason = "token_revoked"
                            break
                        next_token_check = now + self.cfg.stream_token_recheck_seconds
                    if now >= next_renew:
                        if not self.slot.acquire():
                            reason = "slot_lost"
                            break
                        next_renew = now + RENEW_SECONDS
                    if now >= next_read:
                        ready, more = self._read()
                        for position, document in ready:
                            yield f"event: alert\nid: {position}\ndata: {json.dumps(document)}\n\n"
                            self.position = position
                            last_write = time.monotonic()
                        next_read = time.monotonic() + (HELD_BACK_POLL_SECONDS if more else POLL_SECONDS)
                    if time.monotonic() - last_write >= KEEPALIVE_SECONDS:
                        yield ": keep-alive\n\n"
                        last_write = time.monotonic()
                    wait = min(deadline, next_token_check, next_renew, next_read,
                               last_write + KEEPALIVE_SECONDS) - time.monotonic()
                    if wait > 0 and self.pubsub.get_message(timeout=wait) is not None:
                        while self.pubsub.get_message(timeout=0) is not None:
                            pass  # several wake-ups, one read
                        next_read = time.monotonic()
            except (redis.RedisError, StorageUnavailable, OSError):
                reason = "unavailable"  # the client reconnects (Last-Event-ID) once Redis / PostgreSQL answer
            yield f"event: end\ndata: {json.dumps({'reason': reason})}\n\n"
        finally:
            self.close()

    def _token_valid(self) -> bool:
        # Straight from PostgreSQL, not through the per-process token cache (which would add its 30 s).
        current = storage().transaction(lambda s: principal_by_id(s, self.principal.token_id))
        return current is not None and current.may_act_for(self.developer_id)

    def _read(self) -> tuple[list[tuple[StreamPosition, dict[str, Any]]], bool]:
        def read(session: Any) -> tuple[list[tuple[StreamPosition, dict[str, Any]]], bool]:
            rows, more = announced_after(session, self.developer_id, self.position)
            return [(position, alert_document(alert)) for position, alert in rows], more

        return storage().transaction(read)
