"""Agent hooks run as the agents run them: real payloads into `python -m flowloom hook`.

`AgentSandbox` is the git sandbox (`git_sandbox.Sandbox`: a real repository, isolated
HOME, git config and FLOWLOOM_HOME) plus what agent capture needs: replaying payloads
into the hook subprocess, waiting until the detached drainer has moved the spool into
the ledger, and reading events and bodies back.

Hook subprocesses use a private bytecode cache (PYTHONPYCACHEPREFIX), as an installed
FlowLoom would have compiled bytecode; the tests run several hundred of them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.capture.git_sandbox import Sandbox

_PYCACHE = Path(os.environ.get("TMPDIR", "/tmp")) / f"flowloom-test-pycache-{os.getuid()}"


class AgentSandbox(Sandbox):
    """A repository with an agent session replayed into FlowLoom's hooks."""

    def __init__(self, tmp_path: Path, name: str = "repo") -> None:
        super().__init__(tmp_path, name)
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
        self.env["PYTHONPYCACHEPREFIX"] = str(_PYCACHE)
        # The user's runtime directory (where before-image keys live), private as a
        # login session's is.
        self.runtime_dir = tmp_path / "runtime"
        self.runtime_dir.mkdir(mode=0o700, exist_ok=True)
        self.env["XDG_RUNTIME_DIR"] = str(self.runtime_dir)
        self.session = "3f0c9c3e-5b7a-4d1e-9a51-7c2f0e8d4b61"

    # -- running hooks -----------------------------------------------------------------

    @property
    def state_dir(self) -> Path:
        return self.repo / ".git" / "flowloom"

    @property
    def spool_dir(self) -> Path:
        return self.state_dir / "spool"

    def hook(
        self,
        agent: str,
        payload: dict[str, Any] | str | bytes,
        *,
        args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run `python -m flowloom hook AGENT` with `payload` on stdin (exactly as given)."""
        if isinstance(payload, dict):
            data = json.dumps(payload).encode()
        elif isinstance(payload, str):
            data = payload.encode("utf-8", "surrogatepass")
        else:
            data = payload
        return subprocess.run(
            [sys.executable, "-m", "flowloom", "hook", agent, *args],
            input=data,
            cwd=cwd or self.repo,
            env={**self.env, **(env or {})},
            capture_output=True,
            timeout=120,
            check=False,
        )

    def hook_ok(
        self,
        agent: str,
        payload: dict[str, Any] | str | bytes,
        *,
        stdout: str = "",
        **kwargs: Any,
    ) -> subprocess.CompletedProcess[bytes]:
        """A hook run that must exit 0, print only `stdout`, and say nothing on stderr."""
        result = self.hook(agent, payload, **kwargs)
        assert result.returncode == 0, result.stderr.decode()
        assert result.stdout.decode() == stdout, result.stdout
        assert result.stderr == b"", result.stderr.decode()
        return result

    def claude(self, event: str, **fields: Any) -> dict[str, Any]:
        """A Claude Code payload for `event` with the common fields of this session."""
        payload: dict[str, Any] = {
            "session_id": self.session,
            "transcript_path": str(self.root / "transcript.jsonl"),
            "cwd": str(self.repo),
            "permission_mode": "default",
            "hook_event_name": event,
        }
        payload.update(fields)
        return payload

    # -- the spool and the drainer -----------------------------------------------------

    def _drainer_running(self) -> bool:
        """A hook's forked drainer is alive: before its exec it still looks like the hook
        (`… flowloom hook …`), after it `… flowloom drain …`; either way it works in
        this repository. In the middle of its exec the kernel shows an empty command line
        (the new memory has no arguments yet), so a process in this repository with an
        empty command line counts too; a zombie has no working directory and does not."""
        repo = os.path.realpath(self.repo)
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                cmdline = Path("/proc", entry, "cmdline").read_bytes()
                if (
                    cmdline
                    and b"flowloom\0hook\0" not in cmdline
                    and b"flowloom\0drain\0" not in cmdline
                ):
                    continue
                if os.path.realpath(os.readlink(f"/proc/{entry}/cwd")) == repo:
                    return True
            except OSError:
                continue
        return False

    def _lock_free(self) -> bool:
        """Nobody holds the spool lock. Read from /proc/locks rather than by trying the
        lock: a probe that takes it, however briefly, makes a drainer starting at that
        instant believe another drainer is at work and leave the spool to it."""
        try:
            inode = (self.spool_dir / ".lock").stat().st_ino
        except (FileNotFoundError, NotADirectoryError):
            return True
        with open("/proc/locks", encoding="ascii") as fh:
            for line in fh:
                fields = line.split()
                if "->" in fields:  # a waiter, not a holder
                    continue
                ids = [f for f in fields if f.count(":") == 2]
                if ids and int(ids[0].rsplit(":", 1)[1]) == inode:
                    return False
        return True

    def spooled(self) -> list[str]:
        if not self.spool_dir.is_dir():
            return []
        return sorted(p.name for p in self.spool_dir.glob("*.json"))

    def commit_requests(self) -> list[str]:
        """Auto-commits asked for and not made yet (`<state>/commits/`)."""
        directory = self.state_dir / "commits"
        return sorted(p.name for p in directory.glob("*.json")) if directory.is_dir() else []

    def drained(self, timeout: float = 60.0, *, empty: bool = False) -> None:
        """Wait until every detached drainer of this repository has finished (and, with
        `empty`, the spool is empty)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            quiet = not self._drainer_running() and self._lock_free()
            if quiet and not (empty and (self.spooled() or self.commit_requests())):
                return
            time.sleep(0.02)
        log = self.state_dir / "capture.log"
        raise AssertionError(
            f"the drainer did not finish in {timeout}s; spool: {self.spooled()}; "
            f"log: {log.read_text() if log.exists() else '-'}"
        )

    def settled(self) -> None:
        """Drained, and nothing left in the spool."""
        self.drained(empty=True)

    # -- the ledger --------------------------------------------------------------------

    def body(self, event: dict[str, Any]) -> str:
        digest = event.get("body")
        assert digest, event
        with self.services() as services:
            content = services.ledger.read_body(digest)
        assert content is not None
        return content.decode("utf-8")

    def kinds(self, events: list[dict[str, Any]] | None = None) -> list[str]:
        events = self.events() if events is None else events
        return [e["kind"] for e in events if e["kind"] != "key.generated"]

    def commits(self) -> list[str]:
        out = self.run(["git", "log", "--format=%H", "--reverse"]).stdout
        return out.split()

    def database_bytes(self) -> bytes:
        """The raw ledger database, WAL and shared memory files included."""
        db = self.state_dir / "ledger.db"
        data = b""
        for suffix in ("", "-wal", "-shm", "-journal"):
            path = Path(str(db) + suffix)
            if path.exists():
                data += path.read_bytes()
        return data

    def capture_state_bytes(self) -> bytes:
        """Every file FlowLoom keeps in .git/flowloom (ledger, spool, scratch, queues)."""
        data = b""
        for path in sorted(self.state_dir.rglob("*")):
            if path.is_file():
                data += path.read_bytes()
        return data
