"""SARIF 2.1.0 logs: validated against the OASIS schema, read into flat results.

Only what evidence needs is kept per result: the tool (name, version), the rule, the
level (SARIF's default is "warning"), the message, and the first physical location
(artifact URI relative to the scanned root, start and end line).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import unquote, urlsplit

from flowloom.errors import InputError

__all__ = ["SarifResult", "Tool", "parse_sarif"]


@dataclass(frozen=True)
class Tool:
    name: str
    version: str | None


@dataclass(frozen=True)
class SarifResult:
    tool: Tool
    rule_id: str
    level: str
    message: str
    path: str | None
    start_line: int | None
    end_line: int | None


@cache
def _validator() -> Any:
    from jsonschema import Draft4Validator  # type: ignore[import-untyped]

    text = resources.files("flowloom.scanners").joinpath("schemas", "sarif-schema-2.1.0.json")
    return Draft4Validator(json.loads(text.read_text("utf-8")))


def _path(uri: str | None) -> str | None:
    if not uri:
        return None
    parts = urlsplit(uri)
    if parts.scheme == "file":
        return unquote(parts.path)
    return unquote(uri).removeprefix("./")


def parse_sarif(data: bytes, name: str) -> tuple[list[Tool], list[SarifResult]]:
    """(tools, results) of a SARIF 2.1.0 log; InputError naming the first problem."""
    try:
        log = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{name} is not JSON: {exc}") from None
    version = log.get("version") if isinstance(log, dict) else None
    if not isinstance(log, dict) or version != "2.1.0":
        raise InputError(
            f"{name} is not a SARIF 2.1.0 log (version {version!r})",
            hint="ask the scanner for SARIF 2.1.0 output (bandit -f sarif, semgrep --sarif)",
        )
    errors = sorted(_validator().iter_errors(log), key=lambda e: list(e.absolute_path))
    if errors:
        where = "/".join(str(p) for p in errors[0].absolute_path) or "(root)"
        raise InputError(
            f"{name} does not follow the SARIF 2.1.0 schema at {where}: {errors[0].message}"
        )
    tools: list[Tool] = []
    results: list[SarifResult] = []
    for run in log["runs"]:
        driver = run["tool"]["driver"]
        tool = Tool(str(driver["name"]), driver.get("version") or driver.get("semanticVersion"))
        tools.append(tool)
        rules = driver.get("rules") or []
        for result in run.get("results") or []:
            rule_id = result.get("ruleId")
            if rule_id is None and "ruleIndex" in result and result["ruleIndex"] < len(rules):
                rule_id = rules[result["ruleIndex"]].get("id")
            location = (result.get("locations") or [{}])[0].get("physicalLocation") or {}
            region = location.get("region") or {}
            start = region.get("startLine")
            message = result.get("message") or {}
            results.append(
                SarifResult(
                    tool=tool,
                    rule_id=str(rule_id or "unknown"),
                    level=str(result.get("level") or "warning"),
                    message=str(message.get("text") or message.get("id") or ""),
                    path=_path((location.get("artifactLocation") or {}).get("uri")),
                    start_line=int(start) if start else None,
                    end_line=int(region.get("endLine") or start) if start else None,
                )
            )
    return tools, results
