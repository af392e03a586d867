"""`celery -A tests.faults.worker_killing_job worker`: the real worker, whose aggregation job kills its own
process (SIGKILL, as the kernel's out-of-memory killer does) for every batch of KILLER_DEVELOPER.

The rest of the worker is the product's: the same app, queues, tasks and settings.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import tasks.pipeline as pipeline
from tasks import app

KILLER_DEVELOPER = "dev-oom"

_aggregate = pipeline._aggregate


def _aggregate_or_die(session: Any, batch: Any, ctx: dict[str, Any]) -> dict[str, Any]:
    if batch.developer_id == KILLER_DEVELOPER:
        os.kill(os.getpid(), signal.SIGKILL)
    return _aggregate(session, batch, ctx)


pipeline._aggregate = _aggregate_or_die

__all__ = ["app"]
