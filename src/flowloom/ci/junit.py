"""JUnit XML: the test-result format every CI system and test runner writes.

There is no one schema, only habits. The root is ``<testsuites>`` (pytest, node's test
runner, Gradle's aggregate) or a single ``<testsuite>`` (Maven Surefire, many others);
suites nest (node puts subtests in a ``<testsuite>`` inside ``<testsuites>``, beside
bare ``<testcase>`` elements). A ``<testcase>`` failed when it holds ``<failure>``,
errored when it holds ``<error>``, was skipped when it holds ``<skipped>``, and passed
otherwise; Surefire's ``<flakyFailure>``/``<flakyError>`` (failed, then passed on a
rerun) are a pass, its ``<rerunFailure>`` only ever comes with a ``<failure>``. The
counts in suite attributes are not trusted: the cases are counted.

The files come from the build, which the code under test controls, so they are parsed
without a document type: a ``<!DOCTYPE>`` (entity declarations, external entities, the
"billion laughs") is refused before anything is expanded, and the size is bounded.
"""

from __future__ import annotations

import hashlib
import xml.parsers.expat
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal
from xml.etree.ElementTree import Element, SubElement, TreeBuilder, tostring

from flowloom.errors import InputError

__all__ = [
    "GATE_PROPERTY",
    "MAX_JUNIT_BYTES",
    "JUnitError",
    "JUnitFile",
    "Outcome",
    "TestCase",
    "parse_junit",
    "write_junit",
]

MAX_JUNIT_BYTES: Final = 64 * 1024 * 1024
"""The largest JUnit file read: far above any real suite's, far below a memory problem."""

MESSAGE_CHARS: Final = 500
"""How much of a failure's message is kept per case (the whole file is the CI's artifact)."""

GATE_PROPERTY: Final = "flowloom.gate"
"""The suite property that marks `flowloom check --junit` output: the gate's verdict
shown in the CI's test view, never test results (`flowloom ci record` refuses it)."""

Outcome = Literal["passed", "failed", "error", "skipped"]


class JUnitError(InputError):
    """A file that is not JUnit XML FlowLoom can read; nothing was recorded."""


@dataclass(frozen=True)
class TestCase:
    """One test case as the file reports it."""

    __test__ = False  # not a pytest class

    suite: str
    classname: str
    name: str
    outcome: Outcome
    time: float | None = None
    message: str = ""

    @property
    def id(self) -> str:
        """``classname::name`` (or the suite's name when there is no classname)."""
        return f"{self.classname or self.suite}::{self.name}"

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "suite": self.suite,
            "classname": self.classname,
            "name": self.name,
            "outcome": self.outcome,
        }
        if self.time is not None:
            data["time"] = self.time
        if self.message:
            data["message"] = self.message
        return data


@dataclass(frozen=True)
class JUnitFile:
    """The test cases of one JUnit file, and the file's digest (to match the CI artifact)."""

    name: str
    sha256: str
    cases: tuple[TestCase, ...]

    def count(self, outcome: Outcome) -> int:
        return sum(1 for c in self.cases if c.outcome == outcome)

    @property
    def ok(self) -> bool:
        return not any(c.outcome in ("failed", "error") for c in self.cases)

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "sha256": self.sha256,
            "tests": len(self.cases),
            "failed": self.count("failed"),
            "errors": self.count("error"),
            "skipped": self.count("skipped"),
        }


def _refuse_doctype(*_: object) -> None:
    raise JUnitError("has a <!DOCTYPE>: JUnit XML needs none, and entities are not expanded")


