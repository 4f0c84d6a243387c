"""The CI jobs `flowloom init --ci` writes: they parse, pin FlowLoom, and their script runs.

Each job's shell is taken out of the written file (YAML parsed with PyYAML; the
Jenkinsfile's ``sh '''…'''`` unescaped as Groovy does) and run in a real repository with
the variables that platform sets, so the commands in it are the real CLI's: the tests
run, `flowloom ci record` records them, the gate runs with ``--record`` and writes its
JUnit. Only the install line is not run (it would fetch FlowLoom from its host).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
import yaml

from flowloom.ci.templates import (
    PLACEHOLDER_TEST_COMMAND,
    InstallSpec,
    install_spec,
    pinned,
    render,
)
from flowloom.errors import InputError
from tests.capture.git_sandbox import DECISION, Sandbox

PIN = "flowloom @ git+https://git.example/acme/flowloom@" + "c" * 40
FILES = {
    "github": ".github/workflows/flowloom.yml",
    "gitlab": ".gitlab-ci.yml",
    "jenkins": "Jenkinsfile",
    "bitbucket": "bitbucket-pipelines.yml",
}
INSTALL = 'python -m pip install "$FLOWLOOM_INSTALL"'


def _github(text: str) -> tuple[str, str]:
    data = yaml.safe_load(text)
    assert data["permissions"]["id-token"] == "write"
    job = data["jobs"]["flowloom"]
    steps = job["steps"]
    assert any(s.get("run") == INSTALL for s in steps)
    assert any(s.get("uses", "").startswith("actions/upload-artifact@") for s in steps)
    [script] = [s["run"] for s in steps if "flowloom check" in s.get("run", "")]
    return job["env"]["FLOWLOOM_INSTALL"], script


def _gitlab(text: str) -> tuple[str, str]:
    job = yaml.safe_load(text)["flowloom"]
    assert job["id_tokens"]["FLOWLOOM_ID_TOKEN"]["aud"] == "flowloom"
    assert "test-reports/flowloom-gate.xml" in job["artifacts"]["reports"]["junit"]
    install, script = job["script"]
    assert install == INSTALL
    return job["variables"]["FLOWLOOM_INSTALL"], script


def _bitbucket(text: str) -> tuple[str, str]:
    data = yaml.safe_load(text)
    step = data["definitions"]["steps"][0]["step"]
    assert step["oidc"] is True
    assert data["pipelines"]["default"][0]["step"] == step  # the anchor, resolved
    lines = step["script"]
    assert INSTALL in lines
    pin = next(line for line in lines if line.startswith("export FLOWLOOM_INSTALL="))
    unquoted = subprocess.run(
        ["sh", "-c", f'{pin}; printf %s "$FLOWLOOM_INSTALL"'],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return unquoted, lines[-1]


def _jenkins(text: str) -> tuple[str, str]:
    assert text.count("{") == text.count("}")
    [install] = re.findall(r"FLOWLOOM_INSTALL = '((?:[^'\\]|\\.)*)'", text)
    [body] = re.findall(r"sh '''(.*?)'''\n", text, flags=re.DOTALL)
    script = re.sub(r"\\(.)", r"\1", body)  # Groovy's escapes in a '''...''' string
    assert script.startswith("#!/bin/sh\n")
    assert INSTALL in script
    assert "junit allowEmptyResults: true" in text
    return re.sub(r"\\(.)", r"\1", install), script.split(INSTALL + "\n", 1)[1]


READERS: dict[str, Callable[[str], tuple[str, str]]] = {
    "github": _github,
    "gitlab": _gitlab,
    "jenkins": _jenkins,
    "bitbucket": _bitbucket,
}


def _platform_env(kind: str, base: str, head: str) -> dict[str, str]:
    return {
        "github": {
            "GITHUB_ACTIONS": "true",
            "BEFORE": base,
            "GITHUB_SHA": head,
            "GITHUB_REF_NAME": "main",
            "DEFAULT_BRANCH": "main",
        },
        "gitlab": {
            "GITLAB_CI": "true",
            "CI_COMMIT_BEFORE_SHA": base,
            "CI_COMMIT_SHA": head,
            "CI_COMMIT_BRANCH": "main",
            "CI_DEFAULT_BRANCH": "main",
        },
        "jenkins": {
            "JENKINS_URL": "https://jenkins.example",
            "GIT_PREVIOUS_SUCCESSFUL_COMMIT": base,
            "BRANCH_NAME": "main",
        },
        "bitbucket": {
            "BITBUCKET_BUILD_NUMBER": "12",
            "BITBUCKET_PR_DESTINATION_BRANCH": "main",
            "BITBUCKET_BRANCH": "topic",
        },
    }[kind]


@pytest.mark.parametrize("kind", list(FILES))
def test_the_written_job_parses_and_its_script_runs(tmp_path: Path, kind: str) -> None:
    box = Sandbox(tmp_path)
    box.commit_ok("initial commit")
    test_command = (
        f'"{sys.executable}" -m pytest -q -p no:cacheprovider --junitxml=test-results/pytest.xml'
    )
    out = box.ok("init", "--ci", kind, "--ci-install", PIN, "--ci-test-command", test_command)
    assert f"ci {FILES[kind]}: created" in out
    assert f"CI installs {PIN}" in out
    # The team's repository: the job, a test, and an origin holding main.
    box.write("test_app.py", "def test_pays():\n    assert 2 + 2 == 4\n")
    box.write(".gitignore", "test-results/\ntest-reports/\n__pycache__/\n")
    box.git("add", "-A")
    box.git("commit", "-q", "-m", "CI and tests", env={"FLOWLOOM_OVERRIDE": "adopt FlowLoom"})
    origin = tmp_path / "origin.git"
    box.run(["git", "init", "-q", "--bare", str(origin)])
    box.git("remote", "add", "origin", str(origin))
    box.git("push", "-q", "origin", "main")
    base = box.head()
    box.record_decision()
    head = box.commit_ok(f"linked change\n\nFlowLoom-Decision: {DECISION}")

    pin, script = READERS[kind]((box.repo / FILES[kind]).read_text())
    assert pin == PIN
    assert "flowloom ci record --junit 'test-results/*.xml'" in script
    env = {
        **_platform_env(kind, base, head),
        "FLOWLOOM_BRANCH": "topic",  # not protected: the gate needs no approval here
        "FLOWLOOM_DATABASE": str(box.common_dir() / "flowloom" / "ledger.db"),
        "PATH": f"{box.bin_dir}:{Path(sys.executable).parent}:/usr/bin:/bin",
    }
    done = box.run(["sh", "-e", "-c", script], env=env)
    assert done.returncode == 0, done.stdout + done.stderr

    [tested] = box.events("test.result")
    assert tested["refs"]["tree"] == box.git("rev-parse", "HEAD^{tree}").strip()
    assert tested["refs"]["ok"] is True and tested["refs"]["tests"] == 1
    assert tested["refs"]["ci"]["platform"] == kind
    [verdict] = box.events("ci.result")
    assert verdict["refs"]["ok"] is True and verdict["refs"]["checked"] == 1
    gate = ElementTree.fromstring((box.repo / "test-reports" / "flowloom-gate.xml").read_bytes())
    assert [c.get("name") for c in gate.iter("testcase")] == [f"{head[:12]} linked change"]


def test_a_job_fails_when_its_tests_fail_and_still_records_them(tmp_path: Path) -> None:
    box = Sandbox(tmp_path)
    box.commit_ok("initial commit")
    failing = (
        f"\"{sys.executable}\" -c \"import sys; open('test-results/t.xml', 'w').write("
        '\'<testsuite><testcase name=\\"t\\"><failure/></testcase></testsuite>\'); sys.exit(1)"'
    )
    box.ok("init", "--ci", "gitlab", "--ci-install", PIN, "--ci-test-command", failing)
    _, script = _gitlab((box.repo / ".gitlab-ci.yml").read_text())
    box.git("add", "-A")
    box.git("commit", "-q", "-m", "CI", env={"FLOWLOOM_OVERRIDE": "adopt FlowLoom"})
    env = {
        "GITLAB_CI": "true",
        "CI_COMMIT_BEFORE_SHA": box.git("rev-parse", "HEAD~1").strip(),
        "CI_COMMIT_SHA": box.head(),
        "FLOWLOOM_BRANCH": "topic",
        "FLOWLOOM_DATABASE": str(box.common_dir() / "flowloom" / "ledger.db"),
        "PATH": f"{box.bin_dir}:{Path(sys.executable).parent}:/usr/bin:/bin",
    }
    done = box.run(["sh", "-e", "-c", script], env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    [tested] = box.events("test.result")
    assert tested["refs"]["ok"] is False and tested["refs"]["failing"] == ["::t"]
    assert len(box.events("ci.result")) == 1


def test_without_a_test_command_the_job_says_what_to_do(tmp_path: Path) -> None:
    text = render("github", InstallSpec(PIN, "given"))
    assert PLACEHOLDER_TEST_COMMAND in text
    box = Sandbox(tmp_path)
    box.commit_ok("initial commit")
    out = box.ok("init", "--ci", "jenkins", "--ci-install", PIN)
    assert "next: put your test command in the job" in out
    refused = box.flowloom("init", "--ci-install", PIN)
    assert refused.returncode == 3 and "go with --ci" in refused.stderr


def test_an_install_ci_cannot_reach_writes_nothing(tmp_path: Path) -> None:
    box = Sandbox(tmp_path)
    box.commit_ok("initial commit")
    done = box.flowloom("init", "--ci", "github", "--ci-install", "flowloom\n==1")
    assert done.returncode == 3 and "one pip requirement on one line" in done.stderr
    assert not (box.repo / ".flowloom").exists()
    assert not (box.repo / ".github").exists()


# -- which FlowLoom CI installs --------------------------------------------------------


class _Installed(metadata.Distribution):
    """A `flowloom` distribution as pip leaves it: its version and direct_url.json."""

    def __init__(self, direct: dict[str, Any] | None, version: str = "0.1.0") -> None:
        self._files = {"METADATA": f"Metadata-Version: 2.1\nName: flowloom\nVersion: {version}\n"}
        if direct is not None:
            self._files["direct_url.json"] = json.dumps(direct)

    def read_text(self, filename: str) -> str | None:
        return self._files.get(filename)

    def locate_file(self, path: Any) -> Path:
        return Path(str(path))


def _spec(direct: dict[str, Any] | None) -> InstallSpec:
    return install_spec(distribution=lambda _: _Installed(direct))


def test_from_an_index_the_same_version() -> None:
    assert _spec(None).requirement == "flowloom==0.1.0"


def test_from_a_git_url_the_same_commit_without_credentials() -> None:
    direct = {
        "url": "https://ci-bot:s3cret@git.example/acme/flowloom.repo",
        "vcs_info": {"vcs": "git", "commit_id": "d" * 40, "requested_revision": "main"},
    }
    spec = _spec(direct)
    assert spec.requirement == f"flowloom @ git+https://git.example/acme/flowloom.repo@{'d' * 40}"
    assert "s3cret" not in spec.requirement


def test_from_an_editable_checkout_its_pushed_commit(tmp_path: Path) -> None:
    box = Sandbox(tmp_path)
    head = box.commit_ok("flowloom source")
    direct = {"url": box.repo.as_uri(), "dir_info": {"editable": True}}
    with pytest.raises(InputError, match="which no remote holds"):
        _spec(direct)
    box.git("remote", "add", "origin", "git@git.example:acme/flowloom.repo")
    box.git("update-ref", "refs/remotes/origin/main", head)  # as after a push
    spec = _spec(direct)
    assert spec.requirement == f"flowloom @ git+ssh://git@git.example/acme/flowloom.repo@{head}"
    (box.repo / "work.txt").write_text("not committed\n")
    with pytest.raises(InputError, match="uncommitted changes"):
        _spec(direct)


def test_from_a_local_wheel_it_asks() -> None:
    with pytest.raises(InputError, match="which CI cannot reach") as caught:
        _spec({"url": "file:///srv/dist/flowloom-0.1.0-py3-none-any.whl", "archive_info": {}})
    assert "--ci-install SPEC" in (caught.value.hint or "")


ROOT = Path(__file__).resolve().parents[2]


def test_a_pinned_commit_is_what_pip_installs(tmp_path: Path) -> None:
    """The pin's form, given to the real pip: it resolves FlowLoom at exactly that commit
    (this checkout's HEAD, over file:// instead of the team's host)."""
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--verify", "--quiet", "HEAD"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip
    if not head:
        pytest.skip("not run from a git checkout")
    report = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--quiet",
         "--report", str(report), pinned(ROOT.as_uri(), head)],
        capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    [item] = json.loads(report.read_text())["install"]
    assert item["metadata"]["name"] == "flowloom"
    assert item["download_info"]["vcs_info"]["commit_id"] == head


def test_the_job_restores_the_log_key_from_a_ci_secret(tmp_path: Path) -> None:
    """A runner starts with an empty FLOWLOOM_HOME: the job puts the log's key there from
    the FLOWLOOM_LOG_KEY secret (checked against FLOWLOOM_VKEY) before it records."""
    from flowloom.ledger.note import Signer

    box = Sandbox(tmp_path)
    box.commit_ok("initial commit")
    test_command = (
        f'"{sys.executable}" -m pytest -q -p no:cacheprovider --junitxml=test-results/t.xml'
    )
    box.ok("init", "--ci", "github", "--ci-install", PIN, "--ci-test-command", test_command)
    box.write("test_app.py", "def test_pays():\n    assert 2 + 2 == 4\n")
    box.write(".gitignore", "test-results/\ntest-reports/\n__pycache__/\n")
    box.git("add", "-A")
    box.git("commit", "-q", "-m", "CI and tests", env={"FLOWLOOM_OVERRIDE": "adopt FlowLoom"})
    origin = tmp_path / "origin.git"
    box.run(["git", "init", "-q", "--bare", str(origin)])
    box.git("remote", "add", "origin", str(origin))
    box.git("push", "-q", "origin", "main")
    base = box.head()
    box.record_decision()
    head = box.commit_ok(f"linked change\n\nFlowLoom-Decision: {DECISION}")
    vkey = box.ok("log", "vkey").strip()
    keys = Path(box.env["FLOWLOOM_HOME"]) / "keys"
    [secret] = {
        path.read_text().strip()
        for path in keys.glob("*.skey")
        if Signer.from_skey(path.read_text().strip()).verifier().vkey == vkey
    }
    _, script = READERS["github"]((box.repo / FILES["github"]).read_text())
    assert "flowloom log restore-key" in script
    runner_home = tmp_path / "runner-home"
    env = {
        **_platform_env("github", base, head),
        "FLOWLOOM_BRANCH": "topic",
        "FLOWLOOM_DATABASE": str(box.common_dir() / "flowloom" / "ledger.db"),
        "FLOWLOOM_HOME": str(runner_home),
        "FLOWLOOM_VKEY": vkey,
        "PATH": f"{box.bin_dir}:{Path(sys.executable).parent}:/usr/bin:/bin",
    }
    without = box.run(["sh", "-e", "-c", script], env=env)
    assert without.returncode != 0  # no key on the runner: nothing can be attested
    wrong = Signer.generate(vkey.split("+")[0]).to_skey()
    refused = box.run(["sh", "-e", "-c", script], env={**env, "FLOWLOOM_LOG_KEY": wrong})
    assert refused.returncode != 0 and "not the private half of FLOWLOOM_VKEY" in refused.stderr
    assert secret not in refused.stdout + refused.stderr
    done = box.run(["sh", "-e", "-c", script], env={**env, "FLOWLOOM_LOG_KEY": secret})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "restored the signing key" in done.stdout and secret not in done.stdout
    [tested] = box.events("test.result")
    assert tested["refs"]["ok"] is True
    [verdict] = box.events("ci.result")
    assert verdict["refs"]["ok"] is True
    assert oct((runner_home / "keys").stat().st_mode & 0o777) == "0o700"
