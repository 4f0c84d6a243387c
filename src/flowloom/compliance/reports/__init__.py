"""Report renderers: one registry, format name → the function that writes that format.

Every renderer has the same signature, `render(assessment, out, *, bundle_dir=None) ->
Path`, writes `out` atomically and returns it; `flowloom report --format` and the
server dispatch through `RENDERERS` (or `render`), never to a module directly.

    html                 the HTML report (self-contained, accessible, print-ready)
    pdf                  the same report laid out by WeasyPrint
    json                 the whole assessment (schema flowloom-assessment/1)
    csv                  the change population, one row per commit
    zip                  the evidence pack: all of the above, the chain-verification
                         statement, the ledger bundle (`bundle_dir`) and SHA-256 manifests
    exceptions-csv       every finding of every check
    audit-trail-csv      the Part 11 audit trail (old → new, who, when, why)
    controls-csv         controls to requirements
    chain-verification   the chain-verification statement (.json, .html, else text)

Renderer modules import lazily where they are heavy (WeasyPrint loads only for PDF).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Final, Protocol

from flowloom.compliance.model import Assessment
from flowloom.compliance.reports import certificate, evidence_pack, html, pdf
from flowloom.compliance.reports import csv as csv_reports
from flowloom.compliance.reports import json as json_report
from flowloom.errors import InputError

__all__ = ["FORMATS", "RENDERERS", "Renderer", "render"]


class Renderer(Protocol):
    """Writes one format of a report to `out` (atomically) and returns the path."""

    def __call__(
        self, assessment: Assessment, out: Path, *, bundle_dir: Path | None = None
    ) -> Path: ...


RENDERERS: Final[Mapping[str, Renderer]] = MappingProxyType(
    {
        "html": html.render,
        "pdf": pdf.render,
        "json": json_report.render,
        "csv": csv_reports.render,
        "zip": evidence_pack.render,
        "exceptions-csv": csv_reports.render_exceptions,
        "audit-trail-csv": csv_reports.render_audit_trail,
        "controls-csv": csv_reports.render_controls,
        "chain-verification": certificate.render,
    }
)

FORMATS: Final = (
    "html",
    "pdf",
    "json",
    "csv",
    "zip",
    "exceptions-csv",
    "audit-trail-csv",
    "controls-csv",
)
"""The formats `flowloom report --format`, the API and the web pages offer (the
chain-verification statement is part of the pack)."""


def render(fmt: str, assessment: Assessment, out: Path, *, bundle_dir: Path | None = None) -> Path:
    """Write `assessment` in format `fmt` to `out`; returns the path written."""
    try:
        renderer = RENDERERS[fmt]
    except KeyError:
        raise InputError(
            f"unknown report format {fmt!r}",
            hint=f"use one of: {', '.join(RENDERERS)}",
        ) from None
    return renderer(assessment, out, bundle_dir=bundle_dir)
