"""Compiling the OCSF schema source into JSON Schema, for the event classes FlowLoom emits.

The OCSF project publishes its schema as source (a dictionary of attributes, event
classes that extend each other, objects, profiles); its own compiler needs a newer
Python than FlowLoom supports, so this resolves the part we need: a class's `extends`
chain and `$include`s, each attribute's type from the dictionary (scalar types to JSON
types with their regex/range, objects to `$defs`), enumerations of `*_id` integers,
`required` attributes and objects' `at_least_one`/`just_one` constraints. Attributes
that come from profiles are optional (a profile applies only when the event names it).
The compiled schemas are shipped in `schemas/` and checked against the source in tests.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["CLASSES", "compile_bundle", "compile_class"]

_DRAFT = "https://json-schema.org/draft/2020-12/schema"
_JSON_TYPES = {
    "boolean_t": "boolean",
    "integer_t": "integer",
    "long_t": "integer",
    "float_t": "number",
    "string_t": "string",
}


class _Source:
    """The schema source folder, read once per compilation."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dictionary = self._read("dictionary.json")
        self.types: Mapping[str, Any] = self.dictionary["types"]["attributes"]
        self.categories: Mapping[str, Any] = self._read("categories.json")["attributes"]
        self.version = str(self._read("version.json")["version"])
        self.events = {p.stem: p for p in sorted((root / "events").rglob("*.json"))}

    def _read(self, relative: str) -> Any:
        return json.loads((self.root / relative).read_text("utf-8"))

    def event(self, name: str) -> Any:
        return json.loads(self.events[name].read_text("utf-8"))

    def object(self, name: str) -> Any | None:
        path = self.root / "objects" / f"{name}.json"
        return json.loads(path.read_text("utf-8")) if path.exists() else None

    def include(self, relative: str) -> Mapping[str, Any]:
        return dict(self._read(relative).get("attributes", {}))


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _attributes(source: _Source, definition: Mapping[str, Any]) -> dict[str, Any]:
    """A definition's own attributes with its `$include`s (profiles marked as such)."""
    attrs: dict[str, Any] = {}
    own = dict(definition.get("attributes", {}))
    for relative in own.pop("$include", []):
        profiled = relative.startswith("profiles/")
        for name, spec in source.include(relative).items():
            spec = dict(spec)
            if profiled:
                spec["requirement"] = "optional"
            attrs[name] = _merge(attrs.get(name, {}), spec)
    for name, spec in own.items():
        attrs[name] = _merge(attrs.get(name, {}), spec or {})
    return attrs


def _resolved(
    source: _Source, definition: Mapping[str, Any], load: Any
) -> tuple[dict[str, Any], Mapping[str, Any]]:
    """(attributes, constraints) after following the `extends` chain."""
    parent = definition.get("extends")
    if parent:
        base = load(parent)
        attrs, _ = _resolved(source, base, load) if base else ({}, {})
    else:
        attrs = {}
    for name, spec in _attributes(source, definition).items():
        attrs[name] = _merge(attrs.get(name, {}), spec)
    return attrs, dict(definition.get("constraints", {}))


class _Compiler:
    def __init__(self, source: _Source) -> None:
        self.source = source
        self.defs: dict[str, Any] = {}

    def scalar(self, type_name: str) -> dict[str, Any]:
        schema: dict[str, Any] = {}
        name = type_name
        while name not in _JSON_TYPES and name in self.source.types:
            spec = self.source.types[name]
            if "regex" in spec and "pattern" not in schema:
                schema["pattern"] = spec["regex"]
            if "range" in spec:
                schema["minimum"], schema["maximum"] = spec["range"]
            if "max_len" in spec:
                schema["maxLength"] = spec["max_len"]
            if name == "json_t" or spec.get("type") is None:
                break
            name = spec["type"]
        if name in _JSON_TYPES:
            schema["type"] = _JSON_TYPES[name]
        return schema

    def attribute(self, name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
        entry = _merge(self.source.dictionary["attributes"].get(name, {}), spec)
        type_name = str(entry.get("type", "json_t"))
        if type_name.endswith("_t"):
            schema = self.scalar(type_name)
            enum = entry.get("enum")
            if enum and schema.get("type") == "integer":
                schema["enum"] = sorted(int(k) for k in enum)
            elif enum and schema.get("type") == "string":
                schema["enum"] = sorted(enum)
        else:
            self.object(type_name)
            schema = {"$ref": f"#/$defs/{type_name}"}
        if entry.get("is_array"):
            schema = {"type": "array", "items": schema}
        return schema

    def object(self, name: str) -> None:
        if name in self.defs:
            return
        self.defs[name] = {}  # recursion guard: objects refer to each other
        definition = self.source.object(name)
        if definition is None or name == "object":  # "object": any attributes at all
            self.defs[name] = {"type": "object"}
            return
        attrs, constraints = _resolved(self.source, definition, self.source.object)
        self.defs[name] = self.shape(attrs, constraints)

    def shape(self, attrs: Mapping[str, Any], constraints: Mapping[str, Any]) -> dict[str, Any]:
        properties = {n: self.attribute(n, s) for n, s in sorted(attrs.items())}
        required = sorted(n for n, s in attrs.items() if s.get("requirement") == "required")
        schema: dict[str, Any] = {
            "type": "object",
            "properties": properties,
            "additionalProperties": False,
        }
        if required:
            schema["required"] = required
        if constraints.get("at_least_one"):
            schema["anyOf"] = [{"required": [n]} for n in constraints["at_least_one"]]
        if constraints.get("just_one"):
            schema["oneOf"] = [{"required": [n]} for n in constraints["just_one"]]
        return schema


def compile_class(root: Path, name: str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of OCSF event class `name` from source at `root`."""
    source = _Source(root)
    definition = source.event(name)
    attrs, constraints = _resolved(source, definition, source.event)
    compiler = _Compiler(source)
    schema = compiler.shape(attrs, constraints)
    chain = [definition]
    while chain[-1].get("extends"):
        chain.append(source.event(chain[-1]["extends"]))
    category = next((d["category"] for d in chain if d.get("category")), "other")
    category_uid = int(source.categories.get(category, {}).get("uid", 0))
    class_uid = category_uid * 1000 + int(definition.get("uid", 0))
    schema["properties"]["class_uid"] = {"const": class_uid}
    schema["properties"]["category_uid"] = {"const": category_uid}
    return {
        "$schema": _DRAFT,
        "$id": f"ocsf:{source.version}:{name}",
        "title": f"OCSF {source.version} {definition.get('caption', name)} ({class_uid})",
        **schema,
        "$defs": dict(sorted(compiler.defs.items())),
    }


CLASSES = ("authentication", "account_change", "api_activity")
"""The event classes FlowLoom emits."""


def compile_bundle(root: Path) -> str:
    """The text of schemas/ocsf.json: every class FlowLoom emits, compiled from `root`."""
    version = json.loads((root / "version.json").read_text("utf-8"))["version"]
    bundle = {"version": version, "classes": {n: compile_class(root, n) for n in CLASSES}}
    return json.dumps(bundle, indent=1, sort_keys=True) + "\n"


if __name__ == "__main__":  # python -m flowloom.siem.ocsfschema SOURCE > schemas/ocsf.json
    import sys

    sys.stdout.write(compile_bundle(Path(sys.argv[1])))
