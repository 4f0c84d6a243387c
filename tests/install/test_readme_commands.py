"""The README's first section gives exactly two commands, and CI runs the same test one.

Why: the two commands are the project's promise to a newcomer; a renamed target or a CI
script that drifts from the README would break it silently.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _first_block() -> list[str]:
    text = (ROOT / "README.md").read_text("utf-8")
    block = re.search(r"```sh\n(.*?)```", text, re.S)
    assert block is not None, "the README's first section has no sh block"
    return [line.split("#", 1)[0].strip() for line in block.group(1).splitlines()]


def test_the_readme_gives_exactly_two_commands() -> None:
    assert [c for c in _first_block() if c] == ["make demo", "make test"]


def test_ci_runs_the_readmes_test_command_and_the_targets_exist() -> None:
    script = [
        line.split("#", 1)[0].strip()
        for line in (ROOT / ".ci" / "run").read_text("utf-8").splitlines()
    ]
    assert "make test" in script
    makefile = (ROOT / "Makefile").read_text("utf-8")
    for target in ("demo", "test", "trials"):
        assert re.search(rf"^{target}:", makefile, re.M), target


def test_every_package_the_readme_names_is_installed_by_the_makefile() -> None:
    readme = (ROOT / "README.md").read_text("utf-8")
    makefile = (ROOT / "Makefile").read_text("utf-8")
    named = re.search(r"missing \((.*?); see the Makefile", readme, re.S)
    assert named is not None
    for package in re.findall(r"[a-z0-9][a-z0-9.+-]+", named.group(1)):
        assert package in makefile, package
