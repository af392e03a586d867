"""`make run`'s honcho gives its processes the 20 s stop grace the README promises (honcho's own is 5 s)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from devstack.procfile_runner import STOP_GRACE

SLOW_STOP = """
import pathlib, signal, sys, time
out = pathlib.Path(sys.argv[1])
def stop(*_):
    time.sleep(float(sys.argv[2]))  # e.g. gunicorn waiting for open streams to end
    out.write_text("stopped cleanly")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
out.with_suffix(".started").write_text("1")
while True:
    time.sleep(0.05)
"""


def test_a_process_that_takes_8_s_to_stop_is_not_killed(tmp_path: Path) -> None:
    (tmp_path / "slow.py").write_text(SLOW_STOP)
    done = tmp_path / "slow.out"
    # `quick` stops at once on SIGTERM (as flower does): honcho's kill countdown starts then.
    (tmp_path / "Procfile").write_text(
        f"slow: exec {sys.executable} {tmp_path / 'slow.py'} {done} 8\n"
        f"quick: exec {sys.executable} -c 'import time; time.sleep(600)'\n")
    honcho = subprocess.Popen(
        [sys.executable, "-m", "devstack.procfile_runner", "start", "-f", str(tmp_path / "Procfile"),
         "-d", str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not done.with_suffix(".started").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        started = time.monotonic()
        honcho.send_signal(signal.SIGTERM)
        output = honcho.communicate(timeout=STOP_GRACE + 10)[0].decode(errors="replace")
        elapsed = time.monotonic() - started
    finally:
        if honcho.poll() is None:
            import os

            os.killpg(honcho.pid, signal.SIGKILL)
            honcho.wait()
    assert done.exists(), f"the slow process was killed before it finished stopping:\n{output}"
    assert done.read_text() == "stopped cleanly"
    assert "SIGKILL" not in output
    assert 8 <= elapsed < STOP_GRACE, f"{elapsed:.1f} s"
