"""`flowloom scan ingest`: SARIF recorded for HEAD's tree, each result bound to the
decision behind its line (the why walk), in a real repository and ledger."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.decisions.test_why import World

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.services.close()


def test_ingest_binds_results_to_the_tree_and_the_lines_decisions(world: World) -> None:
    world.commit("README.md", "sample\n", "initial")
    decision = world.decision("Run shell commands for the build step")
    app = (FIXTURES / "sample" / "app.py").read_text()
    sha = world.commit("app.py", app, f"Add app\n\nFlowLoom-Decision: {decision.id}\n")
    for name in ("bandit.sarif", "semgrep.sarif"):
        shutil.copy(FIXTURES / name, world.top.parent / name)
    done = world.fl("scan", "ingest", str(world.top.parent / "bandit.sarif"), "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["tree"] == world.git("rev-parse", "HEAD^{tree}").strip()
    assert out["commit"] == sha
    assert out["total"] == 4 and out["errors"] == 1
    assert out["decisions"] == [decision.id]
    assert {r["line"]: r["decision"] for r in out["results"]} == {
        3: decision.id,
        7: decision.id,
        11: decision.id,
        14: decision.id,
    }
    entry = world.ledger.store.entry(world.ledger.log, out["entry"])
    assert entry is not None and entry.kind == "scan.result"
    done = world.fl("scan", "ingest", str(world.top.parent / "semgrep.sarif"))
    assert done.returncode == 0, done.stderr
    assert "2 results (Semgrep OSS 1.185.0)" in done.stdout and "1 decisions named" in done.stdout


def test_ingest_refuses_a_changed_work_tree_and_a_bad_file(world: World) -> None:
    world.commit("app.py", "x = 1\n", "initial")
    bad = world.top.parent / "bad.sarif"
    bad.write_text('{"version": "2.1.0"}')
    done = world.fl("scan", "ingest", str(bad))
    assert done.returncode == 3 and "'runs' is a required property" in done.stderr
    (world.top / "app.py").write_text("x = 2\n")
    done = world.fl("scan", "ingest", str(FIXTURES / "bandit.sarif"))
    assert done.returncode == 3 and "tracked files differ from HEAD" in done.stderr
    assert "Traceback" not in done.stderr
