"""The capture policy: the committed `[policy]` table of `.flowloom/config.toml`, and overrides.

The policy is committed so it is reviewed like code (docs/capture.md). Keys and
defaults:

    enforce = true                      # commit-msg refuses unlinked commits
    protected_branches = ["main", "master"]   # names or fnmatch patterns ("release/*")
    require_approval_on_protected = true
    forbid_self_approval = true         # approver ≠ commit author, ≠ decision's requester
    forbid_approving_own_ai_session = true    # approver ≠ operator of the decision's AI session
    override_requires_approver = false
    auto_commit = true
    auto_push = false
    fail_closed = false                 # block the agent when capture can record nothing

A repository whose config file has no `[policy]` table has not been set up with
`flowloom init`: hooks do nothing there (a shared `core.hooksPath` may point other
repositories at FlowLoom's hooks), while `flowloom check` applies the defaults.
Unknown keys and wrong types are refused, so a typo cannot switch enforcement off.

An override is the policy's one exception: a reason (and, if the policy says so, an
approver) that lets one commit through without a decision link. `flowloom override`
leaves it pending in `.git/flowloom/override.json` for the next commit.
"""

from __future__ import annotations

import fnmatch
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from flowloom.errors import ConfigError
from flowloom.ledger.identity import names_of

__all__ = [
    "POLICY_FILE",
    "Override",
    "Policy",
    "clear_pending_override",
    "load_policy",
    "policy_file",
    "policy_from_table",
    "policy_table_text",
    "read_pending_override",
    "write_pending_override",
    "write_policy",
]

POLICY_FILE = Path(".flowloom") / "config.toml"


@dataclass(frozen=True)
class Policy:
    """What the hooks and the CI gate enforce in one repository."""

    enforce: bool = True
    protected_branches: tuple[str, ...] = field(default=("main", "master"))
    require_approval_on_protected: bool = True
    forbid_self_approval: bool = True
    forbid_approving_own_ai_session: bool = True
    override_requires_approver: bool = False
    auto_commit: bool = True
    auto_push: bool = False
    fail_closed: bool = False
    """Block the agent's action (Claude Code: exit 2) when capture can write nothing."""
    configured: bool = field(default=True, compare=False)
    """False when the repository has no [policy] table (defaults apply)."""

    def is_protected(self, branch: str | None) -> bool:
        if not branch:
            return False
        short = branch.removeprefix("refs/heads/")
        return any(fnmatch.fnmatchcase(short, pattern) for pattern in self.protected_branches)

    def to_table(self) -> dict[str, Any]:
        """The `[policy]` table, in the documented key order."""
        table = asdict(self)
        table.pop("configured")
        table["protected_branches"] = list(self.protected_branches)
        return table


_KEYS = [f.name for f in fields(Policy) if f.name != "configured"]


def policy_file(repo_top: Path) -> Path:
    return repo_top / POLICY_FILE


def policy_from_table(table: object, *, where: str = "[policy]") -> Policy:
    """A Policy from a parsed `[policy]` table; unknown keys and bad types are refused."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    unknown = sorted(set(table) - set(_KEYS))
    if unknown:
        raise ConfigError(
            f"{where} has unknown key(s): {', '.join(unknown)}",
            hint=f"known keys: {', '.join(_KEYS)}",
        )
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key == "protected_branches":
            if not isinstance(value, list) or not all(
                isinstance(item, str) and item for item in value
            ):
                raise ConfigError(f"{where} protected_branches must be a list of branch names")
            values[key] = tuple(value)
        elif not isinstance(value, bool):
            raise ConfigError(f"{where} {key} must be true or false, got {value!r}")
        else:
            values[key] = value
    return Policy(**values)


def load_policy(repo_top: Path) -> Policy:
    """The repository's policy; defaults (configured=False) when there is none."""
    path = policy_file(repo_top)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        return Policy(configured=False)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read the policy file {path}: {exc}") from exc
    if "policy" not in data:
        return Policy(configured=False)
    return policy_from_table(data["policy"], where=f"{path} [policy]")


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    raise TypeError(f"no TOML form for {value!r}")


def policy_table_text(policy: Policy) -> str:
    """The `[policy]` table as TOML text, one key a line."""
    lines = ["[policy]"]
    lines += [f"{key} = {_toml_value(value)}" for key, value in policy.to_table().items()]
    return "\n".join(lines) + "\n"


