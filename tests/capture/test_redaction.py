"""Redaction: a corpus of real secret formats never reaches the ledger's database file.

The secrets are generated in the shapes their issuers document (seeded, so the corpus
is stable), never real ones. Each appears in a realistic setting: a header, a config
file, a connection string, a JSON key file.
"""

from __future__ import annotations

import base64
import json
import random
import string
from pathlib import Path
from typing import NamedTuple

import pytest

from flowloom.events.redaction import Redactor, redact_text
from tests.capture.agent_sandbox import AgentSandbox

_rng = random.Random(20261122)
ALNUM = string.ascii_letters + string.digits
UPPER_DIGITS = string.ascii_uppercase + string.digits
B64 = ALNUM + "+/"
URLSAFE = ALNUM + "-_"
HEX = "0123456789abcdef"


def rand(alphabet: str, n: int) -> str:
    """Random characters, with at least one upper, lower and digit when the set has them."""
    while True:
        value = "".join(_rng.choice(alphabet) for _ in range(n))
        classes = [set(string.ascii_uppercase), set(string.ascii_lowercase), set(string.digits)]
        if all(value_set & set(value) for value_set in classes if value_set & set(alphabet)):
            return value


def pem(label: str, lines: int = 8, escaped: bool = False) -> tuple[str, list[str]]:
    body = [rand(B64, 64) for _ in range(lines)]
    newline = "\\n" if escaped else "\n"
    text = newline.join([f"-----BEGIN {label}-----", *body, f"-----END {label}-----"]) + newline
    return text, body


class Secret(NamedTuple):
    name: str
    text: str  # the secret in its setting
    secrets: tuple[str, ...]  # the parts that must never be stored
    kind: str  # the [REDACTED:<kind>] label expected


