"""automation/ stays pure: importing all of it loads no web, task-queue, database or Redis library."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_automation_imports_no_infrastructure() -> None:
    modules = sorted(p.stem for p in (ROOT / "automation").glob("*.py") if p.stem != "__init__")
    code = ("import sys\n" + "".join(f"import automation.{m}\n" for m in modules)
            + "print(sorted(m for m in ('flask', 'celery', 'sqlalchemy', 'redis', 'psycopg2', 'requests', 'kombu')"
              " if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
