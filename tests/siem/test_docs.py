"""docs/integrations.md, sections "SIEM" and "Security scanners", run as written: every
`sh` block goes through bash with the real CLI, against a real rsyslog (TLS), loopback
Splunk HEC and Elastic stand-ins, and a git repository with the committed SARIF files."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.server.support import LOOPBACK_ALLOW
from tests.siem.rsyslog import Rsyslog
from tests.siem.standins import ElasticBulk, SplunkHec

DOC = Path(__file__).parents[2] / "docs" / "integrations.md"
FIXTURES = Path(__file__).parents[1] / "scanners" / "fixtures"


def _section(title: str) -> list[str]:
    text = DOC.read_text("utf-8")
    body = text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", body, flags=re.S)


SIEM = _section("SIEM")
SCANNERS = _section("Security scanners")


def _shell(home: Path, cwd: Path, script: str, **extra: str) -> str:
    bin_dir = home / "bin"
    bin_dir.mkdir(exist_ok=True)
    wrapper = bin_dir / "flowloom"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -m flowloom "$@"\n')
    wrapper.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWLOOM_")}
    env.pop("XDG_CONFIG_HOME", None)
    env.update(
        HOME=str(home),
        PATH=f"{bin_dir}:{env['PATH']}",
        GIT_AUTHOR_NAME="Ann",
        GIT_AUTHOR_EMAIL="ann@example.org",
        GIT_COMMITTER_NAME="Ann",
        GIT_COMMITTER_EMAIL="ann@example.org",
        FLOWLOOM_SERVER_OUTBOUND_ALLOW=",".join(LOOPBACK_ALLOW),  # receivers on loopback
        **extra,
    )
    done = subprocess.run(
        ["bash", "-e", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    return done.stdout


@pytest.mark.slow  # nine CLI processes: a trial (`make trials`), not a unit test
def test_the_siem_walkthrough(tmp_path: Path, rsyslog: Rsyslog) -> None:
    assert len(SIEM) == 2
    hec, elastic = SplunkHec("hec-doc-token"), ElasticBulk("es-doc-key")
    hec.start()
    elastic.start()
    try:
        home = tmp_path / "ann"
        work = home / "work"
        work.mkdir(parents=True)
        shutil.copy(rsyslog.ca, work / "siem-ca.pem")
        first = SIEM[0].replace("siem.example.org:6514", f"127.0.0.1:{rsyslog.tls_port}")
        out = _shell(home, work, first)
        assert "sent siem.test" in out and re.search(r"soc\tdelivered [1-9]\d*\tok", out)
        assert "behind 0" in out
        second = (
            SIEM[1]
            .replace("https://splunk.example.org:8088", hec.url)
            .replace("https://elastic.example.org:9200", elastic.url)
            .replace("--interval 10", "--interval 10 --passes 1")
        )
        out = _shell(home, work, second, HEC_TOKEN="hec-doc-token", ELASTIC_API_KEY="es-doc-key")
        assert "removed splunk" in out
        assert [e["event"]["metadata"]["event_code"] for e in hec.events] == ["siem.test"]
        kinds = [d["metadata"]["event_code"] for d in elastic.docs.values()]
        assert kinds.count("config.change") >= 2  # both logs' configuration changes
    finally:
        hec.stop()
        elastic.stop()
    rows = [r for r in rsyslog.lines(2) if r[5].lstrip("\ufeff").startswith("CEF:0|")]
    sent = [r[5].lstrip("\ufeff").split("|")[4] for r in rows]
    assert "siem.test" in sent and "config.change" in sent


def test_the_scanner_walkthrough(tmp_path: Path) -> None:
    assert len(SCANNERS) == 1
    home = tmp_path / "ann"
    repo = home / "repo"
    repo.mkdir(parents=True)
    shutil.copy(FIXTURES / "sample" / "app.py", repo / "app.py")
    setup = "git init -q -b main\ngit add app.py\ngit commit -q -m 'Add app'\n"
    _shell(home, repo, setup)
    for name in ("bandit.sarif", "semgrep.sarif"):
        shutil.copy(FIXTURES / name, repo / name)
    (repo / ".git" / "info" / "exclude").write_text("*.sarif\n")
    out = _shell(home, repo, SCANNERS[0])
    first, rest = out.split("\n", 1)
    assert first.startswith("recorded entry ") and "4 results (Bandit 1.9.4)" in first
    recorded = json.loads(rest)
    assert recorded["total"] == 2 and recorded["tools"][0]["name"] == "Semgrep OSS"