def corpus() -> list[Secret]:
    aws_id = "AKIA" + rand(UPPER_DIGITS, 16)
    aws_secret = rand(B64, 40)
    gcp_key, gcp_body = pem("PRIVATE KEY", escaped=True)
    gcp_key_id = "".join(_rng.choice(HEX) for _ in range(40))
    gcp_json = json.dumps(
        {
            "type": "service_account",
            "project_id": "acme-prod",
            "private_key_id": gcp_key_id,
            "private_key": "PLACEHOLDER",
            "client_email": "ci@acme-prod.iam.gserviceaccount.com",
        }
    ).replace('"PLACEHOLDER"', json.dumps(gcp_key.replace("\\n", "\n")))
    azure_key = base64.b64encode(_rng.randbytes(64)).decode()
    azure_sig = rand(ALNUM, 43) + "%3D"
    rsa, rsa_body = pem("RSA PRIVATE KEY")
    ec, ec_body = pem("EC PRIVATE KEY", lines=3)
    ssh, ssh_body = pem("OPENSSH PRIVATE KEY", lines=6)
    jwt_parts = [
        base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').decode().rstrip("="),
        base64.urlsafe_b64encode(b'{"sub":"1234567890","name":"Ann","iat":1516239022}')
        .decode()
        .rstrip("="),
        rand(URLSAFE, 43),
    ]
    basic = base64.b64encode(b"deploy:" + rand(ALNUM, 16).encode()).decode()
    ghp, gho, ghs = (f"{p}_{rand(ALNUM, 36)}" for p in ("ghp", "gho", "ghs"))
    fine_pat = f"github_pat_{rand(ALNUM, 22)}_{rand(ALNUM, 59)}"
    glpat = f"glpat-{rand(URLSAFE, 20)}"
    slack = (
        f"xoxb-{_rng.randrange(10**11, 10**12)}-{_rng.randrange(10**12, 10**13)}-{rand(ALNUM, 24)}"
    )
    webhook_secret = rand(ALNUM, 24)
    webhook = (
        "https://hooks.slack.com/services/"
        f"T{rand(UPPER_DIGITS, 8)}/B{rand(UPPER_DIGITS, 10)}/{webhook_secret}"
    )
    stripe = f"sk_live_{rand(ALNUM, 24)}"
    openai = f"sk-{rand(ALNUM, 48)}"
    openai_project = f"sk-proj-{rand(URLSAFE, 74)}T3BlbkFJ{rand(URLSAFE, 74)}"
    anthropic = f"sk-ant-api03-{rand(URLSAFE, 93)}AA"
    google = f"AIza{rand(URLSAFE, 35)}"
    bearer = rand(URLSAFE, 40)
    npm = f"npm_{rand(ALNUM, 36)}"
    pypi = f"pypi-AgEIcHlwaS5vcmc{rand(URLSAFE, 120)}"
    twilio_key = "SK" + "".join(_rng.choice(HEX) for _ in range(32))
    twilio_token = "".join(_rng.choice(HEX) for _ in range(32))
    sendgrid = f"SG.{rand(URLSAFE, 22)}.{rand(URLSAFE, 43)}"
    entropy = rand(B64, 48)

    def s(name: str, text: str, secrets: tuple[str, ...], kind: str) -> Secret:
        return Secret(name, text, secrets, kind)

    return [
        s(
            "aws access key id",
            f"export AWS_ACCESS_KEY_ID={aws_id}",
            (aws_id,),
            "aws_access_key_id",
        ),
        s(
            "aws secret access key",
            f"[default]\naws_secret_access_key = {aws_secret}\n",
            (aws_secret,),
            "aws_secret_access_key",
        ),
        s("gcp service-account key", gcp_json, (*gcp_body, gcp_key_id), "private_key"),
        s(
            "azure storage connection string",
            "DefaultEndpointsProtocol=https;AccountName=acmelogs;"
            f"AccountKey={azure_key};EndpointSuffix=core.windows.net",
            (azure_key, azure_key[:40]),
            "azure_storage_key",
        ),
        s(
            "azure sas url",
            "https://acmelogs.blob.core.windows.net/logs?sv=2022-11-02&ss=b&srt=co&sp=rl"
            f"&se=2026-12-01T00:00:00Z&sig={azure_sig}",
            (azure_sig,),
            "azure_sas_signature",
        ),
        s(
            "github pat (classic)",
            f"git clone https://x:{ghp}@github.com/acme/app",
            (ghp,),
            "github_token",
        ),
        s("github oauth", f"GITHUB_TOKEN={gho}", (gho,), "github_token"),
        s("github app", f"Authorization: token {ghs}", (ghs,), "github_token"),
        s(
            "github fine-grained pat",
            f"gh auth login --with-token <<< {fine_pat}",
            (fine_pat,),
            "github_token",
        ),
        s("gitlab pat", f"PRIVATE-TOKEN: {glpat}", (glpat,), "gitlab_token"),
        s("slack bot token", f"SLACK_BOT_TOKEN={slack}", (slack,), "slack_token"),
        s("slack webhook", f"curl -X POST {webhook}", (webhook_secret,), "slack_webhook"),
        s("stripe live key", f"stripe.api_key = '{stripe}'", (stripe,), "stripe_key"),
        s("openai key", f"OPENAI_API_KEY={openai}", (openai,), "openai_key"),
        s(
            "openai project key",
            f"client = OpenAI(api_key='{openai_project}')",
            (openai_project, openai_project[8:40]),
            "openai_key",
        ),
        s(
            "anthropic key",
            f"x-api-key: {anthropic}",
            (anthropic, anthropic[14:60]),
            "anthropic_key",
        ),
        s(
            "google api key",
            f"https://maps.googleapis.com/maps/api/js?key={google}&callback=init",
            (google,),
            "google_api_key",
        ),
        s("rsa private key", rsa, tuple(rsa_body), "private_key"),
        s("ec private key", ec, tuple(ec_body), "private_key"),
        s("openssh private key", ssh, tuple(ssh_body), "private_key"),
        s("jwt", "Cookie: session=" + ".".join(jwt_parts), (jwt_parts[2],), "jwt"),
        s(
            "password in a url",
            "DATABASE_URL=postgres://app:Tr0ub4dor-3x@db.internal:5432/payments",
            ("Tr0ub4dor-3x",),
            "url_password",
        ),
        s("basic auth header", f"Authorization: Basic {basic}", (basic,), "basic_auth"),
        s(
            "bearer token",
            f"curl -H 'Authorization: Bearer {bearer}' https://api.example.com",
            (bearer,),
            "bearer_token",
        ),
        s("npm token", f"//registry.npmjs.org/:_authToken={npm}", (npm,), "npm_token"),
        s("pypi token", f"password = {pypi}", (pypi, pypi[20:60]), "pypi_token"),
        s("twilio api key", f"TWILIO_API_KEY={twilio_key}", (twilio_key,), "twilio_api_key"),
        s(
            "twilio auth token",
            f"TWILIO_AUTH_TOKEN={twilio_token}",
            (twilio_token,),
            "generic_secret",
        ),
        s("sendgrid key", f"SENDGRID_API_KEY={sendgrid}", (sendgrid,), "sendgrid_key"),
        s(
            "password assignment",
            "db:\n  password: correct-horse-battery\n",
            ("correct-horse-battery",),
            "password",
        ),
        s(
            "secret assignment",
            'config = {"client_secret": "s3cr3t-v4lue-x"}',
            ("s3cr3t-v4lue-x",),
            "generic_secret",
        ),
        s("high-entropy token", f"use this one: {entropy} thanks", (entropy,), "high_entropy"),
    ]


