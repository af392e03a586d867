"""`python -m bench.scale [--quick] [--developers N] [--events-per-developer N] [--heavy-events N]`: do ingest
and end-to-end latency stay flat when the database holds a large history?

One run, one machine, everything on 127.0.0.1, the stack of `make bench` (embedded PostgreSQL with fsync on,
Redis, gunicorn 2 workers x 4 request slots, a Celery worker with concurrency 2; no beat, see below):

1. Empty database: for one fresh developer, the end-to-end latency phase (100-event batches at 2/s, the
   worker running; bench/e2e.py's e2e_latency, POST -> batches.completed_at), then the ingest-latency phase
   (100-event batches, open loop at 20 req/s, the worker stopped, as in phase A of `make bench`).
2. Seeding with COPY (bench/seed.py): by default 1,000 developers x 10,000 events over 60 days, plus one heavy
   developer with 1,000,000 events over a year and an unmatched debug.start about 20 days old; every seeded
   batch has its `batches` row ('processed'). Then VACUUM (ANALYZE) of the two tables (so autovacuum does not
   start on the new rows in the middle of a measured phase) and a CHECKPOINT.
3. The same two phases for (a) a seeded developer and (b) the heavy developer; each figure is compared with
   step 1's: target within +-20%.

Each measured developer posts events that continue his history (it ends a minute before them), end to end
first so that those batches follow the history directly. The chords the ingest phases publish (worker
stopped) are flushed from Redis before the worker starts again (those batches stay `dispatched`). Beat is
not started: its sweeper would re-dispatch them in the middle of a later phase.

Writes bench/results/scale-latest.json and prints a Markdown summary.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from datetime import UTC, datetime
from typing import Any

from bench.run import QUIET_CORES, Phases, _per_request, execute, log, machine_meta

FULL = {"developers": 1000, "events_per_developer": 10_000, "heavy_events": 1_000_000,
        "open_s": 12.0, "lat_s": 12.0, "warmup": 16}
QUICK = {"developers": 20, "events_per_developer": 2_000, "heavy_events": 50_000,
         "open_s": 4.0, "lat_s": 4.0, "warmup": 6}
DAYS = 60
HEAVY_DAYS = 365
UNMATCHED_DEBUG_DAYS = 20
INGEST_RATE = 20.0
E2E_RATE = 2.0
THREADS = 8
TOLERANCE = 0.20
# The measured developers' new events start this far back (1-4 s apart, bench/events.py) so that a whole
# run's batches fit before "now" without being squeezed; the seeded history ends just before.
HOURS_BACK = 24.0
FIGURES = (("ingest", "p50_ms", "ingest ack p50"), ("ingest", "p99_ms", "ingest ack p99"),
           ("e2e", "p50_ms", "e2e p50"), ("e2e", "p99_ms", "e2e p99"))
SCENARIOS = (("seeded", "seeded developer"), ("heavy", "heavy developer"))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help=f"a small history ({QUICK['developers']} x {QUICK['events_per_developer']:,} + "
                             f"{QUICK['heavy_events']:,}) and short phases (a smoke run, figures are rough)")
    parser.add_argument("--developers", type=int, help=f"seeded developers (default {FULL['developers']:,})")
    parser.add_argument("--events-per-developer", type=int,
                        help=f"events of each seeded developer (default {FULL['events_per_developer']:,})")
    parser.add_argument("--heavy-events", type=int,
                        help=f"events of the heavy developer (default {FULL['heavy_events']:,}; 0: none)")
    parser.add_argument("--days", type=int, default=DAYS, help=f"history of the seeded developers (default {DAYS})")
    parser.add_argument("--heavy-days", type=int, default=HEAVY_DAYS,
                        help=f"history of the heavy developer (default {HEAVY_DAYS})")
    parser.add_argument("--json", metavar="PATH", help="also write the results JSON here")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                        help="before each measured phase, wait up to SECONDS until other processes use "
                             f"< {QUIET_CORES} core (default 0: never wait)")
    args = parser.parse_args(argv)
    if args.days < 1 or args.heavy_days < UNMATCHED_DEBUG_DAYS + 2:
        parser.error(f"--days must be >= 1 and --heavy-days >= {UNMATCHED_DEBUG_DAYS + 2}")
    return args


def config(args: argparse.Namespace) -> dict[str, Any]:
    cfg = dict(QUICK if args.quick else FULL)
    for key in ("developers", "events_per_developer", "heavy_events"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    if cfg["developers"] < 1 or cfg["events_per_developer"] < 1 or cfg["heavy_events"] < 0:
        raise SystemExit("--developers and --events-per-developer must be >= 1, --heavy-events >= 0")
    cfg.update(days=args.days, heavy_days=args.heavy_days)
    return cfg


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return execute(run, config(args), args, markdown, "scale-latest.json")


def measure(stack: Any, phases: Phases, workload: Any, warm: Any, cfg: dict[str, Any], label: str) -> dict[str, Any]:
    """The end-to-end latency phase (worker running) then the ingest-latency phase (worker stopped) for the
    developer of `workload`; `warm` (another developer, never seeded) warms the freshly started worker up.

    End to end goes first, so that its batches directly follow the developer's (seeded) history rather than
    the hours of events the ingest phase adds."""
    from bench.e2e import e2e_latency, e2e_throughput
    from bench.events import Pool
    from bench.load import closed_loop, open_loop

    port = stack.web_port
    out: dict[str, Any] = {}
    log(f"{label}: flushing the chords earlier ingest phases left in Redis; starting the worker")
    stack.flush_redis()
    stack.start_worker()
    try:
        warmed = e2e_throughput(port, stack.connect, Pool(warm, 100, 4), count=4, threads=2, timeout=60)
        if not warmed["complete"]:
            raise RuntimeError(f"{label}: pipeline warm-up failed: {warmed}")
        log(f"{label}: end-to-end latency, 100-event batches at {E2E_RATE:g}/s for {cfg['lat_s']:g} s")
        pool = Pool(workload, 100, int(E2E_RATE * cfg["lat_s"]) + 1)
        e2e, cpu = phases.measure(e2e_latency, port, stack.connect, pool, rate=E2E_RATE, duration=cfg["lat_s"],
                                  timeout=120.0)
    finally:
        stack.stop_worker()
    e2e["cpu"] = cpu
    if e2e["processed"]:
        for name in ("celery", "postgres", "gunicorn"):
            e2e[f"{name}_cpu_ms_per_batch"] = round(cpu.get(f"{name}_cpu_s", 0) * 1000 / e2e["processed"], 1)
    out["e2e"] = e2e
    log(f"   p50 {e2e['p50_ms']} ms, p99 {e2e['p99_ms']} ms ({e2e['processed']}/{e2e['posted']} processed)")

    warm_run = closed_loop(port, Pool(workload, 100, cfg["warmup"]), threads=4, count=cfg["warmup"])
    if warm_run.statuses.get(202, 0) != warm_run.requests:
        raise RuntimeError(f"{label}: ingest warm-up failed: {warm_run.summary()}")
    pool = Pool(workload, 100, int(INGEST_RATE * cfg["open_s"]) + 1)
    log(f"{label}: ingest (worker stopped), 100-event batches, open loop at {INGEST_RATE:g} req/s for "
        f"{cfg['open_s']:g} s")
    run_, cpu = phases.measure(open_loop, port, pool, rate=INGEST_RATE, duration=cfg["open_s"], threads=THREADS)
    ingest = run_.summary()
    ingest.update(rate_per_s=INGEST_RATE, threads=THREADS, pool_misses=pool.misses)
    _per_request(ingest, cpu)
    out["ingest"] = ingest
    log(f"   p50 {ingest['p50_ms']} ms, p99 {ingest['p99_ms']} ms, statuses {ingest['statuses']}")
    return out


def seed(stack: Any, cfg: dict[str, Any], history_end: float, now: float) -> dict[str, Any]:
    from bench.seed import History, Seeder

    histories = [History(f"scale-dev-{i:04d}", cfg["events_per_developer"], cfg["days"])
                 for i in range(cfg["developers"])]
    if cfg["heavy_events"]:
        # The middle of the heavy developer's day window nearest to UNMATCHED_DEBUG_DAYS ago.
        back = round((history_end - (now - UNMATCHED_DEBUG_DAYS * 86400)) / 86400)
        unmatched = history_end - back * 86400 - 6 * 3600
        histories.append(History("scale-heavy", cfg["heavy_events"], cfg["heavy_days"], unmatched_at=unmatched))
    seeder = Seeder(histories, history_end=history_end)
    total = seeder.total_events() + (1 if cfg["heavy_events"] else 0)
    log(f"seeding {total:,} events of {len(histories)} developers with COPY")

    def progress(s: Any) -> None:
        log(f"   {s.events:,}/{total:,} events, {s.batches:,} batches, {s.events / s.copy_s:,.0f} events/s")

    stats = seeder.run(stack.connect, progress)
    out: dict[str, Any] = {
        "developers": cfg["developers"], "events_per_developer": cfg["events_per_developer"], "days": cfg["days"],
        "heavy_events": cfg["heavy_events"], "heavy_days": cfg["heavy_days"],
        "unmatched_debug_start_at": (datetime.fromtimestamp(unmatched, UTC).isoformat(timespec="seconds")
                                     if cfg["heavy_events"] else None),
        "history_end": datetime.fromtimestamp(history_end, UTC).isoformat(timespec="seconds"),
        "events": stats.events, "batches": stats.batches, "copy_chunks": stats.chunks,
        "copy_mb": round(stats.bytes / 1e6, 1), "seconds": round(stats.copy_s, 1),
        "events_per_s": round(stats.events / stats.copy_s) if stats.copy_s else None,
    }
    log(f"   {stats.events:,} events, {stats.batches:,} batches in {out['seconds']} s ({out['events_per_s']:,} "
        "events/s); VACUUM (ANALYZE), CHECKPOINT")
    with contextlib.closing(stack.connect()) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            t0 = time.monotonic()
            cur.execute("VACUUM (ANALYZE) batches")
            cur.execute("VACUUM (ANALYZE) raw_events")
            out["vacuum_analyze_s"] = round(time.monotonic() - t0, 1)
            t0 = time.monotonic()
            cur.execute("CHECKPOINT")
            out["checkpoint_s"] = round(time.monotonic() - t0, 1)
            cur.execute("SELECT pg_database_size(current_database()), pg_total_relation_size('raw_events'),"
                        " pg_total_relation_size('batches'), pg_relation_size('raw_events')")
            db, raw, batches, raw_heap = cur.fetchone()
            cur.execute("SELECT count(*) FROM raw_events WHERE developer_id = 'scale-heavy'")
            heavy_rows = cur.fetchone()[0]
    out.update(database_mb=round(db / 2**20, 1), raw_events_mb=round(raw / 2**20, 1),
               raw_events_heap_mb=round(raw_heap / 2**20, 1), batches_mb=round(batches / 2**20, 1),
               heavy_rows=heavy_rows)
    log(f"   database {out['database_mb']:,} MB (raw_events {out['raw_events_mb']:,} MB with indexes); "
        f"VACUUM ANALYZE {out['vacuum_analyze_s']} s, CHECKPOINT {out['checkpoint_s']} s")
    return out


def run(stack: Any, cfg: dict[str, Any], *, quick: bool, wait_quiet: float = 0.0) -> dict[str, Any]:
    from bench.events import Workload

    log(f"starting PostgreSQL (fsync on) and Redis in {stack.dir}")
    stack.start_servers()
    measured = {"empty": "scale-empty", "seeded": "scale-dev-0000", "heavy": "scale-heavy"}
    if not cfg["heavy_events"]:
        del measured["heavy"]
    tokens = stack.create_tokens([*measured.values(), "scale-warm"])
    workloads = {k: Workload([(d, tokens[d])], hours_back=HOURS_BACK, seed=i + 11)
                 for i, (k, d) in enumerate(measured.items())}
    warm = Workload([("scale-warm", tokens["scale-warm"])], hours_back=HOURS_BACK, seed=10)
    now = time.time()
    history_end = min(w.developers[0].clock.timestamp() for w in workloads.values()) - 60.0
    log("starting gunicorn")
    stack.start_web()
    phases = Phases(stack, wait_quiet)
    results: dict[str, Any] = {"meta": meta(stack, cfg, quick), "developers": measured}

    results["empty"] = measure(stack, phases, workloads["empty"], warm, cfg, "empty database")
    results["seed"] = seed(stack, cfg, history_end, now)
    for key, label in SCENARIOS:
        if key in workloads:
            results[key] = measure(stack, phases, workloads[key], warm, cfg, label)
    results["targets"] = targets(results)
    return results


def meta(stack: Any, cfg: dict[str, Any], quick: bool) -> dict[str, Any]:
    return {
        **machine_meta(stack, quick),
        "celery": f"--concurrency {stack.concurrency} --prefetch-multiplier 1 -P prefork; no beat",
        "config": cfg, "ingest_rate_per_s": INGEST_RATE, "e2e_rate_per_s": E2E_RATE, "client_threads": THREADS,
        "notes": [
            "Each scenario is one developer: the empty database's is fresh, (a) is a seeded developer, (b) the "
            "heavy one; new events continue the developer's history (which ends a minute before them).",
            "Per developer: end to end first (worker running; its batches directly follow the history), then "
            "ingest with the worker stopped (as in `make bench` phase A); the ingest phase's chords are flushed "
            "from Redis before the worker starts again.",
            "Seeded: batches + raw_events only (status 'processed'); the pipeline's derived rows "
            "(normalized_events, metric_slots, activity_breakdowns, alerts) for the history are not seeded.",
            "After seeding: VACUUM (ANALYZE) of batches and raw_events, then CHECKPOINT (neither counted in the "
            "seeding time).",
        ],
    }


def _delta(value: float | None, base: float | None) -> float | None:
    if value is None or not base:
        return None
    return value / base - 1.0


def targets(r: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for key, label in SCENARIOS:
        if key not in r:
            continue
        for phase, field, name in FIGURES:
            base = r["empty"][phase][field]
            value = r[key][phase][field]
            delta = _delta(value, base)
            out.append({"name": f"{label}: {name} within +-20% of the empty database", "scenario": key,
                        "figure": f"{phase}.{field}", "value": value, "empty": base,
                        "delta": None if delta is None else round(delta, 3),
                        "target": f"{base} ms +-20%" if base is not None else "n/a",
                        "result": "MET" if delta is not None and abs(delta) <= TOLERANCE else "MISSED"})
    return out


def _ms(v: Any) -> str:
    return "—" if v is None else f"{v:.1f} ms"


def _pct(d: float | None) -> str:
    return "—" if d is None else f"{d * 100:+.1f}%"


def markdown(r: dict[str, Any]) -> str:
    m, s = r["meta"], r["seed"]
    present = [(k, label) for k, label in SCENARIOS if k in r]
    results = {(t["scenario"], t["figure"]): t for t in r["targets"]}
    head = ["Figure", "empty database", *[f"{label} ({r['developers'][k]})" for k, label in present],
            "Target", "Result"]
    rows = []
    for phase, field, name in FIGURES:
        base = r["empty"][phase][field]
        cells = [_ms(base)]
        verdicts = []
        for k, _ in present:
            t = results[(k, f"{phase}.{field}")]
            cells.append(f"{_ms(t['value'])} ({_pct(t['delta'])})")
            verdicts.append(f"{k}: {t['result']}")
        what = (f"{name}, 100-event batches at {INGEST_RATE:g} req/s open loop" if phase == "ingest"
                else f"{name}, POST→processed, 100-event batches at {E2E_RATE:g}/s")
        rows.append([what, *cells, "within ±20% of empty", ", ".join(verdicts)])

    def info(label: str, fn: Any) -> None:
        rows.append([label, fn(r["empty"]), *[fn(r[k]) for k, _ in present], "—", "—"])

    info("n (ingest requests / e2e processed of posted)",
         lambda d: f"{d['ingest']['requests']} / {d['e2e']['processed']} of {d['e2e']['posted']}")
    info("ingest CPU per request: gunicorn / postgres",
         lambda d: f"{d['ingest'].get('gunicorn_cpu_ms_per_request')} / "
                   f"{d['ingest'].get('postgres_cpu_ms_per_request')} ms")
    info("e2e CPU per batch: celery / postgres",
         lambda d: f"{d['e2e'].get('celery_cpu_ms_per_batch')} / {d['e2e'].get('postgres_cpu_ms_per_batch')} ms")
    info("other processes' CPU (cores): ingest / e2e",
         lambda d: f"{d['ingest']['cpu'].get('foreign_cores', '—')} / {d['e2e']['cpu'].get('foreign_cores', '—')}")
    info("non-2xx answers / non-processed statuses",
         lambda d: f"{ {k: v for k, v in d['ingest']['statuses'].items() if k not in ('200', '202')} or 'none'} / "
                   f"{ {k: v for k, v in d['e2e']['statuses'].items() if k != 'processed'} or 'none'}")

    heavy = (f" + 1 heavy developer x {s['heavy_events']:,} events over {s['heavy_days']} days (and an unmatched "
             f"debug.start at {s['unmatched_debug_start_at']})" if s["heavy_events"] else "")
    pg = m["postgres"]
    lines = [
        f"devpulse bench-scale ({m['mode']}, {m['started_at']}, {m['cpus']} CPUs, load average at start "
        f"{m.get('loadavg_at_start')}, total {m.get('total_s', '?')} s)",
        "",
        f"Seeded history: {s['developers']:,} developers x {s['events_per_developer']:,} events over "
        f"{s['days']} days{heavy}, ending {s['history_end']}.",
        f"Seeding (COPY): {s['events']:,} events in {s['batches']:,} batches, {s['seconds']} s "
        f"({s['events_per_s']:,} events/s); then VACUUM (ANALYZE) {s['vacuum_analyze_s']} s, CHECKPOINT "
        f"{s['checkpoint_s']} s. Database size: {s['database_mb']:,} MB (raw_events {s['raw_events_mb']:,} MB "
        f"with indexes, heap {s['raw_events_heap_mb']:,} MB; batches {s['batches_mb']:,} MB).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
        *["| " + " | ".join(row) + " |" for row in rows],
        "",
        f"PostgreSQL {pg['server_version']}: fsync={pg['fsync']}, synchronous_commit={pg['synchronous_commit']}, "
        f"shared_buffers={pg['shared_buffers']}. gunicorn {m['gunicorn']}; celery {m['celery']}.",
        *[f"- {n}" for n in m["notes"]],
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
