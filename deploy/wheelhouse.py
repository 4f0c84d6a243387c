"""An offline install bundle: FlowLoom's wheel and the locked dependency set (docs/airgap.md).

    python deploy/wheelhouse.py lock            # rewrite deploy/requirements.lock
    python deploy/wheelhouse.py bundle OUT      # on a connected machine: build the bundle
    python deploy/wheelhouse.py check           # the lock matches pyproject.toml's closure

`lock` pins the runtime closure of pyproject.toml's dependencies (no extras) to the
versions installed in the running interpreter. `bundle` builds FlowLoom's wheel, has pip
download exactly the locked set as wheels for the target (Linux x86-64, CPython 3.11 by
default; `--python-version`, `--platform` to change), writes SHA256SUMS and copies the
lock. On the air-gapped machine:

    python3 -m venv /opt/flowloom
    /opt/flowloom/bin/pip install --no-index --find-links OUT -r OUT/requirements.lock OUT/flowloom-*.whl

Standard library and pip only: it runs where nothing else is installed yet.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "deploy" / "requirements.lock"
HEADER = (
    "# The runtime dependencies of FlowLoom, pinned: `python deploy/wheelhouse.py lock`.\n"
    "# Used by deploy/Dockerfile and the offline bundle (docs/airgap.md).\n"
)
DEFAULT_PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"]
_NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[([^\]]*)\])?")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _applies(requirement: str, extras: set[str]) -> bool:
    """Whether a requirement line holds on Linux/CPython for the given extras."""
    _, _, marker = requirement.partition(";")
    marker = marker.strip()
    if not marker:
        return True
    from packaging.markers import Marker  # pip vendors it; the venv has it too

    environments = [{"extra": extra} for extra in extras] or [{"extra": ""}]
    return any(Marker(marker).evaluate(env) for env in environments)


def closure() -> dict[str, str]:
    """{canonical name: installed version} of the runtime closure of pyproject.toml."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    todo: list[tuple[str, set[str]]] = []
    for line in project["dependencies"]:
        if _applies(line, set()):
            match = _NAME.match(line)
            assert match is not None, line
            todo.append((match.group(1), set(filter(None, (match.group(2) or "").split(",")))))
    pinned: dict[str, str] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        name, extras = todo.pop()
        key = (_canonical(name), frozenset(e.strip() for e in extras))
        if key in seen:
            continue
        seen.add(key)
        dist = metadata.distribution(name)
        pinned[_canonical(name)] = dist.version
        for line in dist.requires or []:
            if _applies(line, set(key[1])):
                match = _NAME.match(line)
                assert match is not None, line
                todo.append((match.group(1), set(filter(None, (match.group(2) or "").split(",")))))
    return dict(sorted(pinned.items()))


def lock_text() -> str:
    return HEADER + "".join(f"{name}=={version}\n" for name, version in closure().items())


def bundle(out: Path, python_version: str, platforms: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=False)
    with tempfile.TemporaryDirectory(prefix="flowloom-wheel-") as tmp:
        source = Path(tmp) / "source"
        source.mkdir()
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(ROOT / name, source / name)
        shutil.copytree(
            ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
        _pip("wheel", "--no-deps", "--wheel-dir", str(out), str(source))
    _pip(
        "download",
        "--only-binary=:all:",
        f"--python-version={python_version}",
        *(f"--platform={p}" for p in platforms),
        "--implementation=cp",
        "--dest",
        str(out),
        "--requirement",
        str(LOCK),
    )
    shutil.copy2(LOCK, out / "requirements.lock")
    sums = [
        f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}\n"
        for p in sorted(out.iterdir())
        if p.suffix == ".whl"
    ]
    (out / "SHA256SUMS").write_text("".join(sums), "utf-8")
    print(f"{len(sums)} wheels in {out}")


def _pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args, "--quiet"], check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("lock", help="rewrite deploy/requirements.lock")
    commands.add_parser("check", help="exit 1 if the lock does not match")
    made = commands.add_parser("bundle", help="build the offline bundle in OUT")
    made.add_argument("out", type=Path)
    made.add_argument("--python-version", default="3.11")
    made.add_argument(
        "--platform",
        action="append",
        help="pip platform tag (repeatable; default: Linux x86-64 manylinux_2_28 and older)",
    )
    args = parser.parse_args(argv)
    if args.command == "lock":
        LOCK.write_text(lock_text(), "utf-8")
        return 0
    if args.command == "check":
        if LOCK.read_text("utf-8") != lock_text():
            print("deploy/requirements.lock is stale: run `python deploy/wheelhouse.py lock`")
            return 1
        return 0
    bundle(args.out, args.python_version, args.platform or DEFAULT_PLATFORMS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
