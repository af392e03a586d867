"""Realistic request bodies: per-developer timelines of VS Code activity, distinct batch and event ids."""

from __future__ import annotations

import json
import random
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

FILES = [
    ("src/app.py", "python"), ("src/models/user.py", "python"), ("tests/test_api.py", "python"),
    ("web/src/App.tsx", "typescriptreact"), ("web/src/api/client.ts", "typescript"), ("README.md", "markdown"),
    ("cmd/server/main.go", "go"), ("internal/store/pg.go", "go"), ("Cargo.toml", "toml"), ("src/lib.rs", "rust"),
]

# (type, weight): mostly edits and saves, as an editor extension really reports.
MIX = [
    ("file.edit", 50), ("file.save", 12), ("file.open", 6), ("file.close", 4), ("diagnostics.snapshot", 8),
    ("window.focus", 2), ("window.blur", 2), ("terminal.command", 4), ("build.result", 2), ("test.result", 2),
    ("ai.suggestion_shown", 3), ("ai.suggestion_accepted", 3), ("git.commit", 1), ("debug.start", 1),
]
_TYPES = [t for t, _ in MIX]
_WEIGHTS = [w for _, w in MIX]
CLIENT = {"extension_version": "0.3.2", "editor": "vscode", "editor_version": "1.95.3", "os": "linux"}


def iso(dt: datetime) -> str:
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Body:
    token: str
    developer_id: str
    batch_id: str
    events: int
    data: bytes


class Developer:
    def __init__(self, developer_id: str, token: str, start: datetime, rng: random.Random) -> None:
        self.developer_id = developer_id
        self.token = token
        self.clock = start
        self.rng = rng
        self.session = f"s-{uuid.uuid4().hex[:12]}"
        self.debug: str | None = None
        self.lock = threading.Lock()

    def _payload(self, type_: str) -> dict[str, Any]:
        rng = self.rng
        path, language = FILES[rng.randrange(len(FILES))]
        if type_ == "file.edit":
            added = rng.randint(0, 12)
            return {"file": path, "language": language, "lines_added": added, "lines_deleted": rng.randint(0, 6),
                    "chars_typed": added * rng.randint(5, 40)}
        if type_ in ("file.save", "file.open", "file.close"):
            return {"file": path, "language": language}
        if type_ == "diagnostics.snapshot":
            return {"errors": rng.choice((0, 0, 0, 1, 2, 5)), "warnings": rng.randint(0, 8), "file": path}
        if type_ == "terminal.command":
            return {"exit_code": rng.choice((0, 0, 0, 1, 2)), "duration_ms": rng.randint(20, 30_000)}
        if type_ == "build.result":
            return {"success": rng.random() < 0.8, "duration_ms": rng.randint(500, 90_000)}
        if type_ == "test.result":
            return {"passed": rng.randint(5, 400), "failed": rng.choice((0, 0, 0, 1, 3)),
                    "duration_ms": rng.randint(300, 60_000)}
        if type_ == "ai.suggestion_shown":
            return {"chars": rng.randint(10, 400), "provider": "copilot"}
        if type_ == "ai.suggestion_accepted":
            return {"chars_inserted": rng.randint(10, 300), "provider": "copilot"}
        if type_ == "git.commit":
            return {"files_changed": rng.randint(1, 9), "lines_added": rng.randint(1, 300),
                    "lines_deleted": rng.randint(0, 120)}
        return {}

    def event(self, latest: datetime) -> dict[str, Any]:
        """The developer's next event, 1-4 s after the previous one (never later than `latest`)."""
        rng = self.rng
        self.clock = min(self.clock + timedelta(milliseconds=rng.randint(1000, 4000)), latest)
        type_ = rng.choices(_TYPES, _WEIGHTS)[0]
        payload = self._payload(type_)
        if type_ == "debug.start":
            if self.debug is None:
                self.debug = f"dbg-{uuid.uuid4().hex[:8]}"
                payload = {"debug_session_id": self.debug, "debug_type": "python"}
            else:
                type_, payload, self.debug = "debug.stop", {"debug_session_id": self.debug}, None
        return {"event_id": str(uuid.uuid4()), "type": type_, "timestamp": iso(self.clock),
                "session_id": self.session, "payload": payload}


class Workload:
    """Hands out bodies round-robin over its developers (thread-safe)."""

    def __init__(self, developers: list[tuple[str, str]], *, hours_back: float, seed: int) -> None:
        start = datetime.now(UTC) - timedelta(hours=hours_back)
        master = random.Random(seed)
        self.developers = [Developer(d, t, start, random.Random(master.random())) for d, t in developers]
        self._next = 0
        self._lock = threading.Lock()

    def _developer(self) -> Developer:
        with self._lock:
            dev = self.developers[self._next % len(self.developers)]
            self._next += 1
        return dev

    def events(self, n: int) -> tuple[Developer, list[dict[str, Any]]]:
        dev = self._developer()
        latest = datetime.now(UTC) - timedelta(seconds=30)
        with dev.lock:
            return dev, [dev.event(latest) for _ in range(n)]

    def body(self, n: int) -> Body:
        dev, events = self.events(n)
        batch_id = str(uuid.uuid4())
        doc = {"batch_id": batch_id, "developer_id": dev.developer_id, "sent_at": iso(datetime.now(UTC)),
               "schema_version": "1.1", "client": CLIENT, "events": events}
        return Body(dev.token, dev.developer_id, batch_id, n, json.dumps(doc, separators=(",", ":")).encode())


class Pool:
    """Bodies generated before a timed phase, so the load generator spends its CPU on sending, not building.

    When the pool runs dry the bodies are built on the fly (counted in `misses`).
    """

    def __init__(self, workload: Workload, events_per_body: int, size: int) -> None:
        self.workload = workload
        self.events_per_body = events_per_body
        self.bodies = [workload.body(events_per_body) for _ in range(size)]
        self.bodies.reverse()
        self.misses = 0
        self._lock = threading.Lock()

    def __call__(self) -> Body:
        with self._lock:
            if self.bodies:
                return self.bodies.pop()
            self.misses += 1
        return self.workload.body(self.events_per_body)
