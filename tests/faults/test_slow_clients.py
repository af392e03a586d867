"""Clients that trickle a request's headers or body hold a web thread for a bounded time only.

A real gunicorn, started here on loopback with the Procfile's worker class (1 worker x 2 threads, so two slow
clients would take every thread), against the suite's PostgreSQL and Redis. Read deadlines of 2 s each.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from devstack.servers import free_port
from tests.faults.harness import BIN, ROOT, Service
from tests.support.factories import auth, batch, event

pytestmark = pytest.mark.fault

HEADER_TIMEOUT = BODY_TIMEOUT = 2.0
THREADS = 2
INGEST = "/api/workflow/events/orchestrate"


def _procfile_worker_class() -> list[str]:
    web = next(line for line in (ROOT / "Procfile").read_text().splitlines() if line.startswith("web:"))
    found = re.search(r"--worker-class\s+(\S+)", web)
    return ["--worker-class", found.group(1)] if found else []


@pytest.fixture
def web(database_url: str, redis_url: str, clean_db, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = dict(os.environ, DATABASE_URL=database_url, REDIS_URL=redis_url, LOG_JSON="0", LOG_LEVEL="WARNING",
               PYTHONUNBUFFERED="1", REQUEST_HEADER_TIMEOUT_SECONDS=str(HEADER_TIMEOUT),
               REQUEST_BODY_TIMEOUT_SECONDS=str(BODY_TIMEOUT))
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    argv = [str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", "1", "--threads", str(THREADS),
            *_procfile_worker_class(), "--no-control-socket", "app:create_app()"]
    svc = Service("web", argv, env, tmp_path / "web.log").start()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert svc.running, svc.tail()
            with contextlib.suppress(requests.RequestException):
                if requests.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            assert time.monotonic() < deadline, svc.tail()
            time.sleep(0.1)
        yield base
    finally:
        svc.kill()


class Trickler(threading.Thread):
    """Sends `head` at once, then `drip` one byte every 0.25 s; records what the server answered, and when."""

    def __init__(self, port: int, head: bytes, drip: bytes) -> None:
        super().__init__(daemon=True)
        self.port, self.head, self.drip = port, head, drip
        self.answer = b""
        self.started = self.ended = 0.0

    def run(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=20) as sock:
            self.started = time.monotonic()
            sock.sendall(self.head)
            sock.settimeout(0.25)
            for byte in self.drip:
                try:
                    sock.sendall(bytes([byte]))
                    chunk = sock.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    break
                if not chunk:
                    break
                self.answer += chunk
                with contextlib.suppress(OSError):
                    while more := sock.recv(65536):
                        self.answer += more
                break
            self.ended = time.monotonic()

    def error(self) -> dict:
        head, _, body = self.answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408"), self.answer[:300]
        return json.loads(body)["error"]


def _port(base: str) -> int:
    return int(base.rsplit(":", 1)[1])


def test_trickled_headers_get_a_408_and_free_the_thread(web: str) -> None:
    head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    drip = b"X-Slow: " + b"a" * 200  # 50 s at one byte every 0.25 s: never completes on its own
    slow = [Trickler(_port(web), head, drip) for _ in range(THREADS)]
    for t in slow:
        t.start()
    time.sleep(0.5)
    started = time.monotonic()
    r = requests.get(web + "/healthz", timeout=15)
    waited = time.monotonic() - started
    assert r.status_code == 200
    assert waited < HEADER_TIMEOUT + 1.5, f"a normal request waited {waited:.1f} s behind trickling clients"
    for t in slow:
        t.join(15)
        assert t.ended - t.started < HEADER_TIMEOUT + 1.5
        error = t.error()
        assert (error["code"], error["details"]) == (
            "request_timeout", [{"field": "_headers", "message": "not received within 2 s"}])


def test_a_trickled_body_gets_a_408_naming_the_body_and_frees_the_thread(web: str, make_token) -> None:
    token = make_token("dev-1")
    body = json.dumps(batch([event()])).encode()
    head = (f"POST {INGEST} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {token}\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    slow = [Trickler(_port(web), head, body) for _ in range(THREADS)]
    for t in slow:
        t.start()
    time.sleep(0.5)
    started = time.monotonic()
    r = requests.post(web + INGEST, json=batch([event()]), headers=auth(token), timeout=15)
    waited = time.monotonic() - started
    assert r.status_code == 202, r.text
    assert waited < BODY_TIMEOUT + 1.5, f"a normal request waited {waited:.1f} s behind trickling clients"
    for t in slow:
        t.join(15)
        assert t.ended - t.started < BODY_TIMEOUT + 1.5
        error = t.error()
        assert (error["code"], error["details"]) == (
            "request_timeout", [{"field": "_body", "message": "not received within 2 s"}])


def test_prompt_clients_are_unaffected_also_on_a_kept_alive_connection(web: str, make_token) -> None:
    token = make_token("dev-1")
    with requests.Session() as session:
        for _ in range(3):
            events = [event("file.edit", file="a.py", lines_added=1, lines_deleted=0, note="n" * 2000)
                      for _ in range(500)]  # ~1.3 MB
            r = session.post(web + INGEST, json=batch(events), headers=auth(token), timeout=30)
            assert (r.status_code, r.json()["accepted"]) == (202, 500)
            time.sleep(1.0)  # idle on the kept-alive connection (gunicorn keeps it 2 s), then the next request
