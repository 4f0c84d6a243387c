"""Replication through git: the log published on ``refs/flowloom/log`` and verified remotely.

Without a server, the log travels with the code. ``publish_log`` exports the log as a
bundle (C2SP tlog-tiles layout, bodies, manifest; flowloom.ledger.bundle) and commits
the bundle's files as the tree of a new commit on ``refs/flowloom/log`` whose parent is
the previous publication, so the ref only ever moves forward and a push of it is a
fast-forward. Git objects are written directly (``hash-object -w``, a temporary index,
``write-tree``, ``commit-tree``, ``update-ref`` with the old value), never touching the
work tree, the index or HEAD.

``verify_remote`` fetches the remote's ``refs/flowloom/log`` into a temporary ref,
reads its tree with ``ls-tree``/``cat-file`` into a temporary directory, verifies it as
a bundle with the local verifier key, and checks it against the local log: at the
smaller of the two sizes both trees must have the same root. A different root is a
fork; a remote copy longer than the local log but agreeing with it is a rollback of
the local ledger.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Never

from flowloom.errors import ConflictError, NotFoundError
from flowloom.ledger import merkle
from flowloom.ledger.tiles import decode_entry_bundle, entries_path, entry_bundles_for_size
from flowloom.ledger.verify import Problem, VerifyReport, body_ref, kind_of
from flowloom.repo.git import GitError

if TYPE_CHECKING:
    from flowloom.ledger.log import Ledger
    from flowloom.ledger.note import Verifier

__all__ = [
    "LOG_REF",
    "LogCollisionError",
    "RemoteReport",
    "check_publication",
    "ensure_push_refspec",
    "load_published_log",
    "publish_log",
    "verify_remote",
]

LOG_REF = "refs/flowloom/log"


class LogCollisionError(ConflictError):
    """The remote's published log is not this clone's to extend (one writer per repository)."""


_REFSPEC = f"{LOG_REF}:{LOG_REF}"
_ZERO_OID = "0" * 40
_TIMEOUT_S = 300
# What a bundle may contain; anything else in a published tree is reported.
_BUNDLE_PATH = re.compile(
    r"checkpoint|manifest\.json|bodies/[0-9a-f]{64}|"
    r"tile/(?:entries|[0-9]{1,2})/(?:x[0-9]{3}/)*[0-9]{3}(?:\.p/[1-9][0-9]{0,2})?"
)
# Used only when the user has no git identity: the meaning of a publication is in its
# signed checkpoint, not in who committed it.
_FALLBACK_IDENT = {
    "GIT_AUTHOR_NAME": "FlowLoom",
    "GIT_AUTHOR_EMAIL": "flowloom@localhost",
    "GIT_COMMITTER_NAME": "FlowLoom",
    "GIT_COMMITTER_EMAIL": "flowloom@localhost",
}


def _git(
    cwd: Path,
    *args: str,
    stdin: bytes | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    try:
        result = subprocess.run(
            ["git", *args],
            cwd=cwd,
            input=stdin,
            capture_output=True,
            timeout=_TIMEOUT_S,
            check=False,
            env={**os.environ, **env} if env else None,
        )
    except FileNotFoundError:
        raise GitError("git is not installed or not on PATH") from None
    except subprocess.TimeoutExpired:
        raise GitError(f"git {args[0]} took longer than {_TIMEOUT_S} s") from None
    if check and result.returncode != 0:
        raise GitError(f"git {args[0]} failed: {_complaint(result)}")
    return result


def _complaint(result: subprocess.CompletedProcess[bytes]) -> str:
    lines = [ln for ln in result.stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    if not lines:
        return f"exit status {result.returncode}"
    # git's most specific complaint is usually its first fatal/error line.
    line = next((ln for ln in lines if ln.startswith(("fatal:", "error:"))), lines[0])
    return line.removeprefix("fatal: ").removeprefix("error: ").strip()


def _text(result: subprocess.CompletedProcess[bytes]) -> str:
    return result.stdout.decode("utf-8", "surrogateescape").strip()


def _resolve(cwd: Path, ref: str) -> str | None:
    found = _git(cwd, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
    if found.returncode != 0:
        return None
    return _text(found) or None


# -- publishing ----------------------------------------------------------------------------


def ensure_push_refspec(repo_top: Path, remote: str) -> bool:
    """Make ``git push`` to `remote` carry ``refs/flowloom/log``; True if config changed.

    A remote with no ``push`` refspec pushes by ``push.default``; once it has one, git
    pushes only what is configured, so ``HEAD`` (the current branch, to the same name)
    is added first to keep plain ``git push`` pushing the branch.
    """
    if not remote or remote.startswith("-") or any(c.isspace() for c in remote):
        raise GitError(f"{remote!r} is not a remote name")
    key = f"remote.{remote}.push"
    current = _git(repo_top, "config", "--get-all", key, check=False)
    specs = _text(current).splitlines() if current.returncode == 0 else []
    if _REFSPEC in specs or f"+{_REFSPEC}" in specs:
        return False
    if _git(repo_top, "config", "--get", f"remote.{remote}.url", check=False).returncode != 0:
        raise GitError(f"no remote named {remote!r}", hint="see 'git remote -v'")
    if not specs:
        _git(repo_top, "config", "--add", key, "HEAD")
    _git(repo_top, "config", "--add", key, _REFSPEC)
    return True


def publish_log(repo_top: Path, ledger: Ledger, remote: str | None = None) -> str:
    """Export the log and commit it on ``refs/flowloom/log``; returns the new commit id.

    With `remote`, also make sure ``git push`` to that remote carries the ref.
    """
    from flowloom.ledger.bundle import export_bundle

    with tempfile.TemporaryDirectory(prefix="flowloom-publish-") as scratch:
        bundle = Path(scratch) / "bundle"
        manifest = export_bundle(ledger, bundle, withhold_subject_bodies=True)
        files = sorted(p for p in bundle.rglob("*") if p.is_file())
        paths = "".join(f"{p}\n" for p in files).encode("utf-8", "surrogateescape")
        blobs = _text(
            _git(repo_top, "hash-object", "-w", "--no-filters", "--stdin-paths", stdin=paths)
        ).split()
        if len(blobs) != len(files):
            raise GitError(f"git hash-object wrote {len(blobs)} objects for {len(files)} files")
        listing = "".join(
            f"100644 {blob}\t{path.relative_to(bundle).as_posix()}\n"
            for blob, path in zip(blobs, files, strict=True)
        ).encode("utf-8", "surrogateescape")
        index = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
        _git(repo_top, "update-index", "--add", "--index-info", stdin=listing, env=index)
        tree = _text(_git(repo_top, "write-tree", env=index))
        parent = _resolve(repo_top, LOG_REF)
        checkpoint = (bundle / "checkpoint").read_text("utf-8")
        message = (
            f"flowloom log: {manifest['size']} entries\n\n"
            f"Signed checkpoint of {manifest['origin']}:\n\n{checkpoint}"
        ).encode()
        args = ["commit-tree", tree, *(["-p", parent] if parent else [])]
        made = _git(repo_top, *args, stdin=message, check=False)
        if made.returncode != 0 and b"tell me who you are" in made.stderr.lower():
            made = _git(repo_top, *args, stdin=message, env=_FALLBACK_IDENT, check=False)
        if made.returncode != 0:
            raise GitError(f"git commit-tree failed: {_complaint(made)}")
        commit = _text(made)
        update = _git(
            repo_top,
            "update-ref",
            "-m",
            "flowloom: publish log",
            LOG_REF,
            commit,
            parent or _ZERO_OID,
            check=False,
        )
        if update.returncode != 0:
            raise GitError(
                f"{LOG_REF} moved while the log was being published ({_complaint(update)})",
                hint="publish again",
            )
    if remote is not None:
        ensure_push_refspec(repo_top, remote)
    return commit


def check_publication(repo_top: Path, remote: str) -> None:
    """Refuse (`LogCollisionError`) to publish over another clone's log on `remote`.

    Without a server a repository has one published log and one writer: the clone
    whose publications the remote's ``refs/flowloom/log`` descends from. Each clone's
    ledger is its own log (its own key and origin), so a second clone's publication
    could never fast-forward the first one's: this says so, naming both logs, instead
    of leaving a rejected push or, with a forced refspec, a silently replaced log.
    A remote without the ref, or whose ref the local publication descends from, is fine.
    """
    scratch = f"refs/flowloom/check-{secrets.token_hex(4)}"
    try:
        try:
            theirs = _fetch(repo_top, remote, scratch)
        except NotFoundError:
            return
        ours = _resolve(repo_top, LOG_REF)
        if ours == theirs:
            return
        if ours is not None:
            related = _git(repo_top, "merge-base", "--is-ancestor", theirs, ours, check=False)
            if related.returncode == 0:
                return
        their_origin = _origin_of(repo_top, theirs)
        our_origin = _origin_of(repo_top, ours) if ours else None
        same = our_origin is not None and our_origin == their_origin
        raise LogCollisionError(
            f"{remote}'s {LOG_REF} is "
            + (
                f"a publication of this log ({their_origin}) that this clone's does not "
                "extend (the local log or the remote copy was rewritten)"
                if same
                else f"another clone's log ({their_origin or 'unknown origin'}), not this "
                f"clone's ({our_origin or 'not published yet'})"
            )
            + ": this clone's log was not published there",
            hint="without a server one clone publishes the repository's log (docs/sync.md); "
            "for several writers use a team server (FLOWLOOM_SERVER), and check the remote "
            f"copy with 'flowloom log verify --remote {remote}'",
        )
    finally:
        _git(repo_top, "update-ref", "-d", scratch, check=False)


def _origin_of(repo_top: Path, commit: str) -> str | None:
    """The log origin a publication's signed checkpoint names (its first line)."""
    shown = _git(repo_top, "cat-file", "blob", f"{commit}:checkpoint", check=False)
    if shown.returncode != 0:
        return None
    first = _text(shown).split("\n", 1)[0].strip()
    return first or None


