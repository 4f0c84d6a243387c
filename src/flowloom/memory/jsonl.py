"""The MCP reference memory server's file format: one JSON object per line.

``{"type":"entity","name":...,"entityType":...,"observations":[...]}`` and
``{"type":"relation","from":...,"to":...,"relationType":...}``, entities first.

Reading takes whatever the reference server writes: lines are split on ``\\n`` only
(its JSON keeps U+2028, U+2029 and U+0085 raw inside strings, so `str.splitlines`
would cut a line in two), empty strings, blank and repeated observations and
relations naming no entity are kept as they are. A line that cannot be taken (not
JSON, an unknown ``type``, a member of the wrong type, text UTF-8 cannot hold) is
skipped and reported with its line number; it never costs the rest of the file.
Writing matches the reference server's own output (compact JSON, members in its
order, non-ASCII as itself).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from flowloom.memory.interface import Entity, Graph, Problem, Relation

__all__ = ["ParsedFile", "Problem", "dump_lines", "parse_lines", "split_lines"]


@dataclass(frozen=True)
class ParsedFile:
    """What a file holds; ``entity_lines``/``relation_lines`` give each item's line number."""

    entities: tuple[Entity, ...]
    relations: tuple[Relation, ...]
    entity_lines: tuple[int, ...]
    relation_lines: tuple[int, ...]
    problems: tuple[Problem, ...] = ()


def split_lines(text: str) -> list[str]:
    """The lines of a JSONL text, split on ``\\n`` only (a ``\\r`` before it dropped)."""
    return [line.removesuffix("\r") for line in text.split("\n")]


def _encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _string(obj: dict[str, Any], name: str) -> str | None:
    value = obj.get(name)
    return value if isinstance(value, str) else None


def _entity(obj: dict[str, Any], number: int, problems: list[Problem]) -> Entity | None:
    name, entity_type = _string(obj, "name"), _string(obj, "entityType")
    if name is None:
        problems.append(Problem(number, "the entity has no 'name' string; line skipped"))
        return None
    if "\x00" in name:
        problems.append(Problem(number, f"entity name {name!r} contains NUL; line skipped"))
        return None
    if entity_type is None or "\x00" in entity_type:
        problems.append(
            Problem(
                number, f"entity {name!r}: 'entityType' is not a string without NUL; line skipped"
            )
        )
        return None
    raw = obj.get("observations", [])
    if not isinstance(raw, list):
        problems.append(
            Problem(number, f"entity {name!r}: 'observations' is not a list; line skipped")
        )
        return None
    observations = [o for o in raw if isinstance(o, str) and _encodable(o)]
    if len(observations) != len(raw):
        problems.append(
            Problem(
                number,
                f"entity {name!r}: {len(raw) - len(observations)} observation(s) are not "
                "UTF-8 text and were left out",
            )
        )
    return Entity(name=name, entity_type=entity_type, observations=tuple(observations))


def _relation(obj: dict[str, Any], number: int, problems: list[Problem]) -> Relation | None:
    values = [_string(obj, name) for name in ("from", "to", "relationType")]
    if any(v is None or "\x00" in v for v in values):
        problems.append(
            Problem(
                number,
                "the relation needs 'from', 'to' and 'relationType' strings without NUL; "
                "line skipped",
            )
        )
        return None
    source, target, relation_type = (str(v) for v in values)
    return Relation(source=source, target=target, relation_type=relation_type)


def parse_lines(lines: Iterable[str]) -> ParsedFile:
    """Entities and relations of a JSONL file, and a `Problem` for each line not taken.

    `lines` are already split (`split_lines`); a BOM before the first is ignored.
    """
    entities: list[Entity] = []
    relations: list[Relation] = []
    entity_lines: list[int] = []
    relation_lines: list[int] = []
    problems: list[Problem] = []
    for number, raw in enumerate(lines, start=1):
        line = raw.lstrip("\ufeff") if number == 1 else raw
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(
                Problem(number, f"not valid JSON ({exc.msg} at column {exc.colno}); line skipped")
            )
            continue
        except RecursionError:
            problems.append(Problem(number, "nested too deeply; line skipped"))
            continue
        if not isinstance(obj, dict):
            problems.append(
                Problem(number, f"expected a JSON object, got {type(obj).__name__}; line skipped")
            )
            continue
        kind = obj.get("type")
        if kind == "entity":
            entity = _entity(obj, number, problems)
            if entity is not None and not all(
                _encodable(v) for v in (entity.name, entity.entity_type)
            ):
                problems.append(Problem(number, "the entity's name or type is not UTF-8 text"))
                entity = None
            if entity is not None:
                entities.append(entity)
                entity_lines.append(number)
        elif kind == "relation":
            relation = _relation(obj, number, problems)
            if relation is not None and not all(
                _encodable(v) for v in (relation.source, relation.target, relation.relation_type)
            ):
                problems.append(Problem(number, "the relation's names are not UTF-8 text"))
                relation = None
            if relation is not None:
                relations.append(relation)
                relation_lines.append(number)
        else:
            problems.append(
                Problem(
                    number, f'\'type\' must be "entity" or "relation", got {kind!r}; line skipped'
                )
            )
    return ParsedFile(
        tuple(entities),
        tuple(relations),
        tuple(entity_lines),
        tuple(relation_lines),
        tuple(problems),
    )


def _dumps(obj: dict[str, Any]) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def dump_lines(graph: Graph) -> Iterator[str]:
    """The graph as JSONL lines, entities first, as the reference server writes them."""
    for e in graph.entities:
        yield _dumps(
            {
                "type": "entity",
                "name": e.name,
                "entityType": e.entity_type,
                "observations": list(e.observations),
            }
        )
    for r in graph.relations:
        yield _dumps(
            {"type": "relation", "from": r.source, "to": r.target, "relationType": r.relation_type}
        )
