"""MCP reference memory server JSONL: import, export, round trip, and bad files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flowloom.errors import InputError
from flowloom.ledger.log import Ledger
from flowloom.memory.interface import Entity, Relation
from flowloom.memory.service import Memory
from flowloom.store.interface import Store
from tests.support.ledgers import make_ledger

# As the reference server writes it (compact JSON, entities first).
REFERENCE = [
    '{"type":"entity","name":"John_Smith","entityType":"person",'
    '"observations":["Speaks fluent Spanish","Graduated in 2019"]}',
    '{"type":"entity","name":"Anthropic","entityType":"organization","observations":[]}',
    '{"type":"entity","name":"Zoë","entityType":"person",'
    '"observations":["Likes «quotes» and 日本"]}',
    '{"type":"relation","from":"John_Smith","to":"Anthropic","relationType":"works_at"}',
    '{"type":"relation","from":"Zoë","to":"John_Smith","relationType":"mentors"}',
]


def test_import_then_export_gives_the_file_back(memory: Memory, tmp_path: Path) -> None:
    path = tmp_path / "memory.jsonl"
    path.write_text("\n".join(REFERENCE) + "\n", encoding="utf-8")
    result = memory.import_jsonl(path)
    assert (result.entities, result.relations, result.observations) == (3, 2, 3)
    assert len(result.entries) == 1
    assert list(memory.export_jsonl()) == REFERENCE
    # Importing it again adds nothing and records nothing.
    size = memory.ledger.size()
    assert memory.import_jsonl(path).entries == ()
    assert memory.ledger.size() == size


def test_round_trip_between_two_projects(
    memory: Memory, ledger: Ledger, db: Store, tmp_path: Path
) -> None:
    memory.create_entities([Entity("A", "t", ("one", "two")), Entity("B", "u")])
    memory.create_relations([Relation("A", "B", "r")])
    from flowloom.decisions.records import DecisionBook

    DecisionBook(ledger).record(title="Pick a queue", requested_by="ann", files=["q/x.py"])
    exported = list(memory.export_jsonl())
    other_ledger = make_ledger(db, tmp_path / "keys2", log="other")
    other = Memory(other_ledger)
    try:
        other.import_jsonl(exported)
        assert list(other.export_jsonl()) == exported
        assert other.read_graph() == memory.read_graph()
    finally:
        other.close()


def test_import_merges_with_what_is_known(memory: Memory) -> None:
    memory.create_entities([Entity("John_Smith", "human", ("Speaks fluent Spanish",))])
    result = memory.import_jsonl(REFERENCE)
    assert (result.entities, result.relations, result.observations) == (2, 2, 2)
    john = memory.open_nodes(["John_Smith"]).entities[0]
    assert john == Entity("John_Smith", "human", ("Speaks fluent Spanish", "Graduated in 2019"))


def test_duplicate_entities_in_a_file_merge(memory: Memory) -> None:
    result = memory.import_jsonl(
        [
            '{"type":"entity","name":"X","entityType":"t","observations":["a"]}',
            "",
            '{"type":"entity","name":"X","entityType":"other","observations":["a","b"]}',
        ]
    )
    assert memory.read_graph().entities == (Entity("X", "t", ("a", "b")),)
    assert [str(p) for p in result.problems] == [
        "line 3: entity 'X' is also on line 1: merged into it (type 'other' dropped)"
    ]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ('{"type":"entity","name":"X"', "line 3: not valid JSON"),
        ("[1, 2]", "line 3: expected a JSON object"),
        ('{"type":"node","name":"X"}', "line 3: 'type' must be"),
        (
            '{"type":"entity","entityType":"t","observations":[]}',
            "line 3: the entity has no 'name'",
        ),
        ('{"type":"entity","name":"X","entityType":"t","observations":"a"}', "line 3: entity 'X'"),
        ('{"type":"relation","from":"A","relationType":"r"}', "line 3: the relation needs"),
        ('{"type":"entity","name":"X\\u0000","entityType":"t","observations":[]}', "NUL"),
        ('{"type":"entity","name":"X","entityType":"t","observations":["\\ud800"]}', "UTF-8"),
    ],
)
def test_a_bad_line_is_skipped_and_named_the_rest_imported(
    memory: Memory, bad: str, message: str
) -> None:
    lines = [
        '{"type":"entity","name":"A","entityType":"t","observations":["fine"]}',
        '{"type":"entity","name":"B","entityType":"t","observations":[]}',
        bad,
        '{"type":"relation","from":"A","to":"B","relationType":"r"}',
    ]
    result = memory.import_jsonl(lines)
    (problem,) = result.problems
    assert message in str(problem)
    graph = memory.read_graph()
    assert [e.name for e in graph.entities][:2] == ["A", "B"]
    assert graph.relations == (Relation("A", "B", "r"),)


def test_what_the_reference_writes_is_kept_exactly(memory: Memory, tmp_path: Path) -> None:
    """Unicode line separators inside strings, NUL, blanks, repeats, an empty type, a
    relation naming no entity: kept as they are, and the export reads back the same."""
    odd = "a\u2028b\u2029c\u0085d\x00e"
    lines = [
        json.dumps(
            {
                "type": "entity",
                "name": "X",
                "entityType": "",
                "observations": [odd, "", "", "same", "same"],
            },
            ensure_ascii=False,
            separators=(",", ":"),
        ),
        '{"type":"relation","from":"X","to":"Nowhere","relationType":"r"}',
    ]
    path = tmp_path / "memory.jsonl"
    path.write_text("\n".join(lines), encoding="utf-8")
    assert "\u2028" in path.read_text("utf-8")
    result = memory.import_jsonl(path)
    assert result.problems == ()
    assert (result.entities, result.relations, result.observations) == (1, 1, 5)
    assert memory.read_graph().entities == (Entity("X", "", (odd, "", "", "same", "same")),)
    exported = list(memory.export_jsonl())
    assert exported == lines
    # FlowLoom re-imports its own export: nothing new, nothing refused.
    again = memory.import_jsonl("\n".join(exported) + "\n")
    assert (again.entities, again.relations, again.observations, again.problems) == (0, 0, 0, ())
    memory.rebuild()  # the index is a cache: the ledger alone gives the same graph
    assert list(memory.export_jsonl()) == exported


def test_file_problems(memory: Memory, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no file"):
        memory.import_jsonl(tmp_path / "missing.jsonl")
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(
        b'{"type":"entity","name":"caf\xe9","entityType":"t","observations":[]}\n'
        + REFERENCE[1].encode()
        + b"\n"
    )
    result = memory.import_jsonl(latin)
    assert [str(p) for p in result.problems] == ["line 1: not UTF-8 text (byte 28); line skipped"]
    assert result.entities == 1
    bom = tmp_path / "bom.jsonl"
    bom.write_text("\ufeff" + REFERENCE[2] + "\n", encoding="utf-8")
    assert memory.import_jsonl(bom).entities == 1


def test_export_lines_are_json_the_reference_server_reads(memory: Memory) -> None:
    memory.create_entities([Entity('quote"back\\slash\nnewline', "t", ("tab\there",))])
    (line,) = memory.export_jsonl()
    assert "\n" not in line
    obj = json.loads(line)
    assert obj == {
        "type": "entity",
        "name": 'quote"back\\slash\nnewline',
        "entityType": "t",
        "observations": ["tab\there"],
    }


def test_an_index_from_before_exact_text_is_projected_again(memory: Memory, ledger: Ledger) -> None:
    """Upgrading drops the (lossy) index of older versions; the ledger gives it back exact."""
    from flowloom.memory.index import MemoryIndex

    memory.create_entities([Entity("X", "t", ("a\x00b", "a\x00b"))])
    memory.close()
    old = MemoryIndex(ledger.store, ledger.log)
    try:
        with old.write() as w:  # the index as version 2 left it: NUL as a space, no column
            w.execute("UPDATE memory_docs SET body = 'a b' WHERE kind = 'observation'")
            w.execute("ALTER TABLE memory_docs DROP COLUMN exact")
            w.execute("DELETE FROM memory_migrations WHERE version = 3")
    finally:
        old.close()
    again = Memory(ledger)
    try:
        assert again.read_graph().entities == (Entity("X", "t", ("a\x00b", "a\x00b")),)
    finally:
        again.close()
