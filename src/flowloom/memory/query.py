"""Turning what a person or an assistant typed into a safe full-text query.

Nothing a user types reaches the FTS5 or tsquery parser as syntax: the text is cut into
words (letters and digits), lower-cased, and the words are quoted (SQLite) or joined
with operators FlowLoom writes itself (PostgreSQL). Quotes, parentheses, ``AND``,
``NEAR``, ``*``, ``:`` and the like are therefore plain separators, never errors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

__all__ = ["MAX_TERMS", "Terms", "parse_terms"]

MAX_TERMS: Final = 16
_MAX_TERM_CHARS: Final = 64
_WORD: Final = re.compile(r"[^\W_]+")
# Words that carry no meaning in a question ("why did we pick X"): dropped when at least
# one other word remains, so a natural-language question still finds its answer.
_STOPWORDS: Final = frozenset(
    {
        "a", "about", "an", "and", "are", "as", "at", "be", "been", "but", "by", "can", "could",
        "did", "do", "does", "for", "from", "had", "has", "have", "how", "i", "if", "in", "into",
        "is", "it", "its", "me", "my", "of", "on", "or", "our", "should", "so", "than", "that",
        "the", "their", "them", "then", "there", "these", "they", "this", "to", "us", "was", "we",
        "were", "what", "when", "where", "which", "who", "why", "will", "with", "would", "you",
        "your",
    }
)  # fmt: skip


@dataclass(frozen=True)
class Terms:
    """The words of a query, stopwords dropped (unless nothing else is left)."""

    words: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.words)

    def fts5(self, *, any_word: bool = False) -> str:
        """An FTS5 MATCH expression: every word quoted, all required (or any)."""
        quoted = [f'"{w}"' for w in self.words]
        return (" OR " if any_word else " ").join(quoted)

    def tsquery(self, *, any_word: bool = False) -> str:
        """A to_tsquery expression over the same words, all required (or any)."""
        return (" | " if any_word else " & ").join(self.words)


def parse_terms(text: str) -> Terms:
    """The searchable words of `text`, in order, without duplicates, at most MAX_TERMS."""
    seen: dict[str, None] = {}
    for match in _WORD.finditer(text.lower()):
        word = match.group(0)[:_MAX_TERM_CHARS]
        seen.setdefault(word, None)
    words = list(seen)
    meaningful = [w for w in words if w not in _STOPWORDS]
    return Terms(tuple((meaningful or words)[:MAX_TERMS]))
