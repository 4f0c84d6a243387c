"""The control catalogue: one TOML file per framework, versioned, read as `Framework` data.

Each file (``<framework>.toml``) has ``framework``, ``title``, ``version`` and a list of
``[[control]]`` tables with ``id``, ``clause`` (exactly as the framework numbers it),
``title``, ``requirement`` (paraphrased, never the regulation's text), ``checks`` (the
automated checks that give evidence for it), ``automated`` (what exactly those checks
evidence), ``manual`` (what stays with the organisation) and ``requests`` (that
evidence, one item each, as an auditor's request list). A control has checks, or
requests, or both (partly automated); checks without ``automated`` or requests without
``manual`` are refused, so no control claims more than it says. Keeping the catalogue
as data lets a compliance officer review it like any document and lets a new framework
be added without code.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final

from flowloom.compliance.model import Control
from flowloom.errors import ConfigError, InputError

__all__ = [
    "FRAMEWORKS",
    "Framework",
    "catalog_markdown",
    "load_catalog",
    "load_framework",
]

FRAMEWORKS: Final = (
    "sox",
    "part11",
    "iso27001",
    "hipaa",
    "gdpr",
    "soc2",
    "euaiact",
    "ssdf",
    "sec17a4",
)
"""The frameworks shipped, in the order the CLI lists them."""


@dataclass(frozen=True)
class Framework:
    """One framework's controls as the catalogue file gives them."""

    name: str
    title: str
    version: str
    controls: tuple[Control, ...]

    @property
    def checks(self) -> tuple[str, ...]:
        """Every check some control of this framework relies on, without repeats."""
        return tuple(dict.fromkeys(c for control in self.controls for c in control.checks))


def load_framework(name: str) -> Framework:
    """The framework `name` from the packaged catalogue; InputError for an unknown one."""
    if name not in FRAMEWORKS:
        raise InputError(
            f"unknown framework {name!r}", hint=f"choose one of: {', '.join(FRAMEWORKS)}"
        )
    text = resources.files(__name__).joinpath(f"{name}.toml").read_text("utf-8")
    return parse_framework(text, where=f"{name}.toml")


def load_catalog() -> dict[str, Framework]:
    """Every shipped framework by name."""
    return {name: load_framework(name) for name in FRAMEWORKS}


def parse_framework(text: str, *, where: str) -> Framework:
    """Read one catalogue file; ConfigError naming the file and field when it is malformed."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"catalogue {where} is not valid TOML: {exc}") from exc
    name = _text(data, "framework", where)
    version = _text(data, "version", where)
    controls = []
    seen: set[str] = set()
    for position, table in enumerate(data.get("control", [])):
        here = f"{where} control #{position + 1}"
        if not isinstance(table, dict):
            raise ConfigError(f"{here} must be a table")
        checks = _texts(table, "checks", here)
        requests = _texts(table, "requests", here)
        automated = _optional(table, "automated", here)
        manual = _optional(table, "manual", here)
        if not checks and not requests:
            raise ConfigError(
                f"{here}: a control without checks must list the manual evidence it needs "
                "(requests)"
            )
        if checks and not automated:
            raise ConfigError(f"{here}: say what the checks evidence (automated)")
        if bool(requests) != bool(manual):
            raise ConfigError(f"{here}: manual and requests go together")
        unknown = set(table) - _KEYS
        if unknown:
            raise ConfigError(f"{here}: unknown keys {', '.join(sorted(unknown))}")
        control = Control(
            framework=name,
            id=_text(table, "id", here),
            clause=_text(table, "clause", here),
            title=_text(table, "title", here),
            requirement=_text(table, "requirement", here),
            checks=tuple(checks),
            manual=manual,
            version=version,
            automated=automated,
            requests=tuple(requests),
        )
        if control.id in seen:
            raise ConfigError(f"{here}: duplicate control id {control.id!r}")
        seen.add(control.id)
        controls.append(control)
    if not controls:
        raise ConfigError(f"catalogue {where} has no [[control]] tables")
    return Framework(
        name=name, title=_text(data, "title", where), version=version, controls=tuple(controls)
    )


_KEYS: Final = frozenset(
    {"id", "clause", "title", "requirement", "checks", "automated", "manual", "requests"}
)


def _texts(table: dict[str, Any], key: str, where: str) -> list[str]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(f"{where}: {key} must be a list of non-empty texts")
    return value


def _optional(table: dict[str, Any], key: str, where: str) -> str:
    value = table.get(key, "")
    if not isinstance(value, str):
        raise ConfigError(f"{where}: {key} must be text")
    return value.strip()


def catalog_markdown() -> str:
    """The catalogue as Markdown tables, one per framework (docs/compliance.md holds
    exactly this text, so the documentation cannot drift from the data)."""
    parts: list[str] = []
    for spec in load_catalog().values():
        parts.append(f"### {spec.title} (`{spec.name}`, catalogue {spec.version})\n")
        parts.append(_HEADER)
        for c in spec.controls:
            checks = ", ".join(f"`{check}`" for check in c.checks)
            automated = f"{checks}: {c.automated}" if c.checks else "—"
            requested = "".join(f"<br>• {r}" for r in c.requests)
            manual = f"{c.manual}{requested}" if c.requests else "—"
            cells = (c.clause, f"{c.title} ({c.coverage})", automated, manual)
            parts.append("| " + " | ".join(_cell(x) for x in cells) + " |")
        parts.append("")
    return "\n".join(parts)


_HEADER: Final = (
    "| Clause | Control | Automated checks: what they evidence | What stays manual: evidence "
    "requested |\n|---|---|---|---|"
)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _text(table: dict[str, Any], key: str, where: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: {key} must be non-empty text")
    return value
