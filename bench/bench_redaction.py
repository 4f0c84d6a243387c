#!/usr/bin/env python3
"""Redaction cost: what scrubbing secrets adds to every prompt and every diff a hook records.

What it measures: `redact_text` on a typical prompt (about 1.3 KB) and on a 2,000-line
diff, median and p95 over `--n` runs. The peer, in the same run over the same text: one
pass of a single compiled secret pattern (`re.search` for an AWS key id), the least a
redactor that looks for anything at all can cost.
Goal: a prompt in <= 2 ms at the median (a hook runs on every prompt), a 2,000-line diff
in <= 0.5 s.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT / "src", ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from bench._common import emit, latency_summary_ms, machine, note, ratio  # noqa: E402
from flowloom.events.redaction import redact_text  # noqa: E402

PROMPT = (
    "Refactor the payment retry loop in src/payments/retry.py so that it backs off "
    "exponentially, keeps the API key out of the logs, and add tests. " * 8
)
DIFF = "\n".join(f"+    value_{i} = compute(token_count={i}, key='k{i}')" for i in range(2000))
FLOOR = re.compile(r"AKIA[0-9A-Z]{16}")


def _times(work: Callable[[], object], n: int) -> list[float]:
    work()  # patterns compile on first use
    seconds = []
    for _ in range(n):
        started = time.perf_counter()
        work()
        seconds.append(time.perf_counter() - started)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="runs per figure")
    args = parser.parse_args()
    emit("machine", None, "", **machine())
    for name, text, goal_ms in (("prompt", PROMPT, 2.0), ("diff_2000_lines", DIFF, 500.0)):
        note(f"redacting a {name} ({len(text)} bytes) {args.n} times")
        ours = latency_summary_ms(_times(lambda t=text: redact_text(t), args.n))
        floor = latency_summary_ms(_times(lambda t=text: FLOOR.search(t), args.n))
        emit(
            f"redact_{name}",
            ours["p50_ms"],
            "ms",
            p95_ms=ours["p95_ms"],
            bytes=len(text),
            floor_p50_ms=floor["p50_ms"],
            ratio_to_floor=ratio(ours["p50_ms"], floor["p50_ms"]),
            goal_ms=goal_ms,
            meets_goal=ours["p50_ms"] <= goal_ms,
        )


if __name__ == "__main__":
    main()
