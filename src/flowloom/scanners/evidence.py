"""The `scan.result` event: scanner results bound to the scanned tree and to decisions.

Like test results, a scan is of a *tree* (what the code was, whatever commit carries
it), so the working tree must be HEAD's when it is recorded. Each result's flagged line
is followed to the decision behind it with the `why` walk (git blame, then the commit's
trailer or link); the refs list the results (capped) with their decisions, the body is
the SARIF file itself.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from flowloom.scanners.sarif import SarifResult, Tool

__all__ = ["KIND", "ScanEvidence"]

KIND: Final = "scan.result"
RESULTS_LISTED: Final = 200

DecisionOf = Callable[[str, int], str | None]
"""(path, line) → the id of the decision behind that line, or None."""


@dataclass(frozen=True)
class ScanEvidence:
    tools: tuple[Tool, ...]
    results: tuple[SarifResult, ...]
    decisions: tuple[str | None, ...]
    commit: str
    tree: str
    digest: str
    name: str

    @classmethod
    def of(
        cls,
        tools: Sequence[Tool],
        results: Sequence[SarifResult],
        *,
        commit: str,
        tree: str,
        data: bytes,
        name: str,
        root: Path | None,
        decision_of: DecisionOf,
    ) -> ScanEvidence:
        decisions: list[str | None] = []
        cache: dict[tuple[str, int], str | None] = {}
        for result in results:
            path = _relative(result.path, root)
            if path is None or result.start_line is None:
                decisions.append(None)
                continue
            key = (path, result.start_line)
            if key not in cache:
                cache[key] = decision_of(path, result.start_line)
            decisions.append(cache[key])
        return cls(
            tuple(tools),
            tuple(results),
            tuple(decisions),
            commit,
            tree,
            "sha256:" + hashlib.sha256(data).hexdigest(),
            name,
        )

    @property
    def levels(self) -> dict[str, int]:
        return dict(sorted(Counter(r.level for r in self.results).items()))

    def meta(self) -> dict[str, Any]:
        listed = [
            {
                "tool": r.tool.name,
                "rule": r.rule_id,
                "level": r.level,
                "path": r.path,
                "line": r.start_line,
                "decision": d,
            }
            for r, d in zip(self.results[:RESULTS_LISTED], self.decisions, strict=False)
        ]
        return {
            "subject": self.tree,
            "git": {"head": self.commit},
            "refs": {
                "tree": self.tree,
                "commit": self.commit,
                "file": self.name,
                "sarif_digest": self.digest,
                "tools": [{"name": t.name, "version": t.version} for t in self.tools],
                "total": len(self.results),
                "levels": self.levels,
                "errors": self.levels.get("error", 0),
                "decisions": sorted({d for d in self.decisions if d}),
                "results": listed,
                "listed": len(listed),
            },
        }


def _relative(path: str | None, root: Path | None) -> str | None:
    if path is None:
        return None
    candidate = Path(path)
    if candidate.is_absolute():
        if root is None:
            return None
        try:
            return candidate.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            return None
    return candidate.as_posix()
