"""A real syslog receiver (Debian's rsyslog) for the SIEM tests, in a temporary directory.

One rsyslogd with its own configuration: a plain TCP input and a TLS input (gtls, its
own throw-away CA and a certificate for 127.0.0.1), both octet-counted, and an output
file with one line per parsed message (facility, severity, app, msgid, structured data,
message), so a test sees what rsyslog understood, not just the bytes. It can be stopped
and started again on the same ports (the receiver-down tests). Missing rsyslogd fails
the tests under CI (`make rsyslog` installs it) and skips them elsewhere.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.auth.slapd import _certificates, _free_port

_RSYSLOGD = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
_GTLS = Path("/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so")
SEPARATOR = "\x1f"


def require_rsyslog() -> None:
    """Skip without rsyslogd (and its TLS driver), except under CI: a failure there."""
    if Path(_RSYSLOGD).exists() and any(
        p.exists() for p in (_GTLS, *Path("/usr/lib").glob("*/rsyslog/lmnsd_gtls.so"))
    ):
        return
    message = "rsyslog is missing: make rsyslog (apt-get install rsyslog rsyslog-gnutls)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


class Rsyslog:
    """rsyslogd listening on 127.0.0.1 (`tcp_port`, `tls_port`), writing `out`."""

    def __init__(self, folder: Path) -> None:
        require_rsyslog()
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.ca, cert, key = _certificates(folder)
        self.tcp_port, self.tls_port = _free_port(), _free_port()
        self.out = folder / "received.log"
        work = folder / "work"
        work.mkdir()
        fields = SEPARATOR.join(
            [
                "%syslogfacility%",
                "%syslogseverity%",
                "%app-name%",
                "%msgid%",
                "%structured-data%",
                "%msg%",
            ]
        )
        self.config = folder / "rsyslog.conf"
        self.config.write_text(
            "\n".join(
                [
                    f'global(workDirectory="{work}"',
                    f'  defaultNetstreamDriverCAFile="{self.ca}"',
                    f'  defaultNetstreamDriverCertFile="{cert}"',
                    f'  defaultNetstreamDriverKeyFile="{key}")',
                    'module(load="imtcp")',
                    f'input(type="imtcp" port="{self.tcp_port}" address="127.0.0.1")',
                    f'input(type="imtcp" port="{self.tls_port}" address="127.0.0.1"',
                    '  streamDriver.name="gtls" streamDriver.mode="1"'
                    ' streamDriver.authMode="anon")',
                    f'template(name="fields" type="string" string="{fields}\\n")',
                    f'action(type="omfile" file="{self.out}" template="fields"'
                    ' asyncWriting="off" flushOnTXEnd="on")',
                    "",
                ]
            )
        )
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.folder / "rsyslogd.log").open("ab")
        self._process = subprocess.Popen(
            [_RSYSLOGD, "-n", "-f", str(self.config), "-i", str(self.folder / "pid")],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        for port in (self.tcp_port, self.tls_port):
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if self._process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(
                            "rsyslogd did not start: "
                            + (self.folder / "rsyslogd.log").read_text()[-2000:]
                        ) from None
                    time.sleep(0.05)

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.send_signal(signal.SIGTERM)
        try:
            self._process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=60)
        self._process = None

    def lines(self, expected: int, *, timeout: float = 60) -> list[list[str]]:
        """The parsed lines, once at least `expected` are there (bounded wait: rsyslog
        writes after the connection has closed, on its own thread)."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.out.read_text("utf-8") if self.out.exists() else ""
            rows = [line.split(SEPARATOR) for line in text.splitlines() if line]
            if len(rows) >= expected or time.monotonic() > deadline:
                return rows
            time.sleep(0.05)
