"""Before-images: a file's content kept from PreToolUse to PostToolUse, never in clear.

A write's diff needs the file as it was before the agent wrote it. PreToolUse keeps
that content in the session's scratch, `.git/flowloom/sessions/<session>/before/
<name>.bin`, encrypted under a key that never enters the repository: one random 32-byte
key per session, in the user's runtime directory (`$XDG_RUNTIME_DIR/flowloom`, else
`$TMPDIR` or `/tmp` + `/flowloom-<uid>`; a private directory, 0700, owned by the user,
key files 0600; a directory that is not the user's own is never used, and then no
before-image is kept). PostToolUse (and PostToolUseFailure) read and delete it. Stop
and SessionEnd delete whatever is left and shred the key (overwritten, then unlinked),
so a copy of `.git` never carries a file's old content, a secret removed from it
included, in a readable form; the drainer deletes before-images and keys older than a
day (`sweep`), for agents that end no session (Codex sends no SessionEnd).

Cipher: a 16-byte random nonce, then the content XOR SHAKE-256(context ‖ key ‖ nonce)
as a keystream. Confidentiality only: a tampered image gives a wrong diff, nothing more,
and the `before` digest recorded is of what was decrypted. Standard library only (hooks).
"""

from __future__ import annotations

import contextlib
import os
import time

from flowloom.capture.agents.common import (
    Place,
    read_file_state,
    session_dir,
    write_atomic,
)
from flowloom.events.durable import private_dirs

__all__ = ["MAX_AGE_S", "forget_before", "key_dir", "snapshot_before", "sweep", "take_before"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

MAX_AGE_S = 86400
"""Before-images and keys older than this are deleted by the drainer."""

_MAGIC = b"FLB1"
_CONTEXT = b"flowloom before-image v1\0"
_KEY_BYTES = 32
_NONCE_BYTES = 16


def _sha256_hex(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def key_dir(env: Mapping[str, str] | None = None) -> str | None:
    """The private directory keys live in, created if needed; None when none is safe.

    It must be a real directory (not a link), owned by this user, that nobody else can
    enter: a shared `/tmp` directory someone else made first is refused.
    """
    env = os.environ if env is None else env
    runtime = env.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        path = os.path.join(runtime, "flowloom")
    else:
        path = os.path.join(env.get("TMPDIR") or "/tmp", f"flowloom-{os.getuid()}")
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return None
    try:
        info = os.lstat(path)
    except OSError:
        return None
    import stat

    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        return None
    return path


def _key_path(place: Place, session: str) -> str | None:
    directory = key_dir()
    if directory is None:
        return None
    name = _sha256_hex(f"{place.state_dir}\0{session}".encode("utf-8", "replace"))[:32]
    return os.path.join(directory, name + ".key")


def _session_key(place: Place, session: str, *, create: bool) -> bytes | None:
    path = _key_path(place, session)
    if path is None:
        return None
    try:
        with open(path, "rb") as fh:
            key = fh.read()
        if len(key) == _KEY_BYTES:
            if create:
                os.utime(path)  # in use: `sweep` takes only keys idle for a day
            return key
    except OSError:
        pass
    if not create:
        return None
    key = os.urandom(_KEY_BYTES)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another hook of this session made it first
        return _session_key(place, session, create=False)
    except OSError:
        return None
    try:
        os.write(fd, key)
    finally:
        os.close(fd)
    return key


def _stream(key: bytes, nonce: bytes, data: bytes) -> bytes:
    import hashlib

    pad = hashlib.shake_256(_CONTEXT + key + nonce).digest(len(data))
    mixed = int.from_bytes(data, "big") ^ int.from_bytes(pad, "big")
    return mixed.to_bytes(len(data), "big")


def _image_path(place: Place, session: str, tool_use: str, path: str) -> str:
    name = _sha256_hex(f"{tool_use}\0{path}".encode("utf-8", "replace"))[:24]
    return os.path.join(session_dir(place, session), "before", name)


def snapshot_before(place: Place, session: str | None, tool_use: str, path: str) -> None:
    """Keep a file's content before the agent writes it (PreToolUse), encrypted.

    A file that does not exist is noted as absent (nothing to hide). When no key can be
    kept safely, nothing is kept: the diff then falls back to what the agent reports.
    """
    session = session or "no-session"
    content = read_file_state(path)
    target = _image_path(place, session, tool_use, path)
    if content is None:
        write_atomic(target + ".absent", b"")
        return
    private_dirs(os.path.dirname(target))  # before the key: Stop looks for this directory
    key = _session_key(place, session, create=True)
    if key is None:
        return
    nonce = os.urandom(_NONCE_BYTES)
    write_atomic(target + ".bin", _MAGIC + nonce + _stream(key, nonce, content))


def take_before(
    place: Place, session: str | None, tool_use: str, path: str
) -> tuple[bool, bytes | None]:
    """The before-image `snapshot_before` kept, deleted: (found, content or None if absent).

    An image whose key is gone (shredded, swept) or that is not ours is deleted and
    counts as not found.
    """
    session = session or "no-session"
    target = _image_path(place, session, tool_use, path)
    try:
        with open(target + ".bin", "rb") as fh:
            sealed = fh.read()
        os.unlink(target + ".bin")
    except OSError:
        sealed = None
    if sealed is not None:
        key = _session_key(place, session, create=False)
        head = len(_MAGIC) + _NONCE_BYTES
        if key is None or not sealed.startswith(_MAGIC) or len(sealed) < head:
            return False, None
        return True, _stream(key, sealed[len(_MAGIC) : head], sealed[head:])
    try:
        os.unlink(target + ".absent")
        return True, None
    except OSError:
        return False, None


def _shred(path: str) -> None:
    """Overwrite a key with zeros, then remove it."""
    try:
        fd = os.open(path, os.O_WRONLY)
    except OSError:
        return
    try:
        os.write(fd, b"\0" * max(os.fstat(fd).st_size, _KEY_BYTES))
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(path)


def forget_before(place: Place, session: str | None) -> None:
    """Delete a session's before-images and shred its key (Stop, SessionEnd)."""
    session = session or "no-session"
    before = os.path.join(session_dir(place, session), "before")
    if not os.path.isdir(before):
        return  # nothing was ever kept (a key comes only with a before-image): stay light
    import shutil

    shutil.rmtree(before, ignore_errors=True)
    path = _key_path(place, session)
    if path is not None:
        _shred(path)


def sweep(state_dir: str, now: float | None = None) -> None:
    """Delete before-images and shred keys older than `MAX_AGE_S` (the drainer)."""
    cutoff = (time.time() if now is None else now) - MAX_AGE_S
    sessions = os.path.join(state_dir, "sessions")
    try:
        names = os.listdir(sessions)
    except OSError:
        names = []
    for name in names:
        before = os.path.join(sessions, name, "before")
        try:
            images = os.listdir(before)
        except OSError:
            continue
        for image in images:
            path = os.path.join(before, image)
            try:
                if os.lstat(path).st_mtime < cutoff:
                    os.unlink(path)
            except OSError:
                pass
    directory = key_dir()
    if directory is None:
        return
    try:
        keys = os.listdir(directory)
    except OSError:
        return
    for key in keys:
        path = os.path.join(directory, key)
        try:
            if key.endswith(".key") and os.lstat(path).st_mtime < cutoff:
                _shred(path)
        except OSError:
            pass
