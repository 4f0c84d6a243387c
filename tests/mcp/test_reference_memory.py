"""FlowLoom's memory against the real MCP reference memory server (npm, pinned).

Both servers run as subprocesses over stdio and are driven with the `mcp` SDK's client:
the reference keeps its graph in the JSONL file named by MEMORY_FILE_PATH, FlowLoom in
the ledger of a real repository. The graphs include what the reference server writes
and a careless importer loses: U+2028/U+2029/U+0085 inside observations, NUL, blank and
repeated observations, an empty entityType, relations naming no entity.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters
from mcp.types import CallToolResult

from flowloom.decisions.records import DecisionBook
from flowloom.mcp.server import REFERENCE_TOOLS
from tests.capture.git_sandbox import Sandbox
from tests.support.clis import offline_env

pytestmark = pytest.mark.usefixtures("reference_memory_server")

ODD = "line\u2028sep para\u2029sep next\u0085line nul\x00here"

# Calls the same on both servers: (tool, arguments). Edge cases the reference keeps.
SCRIPT: list[tuple[str, dict[str, Any]]] = [
    ("read_graph", {}),
    (
        "create_entities",
        {
            "entities": [
                {"name": "Ann", "entityType": "person", "observations": ["likes tea", ODD]},
                {"name": "Bare", "entityType": "", "observations": ["", "", "twice", "twice"]},
                {"name": "Cache", "entityType": "component", "observations": []},
            ]
        },
    ),
    ("create_entities", {"entities": [{"name": "Ann", "entityType": "x", "observations": []}]}),
    (
        "create_relations",
        {
            "relations": [
                {"from": "Ann", "to": "Cache", "relationType": "owns"},
                {"from": "Ann", "to": "Nobody", "relationType": "knows"},
            ]
        },
    ),
    ("create_relations", {"relations": [{"from": "Ann", "to": "Cache", "relationType": "owns"}]}),
    (
        "add_observations",
        {
            "observations": [
                {"entityName": "Ann", "contents": ["likes tea", "new", "new", ""]},
                {"entityName": "Cache", "contents": ["bounded"]},
            ]
        },
    ),
    ("add_observations", {"observations": [{"entityName": "Ghost", "contents": ["x"]}]}),
    ("search_nodes", {"query": "TEA"}),
    ("search_nodes", {"query": "component"}),
    ("search_nodes", {"query": "\u2028sep"}),
    ("open_nodes", {"names": ["Cache", "Nobody"]}),
    ("read_graph", {}),
    ("delete_observations", {"deletions": [{"entityName": "Bare", "observations": ["twice"]}]}),
    ("delete_relations", {"relations": [{"from": "Ann", "to": "Nobody", "relationType": "knows"}]}),
    ("read_graph", {}),
    ("delete_entities", {"entityNames": ["Cache", "Nobody"]}),
    ("read_graph", {}),
]


def reference_params(binary: Path, memory_file: Path, home: Path) -> StdioServerParameters:
    return StdioServerParameters(
        command=str(binary), env=offline_env(home, MEMORY_FILE_PATH=str(memory_file))
    )


def flowloom_params(box: Sandbox) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable, args=["-m", "flowloom", "mcp"], env=box.env, cwd=str(box.repo)
    )


def repository(root: Path) -> Sandbox:
    box = Sandbox(root)
    box.write("README", "hello\n")
    box.git("add", "README")
    box.git("commit", "-q", "-m", "initial")
    return box


def with_client(params: StdioServerParameters, body: Callable[[Client], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        async with Client(params, read_timeout_seconds=120) as client:
            return await body(client)

    return asyncio.run(main())


def outcome(result: CallToolResult) -> dict[str, Any]:
    """What a caller sees of a result: error or not, the structured content, the text."""
    if result.is_error:
        return {"error": True}
    (block,) = result.content
    text = getattr(block, "text", "")
    try:
        shown: Any = json.loads(text)
    except ValueError:
        shown = text
    return {"error": False, "structured": result.structured_content, "text": shown}


async def run_script(client: Client) -> list[dict[str, Any]]:
    return [outcome(await client.call_tool(name, args)) for name, args in SCRIPT]


async def read_graph(client: Client) -> dict[str, Any]:
    result = await client.call_tool("read_graph", {})
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


def test_the_reference_tools_have_the_reference_names_and_argument_schemas(
    reference_memory_server: Path, tmp_path: Path
) -> None:
    async def schemas(client: Client) -> dict[str, Any]:
        return {t.name: t.input_schema for t in (await client.list_tools()).tools}

    theirs = with_client(
        reference_params(reference_memory_server, tmp_path / "m.jsonl", tmp_path), schemas
    )
    ours = with_client(flowloom_params(repository(tmp_path / "fl")), schemas)
    assert set(theirs) == set(REFERENCE_TOOLS)
    assert set(theirs) <= set(ours)

    def shape(schema: Any, defs: dict[str, Any]) -> Any:
        """Names, types and required members only (FlowLoom adds size limits)."""
        if isinstance(schema, dict):
            if "$ref" in schema:
                return shape(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
            keep = {k: shape(v, defs) for k, v in schema.items() if k in ("type", "items")}
            if "properties" in schema:
                keep["properties"] = {k: shape(v, defs) for k, v in schema["properties"].items()}
                keep["required"] = sorted(schema.get("required", []))
            return keep
        return schema

    for name in REFERENCE_TOOLS:
        mine, reference = ours[name], theirs[name]
        assert shape(mine, mine.get("$defs", {})) == shape(reference, {}), name


def test_the_knowledge_graph_resource_reads_the_same(
    reference_memory_server: Path, tmp_path: Path
) -> None:
    async def fill_and_read(client: Client) -> str:
        for name, args in SCRIPT[:6]:
            await client.call_tool(name, args)
        (content,) = (await client.read_resource("memory://knowledge-graph")).contents
        assert content.mime_type == "application/json"
        return str(getattr(content, "text", ""))

    theirs = with_client(
        reference_params(reference_memory_server, tmp_path / "m.jsonl", tmp_path), fill_and_read
    )
    ours = with_client(flowloom_params(repository(tmp_path / "fl")), fill_and_read)
    assert ours == theirs


def test_the_same_calls_give_the_same_results(
    reference_memory_server: Path, tmp_path: Path
) -> None:
    theirs = with_client(
        reference_params(reference_memory_server, tmp_path / "m.jsonl", tmp_path), run_script
    )
    ours = with_client(flowloom_params(repository(tmp_path / "fl")), run_script)
    for (name, args), mine, reference in zip(SCRIPT, ours, theirs, strict=True):
        assert mine == reference, (name, args)
    # The NUL the reply shows is the NUL that is stored.
    final = ours[-1]["structured"]
    assert ODD in final["entities"][0]["observations"]


@pytest.mark.postgres
def test_the_same_results_with_the_ledger_in_postgresql(
    reference_memory_server: Path, tmp_path: Path, pg_url: str
) -> None:
    """PostgreSQL text holds no NUL: the observation's exact text is kept beside it."""
    theirs = with_client(
        reference_params(reference_memory_server, tmp_path / "m.jsonl", tmp_path), run_script
    )
    box = repository(tmp_path / "fl")
    box.env["FLOWLOOM_DATABASE"] = pg_url
    ours = with_client(flowloom_params(box), run_script)
    for (name, args), mine, reference in zip(SCRIPT, ours, theirs, strict=True):
        assert mine == reference, (name, args)


