"""`flowloom ci record` and `flowloom check --junit`, run as a CI job runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

import pytest

from flowloom.ci.junit import parse_junit
from tests.capture.git_sandbox import DECISION, Sandbox
from tests.support.ci_issuer import CIIssuer

PASSING = b'<testsuite name="unit"><testcase classname="app" name="test_ok"/></testsuite>'
FAILING = (
    b'<testsuites><testsuite name="unit"><testcase classname="app" name="test_pay">'
    b'<failure message="wrong total"/></testcase></testsuite></testsuites>'
)


@pytest.fixture
def box(tmp_path: Path) -> Sandbox:
    sandbox = Sandbox(tmp_path)
    sandbox.commit_ok("initial commit")
    return sandbox


@pytest.fixture
def issuer() -> Iterator[CIIssuer]:
    with CIIssuer({"repository": "acme/app"}) as found:
        yield found


def _results(box: Sandbox, name: str, data: bytes) -> str:
    path = box.repo / "test-results" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    return str(path.relative_to(box.repo))


def test_results_are_recorded_for_heads_tree(box: Sandbox) -> None:
    (box.repo / ".gitignore").write_text("test-results/\n")
    box.commit_ok("ignore results", file=".gitignore", line="test-results/")
    _results(box, "a.xml", PASSING)
    _results(box, "b.xml", FAILING)
    done = box.flowloom("ci", "record", "--junit", "test-results/*.xml", "--name", "unit")
    assert done.returncode == 1, done.stderr  # a test failed: recorded, and said
    assert "2 tests, 1 passed, 1 failed" in done.stdout
    assert "failed: app::test_pay" in done.stderr
    [event] = box.events("test.result")
    refs = event["refs"]
    assert refs["commit"] == box.head()
    assert refs["tree"] == box.git("rev-parse", "HEAD^{tree}").strip()
    assert refs["ok"] is False and refs["failing"] == ["app::test_pay"]
    assert [f["name"] for f in refs["files"]] == ["test-results/a.xml", "test-results/b.xml"]
    assert refs["ci"] == {"platform": "unknown", "verified": False, "claims": {}}
    assert "attestation" in refs  # written by FlowLoom's command, attested by the log key
    with box.services() as services:
        body = json.loads(services.ledger.read_body(event["body"]) or b"{}")
    assert {c["name"]: c["outcome"] for c in body["cases"]} == {
        "test_ok": "passed",
        "test_pay": "failed",
    }


def test_bad_junit_records_nothing(box: Sandbox) -> None:
    good = _results(box, "good.xml", PASSING)
    bad = _results(box, "bad.xml", b"<testsuite><testcase name='x'>")
    before = len(box.events())
    done = box.flowloom("ci", "record", "--junit", good, "--junit", bad)
    assert done.returncode == 3
    assert "bad.xml: not well-formed XML" in done.stderr
    assert done.stderr.count("\n") == 1
    missing = box.flowloom("ci", "record", "--junit", "nowhere/*.xml")
    assert missing.returncode == 3 and "no JUnit file at nowhere/*.xml" in missing.stderr
    empty = box.flowloom("ci", "record", "--junit", _results(box, "e.xml", b"<testsuites/>"))
    assert empty.returncode == 3 and "no test cases" in empty.stderr
    assert len(box.events()) == before


def test_a_working_tree_that_is_not_heads_is_refused(box: Sandbox) -> None:
    (box.repo / "work.txt").write_text("changed by the job\n")
    done = box.flowloom("ci", "record", "--junit", _results(box, "a.xml", PASSING))
    assert done.returncode == 3
    assert "tracked files differ from HEAD (work.txt)" in done.stderr
    assert box.events("test.result") == []


def test_a_verified_github_run(box: Sandbox, issuer: CIIssuer) -> None:
    env = issuer.github_env(sha=box.head(), run_id="77")
    path = _results(box, "a.xml", PASSING)
    done = box.flowloom("ci", "record", "--junit", path, "--json", env=env)
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["ci"]["verified"] is True and shown["ci"]["claims"]["run_id"] == "77"
    [event] = box.events("test.result")
    assert event["actor"] == {"type": "service", "id": "ci:github:acme/app"}
    assert event["refs"]["ci"]["issuer"] == issuer.issuer
    # The gate's verdict names the same verified run.
    box.flowloom("check", "--all", "--record", env=env)
    [verdict] = box.events("ci.result")
    assert verdict["refs"]["ci"]["verified"] is True
    assert verdict["refs"]["ci"]["claims"]["run_id"] == "77"


def test_a_token_for_another_commit_or_a_forged_one_records_nothing(
    box: Sandbox, issuer: CIIssuer
) -> None:
    path = _results(box, "a.xml", PASSING)
    other = box.flowloom("ci", "record", "--junit", path, env=issuer.github_env(sha="b" * 40))
    assert other.returncode == 7, other.stderr
    assert "is for commit bbbbbbbbbbbb, but HEAD is" in other.stderr
    forged = {
        "GITLAB_CI": "true",
        "CI_SERVER_URL": issuer.issuer,
        "FLOWLOOM_ID_TOKEN": issuer.mint(foreign_key=True),
    }
    refused = box.flowloom("ci", "record", "--junit", path, env=forged)
    assert refused.returncode == 7 and "does not verify" in refused.stderr
    assert box.events("test.result") == []


def test_the_generic_append_refuses_test_results(box: Sandbox) -> None:
    done = box.flowloom(
        "log", "append", "--kind", "test.result", input='{"refs": {"ok": true, "tree": "x"}}'
    )
    assert done.returncode == 8
    assert "flowloom ci record --junit PATH" in done.stderr
    assert box.events("test.result") == []


def test_the_gate_writes_its_verdict_as_junit(box: Sandbox) -> None:
    box.init()
    box.record_decision()
    box.commit_ok(f"linked\n\nFlowLoom-Decision: {DECISION}")
    box.commit_without_hooks("unlinked")
    gate = "test-reports/flowloom-gate.xml"
    done = box.flowloom("check", "HEAD~2..HEAD", "--branch", "topic", "--junit", gate)
    assert done.returncode == 1
    root = ElementTree.fromstring((box.repo / gate).read_bytes())
    cases = {c.get("name", "")[13:]: c.find("failure") is not None for c in root.iter("testcase")}
    assert cases == {"linked": False, "unlinked": True}
    refused = box.flowloom("ci", "record", "--junit", "test-reports/flowloom-gate.xml")
    assert refused.returncode == 3 and "is the FlowLoom gate's verdict" in refused.stderr


def test_pytests_own_junit_recorded_end_to_end(box: Sandbox) -> None:
    """The command a job runs after `pytest --junitxml`, on pytest's real output."""
    (box.repo / "test_app.py").write_text("def test_ok():\n    assert True\n")
    (box.repo / ".gitignore").write_text("test-results/\n__pycache__/\n")
    box.git("add", "test_app.py", ".gitignore")
    box.git("commit", "-q", "-m", "tests", env={"FLOWLOOM_OVERRIDE": "tests"})
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "--junitxml=test-results/pytest.xml"],
        cwd=box.repo, env=box.env, capture_output=True, timeout=300, check=True,
    )  # fmt: skip
    parse_junit((box.repo / "test-results" / "pytest.xml").read_bytes(), "pytest.xml")
    assert "1 tests, 1 passed" in box.ok("ci", "record", "--junit", "test-results/pytest.xml")


