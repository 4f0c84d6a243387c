"""Key files: the log's Ed25519 signing key and the master key that wraps body keys.

Keys live under FLOWLOOM_HOME/keys with mode 0600, created exclusively (so two processes
starting at once end with one key), and are never printed or logged. A key file readable
by group or others is refused, as ssh does.

A log's signing key is ``<origin>.skey``; a key rotated out of use is kept as
``<origin>.<key id>.skey`` (and a new key is written there before it takes over), so
every key a log was ever signed by can still be found by its key id. Which key a log
uses is the log's own record (`flowloom.ledger.keyring`), not whichever file is here:
only `signer` and `master_key` create keys, and only writers call them.

`KeyStore` is the file provider of signing keys and `FileMasterKeys` the file provider
of master keys (`flowloom.ledger.keyprovider`): the default, today's behaviour. The
master key in use is ``master.key``; one rotated out is kept as ``master.<ref>.key``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from flowloom.errors import KeyFileError, KeyMissingError

if TYPE_CHECKING:
    from flowloom.ledger.keyprovider import Envelope
    from flowloom.ledger.note import Signer, Verifier

__all__ = [
    "FileMasterKey",
    "FileMasterKeys",
    "InMemoryMasterKeys",
    "KeyStore",
    "in_memory_envelope",
]

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


class KeyStore:
    """Finds or creates key files in one directory."""

    provider = "file"

    def __init__(self, home: Path) -> None:
        self.directory = home / "keys"

    @property
    def location(self) -> str:
        return str(self.directory)

    def expected(self, name: str, key_id: bytes) -> str:
        return f"{self.active_path(name).name} or {self.archived_path(name, key_id).name}"

    def _path(self, stem: str, suffix: str) -> Path:
        return self.directory / f"{_SAFE.sub('_', stem)}{suffix}"

    def active_path(self, origin: str) -> Path:
        """Where the signing key in use for log `origin` is kept."""
        return self._path(origin, ".skey")

    def archived_path(self, name: str, key_id: bytes) -> Path:
        """Where the key `name`+`key_id` is kept by its key id (rotated keys)."""
        return self._path(name, f".{key_id.hex()}.skey")

    def has_signer(self, origin: str) -> bool:
        """Whether log `origin` already has a signing key (a cheap file check)."""
        return self.active_path(origin).exists()

    def signer(self, origin: str) -> tuple[Signer, bool]:
        """The signer for log `origin` and whether it was just generated.

        Creates the key when there is none: only for the first write to a new log.
        """
        from flowloom.ledger.note import Signer  # loads OpenSSL: only when signing

        path = self.active_path(origin)
        created = False
        if not path.exists():
            created = self._create(path, Signer.generate(origin).to_skey().encode())
        return self._load(path, origin), created

    def find(self, verifier: Verifier) -> Signer | None:
        """The private key of `verifier` if this home holds it (never creates one)."""
        signer = self.find_id(verifier.name, verifier.key_id)
        return signer if signer is not None and signer.verifier() == verifier else None

    def find_id(self, name: str, key_id: bytes) -> Signer | None:
        """The private key named `name` with key id `key_id`, if this home holds it."""
        for path in (self.active_path(name), self.archived_path(name, key_id)):
            if path.exists():
                signer = self._load(path, name)
                if signer.key_id == key_id:
                    return signer
        return None

    def active(self, origin: str) -> Signer | None:
        """The key in use for `origin` if there is one (never creates one)."""
        path = self.active_path(origin)
        return self._load(path, origin) if path.exists() else None

    def generate(self, origin: str) -> Signer:
        """A new key for `origin`, kept under its key id until `activate` puts it in use."""
        from flowloom.ledger.note import Signer

        signer = Signer.generate(origin)
        path = self.archived_path(origin, signer.key_id)
        if not self._create(path, signer.to_skey().encode()):
            raise KeyFileError(f"key file {path} already exists")
        return signer

    def archive(self, signer: Signer) -> None:
        """Keep `signer` under its key id too, so it is found after it is rotated out."""
        path = self.archived_path(signer.name, signer.key_id)
        if not path.exists():
            self._create(path, signer.to_skey().encode())

    def activate(self, signer: Signer) -> None:
        """Make `signer` the key in use for its log (atomically replacing the old one).

        The key must already be kept under its key id (`generate`), and the old one too
        (`archive`): at every moment both can be found by `find`.
        """
        path = self.active_path(signer.name)
        tmp = self._path(signer.name, f".{signer.key_id.hex()}.activating")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if not self._create(tmp, signer.to_skey().encode()):
            raise KeyFileError(f"cannot create key file {tmp}")
        try:
            os.replace(tmp, path)
            self._sync_directory()
        except OSError as exc:
            raise KeyFileError(f"cannot replace key file {path}: {exc.strerror}") from exc

    def _sync_directory(self) -> None:
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the new name must survive a power cut too
        finally:
            os.close(dir_fd)

    def _load(self, path: Path, origin: str) -> Signer:
        from flowloom.ledger.note import Signer

        text = self._read(path).decode("utf-8", "replace").strip()
        try:
            signer = Signer.from_skey(text)
        except Exception as exc:
            raise KeyFileError(f"signing key file {path} is malformed") from exc
        if signer.name != origin:
            raise KeyFileError(
                f"signing key file {path} is for log {signer.name!r}, not {origin!r}"
            )
        return signer

    def master_key(self, *, create: bool = True) -> bytes:
        """The 32-byte key that wraps per-data-subject body keys.

        Readers pass create=False: a missing master key is then an error, not a new key.
        """
        path = self._path("master", ".key")
        if not path.exists():
            if not create:
                raise KeyMissingError(
                    f"the master key that decrypts data subjects' bodies is not at {path}",
                    hint="set FLOWLOOM_HOME to the home that holds it",
                )
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
            self._sync_directory()
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


_NONCE_SIZE = 12


class FileMasterKey:
    """A 32-byte master key held in memory (read from a key file): AES-256-GCM."""

    def __init__(self, raw: bytes, path: Path) -> None:
        if len(raw) != 32:
            raise KeyFileError(f"master key file {path} does not hold a 32-byte key")
        self.raw = raw
        self.path = path
        # The reference names the key without revealing it: 64 bits of a domain-separated hash.
        self.ref = "file:" + hashlib.sha256(b"flowloom master key\n" + raw).hexdigest()[:16]

    def encrypt(self, plaintext: bytes, context: bytes) -> bytes:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        nonce = os.urandom(_NONCE_SIZE)
        return nonce + AESGCM(self.raw).encrypt(nonce, plaintext, context)

    def decrypt(self, ciphertext: bytes, context: bytes) -> bytes:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        try:
            return AESGCM(self.raw).decrypt(
                ciphertext[:_NONCE_SIZE], ciphertext[_NONCE_SIZE:], context
            )
        except InvalidTag as exc:
            raise KeyFileError(
                f"master key {self.ref} cannot decrypt this data key: wrong key or damaged row"
            ) from exc


class FileMasterKeys:
    """Master keys in key files: ``master.key`` in use, ``master.<ref>.key`` rotated out."""

    provider = "file"

    def __init__(self, store: KeyStore) -> None:
        self._store = store

    @property
    def location(self) -> str:
        return str(self._store.directory)

    def active(self, *, create: bool) -> FileMasterKey:
        path = self._store._path("master", ".key")
        return FileMasterKey(self._store.master_key(create=create), path)

    def _archived(self) -> list[Path]:
        if not self._store.directory.is_dir():
            return []
        return sorted(self._store.directory.glob("master.*.key"))

    def _load(self, path: Path) -> FileMasterKey:
        try:
            raw = base64.b64decode(self._store._read(path).strip(), validate=True)
        except ValueError as exc:
            raise KeyFileError(f"master key file {path} is malformed") from exc
        return FileMasterKey(raw, path)

    def legacy(self) -> list[FileMasterKey]:
        found: list[FileMasterKey] = []
        active = self._store._path("master", ".key")
        for path in [active, *self._archived()]:
            if path.exists():
                found.append(self._load(path))
        return found

    def find(self, ref: str) -> FileMasterKey | None:
        if not ref.startswith("file:"):
            return None
        for key in self.legacy():
            if key.ref == ref:
                return key
        return None

    def rotate(self, to: str | None) -> tuple[FileMasterKey | None, FileMasterKey]:
        if to is not None:
            raise KeyFileError(
                "a master key file cannot be rotated to a named key",
                hint="leave out --to: a new key file is generated",
            )
        active_path = self._store._path("master", ".key")
        old = self._load(active_path) if active_path.exists() else None
        raw = os.urandom(32)
        new = FileMasterKey(raw, active_path)
        content = base64.b64encode(raw) + b"\n"
        archived_new = self._store._path("master", f".{new.ref[5:]}.key")
        if not self._store._create(archived_new, content):
            raise KeyFileError(f"key file {archived_new} already exists")
        if old is not None:
            archived_old = self._store._path("master", f".{old.ref[5:]}.key")
            if not archived_old.exists():
                self._store._create(archived_old, base64.b64encode(old.raw) + b"\n")
        tmp = self._store._path("master", f".{new.ref[5:]}.activating")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if not self._store._create(tmp, content):
            raise KeyFileError(f"cannot create key file {tmp}")
        try:
            os.replace(tmp, active_path)
            self._store._sync_directory()
        except OSError as exc:
            raise KeyFileError(f"cannot replace key file {active_path}: {exc.strerror}") from exc
        return old, new


class InMemoryMasterKeys:
    """One master key held in memory, nothing to rotate: what raw bytes stand for."""

    provider = "memory"
    location = "memory"

    def __init__(self, key: FileMasterKey) -> None:
        self._key = key

    def active(self, *, create: bool) -> FileMasterKey:
        return self._key

    def find(self, ref: str) -> FileMasterKey | None:
        return self._key if ref == self._key.ref else None

    def legacy(self) -> list[FileMasterKey]:
        return [self._key]

    def rotate(self, to: str | None) -> tuple[FileMasterKey | None, FileMasterKey]:
        raise KeyFileError("a master key given in memory cannot be rotated")


def in_memory_envelope(raw: bytes) -> Envelope:
    """An envelope over one master key given as raw bytes (tests, tools)."""
    from flowloom.ledger.keyprovider import Envelope

    return Envelope(InMemoryMasterKeys(FileMasterKey(raw, Path("(memory)"))), create=False)
