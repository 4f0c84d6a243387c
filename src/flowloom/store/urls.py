"""Database URLs: which store a URL names, read the same way everywhere.

The ledger, the directory, the gateway's access tables and the git hooks all accept a
file path, ``sqlite:///path`` or a PostgreSQL URL. SQLAlchemy's reading of the SQLite
form is the one used: ``sqlite:///ledger.db`` is relative, ``sqlite:////srv/ledger.db``
absolute. Standard library only: the git hooks import it.
"""

from __future__ import annotations

__all__ = ["is_postgres", "sqlite_path"]

_POSTGRES = ("postgresql://", "postgres://", "postgresql+psycopg://")
_SQLITE = "sqlite:///"


def is_postgres(url: str) -> bool:
    return url.startswith(_POSTGRES)


def sqlite_path(url: str) -> str | None:
    """The SQLite file (or ``:memory:``) that `url` names; None for PostgreSQL.

    Raises ValueError for any other scheme.
    """
    if is_postgres(url):
        return None
    if url.startswith(_SQLITE):
        return url[len(_SQLITE) :]
    if "://" in url:
        raise ValueError(f"unsupported database URL scheme {url.split('://', 1)[0]!r}")
    return url
