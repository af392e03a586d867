"""honcho as `make run` starts it: `python -m devstack.procfile_runner start ...` takes honcho's arguments.

honcho 2.0 SIGKILLs every process still running 5 s after the first one stopped (its module constant
`KILL_WAIT`, with no option to change it), so a gunicorn with open alert streams was killed mid-shutdown
although the README promises 20 s. Here honcho waits STOP_GRACE seconds before it kills.
"""

from __future__ import annotations

import sys

import honcho.command
import honcho.manager

STOP_GRACE = 20  # seconds between the SIGTERM and the SIGKILL honcho sends its processes


def main(argv: list[str]) -> None:
    honcho.manager.KILL_WAIT = STOP_GRACE  # read by Manager.loop at every turn
    honcho.command.main(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
