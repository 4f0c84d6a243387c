"""The JSON report: the whole assessment in its stable, documented schema.

The document is `Assessment.to_json()` (schema "flowloom-assessment/1", described in
docs/reports.md), written as UTF-8 with two-space indentation and keys in the schema's
order. It holds everything the other formats show, so any of them can be rebuilt from
it with `Assessment.from_json`. `json.dump` encodes piece by piece, so the text is
streamed to disk rather than built as one string.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

from flowloom.compliance.model import Assessment
from flowloom.compliance.reports.atomic import atomic_text

__all__ = ["SCHEMA", "document", "render", "to_bytes"]

SCHEMA: Final = "flowloom-assessment/1"


def document(assessment: Assessment) -> dict[str, Any]:
    """The JSON document of an assessment (what `render` writes)."""
    data = assessment.to_json()
    data.setdefault("format", SCHEMA)
    return data


def to_bytes(assessment: Assessment) -> bytes:
    """Exactly the bytes `render` writes (the assessment's digest is taken over them)."""
    text = json.dumps(document(assessment), indent=2, ensure_ascii=False) + "\n"
    return text.encode("utf-8")


def render(assessment: Assessment, out: Path, *, bundle_dir: Path | None = None) -> Path:
    """Write the assessment as JSON to `out`."""
    with atomic_text(out, newline="\n") as handle:
        json.dump(document(assessment), handle, indent=2, ensure_ascii=False)
        handle.write("\n")
    return out
