"""The event envelope and the kind catalogue: pinned bytes, round trips, every refusal, docs.

The pinned canonical bytes below are the ledger format: if this test has to change, every
existing leaf hash changes with it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pickle
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from hypothesis import given
from hypothesis import strategies as st

from flowloom.errors import InputError, UnknownKindError
from flowloom.ledger.canonical import MAX_DEPTH
from flowloom.ledger.event import (
    ACTOR_TYPES,
    KIND_FAMILIES,
    KINDS,
    MAX_EVENT_BYTES,
    Actor,
    Event,
    GitContext,
    format_ts,
    is_known_kind,
    now_ts,
    parse_ts,
    validate_kind,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "events.md"

HEAD = "9fceb02d0ae598e95dc970b74767f19372d61af8"
DIGEST = "sha256:" + hashlib.sha256(b"").hexdigest()

EXAMPLE: dict[str, Any] = {
    "v": 1,
    "kind": "agent.prompt",
    "ts": "2026-11-22T02:40:00.123456Z",
    "project": "acme/payments",
    "actor": {"type": "agent", "id": "claude-code@dev-42", "name": "Claude Code"},
    "session": "0b5c2a0e-7d1f-4a3b-9c4e-5f6a7b8c9d0e",
    "git": {"branch": "main", "head": HEAD},
    "subject": "src/payments/refunds.py",
    "body": DIGEST,
    "refs": {"decision": "dec-0042", "entries": [3, 7], "score": 0.5, "note": "café ☕"},
}

EXAMPLE_CANONICAL = (
    b'{"actor":{"id":"claude-code@dev-42","name":"Claude Code","type":"agent"},'
    b'"body":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",'
    b'"git":{"branch":"main","head":"9fceb02d0ae598e95dc970b74767f19372d61af8"},'
    b'"kind":"agent.prompt","project":"acme/payments",'
    b'"refs":{"decision":"dec-0042","entries":[3,7],"note":"caf\xc3\xa9 \xe2\x98\x95",'
    b'"score":0.5},'
    b'"session":"0b5c2a0e-7d1f-4a3b-9c4e-5f6a7b8c9d0e","subject":"src/payments/refunds.py",'
    b'"ts":"2026-11-22T02:40:00.123456Z","v":1}'
)


def envelope(**changes: Any) -> dict[str, Any]:
    """EXAMPLE with fields replaced; a value of ... removes the field."""
    result: dict[str, Any] = json.loads(json.dumps(EXAMPLE))
    for name, value in changes.items():
        if value is ...:
            result.pop(name, None)
        else:
            result[name] = value
    return result


def refused(obj: object) -> str:
    with pytest.raises(InputError) as caught:
        Event.from_json(obj)
    message = str(caught.value)
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------- format


def test_canonical_bytes_of_the_example_are_pinned() -> None:
    event = Event.from_json(EXAMPLE)
    assert event.canonical() == EXAMPLE_CANONICAL
    assert event.canonical() == rfc8785.dumps(EXAMPLE)
    assert hashlib.sha256(b"\x00" + event.canonical()).hexdigest() == (
        hashlib.sha256(b"\x00" + EXAMPLE_CANONICAL).hexdigest()
    )


def test_minimal_event_omits_unset_fields() -> None:
    event = Event(
        kind="session.start",
        ts="2026-01-01T00:00:00.000000Z",
        project="p",
        actor=Actor(type="human", id="ada"),
    )
    assert event.to_json() == {
        "v": 1,
        "kind": "session.start",
        "ts": "2026-01-01T00:00:00.000000Z",
        "project": "p",
        "actor": {"type": "human", "id": "ada"},
    }
    assert event.canonical() == (
        b'{"actor":{"id":"ada","type":"human"},"kind":"session.start","project":"p",'
        b'"ts":"2026-01-01T00:00:00.000000Z","v":1}'
    )


def test_round_trips() -> None:
    event = Event.from_json(EXAMPLE)
    assert event.to_json() == EXAMPLE
    assert Event.from_json(event.to_json()) == event
    assert Event.parse(event.canonical()) == event
    assert Event.parse(event.canonical().decode()) == event
    assert Event.parse(json.dumps(EXAMPLE, indent=2).encode()) == event  # not canonical
    assert event.actor == Actor("agent", "claude-code@dev-42", "Claude Code")
    assert event.git == GitContext(branch="main", head=HEAD)


def test_constructor_and_from_json_agree() -> None:
    built = Event(
        "agent.prompt",
        "2026-11-22T02:40:00.123456Z",
        "acme/payments",
        Actor("agent", "claude-code@dev-42", "Claude Code"),
        session="0b5c2a0e-7d1f-4a3b-9c4e-5f6a7b8c9d0e",
        git=GitContext("main", HEAD),
        subject="src/payments/refunds.py",
        body=DIGEST,
        refs=EXAMPLE["refs"],
    )
    assert built.canonical() == EXAMPLE_CANONICAL


def test_empty_refs_are_omitted() -> None:
    event = Event.from_json(envelope(refs={}))
    assert "refs" not in event.to_json()
    assert event == Event.from_json(envelope(refs=...))


@pytest.mark.parametrize(
    "git",
    [{"branch": "main"}, {"head": HEAD}, {"head": "a" * 64}, {"branch": "feature/x", "head": HEAD}],
)
def test_git_may_have_branch_or_head(git: dict[str, str]) -> None:
    assert Event.from_json(envelope(git=git)).to_json()["git"] == git


# --------------------------------------------------------------------------- immutability


def test_events_are_immutable() -> None:
    refs = {"list": [1, {"deep": [2]}], "map": {"a": 1}}
    event = Event.from_json(envelope(refs=refs))
    refs["list"][1]["deep"].append(3)  # type: ignore[index]
    refs["map"]["b"] = 2  # type: ignore[index]
    assert event.to_json()["refs"] == {"list": [1, {"deep": [2]}], "map": {"a": 1}}
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.kind = "agent.tool"  # type: ignore[misc]
    with pytest.raises(TypeError):
        event.refs["map"]["c"] = 3
    assert event.refs["list"] == (1, {"deep": (2,)})
    copy = event.to_json()
    copy["refs"]["map"]["a"] = 99  # type: ignore[index, call-overload]
    assert event.refs["map"]["a"] == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.actor.id = "mallory"  # type: ignore[misc]


def test_equality_hash_pickle_replace() -> None:
    event = Event.from_json(EXAMPLE)
    same = Event.parse(EXAMPLE_CANONICAL)
    assert event == same
    assert hash(event) == hash(same)
    assert len({event, same}) == 1
    assert event != Event.from_json(envelope(subject="other"))
    assert event != EXAMPLE
    assert pickle.loads(pickle.dumps(event)) == event
    changed = dataclasses.replace(event, kind="agent.response")
    assert changed.kind == "agent.response"
    assert changed.canonical() != event.canonical()
    with pytest.raises(UnknownKindError):
        dataclasses.replace(event, kind="agent.unknown")


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ([], "event must be a JSON object, got an array"),
        ("{}", "event must be a JSON object"),
        (envelope(v=...), "missing the required field 'v'"),
        (envelope(kind=...), "missing the required field 'kind'"),
        (envelope(ts=...), "missing the required field 'ts'"),
        (envelope(project=...), "missing the required field 'project'"),
        (envelope(actor=...), "missing the required field 'actor'"),
        (envelope(v=2), "field 'v' must be 1, got int 2"),
        (envelope(v=True), "field 'v' must be 1, got bool True"),
        (envelope(v=1.0), "field 'v' must be 1, got float 1.0"),
        (envelope(v="1"), "field 'v' must be 1, got '1'"),
        (envelope(kind=7), "field 'kind' must be a string, got int 7"),
        (envelope(ts="2026-11-22T02:40:00Z"), "field 'ts' must be a UTC time like"),
        (envelope(ts="2026-11-22T02:40:00.123Z"), "six fractional digits"),
        (envelope(ts="2026-11-22T02:40:00.1234567Z"), "field 'ts'"),
        (envelope(ts="2026-11-22T02:40:00.123456+00:00"), "field 'ts'"),
        (envelope(ts="2026-11-22T02:40:00.123456z"), "field 'ts'"),
        (envelope(ts="2026-11-22 02:40:00.123456Z"), "field 'ts'"),
        (envelope(ts="2026-13-22T02:40:00.123456Z"), "field 'ts'"),
        (envelope(ts="2026-02-30T02:40:00.123456Z"), "field 'ts'"),
        (envelope(ts="2026-11-22T24:00:00.000000Z"), "field 'ts'"),
        (envelope(ts="2026-11-22T23:59:60.000000Z"), "field 'ts'"),
        (envelope(ts="２026-11-22T02:40:00.123456Z"), "field 'ts'"),
        (envelope(ts=1_700_000_000), "got int 1700000000"),
        (envelope(project=""), "field 'project' must be a non-empty string"),
        (envelope(project=["p"]), "field 'project' must be a non-empty string, got an array"),
        (envelope(actor="ada"), "field 'actor' must be a JSON object, got 'ada'"),
        (envelope(actor={"type": "robot", "id": "r"}), "'actor.type' must be one of agent, human"),
        (envelope(actor={"type": "Human", "id": "r"}), "'actor.type'"),
        (envelope(actor={"type": "human"}), "missing the required field 'actor.id'"),
        (envelope(actor={"id": "x"}), "missing the required field 'actor.type'"),
        (envelope(actor={"type": "human", "id": ""}), "'actor.id' must be a non-empty string"),
        (envelope(actor={"type": "human", "id": 5}), "'actor.id' must be a non-empty string"),
        (envelope(actor={"type": "human", "id": "a", "name": ""}), "'actor.name' must be"),
        (envelope(actor={"type": "human", "id": "a", "name": None}), "'actor.name' is null"),
        (envelope(actor={"type": "human", "id": "a", "email": "x"}), "unknown member(s) 'email'"),
        (envelope(session=""), "field 'session' must be a non-empty string"),
        (envelope(session=None), "field 'session' is null; omit it instead"),
        (envelope(session=12), "field 'session' must be a non-empty string, got int 12"),
        (envelope(git=[]), "field 'git' must be a JSON object"),
        (envelope(git={}), "'git' needs a branch, a head, or both"),
        (envelope(git={"branch": "main", "tag": "v1"}), "'git' has unknown member(s) 'tag'"),
        (envelope(git={"head": HEAD.upper()}), "'git.head' must be a commit id of 40 or 64"),
        (envelope(git={"head": HEAD[:-1]}), "'git.head'"),
        (envelope(git={"head": HEAD + "00"}), "'git.head'"),
        (envelope(git={"head": "g" * 40}), "'git.head'"),
        (envelope(git={"head": HEAD + "\n"}), "'git.head'"),
        (envelope(git={"branch": ""}), "'git.branch' must be a non-empty string"),
        (envelope(git={"branch": "main", "head": None}), "'git.head' is null"),
        (envelope(subject=""), "field 'subject' must be a non-empty string"),
        (
            envelope(body="e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
            "'body'",
        ),
        (envelope(body=DIGEST.upper()), "'sha256:' and 64 lowercase hex digits"),
        (envelope(body="sha512:" + "0" * 64), "field 'body'"),
        (envelope(body=DIGEST[:-1]), "field 'body'"),
        (envelope(body=DIGEST + "\n"), "field 'body'"),
        (envelope(refs=[]), "field 'refs' must be an object, got an array"),
        (envelope(refs="x"), "field 'refs' must be an object"),
        (envelope(refs={"x": float("nan")}), "at $.refs.x"),
        (envelope(refs={"x": [2**60]}), "at $.refs.x[0]"),
        (envelope(refs={"x": {"y": b"raw"}}), "cannot canonicalize bytes at $.refs.x.y"),
        (envelope(refs={"x": "\ud800"}), "lone surrogate"),
        (envelope(subject="\udc00"), "lone surrogate"),
        (envelope(refs={1: "x"}), "keys must be strings"),
        (envelope(extra=1), "event has unknown member(s) 'extra'; allowed: actor, body"),
        (envelope(Kind="x"), "unknown member(s) 'Kind'"),
    ],
)
def test_refusals_name_the_field(obj: object, expected: str) -> None:
    assert expected in refused(obj)


def test_deeply_nested_refs_are_refused() -> None:
    deep: Any = 1
    for _ in range(MAX_DEPTH + 3):
        deep = [deep]
    assert "nested deeper than" in refused(envelope(refs={"x": deep}))


def test_constructor_validates_too() -> None:
    actor = Actor("agent", "a")
    with pytest.raises(InputError, match="field 'actor' must be an Actor"):
        Event("agent.tool", now_ts(), "p", {"type": "agent", "id": "a"})  # type: ignore[arg-type]
    with pytest.raises(InputError, match="field 'git' must be a GitContext"):
        Event("agent.tool", now_ts(), "p", actor, git={"branch": "main"})  # type: ignore[arg-type]
    with pytest.raises(InputError, match="field 'v' must be 1"):
        Event("agent.tool", now_ts(), "p", actor, v=2)
    with pytest.raises(InputError, match="field 'refs' must be an object"):
        Event("agent.tool", now_ts(), "p", actor, refs=[1])  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"'actor\.type' must be one of"):
        Actor("bot", "b")
    with pytest.raises(InputError, match="needs a branch, a head, or both"):
        GitContext()


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"{", "invalid event: Expecting property name enclosed in double quotes"),
        (b'{"v":1,"v":1}', 'invalid event: duplicate key "v" at line 1 column 8'),
        (b'{"v":1,"kind":"agent.prompt\xff"}', "invalid event: not valid UTF-8 at byte offset"),
        (b'{"v":NaN}', "invalid event: NaN is not a JSON number"),
        (b"[]", "event must be a JSON object, got an array"),
        (b'{"v":1.0}', "field 'v' must be 1"),
    ],
)
def test_parse_refusals(data: bytes, expected: str) -> None:
    with pytest.raises(InputError) as caught:
        Event.parse(data)
    assert expected in str(caught.value)


def test_size_limit_is_on_the_canonical_envelope() -> None:
    base = len(Event.from_json(envelope(subject="x")).canonical())
    at_limit = Event.from_json(envelope(subject="x" * (MAX_EVENT_BYTES - base + 1)))
    assert len(at_limit.canonical()) == MAX_EVENT_BYTES == 65_535
    assert Event.parse(at_limit.canonical()) == at_limit
    message = refused(envelope(subject="x" * (MAX_EVENT_BYTES - base + 2)))
    assert "event is 65,536 bytes canonicalized, over the limit of 65,535" in message
    # Counted in UTF-8 bytes of the canonical form, escapes included.
    assert "over the limit" in refused(envelope(refs={"s": "\x01" * 11_000}))
    assert "over the limit" in refused(envelope(subject="é" * 33_000))


# --------------------------------------------------------------------------- kinds


def test_every_catalogued_kind_is_accepted() -> None:
    for kind in KINDS:
        assert is_known_kind(kind)
        assert validate_kind(kind) == kind
        assert Event.from_json(envelope(kind=kind)).kind == kind
    assert set(KINDS) >= {
        "session.start",
        "erasure.tombstone",
        "capture.error",
        "ci.result",
        "test.result",
        "capture.bypass",
        "compliance.response",
        "access.review_opened",
        "access.review_decided",
        "access.review_closed",
        "scan.result",
        "database.restore",
    }
    assert len(KINDS) == 29


@pytest.mark.parametrize(
    "kind",
    ["auth.login", "auth.login_failed", "auth.key_created", "key.generated", "key.rotated",
     "memory.add", "memory.x1", "auth.a"],
)  # fmt: skip
def test_family_kinds_are_accepted(kind: str) -> None:
    assert is_known_kind(kind)
    assert Event.from_json(envelope(kind=kind)).kind == kind


@pytest.mark.parametrize(
    "kind",
    ["auth", "auth.", "auth.Login", "auth.login.failed", "auth.1x", "auth._x", "auth.lo-gin",
     "auth.login\n", "keys.generated", "agent.unknown", "Agent.prompt", "agent.prompt ",
     "", "session", "memory.é"],
)  # fmt: skip
def test_unknown_kinds_are_refused(kind: str) -> None:
    assert not is_known_kind(kind)
    with pytest.raises(UnknownKindError) as caught:
        validate_kind(kind)
    assert "unknown event kind" in str(caught.value)
    assert caught.value.hint is not None
    assert "auth.*, key.*, memory.*" in caught.value.hint
    assert "docs/events.md" in caught.value.hint
    with pytest.raises(UnknownKindError):
        Event.from_json(envelope(kind=kind))


def test_unknown_kind_messages_help() -> None:
    with pytest.raises(UnknownKindError, match=r"did you mean 'agent\.prompt'"):
        validate_kind("agent.promt")
    with pytest.raises(UnknownKindError, match="auth is a family, give a suffix"):
        validate_kind("auth")
    assert not is_known_kind(None)
    assert UnknownKindError("x").exit_code == 3


def test_families_do_not_overlap_the_catalogue() -> None:
    assert set(KIND_FAMILIES) == {"auth", "key", "memory", "integration"}
    assert not any(kind.split(".")[0] in KIND_FAMILIES for kind in KINDS)
    assert all(re.fullmatch(r"[a-z]+\.[a-z_]+", kind) for kind in KINDS)


# --------------------------------------------------------------------------- timestamps


def test_format_ts() -> None:
    moment = datetime(2026, 11, 22, 2, 40, 0, 123456, tzinfo=UTC)
    assert format_ts(moment) == "2026-11-22T02:40:00.123456Z"
    assert now_ts(moment) == "2026-11-22T02:40:00.123456Z"
    assert format_ts(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2026-01-02T03:04:05.000000Z"
    plus_two = timezone(timedelta(hours=2))
    assert format_ts(datetime(2026, 1, 1, 1, 0, 0, 7, tzinfo=plus_two)) == (
        "2025-12-31T23:00:00.000007Z"
    )
    assert format_ts(datetime(999, 1, 1, tzinfo=UTC)) == "0999-01-01T00:00:00.000000Z"
    with pytest.raises(ValueError, match="timezone-aware"):
        format_ts(datetime(2026, 1, 1))


def test_now_ts_is_valid_and_current() -> None:
    stamp = now_ts()
    assert abs(parse_ts(stamp) - datetime.now(UTC)) < timedelta(minutes=1)
    Event("session.start", stamp, "p", Actor("human", "ada"))


@given(st.datetimes(timezones=st.just(UTC)))
def test_timestamps_round_trip(moment: datetime) -> None:
    assert parse_ts(format_ts(moment)) == moment


# --------------------------------------------------------------------------- docs


def docs_table(heading: str) -> dict[str, str]:
    """The rows of the first table under a '### heading' in docs/events.md."""
    text = DOCS.read_text(encoding="utf-8")
    section = text.split(f"### {heading}\n", 1)[1].split("\n#", 1)[0]
    rows = re.findall(r"^\| `([^`]+)` \| (.+?) \|$", section, flags=re.MULTILINE)
    return dict(rows)


def test_docs_list_exactly_the_catalogue() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for kind in KINDS:
        assert f"`{kind}`" in text
    for family in KIND_FAMILIES:
        assert f"`{family}.*`" in text
    assert docs_table("Kinds") == dict(KINDS)
    families = docs_table("Families")
    assert set(families) == {f"{name}.*" for name in KIND_FAMILIES}
    for name, description in KIND_FAMILIES.items():
        assert families[f"{name}.*"].replace("`", "") == description


def test_docs_example_canonicalizes_as_shown() -> None:
    text = DOCS.read_text(encoding="utf-8")
    example = text.split("```json\n", 1)[1].split("```", 1)[0]
    shown = text.split("The example above, canonicalised:\n\n```\n", 1)[1].split("\n```", 1)[0]
    assert Event.parse(example.encode()).canonical() == shown.encode()


def test_docs_mention_every_actor_type_and_the_limit() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for actor_type in ACTOR_TYPES:
        assert f'"{actor_type}"' in text
    assert "65,535 bytes" in text


# --------------------------------------------------------------------------- import weight


def test_import_is_stdlib_only() -> None:
    code = (
        "import sys; import flowloom.ledger.event; "
        "print('\\n'.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout.split()
    foreign = [
        name
        for name in loaded
        if name not in sys.stdlib_module_names and name != "flowloom" and not name.startswith("_")
    ]
    assert foreign == []
