"""Key files: the log's Ed25519 signing key and the master key that wraps body keys.

Keys live under FLOWLOOM_HOME/keys, are generated on first use with mode 0600 (created
exclusively, so two processes starting at once end with one key), and are never printed
or logged. A key file readable by group or others is refused, as ssh does.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from flowloom.errors import KeyFileError

if TYPE_CHECKING:
    from flowloom.ledger.note import Signer

__all__ = ["KeyStore"]

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


class KeyStore:
    """Finds or creates key files in one directory."""

    def __init__(self, home: Path) -> None:
        self.directory = home / "keys"

    def _path(self, stem: str, suffix: str) -> Path:
        return self.directory / f"{_SAFE.sub('_', stem)}{suffix}"

    def has_signer(self, origin: str) -> bool:
        """Whether log `origin` already has a signing key (a cheap file check)."""
        return self._path(origin, ".skey").exists()

    def signer(self, origin: str) -> tuple[Signer, bool]:
        """The signer for log `origin` and whether it was just generated."""
        from flowloom.ledger.note import Signer  # loads OpenSSL: only when signing

        path = self._path(origin, ".skey")
        created = False
        if not path.exists():
            created = self._create(path, Signer.generate(origin).to_skey().encode())
        text = self._read(path).decode("utf-8", "replace").strip()
        try:
            signer = Signer.from_skey(text)
        except Exception as exc:
            raise KeyFileError(f"signing key file {path} is malformed") from exc
        if signer.name != origin:
            raise KeyFileError(
                f"signing key file {path} is for log {signer.name!r}, not {origin!r}"
            )
        return signer, created

    def master_key(self) -> bytes:
        """The 32-byte key that wraps per-data-subject body keys."""
        path = self._path("master", ".key")
        if not path.exists():
            self._create(path, base64.b64encode(os.urandom(32)) + b"\n")
        try:
            key = base64.b64decode(self._read(path).strip(), validate=True)
        except ValueError as exc:
            raise KeyFileError(f"master key file {path} is malformed") from exc
        if len(key) != 32:
            raise KeyFileError(f"master key file {path} does not hold a 32-byte key")
        return key

    def _create(self, path: Path, content: bytes) -> bool:
        """Write a new key file atomically; False when another process won the race.

        The key is written and synced under a temporary name, then hard-linked into
        place, so a process killed midway never leaves an empty or partial key file.
        """
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, tmp = tempfile.mkstemp(prefix=".new-", dir=self.directory)
        except OSError as exc:
            raise KeyFileError(f"cannot create key file {path}: {exc.strerror}") from exc
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, content)
            os.fsync(fd)
            os.close(fd)
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
            except OSError as exc:
                raise KeyFileError(f"cannot create key file {path}: {exc.strerror}") from exc
            dir_fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)  # the new name must survive a power cut too
            finally:
                os.close(dir_fd)
            return True
        finally:
            with contextlib.suppress(OSError):
                os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def _read(self, path: Path) -> bytes:
        try:
            mode = path.stat().st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise KeyFileError(
                    f"key file {path} is readable by others",
                    hint=f"run: chmod 600 {path}",
                )
            return path.read_bytes()
        except OSError as exc:
            raise KeyFileError(f"cannot read key file {path}: {exc.strerror}") from exc
