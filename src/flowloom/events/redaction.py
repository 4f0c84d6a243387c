"""Redaction: secrets are replaced by `[REDACTED:<type>]` before anything is stored.

Every body and every string in an event's meta passes through `Redactor.text` on the
way to the ledger (agent hooks, `flowloom record`, the Aider import). What is found:

- provider credentials by their documented shapes: AWS access key ids and secret keys,
  GCP service-account keys, Azure storage keys, connection strings and SAS signatures,
  GitHub, GitLab, Slack, Stripe, OpenAI, Anthropic, Google API, npm, PyPI, Twilio and
  SendGrid tokens;
- PEM private key blocks (RSA, EC, OPENSSH, PKCS#8, PGP), also inside JSON strings;
- JWTs, passwords in URLs (``scheme://user:pass@host``), basic-auth and bearer tokens;
- generic assignments (``password=…``, ``secret: …``, ``"api_key": "…"``);
- high-entropy tokens: 32+ characters of base64/base64url with mixed character classes
  and a Shannon entropy of at least `ENTROPY_THRESHOLD` bits per character. Pure hex is
  left alone (git SHAs, sha256 digests, UUIDs and checksums are hex), as are our own
  ``sha256:<hex>`` digests and SRI hashes (``sha512-…``); hex secrets are caught by
  their prefix or by the key they are assigned to.

Speed: this runs on every prompt. Each rule has cheap literal triggers (substring tests
in C); its regular expression is compiled on first use and run only when a trigger is
present, so a plain prompt costs a few substring scans and one token scan.

What was redacted is counted per type (`Redactor.counts`), never kept: the
`redaction.apply` event records the counts only. Standard library only (hooks).
"""

from __future__ import annotations

import functools
import math
import re

