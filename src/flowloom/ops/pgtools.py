"""Running PostgreSQL's own tools (pg_dump, pg_restore) against a FlowLoom database URL.

The URL may carry a password; it goes to the tool in PGPASSWORD, never on its command
line (other users can read a process's arguments) and never into a message.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any

from flowloom.errors import InputError, StoreError

__all__ = ["PgConnection"]

_ALIASES = ("postgresql+psycopg://", "postgres://")


class PgConnection:
    """One PostgreSQL database, for psycopg and for the command-line tools."""

    def __init__(self, url: str) -> None:
        from psycopg.conninfo import conninfo_to_dict

        for alias in _ALIASES:
            if url.startswith(alias):
                url = "postgresql://" + url[len(alias) :]
        try:
            self._params: dict[str, Any] = conninfo_to_dict(url)
        except Exception as exc:  # psycopg.ProgrammingError: the URL itself is bad
            raise InputError("the PostgreSQL URL cannot be parsed") from exc
        self._url = url

    def connect(self) -> Any:
        """A psycopg connection (autocommit: the caller opens its transaction)."""
        import psycopg

        try:
            return psycopg.connect(self._url, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to PostgreSQL: {' '.join(str(exc).split())}") from exc

    def run(self, tool: str, args: list[str]) -> None:
        """Run ``tool`` with ``args`` on this database; StoreError with its message if it fails."""
        from psycopg.conninfo import make_conninfo

        found = shutil.which(tool)
        if found is None:
            raise StoreError(
                f"{tool} is not installed",
                hint="install the PostgreSQL client tools of the server's major version",
            )
        params = dict(self._params)
        env = dict(os.environ)
        password = params.pop("password", None)
        if password:
            env["PGPASSWORD"] = str(password)
        conninfo = make_conninfo(**{k: str(v) for k, v in params.items()})
        result = subprocess.run(
            [found, f"--dbname={conninfo}", *args],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            tail = " ".join(result.stderr.strip().splitlines()[-3:])
            raise StoreError(f"{tool} failed (exit {result.returncode}): {tail}")
