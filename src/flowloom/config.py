"""Settings: where the ledger lives, whose project it is, and the limits it enforces.

Layering (later wins): built-in defaults < user config (~/.config/flowloom/config.toml)
< repository config (.flowloom/config.toml) < environment (FLOWLOOM_*) < command-line
options. Reading settings imports only the standard library, so hooks stay fast.

The `[server]` table names the FlowLoom server this client sends its events to (`url`,
`api_key_file`, `vkey`); the API key itself comes only from a file or FLOWLOOM_API_KEY,
never from a config file that may be committed.

The `[keys]` table says where the signing keys and the master key are held (key files,
a PKCS#11 token, AWS KMS: docs/keys.md). It is read from the user config and the
environment only, never from a repository's config: naming a PKCS#11 module loads that
library into the process, which a committed file must not be able to do.
"""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from flowloom.errors import ConfigError

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "KeySettings",
    "Settings",
    "find_git_dirs",
    "load_key_settings",
    "load_settings",
]

DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
_PROJECT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class KeySettings:
    """Where keys are held: `signing` and `master` are each "file", "pkcs11" or "kms".
    The PIN comes only from FLOWLOOM_PKCS11_PIN or a PIN file; it is never printed."""

    signing: str = "file"
    master: str = "file"
    pkcs11_module: str | None = None
    pkcs11_token: str | None = None
    pkcs11_pin: str | None = field(default=None, repr=False)
    pkcs11_pin_file: Path | None = None
    pkcs11_master_label: str = "flowloom-master"
    kms_key_id: str | None = None
    kms_region: str | None = None
    kms_endpoint: str | None = None

    def pin(self) -> str:
        """The token's user PIN: FLOWLOOM_PKCS11_PIN, else the PIN file (read now)."""
        if self.pkcs11_pin:
            return self.pkcs11_pin
        if self.pkcs11_pin_file is not None:
            try:
                return self.pkcs11_pin_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(
                    f"cannot read the PKCS#11 PIN file {self.pkcs11_pin_file}: {exc.strerror}"
                ) from exc
        raise ConfigError(
            "the PKCS#11 token needs a PIN",
            hint="set FLOWLOOM_PKCS11_PIN or [keys] pkcs11_pin_file (docs/keys.md)",
        )


_KEY_ENV = {
    "FLOWLOOM_SIGNING_KEYS": "signing",
    "FLOWLOOM_MASTER_KEY": "master",
    "FLOWLOOM_PKCS11_MODULE": "pkcs11_module",
    "FLOWLOOM_PKCS11_TOKEN": "pkcs11_token",
    "FLOWLOOM_PKCS11_PIN_FILE": "pkcs11_pin_file",
    "FLOWLOOM_PKCS11_MASTER_LABEL": "pkcs11_master_label",
    "FLOWLOOM_KMS_KEY_ID": "kms_key_id",
    "FLOWLOOM_KMS_REGION": "kms_region",
    "FLOWLOOM_KMS_ENDPOINT": "kms_endpoint",
}
_KEY_FIELDS = frozenset(_KEY_ENV.values())


def load_key_settings(
    env: Mapping[str, str] | None = None, user_file: Path | None = None
) -> KeySettings:
    """Key-provider settings from the user config's `[keys]` table and FLOWLOOM_* variables."""
    env = os.environ if env is None else env
    if user_file is None:
        user_home = Path(env.get("HOME", str(Path.home())))
        xdg_config = Path(env.get("XDG_CONFIG_HOME") or user_home / ".config")
        user_file = xdg_config / "flowloom" / "config.toml"
    values: dict[str, Any] = {}
    table = _read_table(user_file, "keys")
    for key, value in table.items():
        if key not in _KEY_FIELDS:
            pin = ": the PIN belongs in a PIN file (pkcs11_pin_file)" if "pin" in key else ""
            raise ConfigError(
                f"{user_file}: unknown [keys] setting {key!r}{pin}", hint="see docs/keys.md"
            )
        if not isinstance(value, str):
            raise ConfigError(f"{user_file}: [keys] {key} must be a string")
        values[key] = value
    for var, key in _KEY_ENV.items():
        if env.get(var):
            values[key] = env[var]
    for role in ("signing", "master"):
        allowed = ("file", "pkcs11", "kms")
        if values.get(role, "file") not in allowed:
            raise ConfigError(
                f"unknown {role} key provider {values[role]!r}",
                hint=f"use one of: {', '.join(allowed)}",
            )
    pin_file = values.pop("pkcs11_pin_file", None)
    return KeySettings(
        **values,
        pkcs11_pin=env.get("FLOWLOOM_PKCS11_PIN") or None,
        pkcs11_pin_file=Path(pin_file).expanduser() if pin_file else None,
    )


