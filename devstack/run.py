"""`make run` (`python -m devstack run`): the whole stack on one machine with nothing installed.

1. PostgreSQL and Redis: the ones DATABASE_URL / REDIS_URL name, else embedded durable servers whose data
   lives under ./var/ on fixed ports (DEVPULSE_PG_PORT, DEVPULSE_REDIS_PORT), so a restart finds its data.
2. `alembic upgrade head`.
3. A developer token (dev-1) and an admin token, labelled 'make-run', kept in var/devstack-tokens.json (0600) and
   reused at the next start while they are valid; Flower's password is generated once into var/flower-auth (0600)
   unless FLOWER_BASIC_AUTH is set.
4. The Procfile's web, worker, beat and flower under honcho, until SIGINT/SIGTERM; then the embedded
   servers are shut down cleanly.

`--no-procs` (or DEVPULSE_STACK_ONLY=1) stops after step 3 and keeps the servers up until interrupted;
`source var/devstack.env` then gives another shell the URLs and tokens.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from core.settings import Settings
from devstack.procfile_runner import STOP_GRACE
from devstack.servers import EmbeddedPostgres, EmbeddedRedis, migrate

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var"
PROCESSES = ("web", "worker", "beat", "flower")
CELERY_PROCESSES = ("worker", "beat", "flower")
DATABASE = "devpulse"
DEVELOPER = "dev-1"
HONCHO_SETTLE = 3.0  # seconds before a stop signal is passed on to honcho
# honcho gives its processes STOP_GRACE seconds after SIGTERM, then SIGKILLs them (devstack/procfile_runner.py);
# this is our own deadline for honcho itself, a little later.
HONCHO_DEADLINE = STOP_GRACE + 5.0


class _Stop(Exception):
    """A stop signal arrived before the processes were started."""


def _port_in_use(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    """Running (a zombie, which holds no port, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_tree(pid: int, sig: signal.Signals = signal.SIGKILL) -> None:
    """Signal the process groups of `pid` and of all its descendants (honcho starts each in its own)."""
    members = [pid, *_descendants(pid)]
    groups = set()
    for member in members:
        with contextlib.suppress(ProcessLookupError):
            groups.add(os.getpgid(member))
    groups.discard(os.getpgrp())
    for group in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, sig)
    deadline = time.monotonic() + 10  # until they are gone (and their ports free)
    while any(_alive(m) for m in members) and time.monotonic() < deadline:
        time.sleep(0.1)


def _stop_leftover(pidfile: Path, marker: str, sig: signal.Signals, what: str, *, tree: bool = False) -> None:
    """Stop a server an earlier run left behind (it was killed before it could stop its servers)."""
    try:
        pid = int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    if pid <= 1 or not _alive(pid) or marker not in _cmdline(pid):
        return
    print(f"devstack: stopping the {what} an earlier run left running (pid {pid})", flush=True)
    os.kill(pid, sig)
    deadline = time.monotonic() + (15 if tree else 30)
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if tree:
        kill_tree(pid)
    elif _alive(pid):
        os.kill(pid, signal.SIGKILL)


def _lock_var() -> object:
    """One `run` per ./var: a second one would find the first one's servers and take them for leftovers."""
    import fcntl

    f = open(VAR / "devstack.lock", "a+")  # noqa: SIM115 - kept open (locked) for the life of the process
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise SystemExit(f"devstack: another `python -m devstack run` is using {VAR}; stop it first.") from None
    return f


def _check_free(port: int, env_name: str, what: str) -> None:
    if _port_in_use(port):
        raise SystemExit(f"devstack: port {port} ({what}) is already in use on 127.0.0.1; "
                         f"stop whatever listens there or set {env_name} to another port.")


def start_postgres(server: EmbeddedPostgres) -> str:
    _stop_leftover(server.data_dir / "postmaster.pid", str(server.data_dir), signal.SIGINT, "PostgreSQL")
    _check_free(server.port, "DEVPULSE_PG_PORT", "embedded PostgreSQL")
    print(f"devstack: starting PostgreSQL on 127.0.0.1:{server.port} (data in {server.data_dir})", flush=True)
    server.start(timeout=60)
    return server.create_database(DATABASE)


def start_redis(server: EmbeddedRedis) -> str:
    pidfile = server.data_dir / "devstack-redis.pid"
    _stop_leftover(pidfile, "redis-server", signal.SIGTERM, "Redis")
    _check_free(server.port, "DEVPULSE_REDIS_PORT", "embedded Redis")
    print(f"devstack: starting Redis on 127.0.0.1:{server.port} (data in {server.data_dir})", flush=True)
    server.start()
    assert server.process is not None
    pidfile.write_text(f"{server.process.pid}\n")
    return server.url(0)


