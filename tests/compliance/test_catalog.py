"""The control catalogue: every framework the issue names, every clause, honest mappings."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from flowloom.compliance.catalog import FRAMEWORKS, load_catalog, load_framework, parse_framework
from flowloom.compliance.checks import CHECKS
from flowloom.errors import ConfigError, InputError

REQUIRED = {
    "sox": {
        "ITGC CM-1",  # changes authorized
        "ITGC CM-2",  # segregation of duties
        "ITGC CM-3",  # tested before deployment
        "ITGC CM-4",  # emergency changes
        "ITGC CM-5",  # complete population
        "ITGC CM-6",  # change records unaltered
        "ITGC CM-7",  # develop/deploy separation
        "ITGC AC-1",  # provisioning
        "ITGC AC-2",  # deprovisioning
        "ITGC AC-3",  # privileged access
        "ITGC AC-4",  # periodic access review
    },
    "part11": {
        *(f"§11.10({letter})" for letter in "abcdefghijk"),
        "§11.30",
        "§11.50",
        "§11.70",
        *(f"§11.100({letter})" for letter in "abc"),
        "§11.200(a)",
        "§11.200(b)",
        *(f"§11.300({letter})" for letter in "abcde"),
    },
    "iso27001": {
        "A.5.3",
        "A.5.23",
        "A.5.33",
        "A.8.4",
        "A.8.9",
        "A.8.11",
        "A.8.12",
        "A.8.15",
        "A.8.16",
        "A.8.17",
        *(f"A.8.{n}" for n in range(24, 34)),
    },
    "hipaa": {
        "§164.308(a)(1)(ii)(D)",
        "§164.312(a)(1)",
        "§164.312(a)(2)(i)",
        "§164.312(a)(2)(ii)",
        "§164.312(a)(2)(iii)",
        "§164.312(a)(2)(iv)",
        "§164.312(b)",
        "§164.312(c)(1)",
        "§164.312(c)(2)",
        "§164.312(d)",
        "§164.312(e)(1)",
        "§164.316(a)",
        "§164.316(b)(1)",
        "§164.316(b)(2)",
    },
    "gdpr": {
        "Art. 5",
        "Art. 15",
        "Art. 17",
        "Art. 25",
        "Art. 28",
        "Art. 30",
        "Art. 32",
        "Art. 33",
        "Art. 44–49",
    },
    "soc2": {"CC6.1", "CC6.2", "CC6.3", "CC7.2", "CC8.1"},
    "euaiact": {"Art. 12", "Art. 19"},
    "ssdf": {"PO.3", "PS.1", "PS.2", "PS.3", "PW.7", "PW.8"},
    "sec17a4": {"17a-4(f)(2)(i)(A)", "17a-4(f)(2)(i)(B)", "17a-4(f)(2)(ii)", "17a-4(b), (f)"},
}
"""Every clause the issue "Evidence an auditor accepts" lists, per framework."""

OVER_CLAIMS = (
    "part11-11.10a",  # system validation, once taken from ledger integrity
    "part11-11.10d",  # limited access, once passing because no disabled user acted
    *(f"part11-11.300{letter}" for letter in "abcde"),  # the same for §11.300
    "gdpr-art30",  # records of processing, once passing from the retention check
    "iso27001-8.26",  # security requirements, once passing from AI traceability
)
"""Controls the issue found over-claimed: none of them may pass on its checks alone."""


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
            assert control.clause.strip() and control.requirement.strip(), control.id
            assert set(control.checks) <= set(CHECKS), control.id
            if control.checks:  # what the automated part evidences, in words
                assert len(control.automated) > 20, control.id
            else:  # a manual control lists the evidence still to collect
                assert control.coverage == "manual" and control.requests, control.id
            if control.requests:
                assert control.manual.strip(), control.id
                assert all(len(r) > 10 for r in control.requests), control.id
            used |= set(control.checks)
    assert used == set(CHECKS)  # every check gives evidence for some control


def test_the_listed_over_claims_can_no_longer_pass() -> None:
    """A control whose checks cover only part of it is never `pass` (it is partly
    automated or manual); the issue's over-claims are among them."""
    controls = {c.id: c for f in load_catalog().values() for c in f.controls}
    for control_id in OVER_CLAIMS:
        assert controls[control_id].coverage != "automated", control_id
    assert not controls["gdpr-art30"].checks  # no retention check stands in for Art. 30
    assert not controls["iso27001-8.26"].checks  # nor AI traceability for A.8.26
    assert "retention" not in controls["gdpr-art30"].checks
    assert controls["part11-11.10a"].automated.startswith("the ability to discern")


def test_the_catalogue_tables_in_the_docs_are_generated_from_the_data() -> None:
    """docs/compliance.md holds `catalog_markdown()` verbatim (regenerate it with
    ``python -c 'from flowloom.compliance.catalog import catalog_markdown as m; print(m())'``
    and paste it between the two markers)."""
    from pathlib import Path

    from flowloom.compliance.catalog import catalog_markdown

    docs = (Path(__file__).resolve().parents[2] / "docs" / "compliance.md").read_text()
    begin, end = "<!-- catalogue: begin -->\n", "<!-- catalogue: end -->"
    assert begin in docs and end in docs
    written = docs.split(begin, 1)[1].split(end, 1)[0]
    assert written.strip() == catalog_markdown().strip()


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
    control = '[[control]]\nid = "a"\nclause = "1"\ntitle = "t"\nrequirement = "r"\n'
    with pytest.raises(ConfigError, match="manual evidence"):
        parse_framework(head + control, where="x.toml")
    with pytest.raises(ConfigError, match="manual evidence"):  # a note is not a request list
        parse_framework(head + control + 'manual = "ask"\n', where="x.toml")
    with pytest.raises(ConfigError, match="what the checks evidence"):
        parse_framework(head + control + 'checks = ["erasure"]\n', where="x.toml")
    with pytest.raises(ConfigError, match="manual and requests go together"):
        parse_framework(head + control + 'requests = ["the policy"]\n', where="x.toml")
    with pytest.raises(ConfigError, match="unknown keys status"):
        parse_framework(
            head + control + 'checks = ["erasure"]\nautomated = "x"\nstatus = "pass"\n',
            where="x.toml",
        )
    automated = control + 'checks = ["erasure"]\nautomated = "erasures are complete"\n'
    with pytest.raises(ConfigError, match="duplicate control id"):
        parse_framework(head + automated * 2, where="x.toml")
    partial = parse_framework(
        head + automated + 'manual = "m"\nrequests = ["the policy"]\n', where="x.toml"
    )
    assert partial.controls[0].coverage == "partly automated"