def test_a_graph_the_reference_wrote_imports_with_nothing_lost(
    reference_memory_server: Path, tmp_path: Path
) -> None:
    memory_file = tmp_path / "memory.jsonl"

    async def write(client: Client) -> dict[str, Any]:
        for name, args in SCRIPT[:6]:
            await client.call_tool(name, args)
        return await read_graph(client)

    graph = with_client(reference_params(reference_memory_server, memory_file, tmp_path), write)
    text = memory_file.read_text("utf-8")
    assert "\u2028" in text and "\\u0000" in text and '"entityType":""' in text

    box = repository(tmp_path / "fl")
    out = box.ok("memory", "import", str(memory_file), "--json")
    report = json.loads(out)
    assert report["problems"] == []
    assert with_client(flowloom_params(box), read_graph) == graph
    # FlowLoom re-imports its own export: nothing new, nothing refused.
    exported = tmp_path / "export.jsonl"
    box.ok("memory", "export", "--out", str(exported))
    again = json.loads(box.ok("memory", "import", str(exported), "--json"))
    assert again == {
        "entities": 0,
        "relations": 0,
        "observations": 0,
        "entries": [],
        "problems": [],
    }


def test_a_hand_edited_file_imports_all_it_can_and_says_what_it_could_not(
    reference_memory_server: Path, tmp_path: Path
) -> None:
    memory_file = tmp_path / "memory.jsonl"
    lines = [
        '{"type":"entity","name":"A","entityType":"t","observations":["one"]}',
        "{not json",
        '{"type":"entity","name":"A","entityType":"t","observations":["one","two"]}',
        '{"type":"relation","from":"A","to":"B","relationType":"r"}',
        '{"type":"relation","from":"A","to":"B","relationType":"r"}',
        '{"type":"entity","name":"B","entityType":"t","observations":["x\u2028y"]}',
    ]
    memory_file.write_text("\n".join(lines), encoding="utf-8")
    reference = with_client(
        reference_params(reference_memory_server, memory_file, tmp_path),
        lambda c: c.call_tool("read_graph", {}),
    )
    assert reference.is_error  # the reference server reads nothing of such a file

    box = repository(tmp_path / "fl")
    result = box.flowloom("memory", "import", str(memory_file))
    assert result.returncode == 1, result.stderr
    assert "line 2: not valid JSON" in result.stderr
    assert "line 3: entity 'A' is also on line 1: merged" in result.stderr
    assert "line 5: relation" in result.stderr
    assert "imported 2 entities, 1 relations, 3 observations" in result.stdout
    graph = with_client(flowloom_params(box), read_graph)
    assert graph == {
        "entities": [
            {"name": "A", "entityType": "t", "observations": ["one", "two"]},
            {"name": "B", "entityType": "t", "observations": ["x\u2028y"]},
        ],
        "relations": [{"from": "A", "to": "B", "relationType": "r"}],
    }


def test_flowloom_export_loads_into_the_reference_with_the_same_graph(
    reference_memory_server: Path, tmp_path: Path
) -> None:
    box = repository(tmp_path / "fl")
    with box.services() as services:
        decision = DecisionBook(services.ledger).record(
            title="Cache price lookups",
            requested_by="bob",
            choice="functools.lru_cache",
            rationale="bounded and needs no server",
            files=["prices.py"],
        )

    async def fill(client: Client) -> dict[str, Any]:
        for name, args in SCRIPT[:6]:
            await client.call_tool(name, args)
        return await read_graph(client)

    ours = with_client(flowloom_params(box), fill)
    (entity,) = [e for e in ours["entities"] if e["name"] == decision.id]
    assert entity["entityType"] == "decision"
    assert "Title: Cache price lookups" in entity["observations"]
    assert "Rationale: bounded and needs no server" in entity["observations"]

    exported = tmp_path / "export.jsonl"
    box.ok("memory", "export", "--out", str(exported))
    theirs = with_client(reference_params(reference_memory_server, exported, tmp_path), read_graph)
    assert theirs == ours
