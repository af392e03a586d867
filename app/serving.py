"""Serving: the web process runs on gevent (gunicorn `--worker-class gevent`, see the Procfile and README).

Alert streams are long-lived and mostly idle: on gevent each is a greenlet waiting on a socket, so open streams
take no request thread from ingest. Two things make the rest of the app behave as it did on threads:

- `make_drivers_cooperative`: psycopg2 is a C extension that gevent's monkey-patching cannot reach; with a
  wait callback (psycogreen) it yields to other greenlets while it waits for PostgreSQL instead of blocking
  the whole process. redis-py and kombu are pure Python on patched sockets and cooperate already.
- `RequestSlots`: at most `slots` requests run the app at once per process (the 4 threads of the former gthread
  worker), so ingest keeps the concurrency, and the database pool use, it was tuned with; the others wait their
  turn as they waited for a thread before. A slot is held while the app builds its response, not while the
  response is written: a stream holds one only while it opens (token, lease, position), never while it runs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

# How gunicorn serves the app: the Procfile's `web` line, the Dockerfile, docker-compose.yml, make bench and the
# fault tests all run it so (tests/test_deployment_files.py keeps the text files in step with this).
GUNICORN_WORKER_ARGS = ("--worker-class", "gevent", "--worker-connections", "1000")


def make_drivers_cooperative() -> bool:
    """Under gevent's monkey-patching, make psycopg2 cooperative; True when it was needed (and done)."""
    try:
        from gevent import monkey
    except ImportError:  # gevent not installed: plain threads everywhere
        return False
    if not monkey.is_module_patched("socket"):
        return False
    from psycogreen.gevent import patch_psycopg

    patch_psycopg()
    return True


class RequestSlots:
    """WSGI middleware: bounds the requests that run the app at once in this process."""

    def __init__(self, app: Callable[..., Iterable[bytes]], slots: int) -> None:
        self.app = app
        # Created inside the serving process, after gevent patched `threading`: a cooperative semaphore there.
        self._slots = threading.BoundedSemaphore(slots)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        # Held while the app computes the response; writing it to the client (a stream's whole life, and the
        # after-response work in close()) happens outside, so neither a slow reader nor a stream holds a slot.
        with self._slots:
            return self.app(environ, start_response)
