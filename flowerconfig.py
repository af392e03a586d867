"""Read by Flower at start-up: its default `--conf` is `flowerconfig.py` in the working directory (the
repository root under `make run`, /app in the image). Only the names of Flower options set anything here.

Flower asks the workers for their stats, queues and configuration as soon as it starts. Started beside the
first worker (`make run`, `docker compose up`), no worker has answered yet, and Flower logged "Inspect method
... failed" for each of them: warnings that meant nothing. For its first minute those lines are
dropped; after that they mean what they say (no worker answers) and are logged.
"""

# Imported under private names: a module-level `logging` would be taken for Flower's --logging option.
import logging as _logging
import time as _time

_STARTUP_GRACE_SECONDS = 60.0
_started = _time.monotonic()


class _QuietBeforeAWorker(_logging.Filter):
    def filter(self, record: _logging.LogRecord) -> bool:
        early = _time.monotonic() - _started < _STARTUP_GRACE_SECONDS
        return not (early and record.msg == "Inspect method %s failed")


_logging.getLogger("flower.inspector").addFilter(_QuietBeforeAWorker())