CORPUS = corpus()


def _secret_parts(secret: Secret) -> tuple[str, ...]:
    assert secret.secrets, secret.name
    return secret.secrets


def test_the_corpus_covers_at_least_twenty_formats() -> None:
    assert len(CORPUS) >= 20
    assert len({s.kind for s in CORPUS}) >= 20


@pytest.mark.parametrize("secret", CORPUS, ids=[s.name for s in CORPUS])
def test_each_secret_is_redacted_with_its_type(secret: Secret) -> None:
    clean, counts = redact_text(secret.text)
    for part in _secret_parts(secret):
        assert part not in clean, (secret.name, clean)
    assert f"[REDACTED:{secret.kind}]" in clean, clean
    assert counts.get(secret.kind, 0) >= 1
    assert redact_text(clean) == (clean, {})  # redacting again changes nothing


NOT_SECRETS = [
    "commit 9fceb02d0ae598e95dc970b74767f19372d61af8 fixed it",
    "body sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "session 0b5c2a0e-7d1f-4a3b-9c4e-5f6a7b8c9d0e resumed",
    '"integrity": "sha512-Q3Vp0S7Kw2yAtQu1YgNZ8yYbSuhZ8WcCvbKcLrxX5m3ZsuUkLb9cNNnE1fB1s8e4m2C6X=="',
    "see src/flowloom/capture/agents/claude_code_helpers_and_more.py line 10",
    "password = get_password()",
    "token = request.headers.get('x-token')",
    "def login(username: str, password: str) -> None:",
    "max_tokens: 1024",
    "tokenizer: bert-base-uncased",
    "a basic configuration is enough; the bearer of this letter",
    "AbstractSingletonProxyFactoryBeanImplementationRegistry",
    "md5 of the file is d41d8cd98f00b204e9800998ecf8427e",
    "Use the ABC-123 ticket and PEP-8 style",
    "password: ${DB_PASSWORD}",
    "api_key = os.environ['OPENAI_API_KEY']",
    "[REDACTED:openai_key] was removed earlier",
]


@pytest.mark.parametrize("text", NOT_SECRETS)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact_text(text) == (text, {})


def test_redactor_counts_across_strings_and_nested_data() -> None:
    redactor = Redactor()
    data = {
        "env": [f"A=AKIA{rand(UPPER_DIGITS, 16)}", "plain"],
        "nested": {"k": f"ghp_{rand(ALNUM, 36)}", "n": 3},
    }
    clean = redactor.value(data)
    assert clean == {
        "env": ["A=[REDACTED:aws_access_key_id]", "plain"],
        "nested": {"k": "[REDACTED:github_token]", "n": 3},
    }
    assert redactor.counts == {"aws_access_key_id": 1, "github_token": 1}


