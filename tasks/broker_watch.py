"""What the sweeper asks Redis, in one round trip: did the broker lose its contents, are the header queues empty,
and which batch attempts' messages do workers hold (models/recovery.py decides with the answer).

Loss is told by a marker key the sweeper keeps in the broker's database, with a token PostgreSQL remembers
(models/recovery.py): FLUSHALL, or a restart without persistence, removes it with every message; the broker's
first use is no loss. Reading the queues by their kombu names keeps this to
what the Redis transport stores (a list per queue and priority, and the `unacked` hash of held messages).
"""

from __future__ import annotations

import json
import logging
import uuid

import redis
from kombu.transport.redis import PRIORITY_STEPS, Channel

from core.settings import Settings
from models.recovery import BrokerView

log = logging.getLogger("devpulse.broker_watch")

MARKER = "devpulse:broker-marker"
HEADER_QUEUES = ("aggregation", "normalization", "danger")


def _queue_keys(queue: str) -> list[str]:
    return [f"{queue}{Channel.sep}{step}" if step else queue for step in PRIORITY_STEPS]


def _attempt_of(held: bytes) -> tuple[str, int] | None:
    """(batch_id, attempt) of a held message of a batch's chord (task id `<batch_id>.<attempt>.<job>.<dev>`)."""
    try:
        task_id = str(json.loads(held)[0]["headers"]["id"])
        batch_id, attempt = task_id.split(".")[:2]
        return batch_id, int(attempt)
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def look(settings: Settings, remembered: str | None) -> tuple[BrokerView | None, str | None]:
    """The broker as the sweeper sees it now, and the marker token to remember from now on. `remembered`: the
    token PostgreSQL holds (None before the first look). (None, None) when Redis cannot be asked: nothing is
    decided from it."""
    token = remembered or uuid.uuid4().hex
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=5)
    try:
        with client.pipeline(transaction=True) as pipe:
            pipe.set(MARKER, token, get=True)
            for queue in HEADER_QUEUES:
                for key in _queue_keys(queue):
                    pipe.llen(key)
            pipe.hvals(Channel.unacked_key)
            found, *lengths, held = pipe.execute()
    except redis.RedisError as exc:
        log.warning("could not look at the broker: %s", exc)
        return None, None
    finally:
        client.close()
    lost = remembered is not None and (found.decode() if found else None) != remembered
    if lost:
        log.warning("the broker's marker is gone: every message published before now was lost")
    reserved = frozenset(a for a in (_attempt_of(h) for h in held) if a is not None)
    return BrokerView(lost=lost, idle=not any(lengths), reserved=reserved), token
