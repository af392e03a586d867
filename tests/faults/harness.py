"""Fault-injection harness: every test owns its servers and processes, and stops all of them.

A `FaultStack` is a throwaway PostgreSQL (EmbeddedPostgres) + Redis (EmbeddedRedis) in a temp dir,
migrated to head, plus the real processes of the Procfile started as subprocesses on loopback:
gunicorn (web), a prefork Celery worker and, where the relay/sweeper must run on their own, beat.
Each process runs in its own session (process group), so a fault is a signal to the whole group
and teardown leaves nothing behind. Never touches the suite's shared servers.

Figures: `report()` prints `FAULT-RESULT name ack=.. stored=.. processed=.. dup=.. lost=.. recovery_s=..`
(run with -s to see them) and, if FAULT_RESULTS_FILE is set, appends them there as JSON lines.

The `fault_stack` fixture and the hooks the tests rely on are in tests/faults/conftest.py.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import timedelta
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import text

from app.serving import GUNICORN_WORKER_ARGS
from core.settings import Settings
from devstack.servers import EmbeddedPostgres, EmbeddedRedis, free_port, migrate
from models.db import Database
from models.tokens import create_token
from tests.support.factories import batch, event, now

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin" if (ROOT / ".venv" / "bin" / "celery").exists() else Path(sys.executable).parent
QUEUES = "aggregation,normalization,danger,pipeline,maintenance"
INGEST_PATH = "/api/workflow/events/orchestrate"
DEVELOPER = "dev-fault"
# The Procfile's web worker class (request read deadlines, app/web_worker.py), as deployed.
TERMINAL = ("processed", "processed_with_errors", "failed")

# Short timeouts so every recovery path (relay backoff, breaker half-open, sweeper) fits in seconds.
FAULT_ENV = {
    "LOG_JSON": "0",
    "LOG_LEVEL": "WARNING",
    "STUCK_AFTER_SECONDS": "5",
    "OUTBOX_BASE_DELAY_SECONDS": "0.5",
    "OUTBOX_MAX_DELAY_SECONDS": "2",
    "DB_BREAKER_RESET_TIMEOUT": "2",
    "RATE_LIMIT_PER_SECOND": "100000",
    "RATE_LIMIT_BURST": "100000",
    "RATE_LIMIT_EVENTS_PER_SECOND": "1000000000000",
    "RATE_LIMIT_EVENTS_BURST": "1000000000000",
    "RATE_LIMIT_BYTES_PER_SECOND": "1000000000000",
    "RATE_LIMIT_BYTES_BURST": "1000000000000",
    "TASK_TIME_LIMIT": "20",
    "TASK_SOFT_TIME_LIMIT": "15",
}
# The recovery settings FAULT_ENV shortens, at their defaults: for the tests that measure recovery as deployed.
DEFAULT_RECOVERY = {name: getattr(Settings(), name)
                    for name in ("stuck_after_seconds", "task_time_limit", "task_soft_time_limit")}
# Inherited variables that would point a child at other servers or change its behaviour.
_SETTINGS_ENV = {f.name.upper() for f in fields(Settings)}
_DROP_ENV = {"PROMETHEUS_MULTIPROC_DIR", "ADMIN_ALERT_WEBHOOK_URL", "ALERT_WEBHOOK_URL", "ALERT_WEBHOOK_SECRET"}


# --------------------------------------------------------------------------------------------- processes


class Service:
    """One subprocess in its own process group; stopping it signals the whole group."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Service:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, sig)

    def kill(self) -> None:
        """SIGKILL to every process of the group (e.g. the worker's pool children too)."""
        if self.proc is None:
            return
        self.signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        self.proc = None

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class FaultStack:
    """PostgreSQL + Redis + web + worker (+ beat) that one test owns."""

    def __init__(self, root: Path, *, durable_postgres: bool = False, **env: Any) -> None:
        self.root = root
        self.pg = EmbeddedPostgres(root / "pg", durable=durable_postgres)
        self.redis = EmbeddedRedis(root / "redis")
        self.web_port = free_port()
        self.overrides = {k.upper(): str(v) for k, v in env.items()}
        self.services: dict[str, Service] = {}
        self._generation = 0
        self.db = Database()
        self.database_url = ""
        self.token = ""
        self._tokens: dict[str, str] = {}
        self._tokens_lock = threading.Lock()

    # -- servers
    def start_servers(self) -> FaultStack:
        self.pg.start()
        self.database_url = self.pg.create_database("devpulse")
        migrate(self.database_url)
        self.redis.start()
        self.db.configure(self.database_url, pool_size=2)
        self.token = self.token_for(DEVELOPER)
        return self

    def token_for(self, developer_id: str) -> str:
        """A developer token, created once per developer (call before the database may be down)."""
        with self._tokens_lock:
            if developer_id not in self._tokens:
                with self.db.transaction() as s:
                    self._tokens[developer_id] = create_token(s, developer_id, label="faults")
            return self._tokens[developer_id]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k not in _SETTINGS_ENV and k not in _DROP_ENV and not k.startswith("DANGER_")}
        env.update(FAULT_ENV)
        env.update(self.overrides)
        env.update(DATABASE_URL=self.database_url, REDIS_URL=self.redis.url(), PYTHONUNBUFFERED="1")
        return env

    def _service(self, name: str, argv: list[str]) -> Service:
        old = self.services.get(name)
        if old is not None and old.running:
            raise RuntimeError(f"{name} is already running")
        self._generation += 1
        svc = Service(name, argv, self.env(), self.root / f"{name}.log").start()
        self.services[name] = svc
        return svc

    # -- processes
    def start_web(self, wait: float = 30.0, *, serving: tuple[str, ...] = GUNICORN_WORKER_ARGS) -> Service:
        """gunicorn as the Procfile runs it (`serving`: other worker arguments, e.g. the former gthread ones)."""
        svc = self._service("web", [
            str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{self.web_port}", "--workers", "2", *serving,
            "--timeout", "60", "--graceful-timeout", "2", "--no-control-socket", "app:create_app()",
        ])
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not svc.running:
                raise RuntimeError(f"gunicorn exited:\n{svc.tail()}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.base_url}/healthz", timeout=1).status_code == 200:
                    return svc
            time.sleep(0.1)
        raise RuntimeError(f"gunicorn not ready within {wait}s:\n{svc.tail()}")

    def start_worker(self, app: str = "tasks") -> Service:
        # No mingle/gossip: a fresh worker starts consuming a second sooner; neither matters here.
        return self._service("worker", [
            str(BIN / "celery"), "-A", app, "worker", "-Q", QUEUES, "-c", "2", "-P", "prefork",
            "--loglevel", "WARNING", "-n", f"fault{self._generation}@%h", "--without-mingle", "--without-gossip",
        ])

    def start_beat(self) -> Service:
        return self._service("beat", [
            str(BIN / "celery"), "-A", "tasks", "beat", "-s", str(self.root / "beat-schedule"),
            "--loglevel", "WARNING",
        ])

    def kill(self, name: str) -> None:
        svc = self.services.get(name)
        if svc is not None:
            svc.kill()

    def redis_client(self):
        import redis

        return redis.Redis(host="127.0.0.1", port=self.redis.port, socket_connect_timeout=2, socket_timeout=5)

    # -- teardown
    def close(self, keep: bool = False) -> None:
        for svc in reversed(list(self.services.values())):
            svc.kill()
        if self.redis.process is not None:
            with contextlib.suppress(ProcessLookupError):
                self.redis.process.send_signal(signal.SIGCONT)  # in case a test left it stopped
        self.db.dispose()
        self.redis.stop()
        self.pg.stop("immediate")
        if not keep:
            shutil.rmtree(self.root, ignore_errors=True)

    def tails(self) -> str:
        parts = [f"--- {name} ({svc.log}) ---\n{svc.tail()}" for name, svc in self.services.items()]
        return "\n".join(parts)


