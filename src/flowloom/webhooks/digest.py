"""The email digest: what a project recorded since a person's last digest, in counts.

Kinds and how often each was recorded, and the decisions recorded (their ids, linking to
their pages): enough to know what to look at, never a body. Built when the digest is
queued, so it covers exactly the ledger range the subscription's cursor moved over.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

from flowloom.store.interface import StoredEntry

__all__ = ["DIGEST", "digest_summary", "digest_text"]

DIGEST = "email-digest"
"""A person's periodic digest of a project (made from their preferences)."""
_LISTED = 20


def digest_summary(project: str, entries: Iterable[StoredEntry], public_url: str) -> dict[str, Any]:
    counts: Counter[str] = Counter()
    decisions: list[str] = []
    first = last = None
    for entry in entries:
        counts[entry.kind] += 1
        first = entry.index if first is None else first
        last = entry.index
        if entry.kind == "decision.record":
            subject = json.loads(entry.envelope).get("subject")
            if isinstance(subject, str) and len(decisions) < _LISTED:
                decisions.append(subject)
    base = f"{public_url.rstrip('/')}/ui/projects/{quote(project, safe='')}"
    return {
        "project": project,
        "first": first,
        "last": last,
        "counts": dict(sorted(counts.items())),
        "decisions": [{"id": d, "url": f"{base}/decisions/{quote(d, safe='')}"} for d in decisions],
        "url": base,
    }


def digest_text(summary: dict[str, Any]) -> tuple[str, str]:
    """(subject, plain text) of a digest email."""
    project = summary["project"]
    counts: dict[str, int] = summary["counts"]
    total = sum(counts.values())
    lines = [f"{project}: {total} event{'s' if total != 1 else ''} since your last digest."]
    if total:
        lines.append(f"Entries #{summary['first']} to #{summary['last']}:")
        lines += [f"  {kind}: {count}" for kind, count in counts.items()]
    if summary["decisions"]:
        lines += ["", "Decisions recorded:"]
        lines += [f"  {d['id']}: {d['url']}" for d in summary["decisions"]]
    lines += ["", f"Open the project: {summary['url']}", ""]
    lines.append("You receive this because of your FlowLoom notification preferences.")
    return f"[FlowLoom] Digest for {project}", "\n".join(lines)
