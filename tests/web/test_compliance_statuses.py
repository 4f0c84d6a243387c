"""The five control statuses on the web dashboard, over real HTTP, and the same results as
`flowloom report` over the same database and period.

A populated server (tests/web/support.py) without a repository, where a user is
disabled and then still recorded as acting: its Part 11 assessment has a control of each
status — pass (§11.70), flag (§11.10(d)), manual (§11.10(h)), not_applicable (§11.50: no
signature in the period) and not_assessed (§11.10(f): the commit checks need git). The
dashboard must show each with its reason, never fold one into another, never call an
informational note an exception, and agree with the CLI control by control.
"""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tests.server.support import OWN, World, live_server, make_world
from tests.web.support import Populated, populate, sign_in

P = f"/ui/projects/{OWN}/compliance"
TODAY = datetime.now(UTC).date().isoformat()
PERIOD = {"from": "2020-01-01", "to": TODAY}
EXPECTED = {
    "§11.70": "pass",
    "§11.10(d)": "flag",
    "§11.10(h)": "manual",
    "§11.50": "not_applicable",
    "§11.10(f)": "not_assessed",
}


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[World, Populated]]:
    built = make_world(str(tmp_path / "server.db"), tmp_path / "home")
    made = populate(built)
    directory = built.server.directory
    leaver = directory.create_user("leaver@example.org", "Lee Leaver")
    ledger = built.server.ledger(OWN)
    directory.disable_user(leaver.id)
    ledger.record("agent.prompt", meta={"actor": {"type": "human", "id": leaver.id}})
    ledger.checkpoint()
    built.server.ledger("flowloom-instance").checkpoint()
    yield built, made
    built.close()


