"""A forwarder killed (SIGKILL) after the receiver stored a batch but before it saw the
acknowledgement: the cursor did not move, so the next run sends that batch again and
then the rest: nothing is lost, order is kept, the repeat is recognisable by its uid."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.server.support import LOOPBACK_ALLOW
from tests.siem.standins import SplunkHec

pytestmark = pytest.mark.slow


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWLOOM_")}
    env.pop("XDG_CONFIG_HOME", None)
    env["HOME"] = str(home)
    env["FLOWLOOM_SERVER_OUTBOUND_ALLOW"] = ",".join(LOOPBACK_ALLOW)  # the stand-in's address
    return env


def _fl(home: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flowloom", *args],
        cwd=home,
        env=_env(home),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_killed_while_waiting_for_the_acknowledgement(tmp_path: Path) -> None:
    hec = SplunkHec("crash-token")
    hec.start()
    try:
        home = tmp_path
        for name in ("one", "two", "three"):
            done = _fl(
                home,
                "siem", "configure", name, "--kind", "hec", "--target", hec.url, "--secret-stdin",
                stdin="crash-token\n",
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
        hec.hold = threading.Event()
        forwarder = subprocess.Popen(
            [sys.executable, "-m", "flowloom", "siem", "forward", "one"],
            cwd=home,
            env=_env(home),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        assert hec.received.wait(timeout=120), "the forwarder never sent its batch"
        forwarder.send_signal(signal.SIGKILL)
        forwarder.wait(timeout=60)
        first = [e["event"]["metadata"]["uid"] for e in hec.events]
        hec.hold.set()
        hec.hold = None
        status = json.loads(_fl(home, "siem", "status", "--json").stdout)
        [one] = [s for s in status if s["name"] == "one"]
        assert all(c["next_index"] == 0 for c in one["cursors"].values())  # never acknowledged
        again = _fl(home, "siem", "forward", "one")
        assert again.returncode == 0, again.stderr
        uids = [e["event"]["metadata"]["uid"] for e in hec.events]
        assert uids[: len(first)] == first and uids[len(first) :] == first  # resent, in order
        indices = [int(u.rsplit("/", 1)[1]) for u in uids[len(first) :]]
        assert indices == sorted(indices) and len(indices) >= 4  # key, three configurations
    finally:
        if hec.hold is not None:
            hec.hold.set()
        hec.stop()
