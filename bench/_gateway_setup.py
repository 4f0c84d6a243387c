"""The processes bench_gateway.py measures: simulator, FlowLoom gateway, LiteLLM proxy.

Each runs as its own process pinned with ``taskset`` (the proxy under test on one core,
the simulator and the load generator on the other), on a free loopback port. Also here:
installing LiteLLM into its own virtualenv outside the repository, resident memory and
CPU time of a process tree (from /proc), and the check that FlowLoom's ledger holds one
verified ``gateway.exchange`` per request.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "bench"
ANTHROPIC_MODEL = "claude-bench"
OPENAI_MODEL = "gpt-bench"
CALLER_KEY = "sk-bench-caller"
"""The key every caller sends: LiteLLM's master key (it refuses to start without one)."""
CACHE = Path(os.environ.get("FLOWLOOM_BENCH_CACHE") or Path.home() / ".cache" / "flowloom-bench")


class SetupError(RuntimeError):
    """A process would not start (the message says which and why)."""


# -- /proc ------------------------------------------------------------------------------


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    return children


def tree(pid: int) -> list[int]:
    """`pid` and all its descendants (LiteLLM may run its worker as a child)."""
    children = _children_map()
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(children.get(current, []))
    return out


def _status_kb(pid: int, field_name: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_mb(pids: list[int]) -> float:
    """Summed VmRSS of `pids`, in MB (1 MB = 1,048,576 bytes)."""
    return sum(_status_kb(p, "VmRSS") for p in pids) / 1024.0


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time consumed so far by `pids`."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# -- processes --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pin_prefix(core: int | None) -> list[str]:
    """``taskset -c CORE`` when pinning is on and possible, else nothing."""
    if core is None or shutil.which("taskset") is None:
        return []
    return ["taskset", "-c", str(core)]


def _get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


@dataclass
class Proc:
    """One server process under test, its URL and where its stderr goes."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid

    def pids(self) -> list[int]:
        return tree(self.process.pid)

    def rss_mb(self) -> float:
        return rss_mb(self.pids())

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pids())

    def log_tail(self, chars: int = 1500) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-chars:]
        return ""

    def pause(self) -> None:
        """SIGSTOP the tree: the other proxy on the same core must not run meanwhile."""
        for pid in self.pids():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGSTOP)

    def resume(self) -> None:
        for pid in self.pids():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGCONT)

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.process.poll() is None:
            self.resume()
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def _spawn(
    name: str, argv: list[str], workdir: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], Path]:
    log_path = workdir / f"{name}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            argv,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            start_new_session=True,  # a Ctrl-C in the terminal reaches only the bench
        )
    return process, log_path


def _wait_ready(proc: Proc, path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.process.poll() is not None:
            raise SetupError(f"{proc.name} exited ({proc.process.returncode}): {proc.log_tail()}")
        with contextlib.suppress(OSError):
            status, _ = _get(proc.url + path)
            if status == 200:
                return
        time.sleep(0.1)
    proc.stop(5)
    raise SetupError(f"{proc.name} was not ready within {timeout:.0f} s: {proc.log_tail()}")


def _flowloom_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src")
    return env


def start_simulator(workdir: Path, core: int | None, name: str = "simulator") -> Proc:
    """`flowloom dev mock-provider` on a free port (request log kept at one entry)."""
    port = free_port()
    argv = [
        *pin_prefix(core),
        sys.executable,
        "-m",
        "flowloom",
        "dev",
        "mock-provider",
        "--port",
        str(port),
        "--log-size",
        "1",
        "--log-level",
        "warning",
    ]
    process, log = _spawn(name, argv, workdir, _flowloom_env())
    proc = Proc(name, f"http://127.0.0.1:{port}", process, log)
    _wait_ready(proc, "/_mock/requests", 30)
    return proc


def write_flowloom_config(workdir: Path, simulator_url: str) -> Path:
    """Two providers on the simulator, one model name each (as the LiteLLM config)."""
    path = workdir / "gateway.toml"
    path.write_text(
        f"""[providers.anthropic]
kind = "anthropic"
base_url = "{simulator_url}"

[providers.openai]
kind = "openai"
base_url = "{simulator_url}"

[models."{ANTHROPIC_MODEL}"]
targets = [{{ provider = "anthropic", model = "{ANTHROPIC_MODEL}" }}]

[models."{OPENAI_MODEL}"]
targets = [{{ provider = "openai", model = "{OPENAI_MODEL}" }}]
"""
    )
    return path


def _hide_fast_io(workdir: Path, env: dict[str, str]) -> None:
    """Make uvloop and httptools unimportable in the process `env` starts, as where they
    are not installed: uvicorn then runs on asyncio and h11 (bench_gateway --plain-io)."""
    hidden = workdir / "hide-fast-io"
    for name in ("uvloop", "httptools"):
        (hidden / name).mkdir(parents=True, exist_ok=True)
        (hidden / name / "__init__.py").write_text(
            f"raise ImportError('{name} is hidden by bench_gateway.py --plain-io')\n"
        )
    env["PYTHONPATH"] = os.pathsep.join([str(hidden), env["PYTHONPATH"]])


def start_flowloom(
    workdir: Path,
    simulator_url: str,
    core: int | None,
    *,
    plain_io: bool = False,
    workers: int = 1,
    database: str | None = None,
    name: str = "flowloom",
) -> Proc:
    """`flowloom gateway serve`: recording fail-closed into a fresh SQLite ledger, open
    access, one worker; or with `database` (a postgresql:// URL) into that database,
    callers needing a virtual key (limits and budgets checked), `workers` processes.

    `plain_io`: without uvloop and httptools (asyncio + h11), to measure what they bring.
    """
    port = free_port()
    config = write_flowloom_config(workdir, simulator_url)
    ledger: str | Path = database or workdir / "ledger.db"
    home = workdir / "home"
    env = _flowloom_env()
    env["FLOWLOOM_HOME"] = str(home)
    if plain_io:
        _hide_fast_io(workdir, env)
    argv = [
        *pin_prefix(core),
        sys.executable,
        "-m",
        "flowloom",
        "--database",
        str(ledger),
        "--project",
        PROJECT,
        "gateway",
        "serve",
        "--config",
        str(config),
        "--port",
        str(port),
        "--record",
        "fail_closed",
        *(["--open-access"] if database is None else []),
        "--workers",
        str(workers),
        "--log-level",
        "warning",
    ]
    process, log = _spawn(name, argv, workdir, env)
    proc = Proc(
        name,
        f"http://127.0.0.1:{port}",
        process,
        log,
        {"database": ledger, "home": home, "workers": workers},
    )
    _wait_ready(proc, "/readyz", 120)
    return proc


# -- PostgreSQL -------------------------------------------------------------------------

PG_URL = os.environ.get("FLOWLOOM_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


@contextlib.contextmanager
def pg_schema() -> Iterator[str]:
    """A URL on a fresh schema of the bench's PostgreSQL server, dropped after."""
    import uuid
    from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

    import psycopg
    from psycopg import sql

    schema = f"flowloom_bench_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(PG_URL, autocommit=True, connect_timeout=5) as admin:
            admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    except psycopg.Error as exc:
        raise SetupError(f"PostgreSQL is not reachable for the workers phase: {exc}") from exc
    parts = urlsplit(PG_URL)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "options"]
    query.append(("options", f"-csearch_path={schema}"))
    try:
        yield urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))
    finally:
        with psycopg.connect(PG_URL, autocommit=True, connect_timeout=5) as admin:
            admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def limited_key(database: str, *, rpm: int, tpm: int, budget_usd: float) -> str:
    """A virtual key with limits and a monthly budget in `database`: its secret."""
    from flowloom.gateway.access import Access
    from flowloom.gateway.access.service import AccessSettings

    access = Access(
        database, master_key_loader=lambda: bytes(32), settings=AccessSettings(background=False)
    )
    try:
        _, secret = access.create_key(
            owner_user="bench", project=PROJECT, rpm=rpm, tpm=tpm, budget_usd=budget_usd
        )
        return secret
    finally:
        access.close()