def _private_file(path: Path, text: str) -> None:
    """Write a secret readable by its owner only (mode 0600 from the start, never briefly wider)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)


def create_tokens(database_url: str) -> tuple[str, str]:
    """The dev and admin tokens of `make run`: those stored in var/devstack-tokens.json while they are still valid
    (a restart does not mint new never-expiring tokens), else new ones, stored there with mode 0600."""
    from models.db import Database
    from models.tokens import create_token, find_principal

    path = VAR / "devstack-tokens.json"
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError):
        stored = {}
    db = Database()
    db.configure(database_url, pool_size=1)
    try:
        with db.transaction() as session:
            tokens: dict[str, str] = {}
            for key, developer_id in (("developer", DEVELOPER), ("admin", None)):
                kept = stored.get(key) if isinstance(stored, dict) else None
                principal = find_principal(session, kept) if isinstance(kept, str) else None
                if isinstance(kept, str) and principal is not None and principal.developer_id == developer_id:
                    tokens[key] = kept
                else:
                    tokens[key] = create_token(session, developer_id, admin=developer_id is None, label="make-run")
    finally:
        db.dispose()
    _private_file(path, json.dumps(tokens) + "\n")
    return tokens["developer"], tokens["admin"]


def login_link(database_url: str, developer_token: str) -> str:
    """The secret of a one-time dashboard login link for the dev token (single use, 10 minutes)."""
    from datetime import UTC, datetime

    from models.db import Database
    from models.login_links import create_login_link
    from models.tokens import hash_token

    db = Database()
    db.configure(database_url)
    try:
        with db.transaction() as session:
            return create_login_link(session, hash_token(developer_token), datetime.now(UTC))
    finally:
        db.dispose()


def flower_basic_auth(env: dict[str, str]) -> str:
    """FLOWER_BASIC_AUTH when set; else a generated password kept in var/flower-auth (0600): Flower has no default."""
    if env.get("FLOWER_BASIC_AUTH"):
        return env["FLOWER_BASIC_AUTH"]
    path = VAR / "flower-auth"
    try:
        value = path.read_text().strip()
    except OSError:
        value = ""
    if not value.startswith("admin:") or len(value) < 20:
        value = f"admin:{secrets.token_urlsafe(18)}"
        _private_file(path, value + "\n")
    return value


def secret_key(env: dict[str, str]) -> str:
    """SECRET_KEY when set; else one generated once into var/secret-key (0600): dashboard sessions then survive a
    restart and are shared by the gunicorn workers."""
    if env.get("SECRET_KEY"):
        return env["SECRET_KEY"]
    path = VAR / "secret-key"
    try:
        value = path.read_text().strip()
    except OSError:
        value = ""
    if len(value) < 32:
        value = secrets.token_hex(32)
        _private_file(path, value + "\n")
    return value


def celery_app_problem(env: dict[str, str]) -> str | None:
    """None if `celery -A tasks` finds its app, else the reason it does not."""
    probe = "from celery.app.utils import find_app; find_app('tasks')"
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    if result.returncode == 0:
        return None
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    return lines[-1] if lines else f"exit code {result.returncode}"


def banner(env: dict[str, str], developer: str, admin: str, processes: list[str], skipped: str | None,
           link: str = "") -> str:
    api = f"http://127.0.0.1:{env['PORT']}"
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    batch_id = str(uuid.uuid4())
    body = json.dumps({
        "batch_id": batch_id, "developer_id": DEVELOPER, "sent_at": now, "schema_version": "1.1",
        "client": {"extension_version": "0.1.0", "editor": "vscode"},
        "events": [{"event_id": str(uuid.uuid4()), "type": "file.save", "timestamp": now,
                    "session_id": "s-1", "payload": {"file": "src/app.py", "language": "python"}}],
    }, separators=(",", ":"))
    user, _, password = env["FLOWER_BASIC_AUTH"].partition(":")
    lines = [
        "",
        "=" * 78,
        "devpulse is running" if processes else "devpulse servers are running (no processes: --no-procs)",
        "",
        f"  API            {api}" + ("" if "web" in processes else "   (web not started)"),
        f"  Dashboard      {api}/login/link/{link}",
        "                 (one use, 10 minutes; or paste a token at /login: the admin's opens the operator view)",
        f"  API docs       {api}/docs   (metrics: {api}/metrics)",
        f"  developer      {DEVELOPER}",
        f"  dev token      {developer}",
        f"  admin token    {admin}",
    ]
    if "flower" in processes:
        lines.append(f"  Flower         http://127.0.0.1:{env['FLOWER_PORT']}   (user {user!r}, password {password!r})")
    if skipped:
        lines += ["", f"  NOT started: {', '.join(CELERY_PROCESSES)} - `celery -A tasks` finds no app:",
                  f"    {skipped}"]
    lines += [
        f"  DATABASE_URL   {env['DATABASE_URL']}",
        f"  REDIS_URL      {env['REDIS_URL']}",
        "",
        "  Send one event (202 Accepted; the same batch again answers 200 'duplicate')"
        + (":" if "web" in processes else f", once a web process listens on {api}:"),
        "",
        f"    curl -sS -X POST {api}/api/workflow/events/orchestrate \\",
        f"      -H 'Authorization: Bearer {developer}' -H 'Content-Type: application/json' \\",
        f"      -d '{body}'",
        "",
        "  Then follow the batch:",
        "",
        f"    curl -sS -H 'Authorization: Bearer {developer}' {api}/api/workflow/batches/{batch_id}",
        "",
        "  These tokens are kept in var/devstack-tokens.json (mode 0600) and reused at the next start while valid",
        "  (revoke with `flask --app app tokens revoke --id N`). `source var/devstack.env` sets them in another shell.",
        "  Stop with Ctrl-C: the processes stop, then the embedded servers (data stays in ./var).",
        "=" * 78,
        "",
    ]
    return "\n".join(lines)


def write_env_file(env: dict[str, str], developer: str, admin: str) -> Path:
    path = VAR / "devstack.env"
    values = {"DATABASE_URL": env["DATABASE_URL"], "REDIS_URL": env["REDIS_URL"],
              "DEVPULSE_API_URL": f"http://127.0.0.1:{env['PORT']}", "DEVPULSE_TOKEN": developer,
              "DEVPULSE_ADMIN_TOKEN": admin}
    _private_file(path, "".join(f"export {k}='{v}'\n" for k, v in values.items()))
    return path


def supervise(child: subprocess.Popen[bytes], processes: list[str], port: int, text: str,
              servers: list[tuple[EmbeddedPostgres | EmbeddedRedis, str]],
              requested: list[tuple[int, float]]) -> int:
    """Wait for honcho; forward stop signals to it, and stop it if an embedded server dies."""
    started = time.monotonic()
    announced = forwarded_at = None
    failed = False
    while child.poll() is None:
        now = time.monotonic()
        if announced is None and ("web" not in processes or now - started > 60 or _port_in_use(port)):
            sys.stdout.write(text)
            sys.stdout.flush()
            announced = now
        for server, what in servers:
            if not server.running and not failed:
                print(f"devstack: {what} exited unexpectedly; stopping", file=sys.stderr, flush=True)
                failed = True
        if (requested or failed) and forwarded_at is None:
            # honcho 2.0 crashes, then hangs, on a signal that arrives before it started every process.
            if now - started >= HONCHO_SETTLE:
                child.send_signal(signal.SIGINT if requested and requested[0][0] == signal.SIGINT
                                  else signal.SIGTERM)
                forwarded_at = now
        elif forwarded_at is not None:
            again = len(requested) > 1 and requested[-1][1] - requested[0][1] > 1.0  # a second Ctrl-C
            if again or now - forwarded_at > HONCHO_DEADLINE:
                print("devstack: killing the processes (second Ctrl-C or too slow)", file=sys.stderr, flush=True)
                kill_tree(child.pid)
                child.wait()
                break
        time.sleep(0.2)
    return 1 if failed else 0 if requested else (child.returncode or 0)


def prepare_metrics_dir(env: dict[str, str]) -> None:
    """web and worker processes write Prometheus samples to one directory, merged by the web's /metrics;
    samples of an earlier run (other pids) must not be counted again."""
    if env.get("PROMETHEUS_MULTIPROC_DIR"):
        Path(env["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)
        return
    path = VAR / "prometheus"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir()
    env["PROMETHEUS_MULTIPROC_DIR"] = str(path)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devstack run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-procs", action="store_true",
                        default=os.environ.get("DEVPULSE_STACK_ONLY", "") not in ("", "0"),
                        help="only servers, migrations and tokens; wait for Ctrl-C (also DEVPULSE_STACK_ONLY=1)")
    parser.add_argument("processes", nargs="*", metavar="PROCESS",
                        help=f"Procfile processes to start (default: {' '.join(PROCESSES)})")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.processes) - set(PROCESSES))
    if unknown:
        parser.error(f"unknown process {', '.join(unknown)}; choose from {', '.join(PROCESSES)}")
    return args


def run(argv: list[str]) -> int:
    args = parse_args(argv)
    processes = [] if args.no_procs else list(dict.fromkeys(args.processes or PROCESSES))
    env = dict(os.environ)
    env.setdefault("PORT", "8000")
    env.setdefault("FLOWER_PORT", "5555")
    env.setdefault("WEB_CONCURRENCY", "2")
    env.setdefault("WORKER_CONCURRENCY", "2")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"

    child: subprocess.Popen[bytes] | None = None
    requested: list[tuple[int, float]] = []  # stop signals received, handled by supervise()

    def on_signal(signum: int, _frame: object) -> None:
        requested.append((signum, time.monotonic()))
        if child is None:
            raise _Stop

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    postgres: EmbeddedPostgres | None = None
    redis: EmbeddedRedis | None = None
    env_file: Path | None = None
    code = 0
    try:
        VAR.mkdir(exist_ok=True)
        lock = _lock_var()  # noqa: F841 - held until this process exits
        # Holding the lock, whatever still runs from ./var was left by a run that was killed.
        _stop_leftover(VAR / "devstack-honcho.pid", "honcho", signal.SIGTERM, "processes (honcho)", tree=True)
        for name, process in (("PORT", "web"), ("FLOWER_PORT", "flower")):
            if process in processes:
                _check_free(int(env[name]), name, f"the {process} process")
        # Assigned before starting, so that a Ctrl-C during the start still stops them.
        if not env.get("DATABASE_URL"):
            postgres = EmbeddedPostgres(VAR / "postgres", int(env.get("DEVPULSE_PG_PORT") or 54329), durable=True)
            env["DATABASE_URL"] = start_postgres(postgres)
        if not env.get("REDIS_URL"):
            redis = EmbeddedRedis(VAR / "redis", int(env.get("DEVPULSE_REDIS_PORT") or 63799), durable=True)
            env["REDIS_URL"] = start_redis(redis)
        env["FLOWER_BASIC_AUTH"] = flower_basic_auth(env)
        env["SECRET_KEY"] = secret_key(env)
        env.setdefault("FLOWER_URL", f"http://127.0.0.1:{env['FLOWER_PORT']}")
        database_url = Settings(database_url=env["DATABASE_URL"]).sqlalchemy_url
        print("devstack: alembic upgrade head", flush=True)
        migrate(database_url)
        developer, admin = create_tokens(database_url)
        link = login_link(database_url, developer)
        env_file = write_env_file(env, developer, admin)
        prepare_metrics_dir(env)

        skipped = None
        if any(p in CELERY_PROCESSES for p in processes):
            skipped = celery_app_problem(env)
            if skipped:
                processes = [p for p in processes if p not in CELERY_PROCESSES]
        text = banner(env, developer, admin, processes, skipped, link)
        if not processes:
            print(text, flush=True)
            while True:  # until a signal raises _Stop
                time.sleep(1)
                for server, what in ((postgres, "PostgreSQL"), (redis, "Redis")):
                    if server is not None and not server.running:
                        print(f"devstack: {what} exited unexpectedly", file=sys.stderr, flush=True)
                        return 1

        child = subprocess.Popen(
            [sys.executable, "-m", "devstack.procfile_runner", "start", "-f", str(ROOT / "Procfile"), "-d", str(ROOT),
             "-p", env["PORT"], *processes],
            cwd=ROOT, env=env, start_new_session=True,  # signals reach honcho through us only
        )
        (VAR / "devstack-honcho.pid").write_text(f"{child.pid}\n")
        servers = [(server, what) for server, what in ((postgres, "PostgreSQL"), (redis, "Redis")) if server]
        code = supervise(child, processes, int(env["PORT"]), text, servers, requested)
    except _Stop:
        code = 0
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # a second Ctrl-C must not cut the clean-up
            signal.signal(sig, lambda *_: os.write(2, b"devstack: stopping, please wait\n"))
        if child is not None:
            if child.poll() is None:
                child.terminate()
                try:
                    child.wait(HONCHO_DEADLINE)
                except subprocess.TimeoutExpired:
                    kill_tree(child.pid)
                    child.wait()
            (VAR / "devstack-honcho.pid").unlink(missing_ok=True)
        if env_file is not None:
            env_file.unlink(missing_ok=True)
        if redis is not None:
            redis.stop()
            with contextlib.suppress(OSError):
                (redis.data_dir / "devstack-redis.pid").unlink()
            print("devstack: Redis stopped", flush=True)
        if postgres is not None:
            postgres.stop("fast")
            print("devstack: PostgreSQL stopped (data kept in var/postgres)", flush=True)
    return code