__all__ = ["ENTROPY_THRESHOLD", "MIN_ENTROPY_LENGTH", "Redactor", "redact_text"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

ENTROPY_THRESHOLD = 4.0
"""Bits per character above which a long mixed token is treated as a secret."""

MIN_ENTROPY_LENGTH = 32
"""Shortest token the entropy rule looks at."""

_MARK = "[REDACTED:"


def _after(chars: str) -> str:
    """Lookbehind: not preceded by `chars`, unless by a JSON escape (``\\n``, ``\\t``…).

    Tool inputs and JSON files hold text with escaped newlines; `\\nghp_…` must still
    count as a token starting a line.
    """
    return rf"(?:(?<![{chars}])|(?<=\\[nrtbf]))"


def _label(kind: str) -> str:
    return f"{_MARK}{kind}]"


class _Rule:
    """One secret shape: literal triggers, a lazily compiled pattern, and a replacer.

    `group` names the capture group that holds the secret (0: the whole match); the rest
    of the match (a key name, a scheme and user) is kept so the record stays readable.
    `check` names the type of a match, or vetoes it with None (a basic-auth token that
    does not decode to user:pass, an assignment whose value is code).
    """

    __slots__ = (
        "_compiled",
        "also",
        "check",
        "flags",
        "group",
        "kind",
        "lower",
        "pattern",
        "triggers",
    )

    def __init__(
        self,
        kind: str,
        pattern: str,
        triggers: tuple[str, ...],
        *,
        group: int = 0,
        flags: int = 0,
        lower: bool = False,
        check: Callable[[re.Match[str]], str | None] | None = None,
        also: tuple[str, ...] = (),
    ) -> None:
        self.kind = kind
        self.pattern = pattern
        self.triggers = triggers
        self.group = group
        self.flags = flags
        self.lower = lower  # triggers are matched against the lowercased text
        self.check = check
        self.also = also  # one of these must be present too (e.g. "=" for an assignment)
        self._compiled: re.Pattern[str] | None = None

    def compiled(self) -> re.Pattern[str]:
        if self._compiled is None:
            self._compiled = re.compile(self.pattern, self.flags)
        return self._compiled


def _basic_auth(match: re.Match[str]) -> str | None:
    import base64
    import binascii

    token = match.group(1)
    padded = token + "=" * (-len(token) % 4)
    try:
        decoded = base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        return None
    return "basic_auth" if b":" in decoded and decoded.isascii() else None


_PLACEHOLDERS = frozenset(
    {"none", "null", "nil", "true", "false", "undefined", "empty", "redacted", "required"}
)
_TYPE_NAMES = frozenset(
    {"str", "string", "bytes", "int", "bool", "optional", "secretstr", "any", "text", "varchar"}
)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")


def _assignment(match: re.Match[str]) -> str | None:
    """The type of an assigned secret, or None when the value is code or a placeholder."""
    key, separator, value = match.group(1), match.group(2), match.group(3)
    quoted = value[0] in "\"'" and value[-1] == value[0] and len(value) >= 2
    inner = value[1:-1] if quoted else value
    if len(inner) < 3 or inner.lower() in _PLACEHOLDERS:
        return None
    if inner.startswith(("$", "<", "{", "%", "[REDACTED", "***", "os.environ", "process.env")):
        return None
    if set(inner) <= {"*", "x", "X", ".", "-", "_"}:
        return None
    if not quoted:
        following = match.string[match.end() : match.end() + 2].lstrip(" ")
        if following[:1] in ("(", "[", "|", "="):
            return None  # a call, a subscript, a type union, a default: code
        if _IDENTIFIER.fullmatch(inner):
            if inner.lower() in _TYPE_NAMES:
                return None  # `password: str`
            if "=" in separator and separator != "=":
                return None  # `password = other_variable`
    lowered = key.lower()
    return "password" if "pass" in lowered or "pwd" in lowered else "generic_secret"


# The key names a generic assignment recognises; the key must END with one of them, so
# `max_tokens`, `tokenizer` and `passes` are not keys of secrets.
_SECRET_KEY = (
    r"[A-Za-z0-9_.-]*?(?:password|passwd|passphrase|pwd|pass|secret|token|api[_-]?key|apikey"
    r"|access[_-]?key|secret[_-]?key|private[_-]?key|auth[_-]?key|credentials?|client[_-]?secret)"
)

# Order matters: specific shapes first (their labels are most useful), the generic
# assignment and entropy rules last, over text in which the specific hits are gone.
_RULES: tuple[_Rule, ...] = (
    _Rule(
        "private_key",
        r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----"
        r"[\s\S]*?(?:-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|\Z)",
        ("PRIVATE KEY",),
    ),
    _Rule(
        "gcp_private_key_id",
        r"\\?\"private_key_id\\?\"\s*:\s*\\?\"([0-9a-f]{20,})\\?\"",
        ("private_key_id",),
        group=1,
    ),
    _Rule(
        "aws_access_key_id",
        _after("A-Z0-9") + r"(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|APKA)[A-Z0-9]{16}"
        r"(?![A-Z0-9])",
        ("AKIA", "ASIA", "ABIA", "ACCA", "AGPA", "AIDA", "AROA", "AIPA", "ANPA", "ANVA", "APKA"),
    ),
    _Rule(
        "aws_secret_access_key",
        r"(?i)(?:aws_?secret_?(?:access_?)?key|secret_?access_?key)[\"']?\s*[:=]\s*[\"']?"
        r"([A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])",
        ("secret",),
        group=1,
        lower=True,
    ),
    _Rule(
        "azure_storage_key",
        r"(?i)(?:AccountKey|SharedAccessKey|SharedAccessSignature)\s*=\s*([A-Za-z0-9+/=%]{20,})",
        ("accountkey", "sharedaccess"),
        group=1,
        lower=True,
    ),
    _Rule(
        "azure_sas_signature",
        _after("A-Za-z0-9") + r"sig=([A-Za-z0-9%+/=]{30,})",
        ("sig=",),
        group=1,
    ),
    _Rule(
        "github_token",
        _after("A-Za-z0-9_") + r"(?:(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36,255}"
        r"|github_pat_[A-Za-z0-9_]{22,255})",
        ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
    ),
    _Rule(
        "gitlab_token",
        _after("A-Za-z0-9_-") + r"gl(?:pat|dt|rt|ptt|cbt|imt|soat|ft|agent)-[A-Za-z0-9_-]{20,}",
        ("glpat-", "gldt-", "glrt-", "glptt-", "glcbt-", "glimt-", "glsoat-", "glft-", "glagent-"),
    ),
    _Rule(
        "slack_token",
        _after("A-Za-z0-9") + r"xox[abposre]-[A-Za-z0-9-]{10,}",
        ("xox",),
    ),
    _Rule(
        "slack_webhook",
        r"https://hooks\.slack\.com/(?:services|workflows)/[A-Za-z0-9_/-]{20,}",
        ("hooks.slack.com",),
    ),
    _Rule(
        "stripe_key",
        _after("A-Za-z0-9") + r"(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}|whsec_[A-Za-z0-9]{24,}",
        ("_live_", "_test_", "whsec_"),
    ),
    _Rule(
        "anthropic_key",
        _after("A-Za-z0-9") + r"sk-ant-[A-Za-z0-9_-]{20,}",
        ("sk-ant-",),
    ),
    _Rule(
        "openai_key",
        _after("A-Za-z0-9") + r"sk-(?:proj-|svcacct-|admin-|None-)?[A-Za-z0-9_-]{20,}",
        ("sk-",),
    ),
    _Rule(
        "google_api_key",
        _after("A-Za-z0-9") + r"AIza[0-9A-Za-z_-]{35}|GOCSPX-[A-Za-z0-9_-]{20,}",
        ("AIza", "GOCSPX-"),
    ),
    _Rule("npm_token", _after("A-Za-z0-9") + r"npm_[A-Za-z0-9]{36}", ("npm_",)),
    _Rule("pypi_token", _after("A-Za-z0-9") + r"pypi-Ag[A-Za-z0-9_-]{50,}", ("pypi-",)),
    _Rule("twilio_api_key", _after("A-Za-z0-9") + r"SK[0-9a-fA-F]{32}(?![A-Za-z0-9])", ("SK",)),
    _Rule(
        "sendgrid_key",
        _after("A-Za-z0-9") + r"SG\.[A-Za-z0-9_-]{16,32}\.[A-Za-z0-9_-]{30,64}",
        ("SG.",),
    ),
    _Rule(
        "jwt",
        _after("A-Za-z0-9_-") + r"eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{10,}",
        ("eyJ",),
    ),
    _Rule(
        "url_password",
        _after("A-Za-z0-9+.-") + r"[A-Za-z][A-Za-z0-9+.-]{1,30}://[^\s:/@'\"<>]+:([^\s@/'\"<>]+)@",
        ("://",),
        group=1,
    ),
    _Rule(
        "basic_auth",
        r"(?i)\bbasic\s+([A-Za-z0-9+/]{8,}={0,2})(?![A-Za-z0-9+/=])",
        ("basic",),
        group=1,
        lower=True,
        check=_basic_auth,
    ),
    _Rule(
        "bearer_token",
        r"(?i)\bbearer\s+([A-Za-z0-9._~+/=-]{16,})",
        ("bearer",),
        group=1,
        lower=True,
    ),
    _Rule(
        "generic_secret",
        # a key ending in a secret word, an optional closing quote, `=` or `:`, then a
        # quoted value, or an unquoted one running to whitespace or a delimiter
        "(?i)" + _after("A-Za-z0-9") + rf"({_SECRET_KEY})[\"']?([ \t]*(?:=|:)(?!=)[ \t]*)"
        r"(\"[^\"\n]{3,}\"|'[^'\n]{3,}'|[^\s\"'`,;&<>(){}\[\]]{3,})",
        ("pass", "pwd", "secret", "token", "key", "credential"),
        group=3,
        lower=True,
        check=_assignment,
        also=("=", ":"),
    ),
)

# A run of base64/base64url characters that is not part of a longer word.
_TOKEN = re.compile(_after("A-Za-z0-9+/_-") + r"[A-Za-z0-9+/_-]{32,}={0,2}(?![A-Za-z0-9+/=_-])")
_HEX_LIKE = frozenset("0123456789abcdefABCDEF-")
_SRI = ("sha256-", "sha384-", "sha512-", "sha1-")


def _shannon(token: str) -> float:
    counts: dict[str, int] = {}
    for char in token:
        counts[char] = counts.get(char, 0) + 1
    size = len(token)
    return -sum(n / size * math.log2(n / size) for n in counts.values())


def _looks_random(token: str, before: str) -> bool:
    if set(token) <= _HEX_LIKE:
        return False  # git SHAs, sha256 digests, UUIDs, checksums
    if token.startswith(_SRI) or before.endswith(_SRI):
        return False  # Subresource Integrity hashes (package-lock.json)
    if not (
        any(c.isdigit() for c in token)
        and any(c.isupper() for c in token)
        and any(c.islower() for c in token)
    ):
        return False  # words, paths and identifiers; random base64 has all three
    return _shannon(token.rstrip("=")) >= ENTROPY_THRESHOLD


@functools.cache
def _any_trigger() -> re.Pattern[str]:
    """One pattern for every rule's triggers (lowercase ones case-insensitively).

    For ASCII text, no match means no rule's trigger test can pass, so the rules are
    skipped after a single scan. Compiled on first use: hooks import this module.
    """
    parts = []
    for rule in _RULES:
        for trigger in rule.triggers:
            escaped = re.escape(trigger)
            parts.append(f"(?i:{escaped})" if rule.lower else escaped)
    return re.compile("|".join(parts))


class Redactor:
    """Redacts strings and counts what it redacted, per type, across calls."""

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def text(self, text: str, *, entropy: bool = True) -> str:
        """`text` with every secret replaced by `[REDACTED:<type>]`.

        `entropy=False` applies only the rules for known shapes: for identifiers such as
        a session id, which may well be long and random without being a secret.
        """
        if len(text) < 8:
            return text
        if text.isascii() and _any_trigger().search(text) is None:
            rules: tuple[_Rule, ...] = ()  # the common case: one scan, no rule can match
        else:
            rules = _RULES
        lowered: str | None = None
        for rule in rules:
            if rule.lower:
                if lowered is None:
                    lowered = text.lower()
                haystack = lowered
            else:
                haystack = text
            if not any(t in haystack for t in rule.triggers):
                continue
            if rule.also and not any(t in text for t in rule.also):
                continue
            replaced = self._apply(rule, text)
            if replaced is not text:
                text = replaced
                lowered = None
        if entropy and len(text) >= MIN_ENTROPY_LENGTH:
            text = self._entropy(text)
        return text

    def value(self, value: object) -> object:
        """A copy of JSON-like data with every string redacted (keys are kept)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {key: self.value(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(item) for item in value]
        return value

    def _apply(self, rule: _Rule, text: str) -> str:
        found: dict[str, int] = {}

        def replace(match: re.Match[str]) -> str:
            secret = match.group(rule.group)
            if secret is None or secret.startswith(_MARK):
                return match.group(0)
            kind = rule.kind if rule.check is None else rule.check(match)
            if kind is None:
                return match.group(0)
            found[kind] = found.get(kind, 0) + 1
            if rule.group == 0:
                return _label(kind)
            whole = match.group(0)
            start = match.start(rule.group) - match.start(0)
            end = match.end(rule.group) - match.start(0)
            quoted = len(secret) > 1 and secret[0] in "\"'" and secret[-1] == secret[0]
            quote = secret[0] if quoted else ""
            return f"{whole[:start]}{quote}{_label(kind)}{quote}{whole[end:]}"

        result = rule.compiled().sub(replace, text)
        if not found:
            return text
        for kind, count in found.items():
            self.counts[kind] = self.counts.get(kind, 0) + count
        return result

    def _entropy(self, text: str) -> str:
        found = 0

        def replace(match: re.Match[str]) -> str:
            nonlocal found
            before = text[max(0, match.start() - 7) : match.start()]
            if not _looks_random(match.group(0), before):
                return match.group(0)
            found += 1
            return _label("high_entropy")

        result = _TOKEN.sub(replace, text)
        if found:
            self.counts["high_entropy"] = self.counts.get("high_entropy", 0) + found
            return result
        return text


def redact_text(text: str) -> tuple[str, dict[str, int]]:
    """Redact one string; returns the clean text and the counts per secret type."""
    redactor = Redactor()
    return redactor.text(text), redactor.counts
