"""The lease heartbeat of running header jobs.

One daemon thread per worker process renews the lease of every job that process is running, once a quarter of
the lease has passed since the last renewal (models/batch_lifecycle.py renew_lease). A job shorter than that
writes nothing beyond its start; a process that dies stops renewing, and the sweeper finds the job by its
silence once the lease runs out (tasks/maintenance.py).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from models.batch_lifecycle import renew_lease
from tasks.context import database, settings

log = logging.getLogger("devpulse.heartbeat")


@dataclass
class _Lease:
    developer_id: str
    batch_id: uuid.UUID
    job: str
    attempt: int
    renewed: float = field(default_factory=time.monotonic)


class Heartbeat:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[int, _Lease] = {}
        self._thread: threading.Thread | None = None
        self._pid = 0

    @contextmanager
    def held(self, developer_id: str, batch_id: uuid.UUID, job: str, attempt: int) -> Iterator[None]:
        """Keep the lease of this job run alive while the block runs (the lease itself began in start_job)."""
        lease = _Lease(developer_id, batch_id, job, attempt)
        with self._lock:
            self._held[id(lease)] = lease
            if self._thread is None or not self._thread.is_alive() or self._pid != os.getpid():
                # Lazily, in the process that runs jobs: a thread does not survive the pool's fork.
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name="job-lease-heartbeat", daemon=True)
                self._thread.start()
        try:
            yield
        finally:
            with self._lock:
                self._held.pop(id(lease), None)

    def _run(self) -> None:
        while True:
            lease_seconds = settings().job_lease_seconds
            every = lease_seconds / 4
            time.sleep(every / 2)
            with self._lock:
                due = [lease for lease in self._held.values() if time.monotonic() - lease.renewed >= every]
            for lease in due:
                try:
                    with database().transaction() as session:
                        renew_lease(session, lease.developer_id, lease.batch_id, lease.job, attempt=lease.attempt,
                                    lease_seconds=lease_seconds)
                    lease.renewed = time.monotonic()
                except Exception as exc:  # the database is away: the lease may run out, the sweeper decides
                    log.warning("could not renew the lease of %s for batch %s: %s", lease.job, lease.batch_id, exc)


heartbeat = Heartbeat()
