"""The Markdown table printed at the end of a run."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# row(label, value, source of the "other processes' CPU" column, target name)
Row = Callable[..., None]


def _ms(v: Any) -> str:
    return "—" if v is None else f"{v:.1f}"


def _errors(d: dict[str, Any]) -> str:
    bad = {k: v for k, v in d.get("statuses", {}).items() if k not in ("200", "202")}
    return f" ⚠ non-2xx: {bad}" if bad else ""


def _foreign(d: dict[str, Any]) -> str:
    cpu = d.get("cpu") or {}
    return "—" if "foreign_cores" not in cpu else f"{cpu['foreign_cores']:.2f}"


def _cpu_cost(d: dict[str, Any]) -> str:
    if "gunicorn_cpu_ms_per_request" not in d:
        return ""
    return (f"; CPU/req: gunicorn {d['gunicorn_cpu_ms_per_request']} ms, "
            f"postgres {d.get('postgres_cpu_ms_per_request')} ms")


def markdown(r: dict[str, Any]) -> str:
    targets = {t["name"]: t for t in r.get("targets", [])}
    rows: list[tuple[str, str, str, str, str]] = []

    def row(label: str, value: str, src: dict[str, Any] | None = None, name: str | None = None) -> None:
        t = targets.get(name or "")
        rows.append((label, value, t["target"] if t else "—", t["result"] if t else "—",
                     _foreign(src) if src else "—"))

    sizes = [size for size in ("1", "100", "1000") if size in r["ingest"]]  # `--only peer`: "100" alone
    for size in sizes:
        o = r["ingest"][size]["open_loop"]
        s = r["ingest"][size]["sustained"]
        row(f"A. {size}-event batches: ack p50 / p99 at {o['rate_per_s']:g} req/s open loop (n={o['requests']})",
            f"{_ms(o['p50_ms'])} / {_ms(o['p99_ms'])} ms{_errors(o)}{_cpu_cost(o)}", o)
        row(f"A. {size}-event batches: sustained, {s['threads']} clients closed loop",
            f"{s['events_per_s']:,} events/s ({s['requests_per_s']} req/s, ack p50 {_ms(s['p50_ms'])} ms)"
            f"{_errors(s)}{_cpu_cost(s)}", s)
        if size == "100" and r.get("peer"):
            _peer_rows(r["peer"], row)
    if r.get("floor"):
        _floor_rows(r, sizes, targets, row)
    if r.get("e2e"):
        _e2e_rows(r, targets, row)
    ku = r.get("keeps_up")
    if ku:
        _keeps_up_rows(ku, row)

    m = r["meta"]
    pg = m["postgres"]
    mode = m["mode"] + (f", --only {m['only']}" if m.get("only") else "")
    lines = [
        f"devpulse bench ({mode}, {m['started_at']}, {m['cpus']} CPUs, load average at start "
        f"{m.get('loadavg_at_start')}, total {m.get('total_s', '?')} s)",
        "",
        "| Figure | Value | Target | Result | Other processes' CPU (cores) |",
        "|---|---|---|---|---|",
        *[f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in rows],
        "",
        f"PostgreSQL {pg['server_version']}: fsync={pg['fsync']}, synchronous_commit={pg['synchronous_commit']}, "
        f"full_page_writes={pg['full_page_writes']}, wal_sync_method={pg['wal_sync_method']}, "
        f"shared_buffers={pg['shared_buffers']}. Redis: {m['redis']}.",
        f"gunicorn {m['gunicorn']}; celery {m['celery']}; {m['developers']} developers, one token each.",
        "Last column: CPU used meanwhile by processes that are not this bench's (other sessions' tests...); "
        f"anything above ~0.2 of {m['cpus']} cores makes that row's figures pessimistic.",
        *[f"- {n}" for n in m["notes"]],
    ]
    return "\n".join(lines)


def _peer_rows(peer: dict[str, Any], row: Row) -> None:
    """The textbook peer's 100-event rows (same method as ours) and the ratio ours / peer."""
    o, s, ratio = peer["100"]["open_loop"], peer["100"]["sustained"], peer["ratio"]
    # Offered above what it sustains, an open loop's backlog grows for the whole run: its latencies then say
    # how long the run was rather than how fast a request is.
    saturated = ""
    if s.get("requests_per_s") is not None and s["requests_per_s"] < o["rate_per_s"]:
        saturated = (f" ⚠ {o['rate_per_s']:g} req/s is above its sustained {s['requests_per_s']} req/s: the backlog "
                     f"grows through the {o['elapsed_s']:.0f} s run, so these figures grow with its length")
    row(f"A. textbook peer ({peer['app']}): 100-event ack p50 / p99 at {o['rate_per_s']:g} req/s open loop "
        f"(n={o['requests']})",
        f"{_ms(o['p50_ms'])} / {_ms(o['p99_ms'])} ms{_errors(o)}{_cpu_cost(o)}{saturated}", o)
    row(f"A. textbook peer: 100-event sustained, {s['threads']} clients closed loop",
        f"{s['events_per_s']:,} events/s ({s['requests_per_s']} req/s, ack p50 {_ms(s['p50_ms'])} ms)"
        f"{_errors(s)}{_cpu_cost(s)}", s)
    value = "—" if ratio["sustained_events_per_s"] is None else f"{ratio['sustained_events_per_s']:.2f}x"
    value += f" ({ratio['ours_events_per_s']:,} vs {ratio['peer_events_per_s']:,} events/s"
    if ratio.get("cpu_per_event_peer_over_ours") is not None:
        value += (f"; CPU per event, web + postgres + redis: ours {ratio['ours_cpu_us_per_event']:,} µs, peer "
                  f"{ratio['peer_cpu_us_per_event']:,} µs")
    value += ")"
    row("A. ours / textbook peer: 100-event sustained events/s", value)


