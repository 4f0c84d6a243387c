"""Attribute sampling of the change population for the auditor's manual tests.

The sample size follows the table auditors commonly use for tests of controls (after
the AICPA audit guide on sampling): the control's frequency gives a range, the low end
for a control whose automated checks found no exception, the high end when they did
(more risk, more testing); a population smaller than that is tested whole. A change
control operates once per change, so its frequency is the population's own rate over
the period, annualised.

The draw is reproducible by anyone: the items are the commits with the smallest
SHA-256 of ``seed ":" commit`` (hex), so the same seed always draws the same sample
(`sha256sum` gives the same order). The seed is recorded in the assessment; by default
it is derived from the checkpoint's root hash, which nobody can choose in advance.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import timedelta
from typing import Final

from flowloom.compliance.model import Sampling

__all__ = ["FREQUENCY_TABLE", "default_seed", "draw", "frequency_of"]

FREQUENCY_TABLE: Final = (
    ("annual", "fewer than 4 a year", 1, 1),
    ("quarterly", "4 to 11 a year", 2, 2),
    ("monthly", "12 to 51 a year", 2, 5),
    ("weekly", "52 to 249 a year", 5, 15),
    ("daily", "250 to 499 a year", 20, 40),
    ("multiple times daily", "500 or more a year", 25, 60),
)
"""(frequency, how often the control operates, smallest sample, largest sample)."""

_THRESHOLDS: Final = (500, 250, 52, 12, 4, 0)
METHOD: Final = (
    "attribute sampling without replacement: the commits with the smallest SHA-256 of "
    "'<seed>:<commit>' (hex, as sha256sum prints it), in that order"
)


def frequency_of(population: int, length: timedelta) -> str:
    """The frequency a per-change control operates at: the population's annualised rate."""
    days = max(length / timedelta(days=1), 1.0)
    per_year = population * 365.0 / days
    for (name, _when, _low, _high), threshold in zip(
        reversed(FREQUENCY_TABLE), _THRESHOLDS, strict=True
    ):
        if per_year >= threshold:
            return name
    return "annual"


def default_seed(framework: str, period_from: str, period_to: str, root: str) -> str:
    """A seed nobody could pick in advance: derived from the checkpoint's root hash."""
    text = f"flowloom-sample\n{framework}\n{period_from}\n{period_to}\n{root}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _rank(seed: str, commit: str) -> str:
    return hashlib.sha256(f"{seed}:{commit}".encode()).hexdigest()


def draw(commits: Sequence[str], *, length: timedelta, seed: str, exceptions: bool) -> Sampling:
    """The sample of `commits` (the population) for a period of `length`."""
    population = len(commits)
    frequency = frequency_of(population, length)
    _, when, low, high = next(row for row in FREQUENCY_TABLE if row[0] == frequency)
    wanted = high if exceptions else low
    size = min(wanted, population)
    end = "high" if exceptions else "low"
    why = "the automated checks flagged exceptions" if exceptions else "no exception flagged"
    basis = (
        f"{population} changes in the period: a control operating {frequency} ({when}); "
        f"the {end} end of {low}–{high} ({why})"
    )
    if size < wanted:
        basis += f"; the population is smaller than {wanted}, so every change is tested"
    if population == 0:
        basis = "no change in the period: nothing to sample"
    ranked = sorted(dict.fromkeys(commits), key=lambda c: _rank(seed, c))
    return Sampling(
        population=population,
        frequency=frequency,
        size=size,
        seed=seed,
        method=METHOD,
        basis=basis,
        items=tuple(ranked[:size]),
        table=FREQUENCY_TABLE,
    )
