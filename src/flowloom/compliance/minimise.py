"""Data minimisation for reports that are about personal data (GDPR Art. 5(1)(c), 25).

A GDPR report must not spread the personal data it gives evidence about: developers'
and approvers' names and e-mail addresses are replaced by pseudonyms throughout the
assessment (every format is rendered from it). A pseudonym is the person's initials and
a keyed digest (HMAC-SHA-256 keyed with the log's origin) of their e-mail address or
id, e.g. ``A.A.-3f9a12bc``: the same person gets the same pseudonym in every report of
the log, so an auditor can follow them, and whoever holds the log (the controller) can
re-identify them; the report alone does not name anyone. This is pseudonymisation, not
anonymisation.

One person stays named: who generated the report (`generated_by`, as in its signed
statement). They are not a subject of the assessment but the authenticated employee who
made this record for the controller; naming them is what makes the report accountable
evidence (GDPR Art. 5(2), 24), and their SSH signature, when there is one, is checked
against that very identity. The body and the statement say the same.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterable
from typing import Any, Final

from flowloom.compliance.model import Assessment

__all__ = ["FRAMEWORKS", "MINIMISED", "minimise", "pseudonym"]

FRAMEWORKS: Final = frozenset({"gdpr"})
"""The frameworks whose reports minimise personal data."""

MINIMISED: Final = (
    "personal data minimised: people's names and e-mail addresses are replaced by "
    "pseudonyms (initials and an HMAC-SHA-256 digest keyed with the log's origin); the "
    "controller can re-identify them from the ledger"
)

_EMAIL: Final = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}")
_PERSON: Final = re.compile(r"^\s*(?P<name>[^<>]*?)\s*<(?P<email>[^<>@\s]+@[^<>\s]+)>\s*$")


def pseudonym(key: str, ident: str, name: str | None = None) -> str:
    """``A.A.-3f9a12bc``: initials of `name` (else of the id) and a keyed digest of `ident`."""
    source = name or ident.split("@", 1)[0]
    words = [w for w in re.split(r"[\s._\-]+", source) if w and w[0].isalnum()]
    initials = "".join(f"{w[0].upper()}." for w in words[:3]) or "X."
    digest = hmac.new(key.encode(), ident.strip().lower().encode(), "sha256").hexdigest()[:8]
    return f"{initials}-{digest}"


def _people(data: dict[str, Any]) -> dict[str, str]:
    """Every identity the assessment names (id or e-mail → display name, when known)."""
    found: dict[str, str] = {}

    def add(ident: object, name: object = None) -> None:
        if not isinstance(ident, str) or not ident:
            return
        match = _PERSON.match(ident)
        if match:
            ident, name = match["email"], name or match["name"]
        if "@" not in ident and not name:
            return
        if isinstance(name, str) and name:
            found[ident] = name
        else:
            found.setdefault(ident, "")

    for change in data.get("changes") or ():
        add(change.get("author"))
        add(change.get("committer"))
        for operator in change.get("operators") or ():
            add(operator)
        for approval in change.get("approvals") or ():
            add(approval.get("approver"), approval.get("printed_name"))
    for row in data.get("audit_trail") or ():
        add(row.get("actor"), row.get("actor_name"))
    for finding in data.get("exceptions") or ():
        add(finding.get("actor"))
    for response in data.get("responses") or ():
        add(response.get("by"))
        add(response.get("owner"))
    return found


def _replacements(key: str, people: dict[str, str]) -> list[tuple[str, str]]:
    pairs: dict[str, str] = {}
    for ident, name in people.items():
        alias = pseudonym(key, ident, name or None)
        if name:
            pairs[f"{name} <{ident}>"] = alias
            pairs[name] = alias
        pairs[ident] = alias
    return sorted(pairs.items(), key=lambda p: -len(p[0]))


def _scrub(value: Any, pairs: Iterable[tuple[str, str]], key: str) -> Any:
    if isinstance(value, str):
        for old, new in pairs:
            if old in value:
                value = value.replace(old, new)
        return _EMAIL.sub(lambda m: pseudonym(key, m.group(0)), value)
    if isinstance(value, dict):
        return {k: _scrub(v, pairs, key) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, pairs, key) for v in value]
    return value


def minimise(assessment: Assessment, key: str) -> Assessment:
    """The assessment with every person pseudonymised (`key`: the log's origin)."""
    data = assessment.to_json()
    pairs = _replacements(key, _people(data))
    kept = {
        name: data.pop(name)
        for name in ("ledger", "verification", "period_label", "generated_by")
        if name in data
    }
    scrubbed = _scrub(data, pairs, key)
    scrubbed.update(kept)
    scrubbed["minimised"] = MINIMISED
    return Assessment.from_json(scrubbed)