def _read_table(path: Path, name: str) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    table = data.get(name, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [{name}] must be a table")
    return table


@dataclass(frozen=True)
class Settings:
    """Everything a FlowLoom process needs to know before it opens the ledger."""

    home: Path
    database: str
    project: str
    origin: str
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    batch_max_entries: int = 2000
    batch_linger_ms: float = 0.0
    sources: tuple[str, ...] = field(default=())
    server_url: str | None = None
    """The FlowLoom server events go to (FLOWLOOM_SERVER, `[server] url`); None: local only."""
    api_key: str | None = field(default=None, repr=False)
    """The API key (FLOWLOOM_API_KEY, or read from `api_key_file`); never printed."""
    api_key_file: Path | None = None
    server_vkey: str | None = None
    """A verifier key to pin instead of trusting the server's on first use."""
    server_fresh_seconds: float = 0.0
    """How long a read trusts the team record's copy without asking the server again
    (FLOWLOOM_SERVER_FRESH_SECONDS, `[server] fresh_seconds`); 0: every read asks."""
    keys: KeySettings = field(default_factory=KeySettings)
    """Where the signing keys and the master key are held (docs/keys.md)."""

    @property
    def last_verification_file(self) -> Path:
        """Where `flowloom log verify` leaves its outcome for `flowloom status`."""
        local = "://" not in self.database and self.database != ":memory:"
        folder = Path(self.database).parent if local else self.home
        return folder / f"last-verify-{self.project}.json"

    def server_api_key(self) -> str | None:
        """The API key for `server_url`: FLOWLOOM_API_KEY, else the key file (read now).

        Read on use, not on load, so a missing key file breaks only server commands.
        """
        if self.api_key:
            return self.api_key
        if self.api_key_file is not None:
            return _read_api_key(self.api_key_file)
        return None

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with the given fields replaced (command-line options). Naming another
        project names another log, so its origin is that project's default; naming the
        same project (FLOWLOOM_PROJECT seen again as --project) keeps the origin the
        settings chose (FLOWLOOM_ORIGIN), instead of keying the log anew."""
        clean = {k: v for k, v in changes.items() if v is not None}
        if "project" in clean and "origin" not in clean and clean["project"] != self.project:
            clean["origin"] = f"flowloom.local/{clean['project']}"
        return replace(self, **clean)


def find_git_dirs(start: Path) -> tuple[Path, Path] | None:
    """(work tree top, git common dir) of the repository containing `start`, if any.

    Asks git itself so worktrees and submodules resolve the way git resolves them.
    """
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--show-toplevel", "--git-common-dir"],
            cwd=start,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    lines = out.stdout.splitlines()
    if len(lines) < 2:
        return None
    top = Path(lines[0])
    common = Path(lines[1])
    if not common.is_absolute():
        common = (start / common).resolve()
    return top, common


_SERVER_KEYS = ("url", "api_key_file", "vkey")


def _read_toml(path: Path) -> dict[str, Any]:
    """The `[ledger]` values of a config file, plus its `[server]` client keys as server_*."""
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    ledger = data.get("ledger", {})
    if not isinstance(ledger, dict):
        raise ConfigError(f"{path}: [ledger] must be a table")
    values = dict(ledger)
    server = data.get("server", {})
    if not isinstance(server, dict):
        raise ConfigError(f"{path}: [server] must be a table")
    if "api_key" in server:
        raise ConfigError(
            f"{path}: an API key does not belong in a config file",
            hint="put it in a file named by [server] api_key_file, or in FLOWLOOM_API_KEY",
        )
    for key in _SERVER_KEYS:  # other [server] keys configure `flowloom serve`
        if key in server:
            value = server[key]
            if not isinstance(value, str):
                raise ConfigError(f"{path}: [server] {key} must be a string")
            if key == "api_key_file":
                value = str((path.parent / Path(value).expanduser()).resolve())
            values[f"server_{key}"] = value
    if "fresh_seconds" in server:
        values["server_fresh_seconds"] = server["fresh_seconds"]
    return values


def _read_api_key(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(
            f"cannot read the API key file {path}: {exc.strerror}",
            hint="check [server] api_key_file or FLOWLOOM_API_KEY_FILE",
        ) from exc
    if not text or any(c.isspace() for c in text):
        raise ConfigError(
            f"the API key file {path} does not hold one API key",
            hint="it must contain only the key (flk_...)",
        )
    return text


def _server_settings(values: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    url = env.get("FLOWLOOM_SERVER") or values.get("server_url") or None
    key_file_text = env.get("FLOWLOOM_API_KEY_FILE") or values.get("server_api_key_file")
    key_file = Path(str(key_file_text)).expanduser() if key_file_text else None
    vkey = env.get("FLOWLOOM_SERVER_VKEY") or values.get("server_vkey") or None
    api_key = env.get("FLOWLOOM_API_KEY") or None
    fresh = env.get("FLOWLOOM_SERVER_FRESH_SECONDS") or values.get("server_fresh_seconds") or 0
    try:
        fresh_seconds = float(fresh)
    except (TypeError, ValueError):
        fresh_seconds = -1.0
    if not 0 <= fresh_seconds <= 86400 or isinstance(fresh, bool):
        raise ConfigError(
            f"server fresh_seconds {fresh!r} is not a number of seconds from 0 to 86400",
            hint="set FLOWLOOM_SERVER_FRESH_SECONDS or [server] fresh_seconds, e.g. 5",
        )
    if url is not None:
        url = str(url).rstrip("/")
        if not url.startswith(("http://", "https://")) or any(c.isspace() for c in url):
            raise ConfigError(
                f"server URL {url!r} is not an http(s) URL",
                hint="set FLOWLOOM_SERVER or [server] url, e.g. https://flowloom.example.com",
            )
    return {
        "server_url": url,
        "api_key": api_key,
        "api_key_file": key_file,
        "server_vkey": str(vkey) if vkey else None,
        "server_fresh_seconds": fresh_seconds,
    }


def _int_setting(name: str, value: object) -> int:
    try:
        number = int(str(value))
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {value!r}") from None
    if number <= 0:
        raise ConfigError(f"{name} must be positive, got {number}")
    return number


def load_settings(cwd: Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Resolve settings for a process started in `cwd` with environment `env`."""
    cwd = cwd or Path.cwd()
    env = os.environ if env is None else env
    user_home = Path(env.get("HOME", str(Path.home())))
    home = Path(env.get("FLOWLOOM_HOME") or user_home / ".local" / "share" / "flowloom")
    xdg_config = Path(env.get("XDG_CONFIG_HOME") or user_home / ".config")

    values: dict[str, Any] = {}
    sources: list[str] = ["defaults"]
    user_file = xdg_config / "flowloom" / "config.toml"
    user_values = _read_toml(user_file)
    if user_values:
        values.update(user_values)
        sources.append(str(user_file))

    git = find_git_dirs(cwd)
    if git is not None:
        top, common = git
        default_db = str(common / "flowloom" / "ledger.db")
        # Name the project after the main worktree (the common dir's owner), so every
        # worktree of a clone writes to the same log, not one log per folder.
        main_tree = common.parent if common.name == ".git" else common
        default_project = main_tree.name.removesuffix(".git") or top.name
        repo_file = top / ".flowloom" / "config.toml"
        if _read_table(repo_file, "keys"):
            raise ConfigError(
                f"{repo_file}: a repository's config may not say where keys are held",
                hint="put [keys] in your user config (~/.config/flowloom/config.toml) or "
                "set FLOWLOOM_* variables (docs/keys.md)",
            )
        repo_values = _read_toml(repo_file)
        if repo_values:
            values.update(repo_values)
            sources.append(str(repo_file))
    else:
        default_db = str(home / "ledger.db")
        default_project = "default"

    env_map = {
        "FLOWLOOM_DATABASE": "database",
        "FLOWLOOM_PROJECT": "project",
        "FLOWLOOM_ORIGIN": "origin",
        "FLOWLOOM_MAX_BODY_BYTES": "max_body_bytes",
    }
    for var, key in env_map.items():
        if env.get(var):
            values[key] = env[var]
            sources.append(var)

    project = str(values.get("project", default_project))
    if not _PROJECT_RE.match(project):
        project = re.sub(r"[^A-Za-z0-9._-]", "-", project).strip("-._") or "default"
    origin = str(values.get("origin", f"flowloom.local/{project}"))
    if not origin or any(c.isspace() for c in origin) or "+" in origin:
        raise ConfigError(
            f"origin {origin!r} is not usable as a log name",
            hint="use a schema-less URL such as flowloom.example.com/myproject",
        )
    max_body = _int_setting("max_body_bytes", values.get("max_body_bytes", DEFAULT_MAX_BODY_BYTES))
    return Settings(
        home=home,
        database=str(values.get("database", default_db)),
        project=project,
        origin=origin,
        max_body_bytes=max_body,
        sources=tuple(sources),
        keys=load_key_settings(env, user_file),
        **_server_settings(values, env),
    )