# -- verifying a remote copy ---------------------------------------------------------------


@dataclass
class RemoteReport:
    """What `verify_remote` found: the bundle's own verification and the consistency check."""

    remote: str
    commit: str
    bundle: VerifyReport
    remote_size: int = 0
    local_size: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.bundle.ok and not self.problems

    def all_problems(self) -> list[Problem]:
        return [*self.bundle.problems, *self.problems]


def _fetch(repo_top: Path, remote: str, ref: str) -> str:
    if not remote or remote.startswith("-"):
        raise GitError(f"{remote!r} is not a remote name")
    fetched = _git(
        repo_top,
        "fetch",
        "--quiet",
        "--no-tags",
        "--no-write-fetch-head",
        "--no-recurse-submodules",
        remote,
        f"+{LOG_REF}:{ref}",
        check=False,
    )
    if fetched.returncode != 0:
        complaint = _complaint(fetched)
        if "couldn't find remote ref" in complaint:
            raise NotFoundError(
                f"{remote} has no {LOG_REF}: the log was never published there",
                hint=f"git config --add remote.{remote}.push {_REFSPEC}, then git push",
            )
        raise GitError(f"cannot fetch {LOG_REF} from {remote}: {complaint}")
    commit = _resolve(repo_top, ref)
    if commit is None:
        raise GitError(f"{remote}'s {LOG_REF} is not a commit")
    return commit