def test_no_secret_reaches_the_database_through_any_capture_path(tmp_path: Path) -> None:
    """Every secret, through every hook and command, then the raw bytes are searched."""
    box = AgentSandbox(tmp_path)
    everything = "\n\n".join(s.text for s in CORPUS)
    parts = [p for s in CORPUS for p in _secret_parts(s)]
    assert parts

    # Claude Code: the prompt, a tool's input and output, a file write (the diff), the reply
    box.hook_ok("claude-code", box.claude("SessionStart", source="startup"))
    box.hook_ok(
        "claude-code", box.claude("UserPromptSubmit", prompt="Configure these:\n" + everything)
    )
    box.hook_ok(
        "claude-code",
        box.claude(
            "PostToolUse",
            tool_name="Bash",
            tool_use_id="t1",
            tool_input={"command": f"echo {CORPUS[0].text}", "description": CORPUS[13].text},
            tool_response={"stdout": everything, "stderr": ""},
        ),
    )
    settings = box.repo / "settings.env"
    write_input = {"file_path": str(settings), "content": everything}
    box.hook_ok(
        "claude-code",
        box.claude("PreToolUse", tool_name="Write", tool_use_id="t2", tool_input=write_input),
    )
    settings.write_text(everything)
    box.hook_ok(
        "claude-code",
        box.claude(
            "PostToolUse",
            tool_name="Write",
            tool_use_id="t2",
            tool_input=write_input,
            tool_response={},
        ),
    )
    transcript = box.root / "transcript.jsonl"
    transcript.write_text(
        json.dumps({"type": "user", "message": {"role": "user", "content": "go"}})
        + "\n"
        + json.dumps(
            {
                "type": "assistant",
                "message": {
                    "id": "m1",
                    "role": "assistant",
                    "content": [{"type": "text", "text": everything}],
                },
            }
        )
        + "\n"
    )
    # The turn's end tells the user the commit was skipped when the drainer has already
    # given it up (or Stop finishes it itself); when the drainer is still busy, Stop
    # defers and the session's next hook tells. Either way nothing secret is printed.
    stop = box.hook("claude-code", box.claude("Stop"))
    assert stop.returncode == 0, stop.stderr.decode()
    told = stop.stdout.decode()
    if told:
        assert "auto-commit skipped for settings.env" in json.loads(told)["systemMessage"]
        assert [p for p in parts if p in told + stop.stderr.decode()] == []
    else:
        assert stop.stderr == b"", stop.stderr.decode()
    # Codex notify, Cursor, `flowloom record`, the Aider import
    notify = {
        "type": "agent-turn-complete",
        "thread-id": "th-1",
        "turn-id": "1",
        "cwd": str(box.repo),
        "input-messages": [everything],
        "last-assistant-message": everything,
    }
    result = box.hook("codex", b"", args=(json.dumps(notify),))
    assert result.returncode == 0
    cursor = {
        "hook_event_name": "beforeSubmitPrompt",
        "conversation_id": "c-1",
        "generation_id": "g-1",
        "workspace_roots": [str(box.repo)],
        "prompt": everything,
    }
    box.hook_ok("cursor", cursor, stdout='{"continue": true}\n')
    secret_file = tmp_path / "body.txt"
    secret_file.write_text(everything)
    recorded = box.flowloom(
        "record",
        "--kind",
        "agent.response",
        "--body-file",
        str(secret_file),
        "--subject",
        CORPUS[0].text,
        "--session",
        "manual",
    )
    assert recorded.returncode == 0, recorded.stderr
    assert "redacted before storing" in recorded.stderr
    (box.repo / ".aider.chat.history.md").write_text(
        "\n# aider chat started at 2026-11-22 02:40:00\n\n"
        f"#### {CORPUS[13].text}\n\n{everything}\n\n"
    )
    imported = box.flowloom("import", "aider")
    assert imported.returncode == 0, imported.stderr
    box.settled()

    # the file the agent wrote holds every secret: recorded (redacted), never committed
    assert box.commits() == []
    assert any(
        "auto-commit skipped for settings.env" in e["refs"]["error"]
        for e in box.events("capture.error")
    )

    raw = box.database_bytes()
    assert len(raw) > 10_000
    leaked = [p for p in parts if p.encode() in raw]
    assert leaked == []
    # nor anywhere else FlowLoom keeps state: spool, journal, session scratch, queues
    state = box.capture_state_bytes()
    assert [p for p in parts if p.encode() in state] == []

    applied = box.events("redaction.apply")
    assert len(applied) >= 8
    counted: set[str] = set()
    for event in applied:
        counted.update(event["refs"]["counts"])
        assert event["refs"]["total"] == sum(event["refs"]["counts"].values())
        redacted_entry = box.events()[event["refs"]["entry"]]
        assert redacted_entry["kind"] == event["refs"]["kind"]
    assert {s.kind for s in CORPUS} <= counted


def test_the_one_scan_fast_path_skips_only_text_no_rule_could_touch() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from flowloom.events.redaction import _RULES, _any_trigger

    triggers = sorted({t for rule in _RULES for t in rule.triggers})

    def recase(text: str, flips: list[bool]) -> str:
        return "".join(
            c.swapcase() if flip else c
            for c, flip in zip(text, flips + [False] * len(text), strict=False)
        )

    piece = st.one_of(
        st.text(alphabet=string.printable, max_size=12),
        st.builds(recase, st.sampled_from(triggers), st.lists(st.booleans(), max_size=12)),
        st.sampled_from([t[:-1] for t in triggers if len(t) > 1]),
    )

    @settings(max_examples=400, deadline=None)
    @given(st.lists(piece, max_size=6).map("".join))
    def check(text: str) -> None:
        if _any_trigger().search(text) is None:
            lowered = text.lower()
            for rule in _RULES:
                haystack = lowered if rule.lower else text
                assert not any(t in haystack for t in rule.triggers), (rule.kind, text)
        else:
            assert any(
                t in (text.lower() if rule.lower else text)
                for rule in _RULES
                for t in rule.triggers
            )

    check()
