"""The control catalogue: one TOML file per framework, versioned, read as `Framework` data.

Each file (``<framework>.toml``) has ``framework``, ``title``, ``version`` and a list of
``[[control]]`` tables with ``id``, ``clause``, ``title``, ``requirement`` (paraphrased,
never the regulation's text), ``checks`` (the automated checks that give evidence for
it) and ``manual`` (what the organisation must show itself). Keeping the catalogue as
data lets a compliance officer review it like any document and lets a new framework
be added without code.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final

from flowloom.compliance.model import Control
from flowloom.errors import ConfigError, InputError

__all__ = ["FRAMEWORKS", "Framework", "load_catalog", "load_framework"]

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
        checks = table.get("checks", [])
        if not isinstance(checks, list) or not all(isinstance(c, str) for c in checks):
            raise ConfigError(f"{here}: checks must be a list of check ids")
        manual = table.get("manual", "")
        if not isinstance(manual, str):
            raise ConfigError(f"{here}: manual must be text")
        if not checks and not manual:
            raise ConfigError(
                f"{here}: a control without checks must say what manual evidence it needs"
            )
        control = Control(
            framework=name,
            id=_text(table, "id", here),
            clause=_text(table, "clause", here),
            title=_text(table, "title", here),
            requirement=_text(table, "requirement", here),
            checks=tuple(checks),
            manual=manual,
            version=version,
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


def _text(table: dict[str, Any], key: str, where: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: {key} must be non-empty text")
    return value