def _materialize(repo_top: Path, commit: str, target: Path) -> list[Problem]:
    """Write the commit's tree into `target`; returns what does not belong in a bundle."""
    listing = _git(repo_top, "ls-tree", "-r", "-z", "--full-tree", commit).stdout
    problems: list[Problem] = []
    wanted: list[tuple[str, str]] = []
    for record in listing.split(b"\0"):
        if not record:
            continue
        meta, _, raw_path = record.partition(b"\t")
        mode, kind, oid = meta.decode("ascii", "replace").split()
        path = raw_path.decode("utf-8", "replace")
        if kind != "blob" or mode not in ("100644", "100755") or not _BUNDLE_PATH.fullmatch(path):
            problems.append(Problem(None, "manifest", f"unexpected {kind} {path!r} in the tree"))
            continue
        wanted.append((oid, path))
    if not wanted:
        return problems
    request = "".join(f"{oid}\n" for oid, _ in wanted).encode()
    data = _git(repo_top, "cat-file", "--batch", stdin=request).stdout
    at = 0
    for oid, path in wanted:
        end = data.index(b"\n", at)
        header = data[at:end].split()
        if len(header) != 3 or header[1] != b"blob":
            raise GitError(f"cannot read {path} ({oid}) from {commit[:12]}")
        size = int(header[2])
        content = data[end + 1 : end + 1 + size]
        at = end + 1 + size + 1
        out = target / path
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(content)
    return problems


def _remote_root(directory: Path, remote_size: int, size: int) -> bytes:
    """Root of the first `size` entries of a verified bundle cut at `remote_size`."""
    leaves: list[bytes] = []
    for index, width in entry_bundles_for_size(remote_size):
        if len(leaves) >= size:
            break
        data = (directory / entries_path(index, width)).read_bytes()
        leaves.extend(merkle.leaf_hash(e) for e in decode_entry_bundle(data))
    return merkle.root_of(leaves[:size])


