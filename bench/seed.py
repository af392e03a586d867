"""Seeding a large event history with PostgreSQL COPY (psycopg2 `copy_expert`, chunked text), for bench/scale.py.

What is written is what ingest would have written, minus the pipeline's derived rows:

- `batches`: one row per seeded batch (up to `batch_size` consecutive events of one developer within one
  day), status 'processed', with its lifecycle timestamps a fraction of a second after `received_at`;
- `raw_events`: the event JSON as a client sends it ({"event_id", "type", "timestamp", "session_id",
  "payload"}, schema_version "1.1", payloads from bench/events.py's catalog-valid mix), corrected_ts =
  client_ts = the event time (offset 0), received_at = its batch's.

Each developer's events are spread over his last `days` days, in one 12-hour active window per day (so
there are idle nights); the windows of every developer end at the same `history_end`. Rows go in day by
day and developer by developer within a day, so each developer's history is scattered through the heap in
batch-sized runs, as arrival order would leave it (seeding developer after developer would cluster it).
Debug sessions are paired start/stop; the only unmatched `debug.start` is the one asked for (`unmatched_at`).

The COPY column lists are checked against information_schema at run time: a column this module does not
know that is NOT NULL without a default, or a column it writes that is gone, stops the seeding with a
message naming it (the schema is still moving; see alembic/versions).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import queue
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bench.events import CLIENT, MIX, Developer

ACTIVE_S = 12 * 3600.0
DAY_S = 86400.0

BATCH_COLUMNS = ("developer_id", "batch_id", "correlation_id", "content_hash", "status", "source", "received_at",
                 "sent_at", "client", "received", "accepted", "duplicates", "rejected", "first_ts", "last_ts",
                 "replay_count", "dispatch_count", "dispatched_at", "processing_started_at", "completed_at",
                 "updated_at")
RAW_COLUMNS = ("developer_id", "event_id", "batch_id", "seq", "type", "schema_version", "session_id", "client_ts",
               "client_utc_offset_minutes", "corrected_ts", "received_at", "raw")

_TYPES = [t for t, _ in MIX]
_CUM: list[float] = []
for _, _w in MIX:
    _CUM.append((_CUM[-1] if _CUM else 0) + _w)
_CLIENT_JSON = json.dumps(CLIENT, separators=(",", ":"))


def check_columns(conn: Any, table: str, columns: tuple[str, ...]) -> None:
    """Raise if `columns` cannot be COPYed into `table` as it is now (see the module docstring)."""
    with conn.cursor() as cur:
        cur.execute("SELECT column_name, is_nullable, column_default, is_identity, is_generated"
                    " FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = %s",
                    (table,))
        rows = cur.fetchall()
    if not rows:
        raise RuntimeError(f"seed: table {table} does not exist")
    present = {r[0] for r in rows}
    gone = [c for c in columns if c not in present]
    needed = [r[0] for r in rows if r[0] not in columns and r[1] == "NO" and r[2] is None
              and r[3] != "YES" and r[4] == "NEVER"]
    if gone or needed:
        raise RuntimeError(f"seed: the schema of {table} changed: columns gone {gone}, NOT NULL columns without "
                           f"a default that bench/seed.py does not fill {needed}; update {table.upper()} columns "
                           "in bench/seed.py")


def _uuid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


def _iso(t: float) -> str:
    sec = int(t)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{int((t - sec) * 1000):03d}Z"


def _copy_safe(text: str) -> str:
    """COPY text format: backslash is the escape character; tabs and newlines never occur in compact JSON of
    these values, backslashes might (escaped in JSON strings)."""
    return text.replace("\\", "\\\\")


def _payload_templates(seed: int, per_type: int = 64) -> dict[str, list[str]]:
    """Pre-serialized catalog-valid payloads per event type (debug payloads are built per event)."""
    dev = Developer("seed", "", datetime.now(UTC), random.Random(seed))
    out: dict[str, list[str]] = {}
    for type_ in _TYPES:
        if type_.startswith("debug."):
            continue
        out[type_] = [_copy_safe(json.dumps(dev._payload(type_), separators=(",", ":"))) for _ in range(per_type)]
    return out


@dataclass
class History:
    """One developer's seeded history: `events` events over his last `days` day windows."""

    developer_id: str
    events: int
    days: int
    unmatched_at: float | None = None  # epoch seconds of the one debug.start that never gets a debug.stop