def _floor_rows(r: dict[str, Any], sizes: list[str], targets: dict[str, Any], row: Row) -> None:
    f100, f1 = r["floor"]["100"], r["floor"]["1"]
    row(f"B. floor: direct INSERT, 100 events/commit, {f100['threads']} writers",
        f"{f100['events_per_s']:,} events/s ({f100['commits_per_s']} commits/s)", f100)
    row(f"B. floor: direct INSERT, 1 event/commit, {f1['threads']} writers", f"{f1['events_per_s']:,} events/s", f1)
    for size in sizes:
        name = f"ingest/floor, {size}-event batches"
        t = targets.get(name, {})
        value = "—" if t.get("value") is None else f"{t['value'] * 100:.1f}%"
        if t.get("cpu_cost_ratio") is not None:
            value += (f" (CPU per event: ingest {t['ingest_cpu_us_per_event']:,} µs vs floor "
                      f"{t['floor_cpu_us_per_event']:,} µs → CPU-bound ceiling {t['cpu_cost_ratio'] * 100:.1f}%)")
        row(f"A/B. sustained ingest / floor, {size}-event batches"
            + (" (vs the 1 event/commit floor)" if size == "1" else ""), value, None, name)


def _e2e_rows(r: dict[str, Any], targets: dict[str, Any], row: Row) -> None:
    cl, el = r["e2e"]["chord_latency"], r["e2e"]["latency"]
    row(f"C. bare chord latency p50 / p99 at {cl['rate_per_s']:g}/s (n={cl['completed']}/{cl['sent']})",
        f"{_ms(cl['p50_ms'])} / {_ms(cl['p99_ms'])} ms; worker CPU/chord {_ms(cl.get('celery_cpu_ms_per_chord'))} ms",
        cl)
    row(f"C. e2e POST→processed p50 (completed_at - received_at), 100-event batches at {el['rate_per_s']:g}/s "
        f"(n={el['processed']}/{el['posted']})", f"{_ms(el['p50_ms'])} ms", el, "e2e p50 (ms)")
    row("C. e2e POST→processed p99", f"{_ms(el['p99_ms'])} ms (statuses {el['statuses']})", el)
    row(f"C. worker (celery) CPU per 100-event batch without backlog (the {el['rate_per_s']:g}/s phase)",
        f"{_ms(el.get('celery_cpu_ms_per_batch'))} ms (bare chord at the same rate: "
        f"{_ms(cl.get('celery_cpu_ms_per_chord'))} ms)", el, "worker CPU per 100-event batch (ms)")
    ct, et = r["e2e"]["chord_throughput"], r["e2e"]["throughput"]
    row(f"C. bare chords/s ({ct['completed']}/{ct['count']} chords, {ct['threads']} publishers)",
        f"{ct['chords_per_s']} (CPU/chord: all {_ms(ct.get('total_cpu_ms_per_chord'))} ms, worker "
        f"{_ms(ct.get('celery_cpu_ms_per_chord'))} ms)", ct)
    cost = ""
    if "celery_cpu_ms_per_batch" in et:
        cost = (f"; CPU/batch: celery {et['celery_cpu_ms_per_batch']} ms, postgres {et['postgres_cpu_ms_per_batch']}"
                f" ms, gunicorn {et['gunicorn_cpu_ms_per_batch']} ms")
    t = targets.get("processed batches/s", {})
    if t.get("cpu_cost_ratio") is not None:
        cost += (f"; CPU, all processes: {t['cpu_ms_per_batch']} ms per batch vs {t['cpu_ms_per_bare_chord']} ms per "
                 f"bare chord → CPU-bound ceiling {t['cpu_cost_ratio'] * 100:.1f}% of the bare rate")
    row(f"C. processed batches/s ({et['processed']}/{et['count']} 100-event batches, {et['threads']} clients)",
        f"{et['batches_per_s']} (in {et['elapsed_s']} s; statuses {et['statuses']}{cost})", et, "processed batches/s")
    row("C. worker (celery) CPU per processed 100-event batch under backlog (8 clients)",
        f"{_ms(et.get('celery_cpu_ms_per_batch'))} ms", et)


def _keeps_up_rows(ku: dict[str, Any], row: Row) -> None:
    ing = ku["ingest"]
    row(f"D. keeps up: ingest with web + worker + beat, {ku['threads']} clients closed loop for "
        f"{ku['duration_s']:g} s", f"{ing['events_per_s']:,} events/s ({ing['requests_per_s']} req/s, "
        f"ack p50 {_ms(ing['p50_ms'])} ms){_errors(ing)}", ku)
    cpu = f"; celery CPU/batch {ku['celery_cpu_ms_per_batch']} ms" if "celery_cpu_ms_per_batch" in ku else ""
    row("D. keeps up: 100-event batches posted / processed",
        f"{ku['posted']} / {ku['processed']} ({ku['batches_per_s']} processed batches/s from the first post; "
        f"statuses {ku['statuses']}{cpu})", ku)
    lag = (f"{ku['lag_s']:.2f} s" if ku["lag_s"] is not None else
           f"not done: {ku['not_done']} of {ku['posted']} batches unprocessed after {ku['waited_s']} s")
    row("D. keeps up: last 202 ack → last of those batches processed", lag, ku,
        "keeps up: last ack -> last processed (s)")
