"""The real stack on loopback: embedded PostgreSQL (fsync on) and Redis, gunicorn, a Celery worker and beat;
for phase A's comparison, also the textbook peer (bench/peers/textbook.py, not part of the product) under its
own gunicorn with the product's settings, on its own port, against the same PostgreSQL database.

Every process is started in its own session (process group) and stopped by that group id, gently first
(SIGTERM / PostgreSQL's fast shutdown), then SIGKILL after a bounded wait; `Stack.close()` runs on normal
exit, exceptions, Ctrl-C and SIGTERM.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from devstack.servers import EmbeddedPostgres, EmbeddedRedis

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
QUEUES = "aggregation,normalization,danger,pipeline,maintenance"


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _wait_ready(proc: Proc, what: str, ready_text: str, ready: Callable[[], bool], seconds: float, *,
                poll: float = 0.0) -> None:
    """Until `ready()`; a RuntimeError with the log's tail when the process exits or the time runs out."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{what} exited:\n{_tail(proc.log)}")
        if ready():
            return
        time.sleep(poll)
    raise RuntimeError(f"{what} did not {ready_text} within {seconds:g} s:\n{_tail(proc.log)}")


class Proc:
    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        with open(log, "ab") as out:
            self.popen = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM to the group we created (the master and its workers), SIGKILL after `timeout`."""
        pgid = self.popen.pid  # start_new_session: the group id is the leader's pid
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
            self.popen.wait(10)
        # Children that outlived their master (a killed gunicorn leaves none normally): same group, gone too.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except (ProcessLookupError, PermissionError):
                return
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
            time.sleep(0.1)


class Stack:
    def __init__(self, *, workers: int = 2, threads: int = 4, concurrency: int = 2) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="devpulse-bench-"))
        self.web_workers = workers
        self.web_threads = threads
        self.concurrency = concurrency
        self.pg: EmbeddedPostgres | None = None
        self.redis: EmbeddedRedis | None = None
        self.database_url = ""
        self.redis_url = ""
        self.web: Proc | None = None
        self.worker: Proc | None = None
        self.beat: Proc | None = None
        self.peer: Proc | None = None
        self.web_port = 0
        self.peer_port = 0

    # -- servers ---------------------------------------------------------------------------------------
    def start_servers(self) -> None:
        from devstack.servers import EmbeddedPostgres, EmbeddedRedis, migrate

        # durable=True: fsync, synchronous_commit and full_page_writes stay at PostgreSQL's defaults (on).
        self.pg = EmbeddedPostgres(self.dir / "pg", durable=True)  # assigned first: close() stops a half-started one
        self.pg.start(timeout=60)
        self.database_url = self.pg.create_database("devpulse_bench")
        # Redis without persistence: the architecture lets Redis lose everything (PostgreSQL is the truth).
        self.redis = EmbeddedRedis(self.dir / "redis", durable=False)
        self.redis.start()
        self.redis_url = self.redis.url(0)
        os.environ["DATABASE_URL"] = self.database_url
        os.environ["REDIS_URL"] = self.redis_url
        migrate(self.database_url)

    def pg_settings(self) -> dict[str, str]:
        out = {}
        with contextlib.closing(self.connect()) as conn, conn.cursor() as cur:
            for name in ("server_version", "fsync", "synchronous_commit", "full_page_writes", "wal_sync_method",
                         "shared_buffers", "max_connections"):
                cur.execute(f"SHOW {name}")
                out[name] = cur.fetchone()[0]
        return out

    def connect(self):
        import psycopg2

        assert self.pg is not None
        return psycopg2.connect(host="127.0.0.1", port=self.pg.port, user=self.pg.user, dbname="devpulse_bench",
                                application_name="devpulse-bench")

    def create_tokens(self, developer_ids: list[str]) -> dict[str, str]:
        from models.db import Database
        from models.tokens import create_token

        db = Database()
        db.configure(self.database_url, pool_size=1)
        try:
            with db.transaction() as session:
                return {d: create_token(session, d, label="bench") for d in developer_ids}
        finally:
            db.dispose()

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(DATABASE_URL=self.database_url, REDIS_URL=self.redis_url, PYTHONPATH=str(ROOT),
                   PYTHONUNBUFFERED="1", LOG_LEVEL="WARNING")
        # The bench measures ingest under the request-rate limit it always had; the per-token events/s and
        # bytes/s limits (which its closed-loop phases exceed by design) are off unless set.
        for name in ("RATE_LIMIT_EVENTS_PER_SECOND", "RATE_LIMIT_BYTES_PER_SECOND"):
            env.setdefault(name, "0")
        return env

    # -- processes -------------------------------------------------------------------------------------
    def _gunicorn(self, app: str, port: int, *, product: bool = True) -> list[str]:
        """The product's web settings, as the Procfile runs them (bench reports state them). The peer runs on
        the same number of workers with `threads` threads each: the concurrency the product's request slots give
        ingest (WEB_REQUEST_SLOTS, 4)."""
        from app.serving import GUNICORN_WORKER_ARGS

        serving = list(GUNICORN_WORKER_ARGS) if product else ["--threads", str(self.web_threads)]
        return [str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", str(self.web_workers), *serving,
                "--log-level", "warning", app]

    def _wait_answers(self, proc: Proc, port: int, path: str) -> None:
        """Until a GET of `path` answers below 500 (60 s at most)."""
        from bench.load import Client

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if not proc.alive():
                raise RuntimeError(f"{proc.name} exited:\n{_tail(proc.log)}")
            try:
                client = Client(port, timeout=2)
                status, _ = client.request("GET", path, None, {})
                client.close()
                if status < 500:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{proc.name} did not answer within 60 s:\n{_tail(proc.log)}")

    def start_web(self) -> None:
        from devstack.servers import free_port

        self.web_port = free_port()
        self.web = Proc("gunicorn", self._gunicorn("app:create_app()", self.web_port), self.env(),
                        self.dir / "gunicorn.log")
        self._wait_answers(self.web, self.web_port, "/api/workflow/batches/00000000-0000-0000-0000-000000000000")

    def start_peer(self) -> None:
        """The textbook peer (bench/peers/textbook.py) under gunicorn with the web's settings, on its own port;
        it creates its own tables (peer_batches, peer_events) in the bench database as it starts."""
        from devstack.servers import free_port

        self.peer_port = free_port()
        argv = self._gunicorn("bench.peers.textbook:create_app()", self.peer_port, product=False)
        self.peer = Proc("peer", argv, self.env(), self.dir / "peer.log")
        self._wait_answers(self.peer, self.peer_port, "/healthz")

    def stop_peer(self) -> None:
        """SIGTERM to the peer's gunicorn group (its master and workers); SIGKILL after 15 s."""
        if self.peer is not None:
            self.peer.stop()
            self.peer = None

    def start_worker(self) -> None:
        argv = [str(BIN / "celery"), "-A", "bench.celery_bench", "worker", "-Q", QUEUES,
                "--concurrency", str(self.concurrency), "--prefetch-multiplier", "1", "-P", "prefork",
                "--loglevel", "WARNING"]
        self.worker = Proc("celery", argv, self.env(), self.dir / "celery.log")
        from bench.celery_bench import app

        _wait_ready(self.worker, "celery worker", "answer a ping", lambda: bool(app.control.ping(timeout=1.0)), 90)

    def stop_worker(self) -> None:
        """Warm shutdown of the worker (SIGTERM to its group; SIGKILL after 15 s)."""
        if self.worker is not None:
            self.worker.stop()
            self.worker = None

    def start_beat(self) -> None:
        """`celery -A tasks beat` (the production schedule: outbox relay, sweeper, audit sealing, recomputes),
        with its schedule file in the stack's directory; its tasks run on the worker's `maintenance` queue."""
        argv = [str(BIN / "celery"), "-A", "tasks", "beat", "-s", str(self.dir / "beat-schedule"),
                "--loglevel", "WARNING"]
        self.beat = Proc("beat", argv, self.env(), self.dir / "beat.log")
        # Beat answers no ping: it is up once it has opened its schedule file (shelve may add a suffix).
        _wait_ready(self.beat, "celery beat", "open its schedule",
                    lambda: any(self.dir.glob("beat-schedule*")), 60, poll=0.2)

    def flush_redis(self) -> None:
        import redis

        redis.Redis.from_url(self.redis_url).flushall()

    def logs(self) -> str:
        parts = []
        for proc in (self.web, self.peer, self.worker, self.beat):
            if proc is not None:
                parts.append(f"--- {proc.name} ({proc.log}) ---\n{_tail(proc.log)}")
        return "\n".join(parts)

    def close(self) -> None:
        """Stop everything; a second Ctrl-C or a SIGTERM cannot cut this short (it is bounded anyway)."""
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                previous[sig] = signal.signal(sig, signal.SIG_IGN)
        try:
            self._close()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _close(self) -> None:
        for proc in (self.beat, self.worker, self.peer, self.web):
            if proc is not None:
                with contextlib.suppress(Exception):
                    proc.stop()
        self.beat = self.worker = self.peer = self.web = None
        if self.redis is not None:
            with contextlib.suppress(Exception):
                self.redis.stop()
            self.redis = None
        if self.pg is not None:
            with contextlib.suppress(Exception):
                self.pg.stop()
            self.pg = None
        if os.environ.get("DEVPULSE_BENCH_KEEP"):
            print(f"bench: kept {self.dir} (DEVPULSE_BENCH_KEEP is set)", file=sys.stderr)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
