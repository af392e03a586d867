"""`python -m devstack run [--no-procs] [PROCESS ...]`: see devstack/run.py."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["run"]:
        from devstack.run import run

        return run(args[1:])
    print("usage: python -m devstack run [--no-procs] [web|worker|beat|flower ...]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
