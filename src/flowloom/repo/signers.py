"""Who may sign approvals in a repository, and signing one with your own git SSH key.

Without a team server an approval is proven by the approver's SSH signature
(`flowloom.ledger.provenance`), checked against the project's committed allowed-signers
file, ``.flowloom/allowed_signers`` (git's ``gpg.ssh.allowedSignersFile`` format). The
file is read from a commit, never from the working tree: from the base of the range
being checked, so a change cannot bring the key that approves it; it changes only
through a governed commit like any other file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from flowloom.errors import ConfigError
from flowloom.ledger.provenance import SSH_SIGNATURE_FIELD, Trust, ssh_signed_message
from flowloom.ledger.sshsig import (
    SSHSIG_NAMESPACE,
    AllowedSigners,
    SshPublicKey,
    sign_with_ssh_keygen,
    verify_signed,
)
from flowloom.repo.git import GitRepo
from flowloom.repo.signing import git_signing_key

if TYPE_CHECKING:
    from flowloom.ledger.note import Verifier

__all__ = [
    "ALLOWED_SIGNERS_PATH",
    "GitKeyApprover",
    "SignersCheck",
    "allowed_signers_at",
    "range_base",
    "repo_trust",
]

ALLOWED_SIGNERS_PATH: Final = ".flowloom/allowed_signers"


@dataclass(frozen=True)
class SignersCheck:
    """`provenance.SshCheck` over one allowed-signers file."""

    signers: AllowedSigners

    def principal(self, message: bytes, armored: str, at: datetime | None) -> str:
        return verify_signed(message, armored, SSHSIG_NAMESPACE, self.signers, at=at).principal


def allowed_signers_at(repo: GitRepo, rev: str) -> AllowedSigners | None:
    """The committed allowed-signers file at `rev`, or None when that commit has none."""
    spec = f"{rev}:{ALLOWED_SIGNERS_PATH}"
    if not repo.ok("cat-file", "-e", spec):
        return None
    return AllowedSigners.parse(repo.run("show", spec), source=f"{ALLOWED_SIGNERS_PATH} at {rev}")


def range_base(repo: GitRepo, revs: Sequence[str]) -> str:
    """The commit whose allowed-signers file judges `revs`: the range's excluded end,
    else the default branch, else HEAD."""
    if revs:
        parsed = repo.run("rev-parse", *revs, check=False).split()
        negative = [line[1:] for line in parsed if line.startswith("^")]
        if negative:
            return negative[0]
    default = repo.default_branch()
    if default and repo.resolve(default):
        return default
    return "HEAD"


def repo_trust(
    attesters: Sequence[Verifier],
    repo: GitRepo | None,
    rev: str = "HEAD",
    *,
    servers: Sequence[Verifier] = (),
) -> Trust:
    """A local reader's trust: the log's own keys, the pinned team server's, and the
    people the allowed-signers file at `rev` lists."""
    signers = None
    if repo is not None and repo.resolve(rev):
        signers = allowed_signers_at(repo, rev)
    ssh = SignersCheck(signers) if signers is not None else None
    return Trust.of_log(attesters, ssh, servers=servers)


class GitKeyApprover:
    """Signs approval envelopes with the key git signs commits with in `repo`.

    The approver is whoever the committed allowed-signers file (at HEAD) lists for that
    key: never the OS user name, nor anything else the caller could type.
    """

    def __init__(self, repo: GitRepo, *, key: Path | None = None) -> None:
        self.repo = repo
        self._key = key
        found = allowed_signers_at(repo, "HEAD") if repo.resolve("HEAD") else None
        if found is None:
            raise ConfigError(
                f"this repository has no committed {ALLOWED_SIGNERS_PATH}, so no approval "
                "can be signed here",
                hint='commit the file (one line per person: email, namespaces="flowloom", '
                "public key), through an approved commit; docs/signatures.md",
            )
        self.signers = found

    def _sign(self, message: bytes) -> str:
        if self._key is not None:
            return sign_with_ssh_keygen(message, self._key, SSHSIG_NAMESPACE)
        with git_signing_key(self.repo.top()) as key:
            return sign_with_ssh_keygen(message, key, SSHSIG_NAMESPACE)

    def _public_key(self) -> SshPublicKey:
        if self._key is not None:
            return _public_key_of(self._key)
        with git_signing_key(self.repo.top()) as key:
            return _public_key_of(key)

    def sign_bytes(self, message: bytes) -> str:
        """The armored SSH signature (namespace ``flowloom``) of `message` by this key."""
        return self._sign(message)

    def fingerprint(self) -> str:
        """The signing key's ``SHA256:...`` fingerprint."""
        return self._public_key().fingerprint

    def identity(self) -> str:
        """The approver's canonical identity, from the allowed-signers file."""
        key = self._public_key()
        principals = self.signers.principals_for(key, SSHSIG_NAMESPACE, datetime.now(UTC))
        if len(principals) != 1:
            listed = "nobody" if not principals else ", ".join(principals)
            raise ConfigError(
                f"your signing key {key.fingerprint} stands for {listed} in "
                f"{ALLOWED_SIGNERS_PATH} at HEAD, not for exactly one person",
                hint="add your public key under your email through an approved commit",
            )
        return principals[0]

    def sign(self, envelope: Mapping[str, Any]) -> Mapping[str, Any]:
        """`envelope` with the approver's SSH signature over it in refs."""
        armored = self._sign(ssh_signed_message(envelope))
        signed = dict(envelope)
        signed["refs"] = {**dict(envelope.get("refs") or {}), SSH_SIGNATURE_FIELD: armored}
        return signed


def _public_key_of(key: Path) -> SshPublicKey:
    """The public half of a key file: the file itself, `<key>.pub`, or ssh-keygen -y."""
    candidates = [key] if key.suffix == ".pub" else [Path(f"{key}.pub"), key]
    for path in candidates:
        try:
            text = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            continue
        if text.startswith(("ssh-", "ecdsa-")):
            return SshPublicKey.from_openssh(text)
    import subprocess

    try:
        result = subprocess.run(
            ["ssh-keygen", "-y", "-f", str(key)], capture_output=True, timeout=300, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"cannot read the public key of {key}: {exc}") from None
    if result.returncode != 0:
        raise ConfigError(f"cannot read the public key of {key}")
    return SshPublicKey.from_openssh(result.stdout.decode("utf-8", "replace").strip())
