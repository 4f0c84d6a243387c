"""Canonical identities (placeholder until the SSH signing branch lands)."""

from __future__ import annotations

import unicodedata

__all__ = ["canonical_identity"]


def canonical_identity(text: str) -> str:
    folded = "".join(unicodedata.normalize("NFKC", text).split()).casefold()
    if folded.startswith("mailto:"):
        folded = folded[len("mailto:") :]
    folded = folded.strip("<>")
    return folded.rstrip(".")