def _text(fragment: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def rows(page: str) -> dict[str, list[str]]:
    """The controls table: clause → its cells' text (clause, control, status and reason,
    automated part, evidence requested)."""
    table = page.split('<table class="controls">', 1)[1].split("</table>", 1)[0]
    found = {}
    for row in re.findall(r"<tr>(.*?)</tr>", table, re.S)[1:]:
        cells = [_text(cell) for cell in re.findall(r"<td>(.*?)</td>", row, re.S)]
        found[cells[0]] = cells
    return found


def test_every_status_is_shown_with_its_reason(world: tuple[World, Populated]) -> None:
    with live_server(world[0].server) as base, httpx.Client(base_url=base) as client:
        sign_in(client, "auditor@example.org")
        page = client.get(f"{P}/part11", params=PERIOD)
        assert page.status_code == 200, page.text
        tiles = client.get(P, params=PERIOD).text
    text = page.text
    found = rows(text)
    coverage = {"pass": "automated", "flag": "partly automated", "manual": "manual",
                "not_applicable": "automated", "not_assessed": "partly automated"}  # fmt: skip
    for clause, status in EXPECTED.items():
        _, control, outcome, _, _ = found[clause]
        assert control.endswith(f"({coverage[status]})"), (clause, control)
        assert outcome.startswith(status.replace("_", " ") + " "), (clause, outcome)
    assert "no electronic signature or approval was recorded" in found["§11.50"][2]
    assert "needs the git repository" in found["§11.10(f)"][2]
    assert "[server.repositories]" in found["§11.10(f)"][2]
    assert "Device and terminal checks" in found["§11.10(h)"][4]
    assert "the devices allowed to enter data" in found["§11.10(h)"][4]
    assert "access_revocation flagged 1 exception" in found["§11.10(d)"][2]
    # §11.10(a) passes nothing on ledger integrity: its automated part passes, it is manual.
    validation = found["§11.10(a)"]
    assert validation[2].startswith("manual ") and validation[3].startswith("pass ")
    assert "Validation plan and report" in validation[4]
    # The summary cards: one number per status, none folded into another.
    cards = dict(re.findall(r'<h2>([A-Za-z ]+)</h2><p class="big">(\d+)</p>', text))
    assert set(cards) == {"Pass", "Flagged", "Manual", "Not applicable", "Not assessed"}
    assert all(int(n) >= 1 for n in cards.values()), cards
    # An informational note (no external anchor) is a note, never an exception.
    assert re.search(r"Trail integrity[^<]*</a> \(pass, 1 note\)", text), text
    assert "(pass, 1 exception)" not in text and "exception" not in found["§11.70"][3]
    # The dashboard's tile lists all five statuses for the framework it has assessed.
    tile = next(r for r in tiles.split("<tr>") if "compliance/part11?" in r)
    shown = re.findall(r'class="status status-([a-z-]+)">[^<]+</span> (\d+)', tile)
    assert [s for s, _ in shown] == ["pass", "flag", "manual", "not-applicable", "not-assessed"]
    assert [int(n) for _, n in shown] == [int(cards[c]) for c in (
        "Pass", "Flagged", "Manual", "Not applicable", "Not assessed"
    )]  # fmt: skip


def _git(repo: Path, *args: str, date: str | None = None) -> str:
    env = {
        **os.environ,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_AUTHOR_NAME": "Dev Person",
        "GIT_AUTHOR_EMAIL": "developer@example.org",
        "GIT_COMMITTER_NAME": "Dev Person",
        "GIT_COMMITTER_EMAIL": "developer@example.org",
        **({"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date} if date else {}),
    }
    done = subprocess.run(
        ["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def _repository(tmp_path: Path) -> Path:
    """A clone with two commits on main in the period: one pushed straight to main."""
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    for name in ("app.py", "hotfix.py"):
        (repo / name).write_text(f"# {name}\n")
        _git(repo, "add", name)
        _git(repo, "commit", "-q", "-m", f"Add {name}")
    return repo


def _cli_report(
    world: World, tmp_path: Path, framework: str, repo: Path | None
) -> dict[str, object]:
    """`flowloom report` over the server's database, as an auditor runs it (`--repo`
    the project's clone, or `--no-git` as the server without one)."""
    server = world.server
    out = tmp_path / f"{framework}.json"
    env = {
        **os.environ,
        "HOME": str(tmp_path / "cli-home"),
        "XDG_CONFIG_HOME": str(tmp_path / "cli-home" / ".config"),
        "FLOWLOOM_HOME": str(server.settings.home),
        "FLOWLOOM_DATABASE": server.settings.database,
        "FLOWLOOM_PROJECT": OWN,
        "FLOWLOOM_ORIGIN": server.settings.origin(OWN),
        "FLOWLOOM_SERVER_VKEY": server.ledger(OWN).verifier.vkey,
    }
    for name in ("FLOWLOOM_SERVER", "FLOWLOOM_API_KEY", "FLOWLOOM_API_KEY_FILE"):
        env.pop(name, None)
    done = subprocess.run(
        [sys.executable, "-m", "flowloom", "report", "--framework", framework,
         *(["--repo", str(repo)] if repo is not None else ["--no-git"]),
         "--from", PERIOD["from"], "--to", PERIOD["to"], "--format", "json", "--out", str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    data: dict[str, object] = json.loads(out.read_text())
    return data


@pytest.mark.parametrize("framework", ["sox", "part11"])
@pytest.mark.parametrize("git", [False, True], ids=["no-repository", "repository"])
def test_the_dashboard_and_the_cli_agree(
    world: tuple[World, Populated], tmp_path: Path, framework: str, git: bool
) -> None:
    """Same database, same period, same repository (or none): the same status for every
    control, with the same reason, on the web page and in `flowloom report`."""
    server = world[0]
    repo = _repository(tmp_path) if git else None
    if repo is not None:
        server.server.repositories = {OWN: repo}
    with live_server(server.server) as base, httpx.Client(base_url=base) as client:
        sign_in(client, "auditor@example.org")
        page = client.get(f"{P}/{framework}", params=PERIOD)
        assert page.status_code == 200, page.text
    web = rows(page.text)
    statuses = {cells[2].split(" ", 1)[0] for cells in web.values()}
    if repo is not None:  # the commit checks ran: the direct push is flagged, not skipped
        assert "needs the git repository" not in page.text
        assert "flag" in statuses
    else:
        assert "not" in statuses and "needs the git repository" in page.text
    cli = _cli_report(server, tmp_path, framework, repo)
    controls = cli["controls"]
    assert isinstance(controls, list)
    assert [c["control"]["clause"] for c in controls] == list(web)
    for control in controls:
        clause = control["control"]["clause"]
        outcome = web[clause][2]
        status = control["status"].replace("_", " ")
        assert outcome == f"{status} {control['note']}".strip(), (clause, control, outcome)


def test_the_framework_page_shows_completeness_and_sampling(
    world: tuple[World, Populated], tmp_path: Path
) -> None:
    """The report's scope, completeness and sampling sections, on the web page, from the
    page's own (cached) assessment: one snapshot. A commit from before the baseline (the
    first ledger entry) is listed apart, never an exception."""
    from flowloom.compliance.reports.html import auditmeta_html
    from flowloom.server.app import create_app

    server = world[0]
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    (repo / "legacy.py").write_text("# before FlowLoom\n")
    _git(repo, "add", "legacy.py")
    _git(repo, "commit", "-q", "-m", "Legacy code", date="2021-06-01T12:00:00Z")
    legacy = _git(repo, "rev-parse", "HEAD")
    for name in ("app.py", "hotfix.py"):
        (repo / name).write_text(f"# {name}\n")
        _git(repo, "add", name)
        _git(repo, "commit", "-q", "-m", f"Add {name}")
    app = create_app(server.server)
    with live_server(server.server, app) as base, httpx.Client(base_url=base) as client:
        sign_in(client, "auditor@example.org")
        bare = client.get(f"{P}/sox", params=PERIOD)
        assert bare.status_code == 200, bare.text
        server.server.repositories = {OWN: repo}
        ledger = server.server.ledger(OWN)
        ledger.record("agent.prompt", meta={"actor": {"type": "human", "id": "someone"}})
        ledger.checkpoint()  # a new snapshot: assessed again, with git
        page = client.get(f"{P}/sox", params=PERIOD)
        assert page.status_code == 200, page.text
    # Without a repository the page says what is missing, as the report does.
    assert "Completeness not assessed:" in bare.text
    assert "No sample: the change population was not examined (no repository)." in bare.text
    cached = app.state.flowloom_web.assessments._items
    latest = max((k for k in cached if k[2] == "sox"), key=lambda k: k[-1][0])
    assessment = cached[latest]
    assert assessment.ledger.size == latest[-1][0]  # the checkpoint the page is keyed by
    completeness, sampling = assessment.completeness, assessment.sampling
    assert completeness is not None and sampling is not None
    # Exactly the report's sections, from this assessment, and its numbers.
    assert auditmeta_html(assessment) in page.text
    text = _text(page.text)
    assert "Completeness: git and the ledger reconciled" in text
    assert completeness.commits == 2 and completeness.reconciled
    assert (
        f"Reconciled: {completeness.commits} changes = {completeness.linked} linked + "
        f"{completeness.unlinked} unlinked." in text
    )
    assert [item.commit for item in completeness.pre_adoption] == [legacy]
    assert f"Pre-adoption commits (1), before the baseline {completeness.baseline[:10]}" in text
    assert legacy[:12] in text and "Legacy code" in text
    assert legacy not in {c.commit for c in assessment.changes}
    assert not any(f.commit == legacy for f in assessment.exceptions)
    assert "Sampling for manual testing" in text
    assert f"{sampling.size}: {sampling.basis}" in text and sampling.seed in text
    assert sampling.items and all(commit in text for commit in sampling.items)
    # The summary cards count the same assessment's controls.
    cards = dict(re.findall(r'<h2>([A-Za-z ]+)</h2><p class="big">(\d+)</p>', page.text))
    assert int(cards["Flagged"]) == assessment.counts()["flag"]
