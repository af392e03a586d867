"""Soak: a steady stream of batches for SOAK_MINUTES (default 10) with a fault injected every
SOAK_FAULT_EVERY seconds (default 60), rotating: Redis stopped (restarts empty), PostgreSQL crashed
(immediate shutdown), worker SIGKILLed; each lasts SOAK_FAULT_SECONDS (default 10), then is healed.

The client behaves like the extension: a batch answered 503 (or not at all) is resent with the same
batch_id after its Retry-After. At the end every batch is acknowledged, stored exactly once with all its
events, processed, and the metrics equal what the stored events give.

Not part of the default run: `make soak` (pytest -m soak). SOAK_MINUTES=2 SOAK_FAULT_EVERY=40 gives a
3-minute check that still hits each kind of fault once.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import text

from tests.faults.harness import (
    DEFAULT_RECOVERY,
    FaultStack,
    Ledger,
    Load,
    assert_exact,
    check_store,
    report,
    wait_terminal,
)

SOAK_MINUTES = float(os.environ.get("SOAK_MINUTES", "10"))
FAULT_EVERY = float(os.environ.get("SOAK_FAULT_EVERY", "60"))
FAULT_SECONDS = float(os.environ.get("SOAK_FAULT_SECONDS", "10"))
# ~8 batches/s is all this 2-core box processes with web, worker, PostgreSQL and the load sharing it;
# the default leaves room to drain the backlog each fault leaves (SOAK_RATE=10 on a bigger machine).
RATE = float(os.environ.get("SOAK_RATE", "5"))
DEVELOPERS = [f"soak-dev-{i}" for i in range(int(os.environ.get("SOAK_DEVELOPERS", "30")))]
FIRST_FAULT_AT = min(20.0, FAULT_EVERY / 3)
KINDS = ("redis", "postgres", "worker")


class Supervisor(threading.Thread):
    """Restarts web, worker or beat when one exits on its own, as the platform's process manager would,
    and counts those exits: each is a finding (a process should survive a Redis or PostgreSQL restart).
    Faults are injected and healed under `lock`, so an intended kill is never mistaken for an exit."""

    def __init__(self, stack: FaultStack) -> None:
        super().__init__(daemon=True, name="soak-supervisor")
        self.stack = stack
        self.lock = threading.Lock()
        self.exits: Counter[str] = Counter()
        self._halt = threading.Event()

    def run(self) -> None:
        starters = {"web": self.stack.start_web, "worker": self.stack.start_worker, "beat": self.stack.start_beat}
        while not self._halt.wait(1.0):
            with self.lock:
                for name, start in starters.items():
                    svc = self.stack.services.get(name)
                    if svc is None or svc.proc is None or svc.running:
                        continue
                    self.exits[name] += 1
                    print(f"\n[soak] {name} exited with {svc.proc.returncode}; restarting. Last lines:\n"
                          f"{svc.tail(15)}", file=sys.stderr, flush=True)
                    svc.kill()
                    start()

    def stop(self) -> None:
        self._halt.set()
        self.join(60)


def _inject(stack: FaultStack, kind: str) -> None:
    if kind == "redis":
        stack.redis.stop()
    elif kind == "postgres":
        stack.pg.stop("immediate")
    else:
        stack.kill("worker")


def _heal(stack: FaultStack, kind: str) -> None:
    if kind == "redis":
        stack.redis.start()  # same port, empty
    elif kind == "postgres":
        stack.pg.start()  # same port and data dir: crash recovery
    else:
        stack.start_worker()


def _unfinished_received_before(stack: FaultStack, wall: float) -> int | None:
    try:
        with stack.db.engine.connect() as c:
            return int(c.execute(text(
                "SELECT count(*) FROM batches WHERE status IN ('persisted', 'dispatched', 'processing')"
                " AND received_at <= to_timestamp(:t)"), {"t": wall}).scalar_one())
    except Exception:
        return None


@pytest.mark.soak
@pytest.mark.timeout(int(SOAK_MINUTES * 60 + 900))
def test_soak_steady_load_with_rotating_faults(fault_stack):
    # Durable: an immediate shutdown is a crash, and acknowledged commits must survive it. Recovery settings at
    # their defaults (STUCK_AFTER_SECONDS, time limits, hence the visibility timeout): recovery as deployed.
    stack = fault_stack(durable_postgres=True, **DEFAULT_RECOVERY)
    stack.start_web()
    stack.start_worker()
    stack.start_beat()
    ledger = Ledger()
    faults: list[dict[str, Any]] = []
    duration = SOAK_MINUTES * 60
    supervisor = Supervisor(stack)
    supervisor.start()
    try:
        with Load(stack, ledger, threads=4, rate=RATE, developers=DEVELOPERS):
            t0 = time.monotonic()
            end = t0 + duration
            i = 0
            while True:
                fault_at = t0 + FIRST_FAULT_AT + i * FAULT_EVERY
                if fault_at + FAULT_SECONDS >= end:
                    break
                time.sleep(max(0.0, fault_at - time.monotonic()))
                kind = KINDS[i % len(KINDS)]
                with supervisor.lock:
                    _inject(stack, kind)
                    time.sleep(FAULT_SECONDS)
                    _heal(stack, kind)
                fault = {"kind": kind, "at_s": round(fault_at - t0, 1), "healed": time.monotonic(),
                         "healed_wall": time.time(), "recovery_s": None}
                faults.append(fault)
                # Recovery: every batch received before the heal is finished (measured until the next fault).
                _measure_recovery(stack, fault, until=min(end, t0 + FIRST_FAULT_AT + (i + 1) * FAULT_EVERY))
                i += 1
            time.sleep(max(0.0, end - time.monotonic()))
        posted_for = time.monotonic() - t0
        for fault in faults:  # the last one may still be recovering when the load stops
            if fault["recovery_s"] is None:
                fault["late"] = fault is not faults[-1]  # then only an upper bound
                _measure_recovery(stack, fault, until=time.monotonic() + 180)
        ledger.resend_outstanding(stack, timeout=120)
        try:
            done, unfinished = wait_terminal(stack, list(ledger.acked), 300), ""
        except AssertionError as exc:  # report the figures first
            done, unfinished = time.monotonic(), str(exc)
    finally:
        supervisor.stop()

    replies = list(ledger.replies)
    bad = [r for r in replies if r.status not in (200, 202, 503) or r.error]
    figures = check_store(stack, ledger)
    recoveries = [f["recovery_s"] for f in faults]
    worst = None if None in recoveries or not recoveries else max(recoveries)
    report("soak", figures, worst, minutes=SOAK_MINUTES, rate=RATE, posted_for_s=round(posted_for, 1),
           drain_s=round(done - t0 - posted_for, 1), answers_503=sum(1 for r in replies if r.status == 503),
           unexpected_exits=dict(supervisor.exits) or 0,
           faults=";".join(f"{f['kind']}@{f['at_s']}s:{_rec(f)}" for f in faults))
    assert not bad, bad[:5]
    assert len(faults) >= min(3, int((duration - FIRST_FAULT_AT) // FAULT_EVERY)), faults
    assert figures.ack >= 0.5 * RATE * duration, figures.ack  # the load really ran
    assert_exact(figures)  # on failure: the audit trail of the first batches not processed
    assert not unfinished, unfinished


def _measure_recovery(stack: FaultStack, fault: dict[str, Any], until: float) -> None:
    while fault["recovery_s"] is None and time.monotonic() < until:
        if _unfinished_received_before(stack, fault["healed_wall"]) == 0:
            fault["recovery_s"] = time.monotonic() - fault["healed"]
            return
        time.sleep(0.5)


def _rec(fault: dict[str, Any]) -> str:
    value = fault["recovery_s"]
    if value is None:
        return "none"
    return f"{'<=' if fault.get('late') else ''}{value:.1f}s"
