"""The template environment shared by the HTML report, the PDF and the chain statement.

One Jinja2 environment per render, built here, so there is no module-level state and
every template gets the same rules: autoescaping always on (commit messages and prompts
are untrusted text), undefined names are errors, and the stylesheet is inlined so the
HTML is self-contained and renders with no network access.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from importlib import resources
from types import MappingProxyType
from typing import Final

import jinja2
from markupsafe import Markup, escape

__all__ = ["STATUS_LABELS", "environment", "is_token", "short", "stylesheet", "tokens", "when"]

_PACKAGE: Final = "flowloom.compliance.reports"

STATUS_LABELS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "pass": "Automated checks cover the whole control and found nothing to report",
        "flag": "Exceptions found: flagged for review",
        "manual": "Evidence to be provided by the organisation (requested below)",
        "not_applicable": "Nothing in the period to examine (the reason is given)",
        "not_assessed": "Not assessed: a check could not look (what it needs is given)",
    }
)
"""What each of the five control statuses (and the check statuses) means, in words."""


def short(value: str | None, length: int = 12) -> str:
    """A commit or hash shortened for tables (the full value is in CSV and JSON)."""
    if not value:
        return ""
    return value[:length]


def when(value: str | None) -> str | None:
    """An event-form timestamp made readable in a table: a space for the T, no zero fraction.

    The exact value stays in the CSV and JSON; this only lets the cell wrap at the space.
    """
    if not value:
        return value
    text = value.replace("T", " ", 1)
    return text.replace(".000000Z", "Z")


_TOKEN_MARKS: Final = frozenset("@/\\=|:<>")
_HEX: Final = frozenset("0123456789abcdefABCDEF")
_LONG_WORD: Final = 24
_SPACES: Final = re.compile(r"(\s+)")


def is_token(word: str) -> bool:
    """Whether `word` is a machine token (hash, e-mail, path, identifier), not prose.

    Tokens may be broken anywhere to fit a narrow column; ordinary words never are.
    """
    bare = word.strip(".,;()[]\"'")
    if len(bare) >= _LONG_WORD:
        return True
    if len(bare) >= 12 and set(bare) <= _HEX:
        return True
    return len(bare) >= 15 and any(c in _TOKEN_MARKS for c in bare)


def tokens(value: object) -> Markup:
    """`value` escaped, with each machine token wrapped so that only tokens may break.

    The print stylesheet lets ``.token`` break anywhere (``overflow-wrap: anywhere``)
    and never breaks other words: "unlinked" stays whole, a 40-digit hash wraps.
    """
    if value is None:
        return Markup("")
    parts: list[str] = []
    for piece in _SPACES.split(str(value)):
        if piece and not piece.isspace() and is_token(piece):
            parts.append(f'<span class="token">{escape(piece)}</span>')
        else:
            parts.append(str(escape(piece)))
    return Markup("".join(parts))


def _label(status: str) -> str:
    return STATUS_LABELS.get(status, status)


def _or_dash(value: object) -> object:
    return "—" if value is None or value == "" else value


def stylesheet() -> str:
    """The report stylesheet (screen and print rules), for inlining."""
    return resources.files(_PACKAGE).joinpath("templates/report.css").read_text("utf-8")


def environment() -> jinja2.Environment:
    """A fresh environment over the packaged templates, autoescaping everything."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader(_PACKAGE, "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["short"] = short
    env.filters["label"] = _label
    env.filters["dash"] = _or_dash
    env.filters["when"] = when
    env.filters["tokens"] = tokens
    return env
