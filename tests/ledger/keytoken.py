"""A SoftHSM2 token of the tests' own (Debian's softhsm2), and a KMS on loopback (moto).

The token lives in a temporary SOFTHSM2_CONF, made once per test process: PKCS#11 is
initialised once per process, so every test of a process shares the token (keys are
told apart by their labels, which carry each test's log name). Under CI a missing
softhsm2 fails the tests instead of skipping them (`make softhsm2` installs it).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

MODULE_PATHS = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
)
TOKEN = "flowloom-tests"
PIN = "4321"


@dataclass(frozen=True)
class SoftHsm:
    conf: Path
    module: str
    token: str = TOKEN
    pin: str = PIN

    def env(self) -> dict[str, str]:
        return {
            "SOFTHSM2_CONF": str(self.conf),
            "FLOWLOOM_PKCS11_MODULE": self.module,
            "FLOWLOOM_PKCS11_TOKEN": self.token,
            "FLOWLOOM_PKCS11_PIN": self.pin,
        }


def _missing(what: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing under CI: run make softhsm2")
    pytest.skip(f"{what} is not installed (apt-get install softhsm2)")


def softhsm_token(base: Path) -> SoftHsm:
    """A fresh token in its own SOFTHSM2_CONF under `base`."""
    tool = shutil.which("softhsm2-util")
    module = next((p for p in MODULE_PATHS if Path(p).exists()), None)
    if tool is None or module is None:
        _missing("softhsm2")
    assert tool is not None and module is not None
    tokens = base / "tokens"
    tokens.mkdir(parents=True)
    conf = base / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    subprocess.run(
        [tool, "--init-token", "--free", "--label", TOKEN, "--so-pin", "010203", "--pin", PIN],
        env={**os.environ, "SOFTHSM2_CONF": str(conf)},
        check=True,
        capture_output=True,
        timeout=60,
    )
    return SoftHsm(conf, module)


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHsm]:
    """The process's token, with SOFTHSM2_CONF set for the in-process PKCS#11 library."""
    found = softhsm_token(tmp_path_factory.mktemp("softhsm"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SOFTHSM2_CONF", str(found.conf))
        yield found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def kms_endpoint() -> Iterator[str]:
    """moto's server on loopback, speaking the AWS KMS API over real HTTP."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "eu-west-1",
}
