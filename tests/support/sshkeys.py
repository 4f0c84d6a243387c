"""Real OpenSSH for tests: `ssh-keygen` makes keys, signs and verifies; `ssh-agent` holds keys.

Without ssh-keygen the calling test is skipped locally and fails under CI (CI=true), as
the PostgreSQL and chromium tests do: signatures are never faked.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import in_ci

_TIMEOUT_S = 60
_AGENT_START_S = 30.0


def require_ssh_keygen() -> str:
    """The ssh-keygen program; skip (or, under CI, fail) when it is missing."""
    found = shutil.which("ssh-keygen")
    if found is None:
        message = "ssh-keygen is missing (Debian: apt-get install openssh-client)"
        if in_ci():
            pytest.fail(f"{message}; CI is set, so the SSH signature tests must run")
        pytest.skip(message)
    return found


def _run(
    args: list[str],
    *,
    input: bytes = b"",
    env: Mapping[str, str] | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    result = subprocess.run(
        args,
        input=input,
        capture_output=True,
        timeout=_TIMEOUT_S,
        check=False,
        env=dict(env) if env is not None else None,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{args[:3]} failed: {result.stderr.decode(errors='replace')}")
    return result


@dataclass(frozen=True)
class SshKey:
    """A key pair made by ssh-keygen: the private key file and its `.pub`."""

    private: Path
    public: Path

    @property
    def public_line(self) -> str:
        """`TYPE BASE64` (without the comment)."""
        return " ".join(self.public.read_text("utf-8").split()[:2])

    def fingerprint(self) -> str:
        """The SHA256 fingerprint as `ssh-keygen -l` prints it."""
        out = _run([require_ssh_keygen(), "-l", "-E", "sha256", "-f", str(self.public)])
        return out.stdout.decode().split()[1]


def make_key(directory: Path, name: str, key_type: str = "ed25519", bits: int = 0) -> SshKey:
    """A new unencrypted key pair `directory/name` (ed25519, ecdsa with bits, rsa)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    args = [require_ssh_keygen(), "-q", "-t", key_type, "-N", "", "-C", name, "-f", str(path)]
    if bits:
        args += ["-b", str(bits)]
    _run(args)
    return SshKey(path, path.with_name(name + ".pub"))


def keygen_sign(
    message: bytes,
    key: Path,
    namespace: str,
    *,
    hashalg: str | None = None,
    env: Mapping[str, str] | None = None,
) -> str:
    """`ssh-keygen -Y sign` over `message` (stdin), the armored signature (stdout)."""
    args = [require_ssh_keygen(), "-Y", "sign", "-n", namespace, "-f", str(key)]
    if hashalg:
        args += ["-O", f"hashalg={hashalg}"]
    return _run(args, input=message, env=env).stdout.decode()


def keygen_verify(
    message: bytes,
    armored: str,
    namespace: str,
    allowed_signers: Path,
    principal: str,
) -> bool:
    """Whether `ssh-keygen -Y verify` accepts the signature for `principal`."""
    with tempfile.TemporaryDirectory() as scratch:
        sig = Path(scratch) / "message.sig"
        sig.write_text(armored, "utf-8")
        args = [
            require_ssh_keygen(),
            "-Y",
            "verify",
            "-f",
            str(allowed_signers),
            "-I",
            principal,
            "-n",
            namespace,
            "-s",
            str(sig),
        ]
        return _run(args, input=message, check=False).returncode == 0


def keygen_find_principals(armored: str, allowed_signers: Path) -> list[str]:
    """`ssh-keygen -Y find-principals`: the principals lines listing the signing key."""
    with tempfile.TemporaryDirectory() as scratch:
        sig = Path(scratch) / "message.sig"
        sig.write_text(armored, "utf-8")
        args = [require_ssh_keygen(), "-Y", "find-principals", "-f", str(allowed_signers)]
        result = _run([*args, "-s", str(sig)], check=False)
        return result.stdout.decode().split() if result.returncode == 0 else []


@contextmanager
def ssh_agent(directory: Path) -> Iterator[dict[str, str]]:
    """A foreground ssh-agent on a socket in `directory`; yields an env that reaches it.

    The agent is killed by its own pid when the block ends.
    """
    agent = shutil.which("ssh-agent")
    if agent is None:
        message = "ssh-agent is missing (Debian: apt-get install openssh-client)"
        if in_ci():
            pytest.fail(f"{message}; CI is set, so the SSH signature tests must run")
        pytest.skip(message)
    socket_path = directory / "agent.sock"
    scratch: str | None = None
    if len(str(socket_path)) > 100:  # AF_UNIX paths are limited to 108 bytes
        scratch = tempfile.mkdtemp(prefix="fl-agent-")
        socket_path = Path(scratch) / "agent.sock"
    process = subprocess.Popen(
        [agent, "-D", "-a", str(socket_path)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + _AGENT_START_S
        while not socket_path.exists():
            if process.poll() is not None:
                raise AssertionError(f"ssh-agent exited with status {process.returncode}")
            if time.monotonic() > deadline:
                raise AssertionError(f"ssh-agent did not open {socket_path} in time")
            time.sleep(0.05)
        env = {k: v for k, v in os.environ.items() if k not in ("SSH_AUTH_SOCK", "SSH_AGENT_PID")}
        env["SSH_AUTH_SOCK"] = str(socket_path)
        yield env
    finally:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=_TIMEOUT_S)
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def agent_add(key: SshKey, env: Mapping[str, str]) -> None:
    """`ssh-add` the private key into the agent `env` points at."""
    ssh_add = shutil.which("ssh-add")
    assert ssh_add is not None, "ssh-add is missing (Debian: apt-get install openssh-client)"
    _run([ssh_add, "-q", str(key.private)], env=env)


def env_without_agent() -> dict[str, str]:
    """This process's environment with no ssh-agent reachable."""
    return {k: v for k, v in os.environ.items() if k not in ("SSH_AUTH_SOCK", "SSH_AGENT_PID")}
