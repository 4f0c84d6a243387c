"""The MCP reference memory server's file format: one JSON object per line.

``{"type":"entity","name":...,"entityType":...,"observations":[...]}`` and
``{"type":"relation","from":...,"to":...,"relationType":...}``, entities first. Reading
is strict — a malformed line is an error naming its line number, and nothing from the
file is used — because an import is all or nothing. Writing matches the reference
server's own output (compact JSON, members in its order, non-ASCII as itself).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from flowloom.errors import InputError
from flowloom.memory.interface import Entity, Graph, Relation

__all__ = ["ParsedFile", "dump_lines", "parse_lines"]


@dataclass(frozen=True)
class ParsedFile:
    """What a file holds; ``entity_lines``/``relation_lines`` give each item's line number."""

    entities: tuple[Entity, ...]
    relations: tuple[Relation, ...]
    entity_lines: tuple[int, ...]
    relation_lines: tuple[int, ...]


def _text(obj: dict[str, object], name: str, number: int) -> str:
    value = obj.get(name)
    if not isinstance(value, str) or not value.strip():
        raise InputError(
            f"line {number}: {name!r} must be a non-empty string",
            hint="each line is an MCP memory entity or relation; fix or remove the line",
        )
    return value


def parse_lines(lines: Iterable[str]) -> ParsedFile:
    """Entities and relations of a JSONL file; InputError with the line number otherwise."""
    entities: list[Entity] = []
    relations: list[Relation] = []
    entity_lines: list[int] = []
    relation_lines: list[int] = []
    for number, raw in enumerate(lines, start=1):
        line = raw.strip().lstrip("\ufeff") if number == 1 else raw.strip()
        if not line:
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(
                f"line {number}: not valid JSON ({exc.msg} at column {exc.colno})",
                hint="each line must be one JSON object; nothing was imported",
            ) from None
        if not isinstance(obj, dict):
            raise InputError(f"line {number}: expected a JSON object, got {type(obj).__name__}")
        kind = obj.get("type")
        if kind == "entity":
            observations = obj.get("observations", [])
            if not isinstance(observations, list) or not all(
                isinstance(o, str) for o in observations
            ):
                raise InputError(f"line {number}: 'observations' must be a list of strings")
            entities.append(
                Entity(
                    name=_text(obj, "name", number),
                    entity_type=_text(obj, "entityType", number),
                    observations=tuple(o for o in observations if o.strip()),
                )
            )
            entity_lines.append(number)
        elif kind == "relation":
            relations.append(
                Relation(
                    source=_text(obj, "from", number),
                    target=_text(obj, "to", number),
                    relation_type=_text(obj, "relationType", number),
                )
            )
            relation_lines.append(number)
        else:
            raise InputError(
                f'line {number}: \'type\' must be "entity" or "relation", got {kind!r}',
                hint="nothing was imported",
            )
    return ParsedFile(tuple(entities), tuple(relations), tuple(entity_lines), tuple(relation_lines))


def dump_lines(graph: Graph) -> Iterator[str]:
    """The graph as JSONL lines, entities first, as the reference server writes them."""
    for e in graph.entities:
        yield json.dumps(
            {
                "type": "entity",
                "name": e.name,
                "entityType": e.entity_type,
                "observations": list(e.observations),
            },
            ensure_ascii=False,
            separators=(",", ":"),
        )
    for r in graph.relations:
        yield json.dumps(
            {"type": "relation", "from": r.source, "to": r.target, "relationType": r.relation_type},
            ensure_ascii=False,
            separators=(",", ":"),
        )
