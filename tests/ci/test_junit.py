"""JUnit XML as real test runners write it: pytest and node run here, Surefire as a fixture."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from flowloom.ci.junit import MAX_JUNIT_BYTES, JUnitError, TestCase, parse_junit, write_junit
from tests.ci import NO_PLUGINS

FIXTURES = Path(__file__).parent / "fixtures"

PYTEST_SUITE = """\
import pytest

def test_adds():
    assert 1 + 1 == 2

def test_pays():
    assert 2 + 2 == 5, "wrong total"

@pytest.mark.skip(reason="not on this platform")
def test_skipped():
    pass

@pytest.fixture
def broken():
    raise RuntimeError("no database")

def test_needs_db(broken):
    pass

class TestLedger:
    def test_balances(self):
        assert True
"""

NODE_SUITE = """\
import test from 'node:test';
import assert from 'node:assert';
test('adds', () => { assert.equal(1 + 1, 2); });
test('pays', () => { assert.equal(2 + 2, 5); });
test.skip('skipped one', () => {});
test('ledger', async (t) => {
  await t.test('balances', () => {});
  await t.test('rounds', () => {});
});
"""


def _outcomes(data: bytes, name: str = "results.xml") -> dict[str, str]:
    return {c.id: c.outcome for c in parse_junit(data, name).cases}


def test_pytest_junitxml_run_for_real(tmp_path: Path) -> None:
    (tmp_path / "test_suite.py").write_text(PYTEST_SUITE)
    out = tmp_path / "pytest.xml"
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={out}"],
        cwd=tmp_path,
        env={**os.environ, **NO_PLUGINS},
        capture_output=True,
        timeout=300,
        check=False,
    )
    parsed = parse_junit(out.read_bytes(), "pytest.xml")
    assert {c.id: c.outcome for c in parsed.cases} == {
        "test_suite::test_adds": "passed",
        "test_suite::test_pays": "failed",
        "test_suite::test_skipped": "skipped",
        "test_suite::test_needs_db": "error",
        "test_suite.TestLedger::test_balances": "passed",
    }
    assert not parsed.ok
    pays = next(c for c in parsed.cases if c.name == "test_pays")
    assert "wrong total" in pays.message
    assert parsed.summary()["tests"] == 5


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_node_test_runner_junit_run_for_real(tmp_path: Path) -> None:
    (tmp_path / "suite.test.mjs").write_text(NODE_SUITE)
    out = tmp_path / "node.xml"
    subprocess.run(
        [
            "node",
            "--test",
            "--test-reporter=junit",
            f"--test-reporter-destination={out}",
            "suite.test.mjs",
        ],
        cwd=tmp_path,
        capture_output=True,
        timeout=300,
        check=False,
    )
    parsed = parse_junit(out.read_bytes(), "node.xml")
    outcomes = {c.name: c.outcome for c in parsed.cases}
    # Subtests come as a nested <testsuite> beside the top-level <testcase> elements.
    assert outcomes == {
        "adds": "passed",
        "pays": "failed",
        "skipped one": "skipped",
        "balances": "passed",
        "rounds": "passed",
    }
    assert {c.suite for c in parsed.cases if c.name in ("balances", "rounds")} == {"ledger"}


def test_maven_surefire_report() -> None:
    parsed = parse_junit((FIXTURES / "surefire.xml").read_bytes(), "TEST-LedgerTest.xml")
    assert {c.name: c.outcome for c in parsed.cases} == {
        "postsBalancedEntries": "passed",
        "rejectsNegativeAmount": "failed",
        "readsRates": "error",
        "closesPeriod": "skipped",
        "roundsHalfEven": "passed",  # a flaky failure passed on its rerun
    }
    assert {c.suite for c in parsed.cases} == {"com.acme.pay.LedgerTest"}
    [failed] = [c for c in parsed.cases if c.outcome == "failed"]
    assert failed.message == "expected: <IllegalArgumentException> but was: <null>"
    assert failed.id == "com.acme.pay.LedgerTest::rejectsNegativeAmount"


def test_a_single_passing_testsuite_root() -> None:
    data = b'<testsuite name="s"><testcase classname="c" name="n" time="0.5"/></testsuite>'
    parsed = parse_junit(data, "one.xml")
    assert parsed.ok and parsed.cases == (TestCase("s", "c", "n", "passed", 0.5),)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 '
            b'"&lol;&lol;&lol;&lol;">]><testsuite><testcase name="&lol2;"/></testsuite>',
            "has a <!DOCTYPE>",
        ),
        (
            b'<?xml version="1.0"?><!DOCTYPE t [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
            b'<testsuite><testcase name="&xxe;"/></testsuite>',
            "has a <!DOCTYPE>",
        ),
        (b'<testsuite><testcase name="&xxe;"/></testsuite>', "undefined entity"),
        (b"PASS 12 tests\n", "not well-formed XML"),
        (b'<testsuite><testcase name="cut">', "not well-formed XML"),
        (b"<html><body>report</body></html>", "the root element is <html>"),
        (b'<testsuite name="s"><testcase classname="c"/></testsuite>', "without a name"),
    ],
)
def test_bad_files_are_refused_with_a_clear_error(data: bytes, message: str) -> None:
    with pytest.raises(JUnitError, match=r"^bad\.xml: ") as caught:
        parse_junit(data, "bad.xml")
    assert message in caught.value.message
    assert caught.value.exit_code == 3


def test_size_is_bounded() -> None:
    with pytest.raises(JUnitError, match="over the limit"):
        parse_junit(b" " * (MAX_JUNIT_BYTES + 1), "huge.xml")


def test_the_gates_junit_round_trips_and_is_never_taken_for_test_results() -> None:
    cases = [
        TestCase("flowloom check", "gate", "abc123 linked", "passed"),
        TestCase("flowloom check", "gate", 'def456 <unlinked> & "odd"', "failed", None, "no link"),
    ]
    written = write_junit("flowloom check", cases)
    assert [(c.name, c.outcome) for c in parse_junit(written, "gate.xml").cases] == [
        ("abc123 linked", "passed"),
        ('def456 <unlinked> & "odd"', "failed"),
    ]
    with pytest.raises(JUnitError, match="is the FlowLoom gate's verdict"):
        parse_junit(write_junit("flowloom check", cases, gate=True), "gate.xml")
