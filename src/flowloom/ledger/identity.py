"""Canonical identities: the one form in which two names of a person are compared.

Segregation of duties asks "is the approver the author?". Comparing raw strings lets
`a@x.org.`, `mailto:a@x.org`, `a @x.org`, `A@X.ORG` or a full-width `ａ@x.org` pass as
someone else, so every such comparison goes through `canonical_identity`: Unicode NFKC
with case folding, no whitespace or invisible characters anywhere, no `mailto:` prefix,
no surrounding `<...>` (a `Name <email>` form reduces to the email), no trailing dots.
Stdlib only: hooks import the ledger package.
"""

from __future__ import annotations

import unicodedata

__all__ = ["canonical_identity", "names_match", "names_of"]

# Unicode categories dropped everywhere: separators (spaces, line and paragraph
# separators), controls, and format characters (zero-width space and joiners, BOM,
# soft hyphen, bidi marks), which render as nothing and so can hide in a name.
_DROPPED_CATEGORIES = frozenset({"Zs", "Zl", "Zp", "Cc", "Cf"})
_MAILTO = "mailto:"
# Each round only removes characters or normalises; a handful reaches the fixed point.
_MAX_ROUNDS = 16


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    text = unicodedata.normalize("NFKC", text.casefold())
    return "".join(
        ch
        for ch in text
        if not ch.isspace() and unicodedata.category(ch) not in _DROPPED_CATEGORIES
    )


def _unwrap(text: str) -> str:
    if text.endswith(">") and "<" in text:
        text = text[text.rindex("<") + 1 : -1]
    text = text.removeprefix(_MAILTO)
    return text.rstrip(".")


def canonical_identity(text: str) -> str:
    """The canonical form of a person's name or email, for equality comparisons only.

    Idempotent: `canonical_identity(canonical_identity(x)) == canonical_identity(x)`.
    The result is for comparing, not for display (it has lost case and spacing).
    """
    current = text
    for _ in range(_MAX_ROUNDS):
        # Removing a character can make neighbours composable again, and unwrapping
        # can expose another prefix, so repeat until nothing changes.
        following = _unwrap(_fold(current))
        if following == current:
            return current
        current = following
    return current


def names_match(a: str, b: str) -> bool:
    """Whether `a` and `b` name the same person; an empty identity names no one.

    Callers must treat an identity that canonicalises to "" as missing (and refuse it)
    rather than rely on this function to say it matches.
    """
    left = canonical_identity(a)
    return bool(left) and left == canonical_identity(b)


def names_of(ident: str) -> set[str]:
    """Every canonical name one person is known by in `ident`: for `Name <email>` the
    whole, the name, the email and its user part; a bare email names its user too.
    Segregation of duties excludes a person when any of these meet."""
    name, _, rest = ident.partition("<")
    email = rest.split(">", 1)[0].strip()
    if not email and "@" in name:
        email = name
    parts = {ident, name, email, email.split("@", 1)[0]}
    return {canonical_identity(part) for part in parts if part.strip()}