# ------------------------------------------------------------------------------------------------ bodies


@dataclass
class Sent:
    """What one batch we posted holds (every event is valid, so all of them must be stored once)."""

    body: dict[str, Any]
    event_ids: list[str]
    edits: int

    @property
    def batch_id(self) -> str:
        return str(self.body["batch_id"])


def make_batch(n_events: int = 10, *, spread_minutes: int = 90, developer_id: str = DEVELOPER) -> Sent:
    t_end = now() - timedelta(seconds=30)
    events = []
    edits = 0
    for i in range(n_events):
        ts = t_end - timedelta(seconds=random.randint(0, spread_minutes * 60))
        if i % 3 == 2:
            events.append(event("file.save", ts, file=f"src/m{i % 7}.py"))
        else:
            edits += 1
            events.append(event("file.edit", ts, file=f"src/m{i % 7}.py", lines_added=random.randint(0, 9),
                                lines_deleted=random.randint(0, 3), chars_typed=random.randint(0, 200)))
    body = batch(events, developer_id=developer_id)
    return Sent(body, [e["event_id"] for e in events], edits)


@dataclass
class Reply:
    batch_id: str
    sent_at: float  # time.monotonic() when the request left
    latency: float  # seconds
    status: int  # 0: no HTTP answer (connection error / timeout)
    retry_after: str | None = None
    error: str | None = None


