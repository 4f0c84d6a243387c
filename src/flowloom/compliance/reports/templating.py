"""The template environment shared by the HTML report, the PDF and the chain statement.

One Jinja2 environment per render, built here, so there is no module-level state and
every template gets the same rules: autoescaping always on (commit messages and prompts
are untrusted text), undefined names are errors, and the stylesheet is inlined so the
HTML is self-contained and renders with no network access.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from types import MappingProxyType
from typing import Final

import jinja2

__all__ = ["STATUS_LABELS", "environment", "short", "stylesheet", "when"]

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
    return env