def write_policy(repo_top: Path, policy: Policy | None = None) -> str:
    """Make sure the policy file has a complete `[policy]` table; say what changed.

    Returns "created", "updated" (keys added to an existing file or table) or
    "unchanged". Everything already in the file — `[ledger]` settings, comments, the
    values of existing policy keys — is kept byte for byte: missing keys are inserted
    right below the `[policy]` header, or a whole table is appended.
    """
    policy = policy or Policy()
    path = policy_file(repo_top)
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        text = None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the policy file {path}: {exc}") from exc

    if text is None:
        new_text = policy_table_text(policy)
        status = "created"
    else:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(
                f"{path} is not valid TOML ({exc})", hint="fix it, then run flowloom init again"
            ) from exc
        existing = data.get("policy")
        if existing is None:
            separator = "\n" if text.endswith("\n") else "\n\n"
            new_text = text + (separator if text.strip() else "") + policy_table_text(policy)
        else:
            policy_from_table(existing, where=f"{path} [policy]")  # refuse a broken table
            missing = [key for key in _KEYS if key not in existing]
            if not missing:
                return "unchanged"
            new_text = _insert_keys(text, policy, missing, path)
        status = "updated"

    try:
        parsed = tomllib.loads(new_text)
        policy_from_table(parsed["policy"])
    except (tomllib.TOMLDecodeError, KeyError) as exc:  # pragma: no cover - a bug here
        raise ConfigError(
            f"could not update {path} safely; edit its [policy] table by hand"
        ) from exc
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".flowloom-tmp")
    tmp.write_text(new_text, "utf-8")
    tmp.replace(path)
    return status


def _insert_keys(text: str, policy: Policy, missing: list[str], path: Path) -> str:
    lines = text.splitlines(keepends=True)
    for at, line in enumerate(lines):
        if line.split("#", 1)[0].strip() == "[policy]":
            table = policy.to_table()
            added = [f"{key} = {_toml_value(table[key])}\n" for key in missing]
            if not line.endswith("\n"):
                lines[at] = line + "\n"
            return "".join(lines[: at + 1] + added + lines[at + 1 :])
    raise ConfigError(
        f"{path} defines the policy in a form FlowLoom cannot extend (not a [policy] header)",
        hint=f"add the missing keys by hand: {', '.join(missing)}",
    )


# -- overrides -------------------------------------------------------------------------


@dataclass(frozen=True)
class Override:
    """Permission for one commit to pass without a decision link, and why.

    `grant` is the ledger index of the `override.grant` event once commit-msg has
    recorded it; `created` (unix seconds) lets a forgotten pending override expire.
    """

    reason: str
    approver: str | None = None
    grant: int | None = None
    created: float = 0.0

    def problem(self, policy: Policy, user: str | None = None) -> str | None:
        """Why this override is not acceptable under `policy`, or None when it is.

        `user` is who is committing, as `Name <email>`.
        """
        if not self.reason.strip():
            return "an override needs a reason"
        approver = (self.approver or "").strip()
        if policy.override_requires_approver and not approver:
            return "the policy requires an approver for overrides (override_requires_approver)"
        if (
            approver
            and user
            and policy.forbid_self_approval
            and names_of(approver) & names_of(user)
        ):
            return "the approver of an override must be someone other than you"
        return None


OVERRIDE_TTL_S = 3600
"""A pending override not used within an hour is ignored: it was meant for one commit."""


def _pending_override_path(git_common_dir: Path) -> Path:
    return git_common_dir / "flowloom" / "override.json"


def write_pending_override(git_common_dir: Path, override: Override) -> Path:
    """Let the next commit through (`flowloom override`); commit-msg consumes it."""
    import json
    import time

    from flowloom.events.durable import private_dirs

    path = _pending_override_path(git_common_dir)
    private_dirs(str(path.parent))
    record = asdict(override)
    record["created"] = override.created or time.time()
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record), "utf-8")
    tmp.replace(path)
    return path


def read_pending_override(git_common_dir: Path, *, now: float | None = None) -> Override | None:
    """The pending override, or None when there is none or it has expired."""
    import json
    import time

    try:
        data = json.loads(_pending_override_path(git_common_dir).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("reason"), str):
        return None
    created = data.get("created")
    created = float(created) if isinstance(created, int | float) else 0.0
    if (now if now is not None else time.time()) - created > OVERRIDE_TTL_S:
        return None
    approver = data.get("approver")
    grant = data.get("grant")
    return Override(
        reason=data["reason"],
        approver=approver if isinstance(approver, str) else None,
        grant=grant if isinstance(grant, int) and not isinstance(grant, bool) else None,
        created=created,
    )


def clear_pending_override(git_common_dir: Path) -> None:
    _pending_override_path(git_common_dir).unlink(missing_ok=True)
