"""Numbered schema migrations, one folder of SQL files per dialect.

Files are named NNNN_description.sql and applied in order, each exactly once, when a
store opens; the applied versions are kept in schema_migrations. The same layout serves
the other components that keep tables beside the ledger (directory, gateway access,
memory index): each passes its own package to `load_migrations`. Standard library only,
so the ledger's import path stays light; the SQLAlchemy-based components apply theirs
with `flowloom.store.sqlmigrations`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

__all__ = ["Migration", "load_migrations"]

_NAME_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    """One schema step."""

    version: int
    name: str
    sql: str


def load_migrations(
    dialect: str, package: str = "flowloom.store", what: str = "migrations"
) -> list[Migration]:
    """The migrations in `package`'s ``migrations/<dialect>/`` folder, in version order.

    `what` names them in the error a misnumbered folder raises ("directory migrations").
    """
    folder = resources.files(package).joinpath("migrations", dialect)
    found: list[Migration] = []
    for item in folder.iterdir():
        match = _NAME_RE.match(item.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), item.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"{dialect} {what} are not numbered 1..n: {versions}")
    return found
