"""How the web process serves: gunicorn's gthread worker with a pool large enough for the alert streams, and
request slots that keep ingest at the concurrency it was tuned with.

An alert stream is long-lived and mostly idle; it occupies a thread of the pool (blocked in select() on its Redis
subscription, holding no GIL) but never one of the `WEB_REQUEST_SLOTS` (4) in which the other requests, ingest
above all, run. Each process serves at most `STREAM_MAX_PER_PROCESS` streams (503 beyond), fewer than its threads
minus its slots, so streams can never take the threads ingest needs: the 8 open streams that used to block all
ingestion (2 workers x 4 threads) now leave it as it was. Why threads and not gevent: README, "Serving".
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

# The Procfile's `web` line, the Dockerfile, docker-compose.yml, make bench and the fault tests all run gunicorn
# with these (tests/test_deployment_files.py keeps the text files in step with them).
WEB_THREADS = 96
# The edge's gthread worker with read deadlines for slow clients (app/web_worker.py), with enough threads that open
# alert streams never take ingest's.
GUNICORN_WORKER_ARGS = ("--worker-class", "app.web_worker.BoundedThreadWorker", "--threads", str(WEB_THREADS))


class RequestSlots:
    """WSGI middleware: at most `slots` requests of this process run the app at once (the 4 threads of the former
    2 x 4 gthread web): ingest keeps its concurrency, and so its use of the database pool; the others wait their
    turn as they waited for a thread before.

    A slot is held while the app builds its response, not while the response is written: a stream holds one only
    while it opens (token, lease, position), never while it runs, and a slow reader holds none."""

    def __init__(self, app: Callable[..., Iterable[bytes]], slots: int) -> None:
        self.app = app
        self._slots = threading.BoundedSemaphore(slots)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        with self._slots:
            return self.app(environ, start_response)