def post(session: requests.Session, stack: FaultStack, sent: Sent, timeout: float = 15.0) -> Reply:
    t0 = time.monotonic()
    try:
        r = session.post(stack.base_url + INGEST_PATH, json=sent.body, timeout=(2, timeout),
                         headers={"Authorization": f"Bearer {stack.token_for(sent.body['developer_id'])}"})
    except requests.RequestException as exc:
        return Reply(sent.batch_id, t0, time.monotonic() - t0, 0, error=f"{type(exc).__name__}: {exc}"[:200])
    reply = Reply(sent.batch_id, t0, time.monotonic() - t0, r.status_code, r.headers.get("Retry-After"))
    if r.status_code not in (200, 202, 503):
        reply.error = r.text[:300]
    elif r.status_code in (200, 202):
        body = r.json()
        expected = "duplicate" if r.status_code == 200 else "accepted"
        if body.get("status") != expected or (r.status_code == 202 and body.get("accepted") != len(sent.event_ids)):
            reply.error = f"unexpected body {body}"[:300]
    return reply


class Ledger:
    """Batches we posted and which of them the server acknowledged (202, or 200 'duplicate' on a resend)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.sent: dict[str, Sent] = {}
        self.acked: dict[str, int] = {}  # batch_id -> status of the acknowledging answer
        self.replies: list[Reply] = []

    def record(self, sent: Sent, reply: Reply) -> None:
        with self._lock:
            self.sent.setdefault(sent.batch_id, sent)
            self.replies.append(reply)
            if reply.status in (200, 202) and reply.error is None:
                self.acked.setdefault(sent.batch_id, reply.status)

    def outstanding(self) -> list[Sent]:
        with self._lock:
            return [s for b, s in self.sent.items() if b not in self.acked]

    def acked_sent(self) -> list[Sent]:
        with self._lock:
            return [self.sent[b] for b in self.acked]

    def post(self, session: requests.Session, stack: FaultStack, sent: Sent, timeout: float = 15.0) -> Reply:
        reply = post(session, stack, sent, timeout)
        self.record(sent, reply)
        return reply

    def resend_outstanding(self, stack: FaultStack, timeout: float = 60.0) -> None:
        """Like a client after an outage: resend every unacknowledged batch (same batch_id) until it is."""
        deadline = time.monotonic() + timeout
        with requests.Session() as session:
            while (todo := self.outstanding()) and time.monotonic() < deadline:
                for sent in todo:
                    reply = self.post(session, stack, sent)
                    if reply.status not in (200, 202):
                        time.sleep(0.2)
        assert not self.outstanding(), f"{len(self.outstanding())} batch(es) never acknowledged"


class Load:
    """Posts new batches from a few threads (optionally paced to `rate` batches/s overall).

    An unacknowledged batch is resent with the same batch_id, as a client would: with `sticky_pause`
    the thread keeps resending it every `sticky_pause` seconds before it posts anything new (an
    impatient client: many samples of the error path, few batches in flight); otherwise it is resent
    after its Retry-After (at most 2 s) while new batches go on at the paced rate.
    """

    def __init__(self, stack: FaultStack, ledger: Ledger, *, threads: int = 4, rate: float | None = None,
                 events_per_batch: int = 10, sticky_pause: float | None = None,
                 max_batches: int = 100_000, developers: list[str] | None = None) -> None:
        self.stack = stack
        self.ledger = ledger
        self.threads = threads
        self.rate = rate
        self.events_per_batch = events_per_batch
        self.sticky_pause = sticky_pause
        self.max_batches = max_batches
        self.developers = developers or [DEVELOPER]
        for developer in self.developers:
            stack.token_for(developer)
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []
        self._count = 0
        self._count_lock = threading.Lock()

    def __enter__(self) -> Load:
        for i in range(self.threads):
            t = threading.Thread(target=self._run, args=(i,), daemon=True, name=f"load-{i}")
            self._workers.append(t)
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for t in self._workers:
            t.join(30)
        assert not any(t.is_alive() for t in self._workers), "load threads did not stop"

    def _take(self) -> bool:
        with self._count_lock:
            if self._count >= self.max_batches:
                return False
            self._count += 1
            return True

    def _run(self, index: int) -> None:
        interval = self.threads / self.rate if self.rate else 0.0
        next_at = time.monotonic() + index * interval / self.threads
        retry: list[tuple[float, Sent]] = []
        current: Sent | None = None
        with requests.Session() as session:
            while not self._stop.is_set():
                if current is None:
                    if interval:
                        delay = next_at - time.monotonic()
                        if delay > 0 and self._stop.wait(delay):
                            break
                        next_at = max(next_at + interval, time.monotonic() - interval)
                    if retry and retry[0][0] <= time.monotonic():
                        current = retry.pop(0)[1]
                    elif self._take():
                        current = make_batch(self.events_per_batch, spread_minutes=30,
                                             developer_id=random.choice(self.developers))
                    else:
                        self._stop.wait(0.05)
                        continue
                reply = self.ledger.post(session, self.stack, current)
                if reply.status in (200, 202):
                    current = None
                elif self.sticky_pause is not None:
                    self._stop.wait(self.sticky_pause)
                else:
                    wait = float(reply.retry_after) if (reply.retry_after or "").isdigit() else 1.0
                    retry.append((time.monotonic() + min(wait, 2.0), current))
                    current = None


# ------------------------------------------------------------------------------------------------ checks


def statuses(stack: FaultStack, batch_ids: list[str]) -> dict[str, str]:
    with stack.db.engine.connect() as c:
        rows = c.execute(text("SELECT batch_id::text, status FROM batches WHERE batch_id = ANY(CAST(:ids AS uuid[]))"),
                         {"ids": batch_ids}).all()
    return dict(rows)


def wait_terminal(stack: FaultStack, batch_ids: list[str], timeout: float) -> float:
    """Wait until every batch is terminal; returns the time.monotonic() at which that was seen."""
    deadline = time.monotonic() + timeout
    seen: dict[str, str] = {}
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):  # the database may still be coming back
            seen = statuses(stack, batch_ids)
            if len(seen) == len(batch_ids) and all(s in TERMINAL for s in seen.values()):
                return time.monotonic()
        time.sleep(0.2)
    pending = Counter(seen.get(b, "missing") for b in batch_ids)
    raise AssertionError(f"not every batch terminal within {timeout}s: {dict(pending)}\n"
                         f"{_stuck_detail(stack, [b for b in batch_ids if seen.get(b) not in TERMINAL][:3])}\n"
                         f"{stack.tails()}")


def _stuck_detail(stack: FaultStack, batch_ids: list[str]) -> str:
    """The jobs and audit trail of batches that did not end (what a failure message needs to be read)."""
    out = []
    with contextlib.suppress(Exception), stack.db.engine.connect() as c:
        for bid in batch_ids:
            jobs = c.execute(text("SELECT job, status, dispatch_attempt, attempts, lost_runs, lease_expires_at "
                                  "FROM batch_jobs WHERE batch_id = CAST(:b AS uuid) ORDER BY job"), {"b": bid}).all()
            batch = c.execute(text("SELECT status, dispatch_count FROM batches WHERE batch_id = CAST(:b AS uuid)"),
                              {"b": bid}).all()
            trail = c.execute(text("SELECT step, details->>'job', details->>'attempt' FROM audit_log "
                                   "WHERE batch_id = CAST(:b AS uuid) ORDER BY id"), {"b": bid}).all()
            out.append(f"batch {bid}: {batch}\n  jobs: {jobs}\n  trail: {trail}")
    return "\n".join(out)


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            value = predicate()
            if value:
                return value
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout}s")


@dataclass
class Figures:
    ack: int
    stored: int
    processed: int
    dup: int
    lost: int
    half_written: int
    statuses: dict[str, int]
    details: dict[str, Any] = field(default_factory=dict)


def check_store(stack: FaultStack, ledger: Ledger) -> Figures:
    """Compare what PostgreSQL holds with what the server acknowledged; every figure from the database."""
    acked = ledger.acked_sent()
    acked_ids = [s.batch_id for s in acked]
    with stack.db.engine.connect() as c:
        # An event is stored once per (developer, event_id): the key of raw_events.
        total, distinct = c.execute(text("SELECT count(*), count(DISTINCT (developer_id, event_id)) FROM raw_events")
                                    ).one()
        stored_ids = {str(r[0]) for r in c.execute(text("SELECT event_id FROM raw_events"))}
        batches = c.execute(text(
            "SELECT b.batch_id::text, b.status, b.accepted, b.dispatch_count,"
            " (SELECT count(*) FROM raw_events r WHERE r.developer_id = b.developer_id AND r.batch_id = b.batch_id),"
            " b.last_error FROM batches b")).all()
        completed = dict(c.execute(text(
            "SELECT batch_id::text, count(*) FROM audit_log WHERE step = 'completed' AND NOT is_replay"
            " GROUP BY batch_id")).all())
        alerts, episodes = c.execute(text(
            "SELECT count(*), count(DISTINCT (developer_id, pattern, episode_key)) FROM alerts")).one()
        day_events, day_edits = c.execute(text(
            "SELECT coalesce(sum(events), 0), coalesce(sum(edits), 0) FROM metric_slots")).one()
        # Hours and days are sums of slots at read time: one figure stands for both.
        hour_events = day_events
        stored_edits = c.execute(text("SELECT count(*) FROM raw_events WHERE type = 'file.edit'")).scalar_one()
        outbox = dict(c.execute(text("SELECT status, count(*) FROM outbox GROUP BY status")).all())
    by_id = {b[0]: b for b in batches}
    acked_events = {e for s in acked for e in s.event_ids}
    half_written = [b[0] for b in batches if b[2] != b[4]]
    lost_events = acked_events - stored_ids
    not_processed = [b for b in acked_ids if by_id.get(b, (None, None))[1] != "processed"]
    trails = {}
    with stack.db.engine.connect() as c:
        twice = [b for b, n in completed.items() if n > 1]
        for batch_id in not_processed[:3] + twice[:3]:  # what happened to them, for the failure message
            trails[batch_id] = [f"{r[0]:%H:%M:%S.%f} {r[1]} {json.dumps(r[2], default=str)[:300]}" for r in c.execute(
                text("SELECT created_at, step, details FROM audit_log WHERE batch_id = CAST(:b AS uuid) ORDER BY id"),
                {"b": batch_id})]
            trails[batch_id].append(f"batch: {by_id.get(batch_id)}")
    multi_completed = sum(max(0, n - 1) for n in completed.values())
    # Events stored for batches nobody acknowledged (e.g. the answer was lost and never resent).
    unacked_stored = stored_ids - acked_events
    figures = Figures(
        ack=len(acked_ids),
        stored=int(total),
        processed=sum(1 for b in acked_ids if by_id.get(b, (None, None))[1] == "processed"),
        dup=int(total - distinct) + multi_completed + int(alerts - episodes),
        lost=len(lost_events) + len(not_processed),
        half_written=len(half_written),
        statuses=dict(Counter(b[1] for b in batches)),
        details={
            "acked_events": len(acked_events), "unacked_stored_events": len(unacked_stored),
            "lost_events": len(lost_events), "not_processed": len(not_processed),
            "batches_completed_twice": multi_completed, "alerts": int(alerts), "alert_episodes": int(episodes),
            "day_events": int(day_events), "hour_events": int(hour_events), "day_edits": int(day_edits),
            "stored_edits": int(stored_edits), "posted_edits": sum(s.edits for s in acked),
            "redispatched_batches": sum(1 for b in batches if b[3] > 1), "outbox": outbox,
            "not_processed_trails": trails,
        },
    )
    return figures


def assert_exact(figures: Figures, *, expect_ack: int | None = None) -> None:
    d = figures.details
    if expect_ack is not None:
        assert figures.ack == expect_ack, f"acknowledged {figures.ack} of {expect_ack}"
    assert figures.half_written == 0, f"{figures.half_written} batch(es) whose raw events != accepted"
    assert d["lost_events"] == 0, f"{d['lost_events']} acknowledged event(s) not stored"
    assert d["unacked_stored_events"] == 0, f"{d['unacked_stored_events']} stored event(s) never acknowledged"
    assert figures.stored == d["acked_events"], (figures.stored, d["acked_events"])
    assert figures.dup == 0, f"duplicates: {figures}\n" + json.dumps(d["not_processed_trails"], indent=1)
    assert d["not_processed"] == 0, (f"{d['not_processed']} acknowledged batch(es) not processed: {figures.statuses}\n"
                                     + json.dumps(d["not_processed_trails"], indent=1))
    assert figures.lost == 0
    # Derived rows recomputed from stored events: exact, nothing counted twice or missed.
    assert d["day_events"] == figures.stored, (d["day_events"], figures.stored)
    assert d["hour_events"] == figures.stored, (d["hour_events"], figures.stored)
    assert d["day_edits"] == d["stored_edits"] == d["posted_edits"], d
    assert "dead_letter" not in d["outbox"], d["outbox"]


def report(name: str, figures: Figures, recovery_s: float | None, **extra: Any) -> None:
    rec = "n/a" if recovery_s is None else f"{recovery_s:.1f}"
    line = (f"FAULT-RESULT {name} ack={figures.ack} stored={figures.stored} processed={figures.processed} "
            f"dup={figures.dup} lost={figures.lost} recovery_s={rec}")
    if extra:
        line += " " + " ".join(f"{k}={_fmt(v)}" for k, v in extra.items())
    print("\n" + line, flush=True)
    path = os.environ.get("FAULT_RESULTS_FILE")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps({"name": name, "ack": figures.ack, "stored": figures.stored,
                                  "processed": figures.processed, "dup": figures.dup, "lost": figures.lost,
                                  "recovery_s": recovery_s, "half_written": figures.half_written,
                                  "details": figures.details, **extra}, default=str) + "\n")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if value < 1 else f"{value:.1f}"
    return str(value).replace(" ", "")


def percentile(values: list[float], p: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))
    return ordered[k]