def verify_remote(repo_top: Path, ledger: Ledger, remote: str) -> RemoteReport:
    """Verify `remote`'s ``refs/flowloom/log`` with the local key, and against the local log."""
    from flowloom.ledger.bundle import verify_bundle

    ref = f"refs/flowloom/verify/{os.getpid()}-{secrets.token_hex(4)}"
    try:
        commit = _fetch(repo_top, remote, ref)
        with tempfile.TemporaryDirectory(prefix="flowloom-remote-") as scratch:
            directory = Path(scratch)
            extra = _materialize(repo_top, commit, directory)
            report = RemoteReport(remote, commit, verify_bundle(directory, ledger.verifier))
            report.problems.extend(extra)
            local_size = ledger.size()
            report.local_size = local_size
            signed = report.bundle.checkpoint
            if signed is None:
                return report  # the checkpoint did not verify: nothing to compare
            report.remote_size = signed.size
            if signed.size <= local_size:
                if merkle.root_at(signed.size, ledger.lookup()) != signed.root:
                    report.problems.append(
                        Problem(
                            None,
                            "fork",
                            f"{remote}'s copy signs a different tree at size {signed.size} "
                            f"than the local log holds: the histories have forked",
                        )
                    )
            elif report.bundle.ok:
                local_root = merkle.root_at(local_size, ledger.lookup())
                if _remote_root(directory, signed.size, local_size) == local_root:
                    report.problems.append(
                        Problem(
                            None,
                            "rollback",
                            f"{remote}'s copy signs {signed.size} entries but the local log "
                            f"has only {local_size}: the local ledger was rolled back or "
                            "truncated",
                        )
                    )
                else:
                    report.problems.append(
                        Problem(
                            None,
                            "fork",
                            f"{remote}'s copy ({signed.size} entries) and the local log "
                            f"({local_size} entries) differ within the first {local_size}: "
                            "the histories have forked",
                        )
                    )
            return report
    finally:
        _git(repo_top, "update-ref", "-d", ref, check=False)


# -- reading a published log (CI without a server) -------------------------------------


def load_published_log(repo_top: Path, ref: str, verifier: Verifier) -> Ledger:
    """A read-only Ledger over the log published at `ref`, verified with `verifier`.

    CI without a team server runs `flowloom check` against this: the bundle must verify
    completely with the key the team trusts, then its entries are replayed into memory.
    """
    from flowloom.errors import SignatureError, VerificationError
    from flowloom.ledger.body import SALT_SIZE
    from flowloom.ledger.bundle import verify_bundle
    from flowloom.ledger.log import Ledger
    from flowloom.ledger.writer import LogWriter
    from flowloom.store.interface import PendingEntry, StoredBody
    from flowloom.store.memory import MemoryStore

    commit = _resolve(repo_top, ref)
    if commit is None:
        raise NotFoundError(
            f"{ref} does not exist here",
            hint=f"git fetch origin '+{LOG_REF}:{LOG_REF}'",
        )
    with tempfile.TemporaryDirectory(prefix="flowloom-published-") as scratch:
        directory = Path(scratch)
        problems = _materialize(repo_top, commit, directory)
        report = verify_bundle(directory, verifier)
        if problems or not report.ok or report.checkpoint is None:
            first = [*problems, *report.problems][:1]
            detail = first[0].line() if first else "no checkpoint"
            raise VerificationError(f"the log at {ref} does not verify: {detail}")
        checkpoint = report.checkpoint
        envelopes: list[bytes] = []
        for index, width in entry_bundles_for_size(checkpoint.size):
            envelopes.extend(
                decode_entry_bundle((directory / entries_path(index, width)).read_bytes())
            )
        bodies: dict[str, StoredBody] = {}
        body_dir = directory / "bodies"
        if body_dir.is_dir():
            for path in body_dir.iterdir():
                data = path.read_bytes()
                digest = f"sha256:{path.name}"
                bodies[digest] = StoredBody(digest, data[:SALT_SIZE], data[SALT_SIZE:])
    store = MemoryStore()
    log = "published"
    pending = []
    for envelope in envelopes[: checkpoint.size]:
        referenced = body_ref(envelope)
        kind = kind_of(envelope)
        pending.append(
            PendingEntry(
                envelope,
                merkle.leaf_hash(envelope),
                kind,
                bodies.pop(referenced, None) if referenced else None,
            )
        )
    LogWriter(store, log).append_many(pending)

    def no_keys() -> Never:
        raise SignatureError("a published log is read-only here")

    return Ledger(
        store,
        log=log,
        origin=checkpoint.origin,
        signer=no_keys,
        cipher=no_keys,
        actor={"type": "service", "id": "flowloom-check"},
        max_body_bytes=1,
    )
