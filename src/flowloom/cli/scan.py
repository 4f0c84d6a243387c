"""`flowloom scan ingest FILE.sarif`: security scanner results recorded as evidence.

The file is validated against the SARIF 2.1.0 schema, bound to HEAD's tree (the working
tree must be HEAD's: what was scanned), each result followed to the decision behind
its line, and recorded as a `scan.result` event that the A.8.29 / SSDF checks read.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from flowloom.cli.context import AppContext
from flowloom.errors import FlowLoomError, InputError

__all__ = ["scan"]


@click.group()
def scan() -> None:
    """Security scanner results (SARIF) as evidence for the scanned tree."""


@scan.command("ingest")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the recorded refs as JSON.")
@click.pass_context
def ingest(ctx: click.Context, file: Path, as_json: bool) -> None:
    """Record FILE (SARIF 2.1.0) for HEAD's tree as a scan.result event."""
    from flowloom.ci.evidence import tested_tree
    from flowloom.decisions.why import explain, index_path
    from flowloom.repo.git import GitRepo
    from flowloom.scanners.evidence import KIND, ScanEvidence
    from flowloom.scanners.sarif import parse_sarif

    try:
        data = file.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {file}: {exc.strerror}") from None
    tools, results = parse_sarif(data, str(file))
    if AppContext.of(ctx).settings().server_url is not None:
        raise InputError(
            "with a team server (FLOWLOOM_SERVER) scan results go to the server, not yet "
            "through this command",
            hint="POST the SARIF to /api/v1/projects/{project}/scans (docs/integrations.md)",
        )
    repo = GitRepo.discover(Path.cwd())
    commit, tree = tested_tree(repo)
    services = AppContext.of(ctx).services()
    ledger = services.ledger

    def decision_of(path: str, line: int) -> str | None:
        try:
            answer = explain(ledger, repo.cwd, path, line, index_path=index_path(repo.common_dir()))
        except FlowLoomError:
            return None  # a line no decision is linked to, or not in this tree
        return answer.decision.id

    evidence = ScanEvidence.of(
        tools,
        results,
        commit=commit,
        tree=tree,
        data=data,
        name=file.name,
        root=repo.cwd,
        decision_of=decision_of,
    )
    body = data if len(data) <= services.settings.max_body_bytes else None
    index = ledger.record(KIND, meta=evidence.meta(), body=body).index
    refs = evidence.meta()["refs"]
    if as_json:
        click.echo(json.dumps({"entry": index, **refs}, indent=2, sort_keys=True))
        return
    tools_text = ", ".join(f"{t.name} {t.version or ''}".strip() for t in tools)
    click.echo(
        f"recorded entry {index}: {refs['total']} results ({tools_text}) for tree "
        f"{tree[:12]}, {len(refs['decisions'])} decisions named"
    )
