"""Circuit-breaker state is shared by real processes: two gunicorn workers and a Celery worker.

The `database` breaker is opened in Redis by another process (this test); both web workers then answer 503
without touching PostgreSQL and the Celery worker's jobs are refused too (retried later); one POST .../reset,
served by one web worker, closes it in every process within the snapshot's refresh interval.
"""

from __future__ import annotations

import time
import uuid

import pytest
import requests
from celery import Celery

from core.breakers import BreakerRegistry
from models.tokens import create_token
from tests.faults.harness import DEVELOPER, INGEST_PATH, make_batch, post, wait_for, wait_terminal

BREAKERS = "/api/admin/circuit-breakers"


def _by_pid(stack, admin: str, want: int = 2, timeout: float = 20.0) -> dict[int, dict]:
    """The breaker listing of each web worker process (requests land on either)."""
    seen: dict[int, dict] = {}
    deadline = time.monotonic() + timeout
    while len(seen) < want and time.monotonic() < deadline:
        with requests.Session() as s:  # a new connection each time: the kernel picks a worker
            r = s.get(stack.base_url + BREAKERS, headers={"Authorization": f"Bearer {admin}"}, timeout=5)
        assert r.status_code == 200, r.text
        body = r.json()
        seen[body["pid"]] = {b["name"]: b for b in body["circuit_breakers"]}
    assert len(seen) >= want, f"only {len(seen)} web process(es) answered"
    return seen


@pytest.mark.fault
def test_breaker_state_and_reset_are_shared_by_web_and_worker_processes(fault_stack):
    stack = fault_stack(db_breaker_reset_timeout=60, task_max_retries=20)
    stack.start_web()
    stack.start_worker()
    with stack.db.transaction() as s:
        admin = create_token(s, None, admin=True, label="faults")
    # Warm both web workers' token caches (30 s): with the breaker open, a token lookup is refused too.
    _by_pid(stack, admin)
    with requests.Session() as s:
        sent = make_batch(3)
        assert post(s, stack, sent).status == 202
    wait_terminal(stack, [sent.batch_id], 60)
    for _ in range(20):
        with requests.Session() as s:
            s.get(f"{stack.base_url}/api/workflow/batches/{sent.batch_id}",
                  headers={"Authorization": f"Bearer {stack.token}"}, timeout=5)

    elsewhere = BreakerRegistry()  # a third process's view: opens the breaker in Redis
    elsewhere.configure(stack.redis.url())
    try:
        elsewhere.get("database", fail_max=5, reset_timeout=60).open()
        time.sleep(1.2)  # the processes' snapshots refresh within a second

        listings = _by_pid(stack, admin)
        assert {pid: b["database"]["state"] for pid, b in listings.items()} == {pid: "open" for pid in listings}
        assert all(b["database"]["source"] == "redis" for b in listings.values())
        pids_503 = set()
        deadline = time.monotonic() + 20
        while len(pids_503) < 2 and time.monotonic() < deadline:
            with requests.Session() as s:
                r = s.post(stack.base_url + INGEST_PATH, json=make_batch(1).body,
                           headers={"Authorization": f"Bearer {stack.token}"}, timeout=5)
                assert r.status_code == 503, r.text
                who = s.get(stack.base_url + BREAKERS, headers={"Authorization": f"Bearer {admin}"}, timeout=5)
            pids_503.add(who.json()["pid"])
        assert len(pids_503) == 2

        # The Celery worker obeys it too: a job sent now is refused (and retried), not run.
        celery = Celery(broker=stack.redis.url(), backend=stack.redis.url())
        ctx = {"batch_id": sent.batch_id, "developer_id": DEVELOPER, "correlation_id": uuid.uuid4().hex,
               "is_replay": True, "attempt": 2}
        job = celery.send_task("devpulse.normalize", args=(ctx,), queue="normalization")
        wait_for(lambda: "circuit breaker still open" in stack.services["worker"].tail(200), 30,
                 "the worker's job refused by the open breaker")
        assert not job.ready()

        # One reset, served by one web worker, closes it everywhere.
        with requests.Session() as s:
            r = s.post(f"{stack.base_url}{BREAKERS}/database/reset", headers={"Authorization": f"Bearer {admin}"},
                       timeout=5)
        assert r.status_code == 200
        time.sleep(1.2)
        listings = _by_pid(stack, admin)
        assert {pid: b["database"]["state"] for pid, b in listings.items()} == {pid: "closed" for pid in listings}
        assert elsewhere.get("database").current_state == "closed"
        with requests.Session() as s:
            for _ in range(6):
                assert post(s, stack, make_batch(1)).status == 202
        assert job.get(timeout=60)["ok"] is True  # the refused job ran once the breaker closed
        celery.close()
    finally:
        elsewhere.configure(None)