@dataclass
class _Stream:
    spec: History
    first_day: int  # global index of the developer's first day window
    rng: random.Random
    i: int = 0
    debug: str | None = None
    session: str = ""
    session_day: int = -1
    next_t: float | None = None
    next_day: int = -1
    unmatched_done: bool = False
    step: float = field(init=False)

    def __post_init__(self) -> None:
        self.step = self.spec.days * ACTIVE_S / max(1, self.spec.events)
        self._advance()

    def _advance(self) -> None:
        """Position of event i: stratified over the developer's active time, so events are spread evenly and
        come out in time order without sorting."""
        if self.i >= self.spec.events:
            self.next_t = None
            return
        p = (self.i + self.rng.random()) * self.step
        day = min(int(p // ACTIVE_S), self.spec.days - 1)
        self.next_day = self.first_day + day
        self.next_t = p - day * ACTIVE_S  # offset within the window, made absolute by the caller


@dataclass
class SeedStats:
    developers: int = 0
    events: int = 0
    batches: int = 0
    chunks: int = 0
    copy_s: float = 0.0
    bytes: int = 0


class Seeder:
    """Generates the COPY text day by day (a producer thread) while the caller's connection COPYs it."""

    def __init__(self, histories: list[History], *, history_end: float, batch_size: int = 100,
                 chunk_events: int = 20_000, seed: int | None = None) -> None:
        self.histories = histories
        self.history_end = history_end
        self.batch_size = batch_size
        self.chunk_events = chunk_events
        master = random.Random(seed)
        self.days = max(h.days for h in histories)
        self.streams = [_Stream(h, self.days - h.days, random.Random(master.getrandbits(64))) for h in histories]
        self.rng = random.Random(master.getrandbits(64))
        self.templates = _payload_templates(master.randrange(1 << 30))

    def window_start(self, day: int) -> float:
        return self.history_end - (self.days - 1 - day) * DAY_S - ACTIVE_S

    def total_events(self) -> int:
        return sum(h.events for h in self.histories)

    # -- generation -----------------------------------------------------------------------------------
    def _event(self, s: _Stream, t: float, last: bool) -> tuple[float, str, str, str]:
        """(time, type, session_id, payload JSON) of the stream's next regular event."""
        rng = self.rng
        type_ = rng.choices(_TYPES, cum_weights=_CUM)[0]
        if last:  # never leave a session open at the end of the history
            if s.debug is not None:
                type_ = "debug.stop"
            elif type_.startswith("debug."):
                type_ = "file.save"
        if type_.startswith("debug."):
            if s.debug is None:
                s.debug = f"dbg-{rng.getrandbits(32):08x}"
                type_, payload = "debug.start", f'{{"debug_session_id":"{s.debug}","debug_type":"python"}}'
            else:
                type_, payload, s.debug = "debug.stop", f'{{"debug_session_id":"{s.debug}"}}', None
        else:
            options = self.templates[type_]
            payload = options[rng.randrange(len(options))]
        return t, type_, s.session, payload

    def _day_events(self, s: _Stream, day: int) -> list[tuple[float, str, str, str]]:
        out: list[tuple[float, str, str, str]] = []
        base = self.window_start(day)
        if s.next_t is not None and s.next_day == day and s.session_day != day:
            s.session, s.session_day = f"s-{self.rng.getrandbits(48):012x}", day  # one editor session a day
        while s.next_t is not None and s.next_day == day:
            t = base + s.next_t
            u = s.spec.unmatched_at
            if u is not None and not s.unmatched_done and u <= t:
                s.unmatched_done = True
                out.append((u, "debug.start", s.session,
                            f'{{"debug_session_id":"dbg-unmatched-{self.rng.getrandbits(32):08x}",'
                            '"debug_type":"python"}'))
            s.i += 1
            out.append(self._event(s, t, s.i == s.spec.events))
            s._advance()
        return out

    def _batches(self, developer_id: str, events: list[tuple[float, str, str, str]],
                 batch_lines: list[str], raw_lines: list[str]) -> int:
        rng = self.rng
        n = 0
        for start in range(0, len(events), self.batch_size):
            chunk = events[start:start + self.batch_size]
            batch_id = _uuid(rng)
            first, last = chunk[0][0], chunk[-1][0]
            received = last + 1.0 + rng.random() * 4.0
            received_iso = _iso(received)
            batch_lines.append("\t".join((
                developer_id, batch_id, f"seed-{batch_id}", hashlib.sha256(batch_id.encode()).hexdigest(),
                "processed", "native", received_iso, _iso(received - 0.05), _CLIENT_JSON, str(len(chunk)),
                str(len(chunk)), "0", "0", _iso(first), _iso(last), "0", "1", _iso(received + 0.01),
                _iso(received + 0.05), _iso(received + 0.3), _iso(received + 0.3))))
            for seq, (t, type_, session, payload) in enumerate(chunk):
                event_id = _uuid(rng)
                ts = _iso(t)
                raw = (f'{{"event_id":"{event_id}","type":"{type_}","timestamp":"{ts}",'
                       f'"session_id":"{session}","payload":{payload}}}')
                raw_lines.append(f"{developer_id}\t{event_id}\t{batch_id}\t{seq}\t{type_}\t1.1\t{session}\t{ts}\t0\t"
                                 f"{ts}\t{received_iso}\t{raw}")
            n += 1
        return n

    def chunks(self) -> Iterator[tuple[str, str, int, int]]:
        """(batches COPY text, raw_events COPY text, events, batches), about `chunk_events` events each."""
        batch_lines: list[str] = []
        raw_lines: list[str] = []
        batches = 0
        for day in range(self.days):
            for s in self.streams:
                events = self._day_events(s, day)
                if events:
                    batches += self._batches(s.spec.developer_id, events, batch_lines, raw_lines)
                if len(raw_lines) >= self.chunk_events:
                    yield "\n".join(batch_lines) + "\n", "\n".join(raw_lines) + "\n", len(raw_lines), batches
                    batch_lines, raw_lines, batches = [], [], 0
        if raw_lines:
            yield "\n".join(batch_lines) + "\n", "\n".join(raw_lines) + "\n", len(raw_lines), batches

    # -- loading --------------------------------------------------------------------------------------
    def run(self, connect: Callable[[], Any], progress: Callable[[SeedStats], None] | None = None) -> SeedStats:
        """COPY every chunk (batches first: raw_events references them), one transaction per chunk; the next
        chunk is generated on a thread meanwhile (psycopg2 releases the GIL while libpq talks to the server)."""
        stats = SeedStats(developers=len(self.histories))
        ready: queue.Queue[tuple[str, str, int, int] | BaseException | None] = queue.Queue(maxsize=2)
        stop = threading.Event()

        def produce() -> None:
            try:
                for item in self.chunks():
                    while not stop.is_set():
                        try:
                            ready.put(item, timeout=0.5)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
                ready.put(None)
            except BaseException as exc:  # handed to the consumer, which raises it
                ready.put(exc)

        batch_sql = f"COPY batches ({', '.join(BATCH_COLUMNS)}) FROM STDIN"
        raw_sql = f"COPY raw_events ({', '.join(RAW_COLUMNS)}) FROM STDIN"
        started = time.monotonic()
        last_report = started
        with contextlib.closing(connect()) as conn:
            check_columns(conn, "batches", BATCH_COLUMNS)
            check_columns(conn, "raw_events", RAW_COLUMNS)
            conn.commit()
            producer = threading.Thread(target=produce, daemon=True, name="seed-producer")
            producer.start()
            try:
                with conn.cursor() as cur:
                    while (item := ready.get()) is not None:
                        if isinstance(item, BaseException):
                            raise RuntimeError(f"seed generator failed: {item!r}") from item
                        batch_text, raw_text, events, batches = item
                        cur.copy_expert(batch_sql, io.StringIO(batch_text), size=1 << 20)
                        cur.copy_expert(raw_sql, io.StringIO(raw_text), size=1 << 20)
                        conn.commit()
                        stats.events += events
                        stats.batches += batches
                        stats.chunks += 1
                        stats.bytes += len(batch_text) + len(raw_text)
                        if progress and time.monotonic() - last_report >= 10:
                            stats.copy_s = time.monotonic() - started
                            progress(stats)
                            last_report = time.monotonic()
            finally:
                stop.set()
                producer.join(5)
        stats.copy_s = time.monotonic() - started
        return stats
