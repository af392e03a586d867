"""The worker app of the bench: devpulse's own Celery app plus two no-op tasks for the bare-chord floor.

`celery -A bench.celery_bench worker ...` runs exactly the app of `celery -A tasks worker` (same broker,
result backend, acks_late, prefetch and queue settings, and the real pipeline tasks); it only adds
`bench.noop` (sent to the three header queues, like aggregate/normalize/detect_danger) and
`bench.noop_callback` (the `pipeline` queue, like mark_batch_processed). The callback pushes its finish time
to a Redis list so the bench can time each chord without polling the result backend.
"""

from __future__ import annotations

import json
import time
from typing import Any

from celery import chord, group

from tasks import app

DONE_KEY = "bench:chords_done"
HEADER_QUEUES = ("aggregation", "normalization", "danger")
_redis = None


@app.task(name="bench.noop")
def noop(ctx: dict[str, Any]) -> dict[str, Any]:
    return {"ok": True}


@app.task(name="bench.noop_callback")
def noop_callback(results: list[dict[str, Any]], ctx: dict[str, Any]) -> None:
    global _redis
    done = time.time()
    if _redis is None:
        import redis

        _redis = redis.Redis.from_url(app.conf.broker_url)
    _redis.rpush(DONE_KEY, json.dumps({"id": ctx["id"], "sent": ctx["sent"], "done": done}))


def bare_chord(ctx: dict[str, Any]) -> chord:
    header = group(noop.s(ctx).set(queue=q) for q in HEADER_QUEUES)
    return chord(header, noop_callback.s(ctx).set(queue="pipeline"))


__all__ = ["app", "bare_chord"]