def quota_counted(database: str) -> dict[str, float]:
    """What the shared quota rows hold per kind (rpm, tpm, usd), after the gateway stopped."""
    from sqlalchemy import text

    from flowloom.auth.schema import make_engine

    engine = make_engine(database)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT scope, SUM(amount) AS amount FROM gateway_quota_use GROUP BY scope")
            ).all()
        out: dict[str, float] = {}
        for row in rows:
            kind = str(row.scope).split(":", 1)[0]
            out[kind] = out.get(kind, 0.0) + float(row.amount)
        return out
    finally:
        engine.dispose()


def recorder_status(proc: Proc) -> dict[str, Any]:
    with contextlib.suppress(OSError, ValueError):
        _, body = _get(proc.url + "/readyz")
        status: dict[str, Any] = json.loads(body).get("recorder", {})
        return status
    return {}


def wait_recorder_idle(proc: Proc, timeout: float = 60.0) -> dict[str, Any]:
    """Poll /readyz until the recorder has nothing queued (or `timeout`)."""
    deadline = time.monotonic() + timeout
    status = recorder_status(proc)
    while time.monotonic() < deadline and status.get("queued", 0):
        time.sleep(0.2)
        status = recorder_status(proc)
    return status


def check_flowloom_ledger(proc: Proc, expected: int) -> dict[str, Any]:
    """After the gateway stopped: one gateway.exchange per request, and the log verifies."""
    from flowloom.ledger.body import BodyCipher
    from flowloom.ledger.keys import KeyStore
    from flowloom.ledger.log import Ledger
    from flowloom.ledger.verify import verify_store
    from flowloom.services import open_store

    store = open_store(str(proc.extra["database"]))
    try:
        keys = KeyStore(Path(proc.extra["home"]))
        origin = f"flowloom.local/{PROJECT}"
        signer, _ = keys.signer(origin)
        ledger = Ledger(
            store,
            log=PROJECT,
            origin=origin,
            signer=lambda: signer,
            cipher=lambda: BodyCipher(keys.master_key()),
            actor={"type": "service", "id": "bench"},
            max_body_bytes=1 << 20,
        )
        size = store.size(PROJECT)
        kinds: dict[str, int] = {}
        statuses: dict[str, int] = {}
        for entry in store.entries(PROJECT):
            envelope = json.loads(entry.envelope)
            kind = envelope.get("kind", "?")
            kinds[kind] = kinds.get(kind, 0) + 1
            if kind == "gateway.exchange":
                status = str((envelope.get("refs") or {}).get("status"))
                statuses[status] = statuses.get(status, 0) + 1
        ledger.checkpoint()
        report = verify_store(store, PROJECT, ledger.verifier)
        exchanges = kinds.get("gateway.exchange", 0)
        return {
            "requests": expected,
            "exchanges": exchanges,
            "exchange_statuses": statuses,
            "log_size": size,
            "kinds": kinds,
            "verified": report.ok,
            "problems": [p.line() for p in report.problems[:5]],
            "ok": report.ok and exchanges == expected,
        }
    finally:
        store.close()