def test_with_a_team_server_results_without_a_ci_token_are_refused(box: Sandbox) -> None:
    path = _results(box, "a.xml", PASSING)
    done = box.flowloom(
        "ci",
        "record",
        "--junit",
        path,
        env={"FLOWLOOM_SERVER": "http://127.0.0.1:9", "FLOWLOOM_API_KEY": "k"},
    )
    assert done.returncode == 3 and "only with the CI run's OIDC identity token" in done.stderr
    assert box.events("test.result") == []


def test_with_a_team_server_results_go_there_proven_by_the_ci_token(
    box: Sandbox, issuer: CIIssuer, tmp_path: Path
) -> None:
    """`flowloom ci record` in server mode: through the outbox to the server, which
    verifies the run's token against its allow-list of issuers and records the run's
    identity from the verified claims (docs/sync.md)."""
    from tests.client.conftest import PROJECT, LiveServer

    server = LiveServer(tmp_path / "srv", str(tmp_path / "server.db"))
    (tmp_path / "srv").mkdir()
    user, key = server.provision()
    server.env["FLOWLOOM_SERVER_CI_ISSUERS"] = issuer.issuer
    server.start()
    try:
        team = {"FLOWLOOM_SERVER": server.url, "FLOWLOOM_API_KEY": key, "FLOWLOOM_PROJECT": PROJECT}
        path = _results(box, "a.xml", PASSING)
        env = {**team, **issuer.github_env(sha=box.head(), run_id="77")}
        done = box.flowloom("ci", "record", "--junit", path, env=env)
        assert done.returncode == 0, done.stderr
        assert "recorded entry" in done.stdout and "verified" in done.stdout
        [entry] = [e for e in server.entries(key) if e["kind"] == "test.result"]
        event = entry["envelope"]
        assert event["actor"] == {"type": "service", "id": "ci:github:acme/app"}
        ci = event["refs"]["ci"]
        assert ci["verified"] is True and ci["verified_by"] == "server"
        assert ci["issuer"] == issuer.issuer and ci["claims"]["run_id"] == "77"
        assert event["refs"]["submitted_by"]["id"] == user
        assert "attestation" in event["refs"]
        assert box.events("test.result") == []  # nothing in a runner's own ledger
        # The gate reads the team's record and sends its verdict the same way.
        gate = box.flowloom("check", "--all", "--record", env=env)
        assert "Traceback" not in gate.stderr, gate.stderr
        [verdict] = [e["envelope"] for e in server.entries(key) if e["kind"] == "ci.result"]
        assert verdict["refs"]["ci"]["verified_by"] == "server"
        assert verdict["refs"]["ci"]["claims"]["run_id"] == "77"
        assert box.events("ci.result") == []

        # An issuer the server does not list is not believed, whatever it signs.
        server.stop()
        server.env["FLOWLOOM_SERVER_CI_ISSUERS"] = "https://token.actions.githubusercontent.com"
        server.start()
        refused = box.flowloom("ci", "record", "--junit", path, env=env)
        assert refused.returncode == 8, refused.stderr
        assert "does not trust CI tokens from" in refused.stderr
        assert len([e for e in server.entries(key) if e["kind"] == "test.result"]) == 1
    finally:
        server.stop()


def test_the_servers_ci_issuers_come_from_its_config_and_must_be_https(tmp_path: Path) -> None:
    from flowloom.errors import ConfigError
    from flowloom.server.settings import load_server_settings

    config = tmp_path / ".config" / "flowloom" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(
        '[server]\nci_issuers = ["https://token.actions.githubusercontent.com/", '
        '"https://gitlab.com"]\n'
    )
    env = {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / ".config")}
    settings = load_server_settings(tmp_path, env)
    assert settings.ci_issuers == (
        "https://token.actions.githubusercontent.com",
        "https://gitlab.com",
    )
    assert load_server_settings(tmp_path, {**env, "FLOWLOOM_SERVER_CI_ISSUERS": ""}).ci_issuers
    config.write_text('[server]\nci_issuers = ["http://issuer.example.com"]\n')
    with pytest.raises(ConfigError, match="not an https URL"):
        load_server_settings(tmp_path, env)