def _tree(data: bytes, name: str) -> Element:
    """The document's root element, parsed by expat with no document type allowed."""
    builder = TreeBuilder()
    parser = xml.parsers.expat.ParserCreate()
    parser.SetParamEntityParsing(xml.parsers.expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _refuse_doctype
    parser.EntityDeclHandler = _refuse_doctype
    parser.ExternalEntityRefHandler = lambda *_: _refuse_doctype()  # type: ignore[assignment]
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    parser.buffer_text = True
    parser.ordered_attributes = False
    try:
        parser.Parse(data, True)
    except xml.parsers.expat.ExpatError as exc:
        raise JUnitError(
            f"{name}: not well-formed XML ({xml.parsers.expat.errors.messages[exc.code]}, "
            f"line {exc.lineno}, column {exc.offset})"
        ) from None
    except JUnitError as exc:
        raise JUnitError(f"{name}: {exc.message}") from None
    return builder.close()


def _local(tag: str) -> str:
    """The tag without a namespace (``{uri}testcase`` → ``testcase``)."""
    return tag.rpartition("}")[2]


def _first(case: Element, *tags: str) -> Element | None:
    for child in case:
        if _local(child.tag) in tags:
            return child
    return None


def _case(element: Element, suite: str) -> TestCase:
    failure = _first(element, "failure")
    error = _first(element, "error")
    skipped = _first(element, "skipped")
    outcome: Outcome
    found: Element | None
    if failure is not None:
        outcome, found = "failed", failure
    elif error is not None:
        outcome, found = "error", error
    elif skipped is not None:
        outcome, found = "skipped", skipped
    else:
        outcome, found = "passed", None
    message = ""
    if found is not None:
        message = found.get("message") or (found.text or "").strip().partition("\n")[0]
    seconds: float | None
    try:
        seconds = float(element.get("time", ""))
    except ValueError:
        seconds = None
    return TestCase(
        suite=suite,
        classname=element.get("classname", ""),
        name=element.get("name", ""),
        outcome=outcome,
        time=seconds,
        message=message[:MESSAGE_CHARS],
    )


def parse_junit(data: bytes, name: str) -> JUnitFile:
    """The test cases in JUnit XML `data` (from the file `name`); JUnitError if it is not."""
    if len(data) > MAX_JUNIT_BYTES:
        raise JUnitError(f"{name}: {len(data)} bytes, over the limit of {MAX_JUNIT_BYTES}")
    root = _tree(data, name)
    if _local(root.tag) not in ("testsuites", "testsuite"):
        raise JUnitError(
            f"{name}: not JUnit XML (the root element is <{_local(root.tag)}>, "
            "not <testsuites> or <testsuite>)"
        )
    cases: list[TestCase] = []

    def walk(element: Element, suite: str) -> None:
        for child in element:
            tag = _local(child.tag)
            if tag == "testcase":
                if not child.get("name"):
                    raise JUnitError(f"{name}: a <testcase> without a name (in suite {suite!r})")
                cases.append(_case(child, suite))
            elif tag == "testsuite":
                walk(child, child.get("name", suite))

    for element in root.iter():
        if _local(element.tag) == "property" and element.get("name") == GATE_PROPERTY:
            raise JUnitError(
                f"{name}: is the FlowLoom gate's verdict (flowloom check --junit), not test "
                "results; nothing was recorded",
                hint="give the JUnit files your test runner wrote",
            )
    walk(root, root.get("name", "") if _local(root.tag) == "testsuite" else "")
    return JUnitFile(name=name, sha256=hashlib.sha256(data).hexdigest(), cases=tuple(cases))


def write_junit(suite: str, cases: Sequence[TestCase], *, gate: bool = False) -> bytes:
    """JUnit XML for `cases` in one suite (``<testsuites>`` root, as pytest writes it)."""
    root = Element("testsuites", {"name": suite})
    counts = {
        "tests": str(len(cases)),
        "failures": str(sum(1 for c in cases if c.outcome == "failed")),
        "errors": str(sum(1 for c in cases if c.outcome == "error")),
        "skipped": str(sum(1 for c in cases if c.outcome == "skipped")),
    }
    element = SubElement(root, "testsuite", {"name": suite, **counts})
    if gate:
        properties = SubElement(element, "properties")
        SubElement(properties, "property", {"name": GATE_PROPERTY, "value": "true"})
    for case in cases:
        attributes = {"classname": case.classname, "name": case.name}
        if case.time is not None:
            attributes["time"] = f"{case.time:.3f}"
        item = SubElement(element, "testcase", attributes)
        tag = {"failed": "failure", "error": "error", "skipped": "skipped"}.get(case.outcome)
        if tag is not None:
            detail = SubElement(item, tag, {"message": case.message.partition("\n")[0]})
            detail.text = case.message
    return (
        b'<?xml version="1.0" encoding="utf-8"?>\n'
        + bytes(tostring(root, encoding="utf-8", xml_declaration=False))
        + b"\n"
    )
