"""docs/integrations.md (the GitHub and GitLab/Bitbucket/Jenkins sections): every command
in it is the real CLI's and runs as the page says, against the code hosts' stand-ins and
a live FlowLoom server over the same database."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from flowloom.cli.main import cli
from tests.integrations.standin import BitbucketStandIn, GitHubStandIn, GitLabStandIn, rsa_key
from tests.server.support import LOOPBACK_ALLOW, OWN, live_server, make_world

DOC = Path(__file__).resolve().parents[2] / "docs" / "integrations.md"
SECTIONS = ("## GitHub\n", "## GitLab, Bitbucket, Jenkins\n")


def _section(heading: str) -> str:
    text = DOC.read_text("utf-8")
    return text.split(heading, 1)[1].split("\n## ", 1)[0]


def _commands() -> list[str]:
    lines: list[str] = []
    for heading in SECTIONS:
        for block in re.findall(r"```sh\n(.*?)```", _section(heading), flags=re.DOTALL):
            lines += [line for line in block.splitlines() if line.strip()]
    return lines


def _resolve(args: list[str]) -> tuple[click.Command, list[str]]:
    command: click.Command = cli
    rest = args[1:]
    context = click.Context(cli)
    while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
        found = command.get_command(context, rest[0])
        assert found is not None, f"no command {rest[0]!r} in {' '.join(args)}"
        command, rest = found, rest[1:]
    return command, rest


def test_every_command_in_the_sections_parses() -> None:
    commands = _commands()
    assert len(commands) >= 10
    for line in commands:
        args = shlex.split(line.split(" > ")[0].split(" || ")[0])
        assert args[0] == "flowloom", line
        command, rest = _resolve(args)
        known = {o for p in command.params for o in getattr(p, "opts", [])}
        for word in rest:
            if word.startswith("--"):
                assert word.split("=")[0] in known, (line, word)
    groovy = re.findall(r"```groovy\n(.*?)```", _section(SECTIONS[1]), flags=re.DOTALL)
    assert "flowloom check --junit test-reports/flowloom-gate.xml" in groovy[0]


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Path]:
    """A repository with one unlinked commit over origin/main."""
    where = tmp_path / "repo"
    where.mkdir()
    env = {"GIT_CONFIG_NOSYSTEM": "1", "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    ident = ["-c", "user.name=Ann", "-c", "user.email=ann@example.com"]
    for args in (
        ["init", "-q", "-b", "main"],
        [*ident, "commit", "-q", "--allow-empty", "-m", "base"],
        ["update-ref", "refs/remotes/origin/main", "HEAD"],
    ):
        subprocess.run(["git", *args], cwd=where, env=env, check=True)
    (where / "app.py").write_text("print('hi')\n")
    subprocess.run(["git", "add", "app.py"], cwd=where, env=env, check=True)
    subprocess.run(
        ["git", *ident, "commit", "-q", "-m", "Quick fix"], cwd=where, env=env, check=True
    )
    yield where


@pytest.mark.slow  # about 20 s: a server, three stand-ins and a dozen commands
def test_the_sections_commands_run(
    tmp_path: Path, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home, database = tmp_path / "home", tmp_path / "server.db"
    world = make_world(str(database), home)
    assert world.server.integrations is not None
    world.server.integrations.close()  # the test sends the queue itself
    private, public = rsa_key()
    (repo / "flowloom-app.private-key.pem").write_text(private)
    github = GitHubStandIn(tokens=("ghp_doc",), app=("123456", public)).start()
    gitlab = GitLabStandIn("glpat-doc", "group/app").start()
    bitbucket = BitbucketStandIn("bb-doc", "team/app").start()
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()
    env = {
        "FLOWLOOM_DATABASE": str(database),
        "FLOWLOOM_HOME": str(home),
        "FLOWLOOM_PROJECT": OWN,
        "FLOWLOOM_API_KEY": world.keys["service"],
        "GITHUB_WEBHOOK_SECRET": "gh-secret",
        "GITHUB_TOKEN": "ghp_doc",
        "GITLAB_TOKEN": "glpat-doc",
        "GITLAB_WEBHOOK_SECRET": "gl-secret",
        "BITBUCKET_TOKEN": "bb-doc",
        "HEAD_SHA": head,
        "PR_NUMBER": "7",
        "CI_COMMIT_SHA": head,
        "CI_MERGE_REQUEST_IID": "3",
        "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main",
        "BITBUCKET_COMMIT": head,
        "FLOWLOOM_SERVER_OUTBOUND_ALLOW": ",".join(LOOPBACK_ALLOW),  # the stand-ins' address
    }
    api = {"github": github.url, "gitlab": gitlab.url + "/api/v4", "bitbucket": bitbucket.url}
    monkeypatch.chdir(repo)
    runner = CliRunner()
    try:
        with live_server(world.server) as url:
            env["FLOWLOOM_SERVER"] = url
            for line in _commands():
                command, _, output = line.partition(" > ")
                output, command = output.split(" || ")[0], command.split(" || ")[0]
                words = shlex.split(re.sub(r"\$([A-Z_]+)", lambda m: env[m.group(1)], command))
                if words[1:3] == ["integrations", "set"]:
                    words += ["--api-url", api[words[3]]]  # the stand-in, not the real host
                if words[1] == "check":  # a plain repository: no ledger of its own here
                    local = {"FLOWLOOM_DATABASE": str(tmp_path / "local.db")}
                    result = runner.invoke(cli, words[1:], env={**env, **local})
                else:
                    result = runner.invoke(cli, words[1:], env=env)
                if result.exception and not isinstance(result.exception, SystemExit):
                    raise result.exception
                allowed = {0, 1} if words[1] == "check" else {0}
                assert result.exit_code in allowed, (line, result.output)
                if output:
                    (repo / output.strip()).write_text(result.stdout)
            integrations = world.server.integrations
            run = integrations.deliver_due()
            assert run.delivered and not run.dead and not run.retrying
        made = github.made()
        assert made[:2] == [  # the App: its installation token, then the test call
            ("POST", "/app/installations/987654/access_tokens"),
            ("GET", "/repos/octo-org/hello-world"),
        ]
        # then the personal token: no check run (only an App may make one), a status
        status = [c for c in github.calls if "/statuses/" in c.path]
        assert status[0].headers["authorization"] == "Bearer ghp_doc"
        assert status[0].json["state"] == "failure"
        assert not github.check_runs
        assert ("GET", "/repos/octo-org/hello-world/branches/main/protection") in made
        assert ("POST", "/repos/octo-org/hello-world/issues/7/comments") in made
        assert ("POST", f"/repos/octo-org/hello-world/statuses/{head}") in made
        assert [s["state"] for s in gitlab.statuses] == ["failed"]
        assert len(gitlab.notes) == 1
        assert bitbucket.statuses[(head, "flowloom-check")]["state"] == "FAILED"
        gate = (repo / "test-reports" / "flowloom-gate.xml").read_text()
        assert "<failure" in gate and "Quick fix" in gate
        shown = json.loads(runner.invoke(cli, ["integrations", "show", OWN], env=env).stdout)
        assert {c["kind"] for c in shown} == {"github", "gitlab", "bitbucket"}
    finally:
        github.stop()
        gitlab.stop()
        bitbucket.stop()
        world.close()