# -- LiteLLM ----------------------------------------------------------------------------


def litellm_venv() -> Path:
    return CACHE / "litellm"


def install_litellm(upgrade: bool) -> tuple[Path, str]:
    """LiteLLM's proxy in its own virtualenv (created on first use): (litellm exe, version)."""
    venv = litellm_venv()
    exe = venv / "bin" / "litellm"
    python = venv / "bin" / "python"
    if not exe.exists() or upgrade:
        CACHE.mkdir(parents=True, exist_ok=True)
        if not python.exists():
            base = getattr(sys, "_base_executable", None) or sys.executable
            subprocess.run([base, "-m", "venv", str(venv)], check=True, capture_output=True)
        install = [str(python), "-m", "pip", "install", "--quiet"]
        if upgrade:
            install.append("--upgrade")
        done = subprocess.run(
            [*install, "litellm[proxy]"], capture_output=True, text=True, timeout=1800
        )
        if done.returncode != 0 or not exe.exists():
            raise SetupError(f"pip install 'litellm[proxy]' failed: {done.stderr.strip()[-800:]}")
    version = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return exe, version or "unknown"


def write_litellm_config(workdir: Path, simulator_url: str) -> Path:
    """The same two model names on the simulator; no database, no callbacks.

    LiteLLM refuses to start without a master key, so the callers' key is its master key.

    Written as JSON, which YAML reads as well.
    """
    config = {
        "model_list": [
            {
                "model_name": ANTHROPIC_MODEL,
                "litellm_params": {
                    "model": f"anthropic/{ANTHROPIC_MODEL}",
                    "api_base": simulator_url,
                    "api_key": "sk-bench",
                },
            },
            {
                "model_name": OPENAI_MODEL,
                "litellm_params": {
                    "model": f"openai/{OPENAI_MODEL}",
                    "api_base": simulator_url + "/v1",
                    "api_key": "sk-bench",
                },
            },
        ],
        "litellm_settings": {"telemetry": False},
        "general_settings": {"master_key": CALLER_KEY},
    }
    path = workdir / "litellm.yaml"
    path.write_text(json.dumps(config, indent=2))
    return path


def start_litellm(
    workdir: Path,
    simulator_url: str,
    core: int | None,
    exe: Path,
    version: str,
    workers: int = 1,
    name: str = "litellm",
) -> Proc:
    """`litellm --config ... --num_workers N` pinned like the gateway."""
    port = free_port()
    config = write_litellm_config(workdir, simulator_url)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(
        {
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no network fetch at start-up
            "LITELLM_LOG": "ERROR",
            "LITELLM_TELEMETRY": "False",
            "LITELLM_MASTER_KEY": CALLER_KEY,
        }
    )
    env.pop("DATABASE_URL", None)
    argv = [
        *pin_prefix(core),
        str(exe),
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        str(workers),
        # as `flowloom gateway serve --workers`: uvicorn's 5 s default kills workers still
        # importing on a busy machine, and restarts them forever
        *(["--timeout_worker_healthcheck", "60"] if workers > 1 else []),
    ]
    process, log = _spawn(name, argv, workdir, env)
    proc = Proc(name, f"http://127.0.0.1:{port}", process, log, {"version": version})
    # each worker imports LiteLLM anew: on a busy machine that takes minutes
    _wait_ready(proc, "/health/liveliness", 180 + 150 * (workers - 1))
    return proc


def workdir(keep: bool) -> tuple[Path, bool]:
    path = Path(tempfile.mkdtemp(prefix="flowloom-bench-gw-"))
    return path, not keep
