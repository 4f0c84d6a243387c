"""Which provider kind a well-known model name belongs to, for pass-through routing.

A client that names a provider's own model (Claude Code's default Claude model, Codex's GPT
model, a Gemini SDK's model) should reach that provider without a `[models]` entry per
dated model id. The families are the public naming schemes of each provider's API.
"""

from __future__ import annotations

import re
from typing import Final

from flowloom.gateway.providers.interface import ProviderKind

__all__ = ["FAMILIES", "family_of"]

FAMILIES: Final[tuple[tuple[ProviderKind, re.Pattern[str]], ...]] = (
    ("anthropic", re.compile(r"claude-[A-Za-z0-9][A-Za-z0-9._@-]*")),
    ("gemini", re.compile(r"(?:gemini|gemma)-[A-Za-z0-9._-]+|(?:text-)?embedding-\d+")),
    (
        "openai",
        re.compile(
            r"(?:gpt-|chatgpt-|codex-)[A-Za-z0-9._-]+|o[1-9](?:-[A-Za-z0-9._-]+)?"
            r"|text-embedding-[A-Za-z0-9._-]+"
        ),
    ),
)
"""(provider kind, full-match pattern): claude-*; gemini-*, gemma-*, and Gemini's
embedding models (gemini-embedding-001, text-embedding-004, embedding-001); gpt-*,
chatgpt-*, codex-*, o1, o3-mini, o4-mini-…, and OpenAI's text-embedding-3-small etc."""


def family_of(model: str) -> ProviderKind | None:
    """The provider kind whose naming scheme `model` follows, or None."""
    for kind, pattern in FAMILIES:
        if pattern.fullmatch(model):
            return kind
    return None
