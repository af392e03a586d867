"""CPU accounting from /proc: who used the cores during a phase (ours, per started process and its
descendants, and everyone else).

On a shared 2-core machine a number is only as good as the quiet around it, so every phase reports how
many cores *other* processes used meanwhile; per-request CPU costs of gunicorn and PostgreSQL do not
depend on that contention and are the figures to compare across runs.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def _busy_total() -> tuple[int, int]:
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    total = sum(fields)
    return total - fields[3] - fields[4], total  # busy = all but idle and iowait


def group_ticks(roots: dict[str, int]) -> dict[str, int]:
    """utime+stime (+ reaped children's) per root process and its descendants, each process counted for its
    nearest root (PostgreSQL backends call setsid, so process groups would miss them)."""
    procs: dict[int, tuple[int, int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        rest = raw[raw.rfind(")") + 2:].split()
        # rest[0] is field 3 (state): ppid is field 4, utime..cstime are fields 14..17.
        procs[int(entry.name)] = (int(rest[1]), int(rest[11]) + int(rest[12]) + int(rest[13]) + int(rest[14]))
    by_pid = {pid: name for name, pid in roots.items()}
    out = dict.fromkeys(roots, 0)
    for pid, (_ppid, ticks) in procs.items():
        here, hops = pid, 0
        while here not in by_pid and here > 1 and hops < 64:
            here = procs.get(here, (0, 0))[0]
            hops += 1
        if here in by_pid:
            out[by_pid[here]] += ticks
    return out


class CpuMeter:
    def __init__(self, groups: dict[str, int]) -> None:
        self.groups = {k: v for k, v in groups.items() if v}
        self.t0 = time.monotonic()
        self.busy0, _ = _busy_total()
        self.g0 = group_ticks(self.groups)

    def stop(self) -> dict[str, float]:
        elapsed = time.monotonic() - self.t0
        busy1, _ = _busy_total()
        g1 = group_ticks(self.groups)
        used = {k: max(0, g1[k] - self.g0.get(k, 0)) / TICK for k in self.groups}  # CPU seconds
        ours = sum(used.values())
        busy = (busy1 - self.busy0) / TICK
        out = {f"{k}_cpu_s": round(v, 2) for k, v in used.items()}
        out.update(elapsed_s=round(elapsed, 2), machine_busy_cores=round(busy / elapsed, 2),
                   ours_cores=round(ours / elapsed, 2), foreign_cores=round(max(0.0, busy - ours) / elapsed, 2))
        return out


def foreign_load(groups: dict[str, int], seconds: float = 2.0) -> float:
    meter = CpuMeter(groups)
    time.sleep(seconds)
    return meter.stop()["foreign_cores"]
