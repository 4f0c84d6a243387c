"""The SSH key git signs commits with, for signing FlowLoom approvals the same way.

It reads git's configuration (`gpg.format`, `user.signingkey`), so it lives with git,
not in the ledger: the ledger's SSH signatures (`flowloom.ledger.sshsig`) take a key
file and never run git.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from flowloom.errors import ConfigError
from flowloom.ledger.sshsig import (
    SSHSIG_NAMESPACE,
    SshPublicKey,
    SshSignatureFormatError,
    sign_with_ssh_keygen,
)
from flowloom.repo.git import GitRepo

__all__ = ["git_signing_key", "sign_with_git_key"]


@contextlib.contextmanager
def git_signing_key(repo: Path) -> Iterator[Path]:
    """The key git would sign commits with in `repo`, as a file ssh-keygen can use.

    Requires `gpg.format` = ssh. `user.signingkey` is a path (`~` expanded, relative
    paths from the work tree's top) or a literal public key (`key::ssh-ed25519 AAAA...`,
    or the older bare `ssh-ed25519 AAAA...`), which is written to a private temporary
    file for the duration of the `with` block; its private key must then be in ssh-agent.
    """
    git = GitRepo(repo)
    fmt = git.config_get("gpg.format")
    if fmt != "ssh":
        raise ConfigError(
            f"git in {repo} is not set up for SSH signing (gpg.format is {fmt or 'openpgp'})",
            hint="git config gpg.format ssh && git config user.signingkey ~/.ssh/id_ed25519.pub",
        )
    value = (git.config_get("user.signingkey") or "").strip()
    if not value:
        raise ConfigError(
            f"git in {repo} has no user.signingkey",
            hint="git config user.signingkey ~/.ssh/id_ed25519.pub",
        )
    literal = value.removeprefix("key::") if value.startswith("key::") else None
    if literal is None and value.startswith("ssh-"):
        literal = value
    if literal is None:
        path = Path(value).expanduser()
        yield path if path.is_absolute() else git.top() / path
        return
    try:
        SshPublicKey.from_openssh(literal)
    except SshSignatureFormatError as exc:
        raise ConfigError(f"user.signingkey is not a usable public key: {exc.message}") from None
    with tempfile.TemporaryDirectory(prefix="flowloom-sshkey-") as scratch:
        path = Path(scratch) / "signingkey.pub"
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(literal + "\n")
        yield path


def sign_with_git_key(
    message: bytes,
    repo: Path,
    namespace: str = SSHSIG_NAMESPACE,
    *,
    env: Mapping[str, str] | None = None,
) -> str:
    """Sign `message` with the SSH key git signs commits with in `repo`."""
    with git_signing_key(repo) as key:
        return sign_with_ssh_keygen(message, key, namespace, env=env)
