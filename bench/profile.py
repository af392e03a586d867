"""`python -m bench.profile [--target worker|web] [--batches N] [--history N]`: where the CPU goes, per process kind.

Starts the bench stack (bench/stack.py: embedded PostgreSQL with fsync on, Redis, gunicorn, a Celery worker),
gives each developer `--history` 100-event batches first (so detection and aggregation see a realistic recent
past), then posts `--batches` 100-event batches from 8 clients while py-spy samples the target's processes
(every child of the gunicorn arbiter or of the Celery main process; only threads holding the GIL, so time
spent waiting for PostgreSQL or Redis is not counted). Writes the collapsed stacks under
bench/results/ (any flame-graph viewer reads them, e.g. speedscope or flamegraph.pl) and prints the functions
with the largest inclusive share.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time
from collections import Counter
from pathlib import Path

from bench.run import DEVELOPERS, RESULTS, THREADS, log


def summarize(collapsed: Path, top: int = 40) -> str:
    """Inclusive and self share of each function in py-spy's raw (collapsed) output."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [f.split(" (")[0] + " (" + f.split(" (")[1].split(":")[0] + ")" if " (" in f else f
                  for f in stack.split(";")[1:]]  # the first frame is the process
        for frame in set(frames):
            inclusive[frame] += n
        if frames:
            own[frames[-1]] += n
    lines = [f"{total} samples", f"{'incl %':>7} {'self %':>7}  function"]
    for frame, n in inclusive.most_common(top):
        lines.append(f"{100 * n / total:7.1f} {100 * own[frame] / total:7.1f}  {frame}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", choices=("worker", "web"), default="worker")
    parser.add_argument("--batches", type=int, default=400, help="100-event batches posted while sampling")
    parser.add_argument("--history", type=int, default=20, help="100-event batches per developer before")
    parser.add_argument("--events", type=int, default=100, help="events per posted batch (default 100)")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="post at this many batches/s (open loop) instead of 8 closed-loop clients")
    parser.add_argument("--keep-up", type=float, default=0.0, metavar="SECONDS",
                        help="instead: beat too, and 8 clients post for SECONDS (phase D of make bench) while "
                             "sampling until every batch is processed")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=2, help="Celery worker processes (make bench: 2)")
    args = parser.parse_args(argv)

    from bench.e2e import e2e_latency, e2e_throughput, wait_batches
    from bench.events import Pool, Workload
    from bench.load import closed_loop
    from bench.stack import BIN, Stack

    stack = Stack(concurrency=args.concurrency)
    try:
        log(f"starting PostgreSQL and Redis in {stack.dir}")
        stack.start_servers()
        devs = [f"profile-{i:02d}" for i in range(DEVELOPERS)]
        tokens = stack.create_tokens(devs)
        load = Workload([(d, tokens[d]) for d in devs], hours_back=12, seed=7)
        stack.start_web()
        stack.start_worker()
        if args.history:
            log(f"history: {args.history} batches of 100 events per developer")
            run = closed_loop(stack.web_port, Pool(load, 100, args.history * DEVELOPERS), threads=THREADS,
                              count=args.history * DEVELOPERS)
            wait_batches(stack.connect, run.batch_ids, 600, poll=0.5)
        proc = stack.worker if args.target == "worker" else stack.web
        assert proc is not None
        RESULTS.mkdir(parents=True, exist_ok=True)
        raw = RESULTS / f"profile-{args.target}.txt"
        spy = [str(BIN / "py-spy"), "record", "--pid", str(proc.pid), "--subprocesses", "--gil", "--rate", "200",
               "--nonblocking", "--format", "raw", "--output", str(raw)]
        sampler = subprocess.Popen(spy, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(1.0)
        pool = Pool(load, args.events, 0 if args.keep_up else args.batches)
        started = time.monotonic()
        if args.keep_up:
            from bench.e2e import keeps_up

            stack.start_beat()
            result = keeps_up(stack.web_port, stack.connect, Pool(load, 100, int(args.keep_up * 80)),
                              threads=THREADS, duration=args.keep_up, timeout=600)
        elif args.rate:
            result = e2e_latency(stack.web_port, stack.connect, pool, rate=args.rate,
                                 duration=args.batches / args.rate, timeout=300)
        else:
            result = e2e_throughput(stack.web_port, stack.connect, pool, count=args.batches, threads=THREADS,
                                    timeout=600)
        elapsed = time.monotonic() - started
        sampler.send_signal(2)
        sampler.wait(60)
        log(f"{args.batches} batches in {elapsed:.1f} s: {result}")
        print(summarize(raw, args.top))
        log(f"wrote {raw}")
    finally:
        stack.close()
    return 0

if __name__ == "__main__":
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    raise SystemExit(main())
