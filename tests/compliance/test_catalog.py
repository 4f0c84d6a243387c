"""The control catalogue: every framework the issue names, every clause, honest mappings."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from flowloom.compliance.catalog import FRAMEWORKS, load_catalog, load_framework, parse_framework
from flowloom.compliance.checks import CHECKS
from flowloom.errors import ConfigError, InputError

REQUIRED = {
    "sox": {"ITGC CM-1", "ITGC CM-2", "ITGC CM-3", "ITGC CM-4", "ITGC CM-5"},
    "part11": {
        *(f"§11.10({letter})" for letter in "abcdefghijk"),
        "§11.50",
        "§11.70",
        "§11.100",
        "§11.200",
        "§11.300",
    },
    "iso27001": {"A.5.3", "A.5.33", "A.8.15", "A.8.25", "A.8.26", "A.8.27", "A.8.28", "A.8.32"},
    "hipaa": {"§164.312(b)", "§164.312(c)(1)", "§164.312(c)(2)"},
    "gdpr": {"Art. 17", "Art. 25", "Art. 30"},
    "soc2": {"CC8.1"},
    "euaiact": {"Art. 12", "Art. 19"},
    "ssdf": {"PO.3", "PS.2", "PS.3"},
    "sec17a4": {"17a-4(f)(2)(i)(A)", "17a-4(f)(2)(i)(B)", "17a-4(f)(2)(ii)"},
}


def test_every_framework_and_clause_is_catalogued() -> None:
    catalog = load_catalog()
    assert set(catalog) == set(REQUIRED) == set(FRAMEWORKS)
    for name, framework in catalog.items():
        clauses = {c.clause for c in framework.controls}
        assert REQUIRED[name] <= clauses, name
        assert framework.version and all(c.version == framework.version for c in framework.controls)
        assert all(c.framework == name for c in framework.controls)


def test_controls_map_to_real_checks_or_say_what_is_manual() -> None:
    used: set[str] = set()
    for framework in load_catalog().values():
        for control in framework.controls:
            assert set(control.checks) <= set(CHECKS), control.id
            assert control.checks or control.manual, control.id
            used |= set(control.checks)
    assert used == set(CHECKS)  # every check gives evidence for some control


def test_wording_never_claims_certification() -> None:
    for name in FRAMEWORKS:
        text = resources.files("flowloom.compliance.catalog").joinpath(f"{name}.toml").read_text()
        assert not re.search(r"\bcertif(ied|ies)\b|\bcompliant\b", text, re.IGNORECASE), name


def test_bad_catalogue_files_are_refused() -> None:
    with pytest.raises(InputError, match="unknown framework"):
        load_framework("pci")
    head = 'framework = "x"\ntitle = "X"\nversion = "1"\n'
    with pytest.raises(ConfigError, match="no \\[\\[control\\]\\]"):
        parse_framework(head, where="x.toml")
    no_evidence = head + '[[control]]\nid = "a"\nclause = "1"\ntitle = "t"\nrequirement = "r"\n'
    with pytest.raises(ConfigError, match="manual evidence"):
        parse_framework(no_evidence, where="x.toml")
    control = '[[control]]\nid = "a"\nclause = "1"\ntitle = "t"\nrequirement = "r"\n'
    twice = head + (control + 'checks = ["erasure"]\n') * 2
    with pytest.raises(ConfigError, match="duplicate control id"):
        parse_framework(twice, where="x.toml")
