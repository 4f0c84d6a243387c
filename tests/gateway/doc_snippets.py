"""The fenced blocks of docs/gateway.md, so that each set-up the docs show is the one tested."""

from __future__ import annotations

import re

from tests.server.support import ROOT

DOC = ROOT / "docs" / "gateway.md"
DOC_URL = "http://127.0.0.1:4000"
"""The gateway address the docs use; tests put their own in its place."""


def doc_block(language: str, containing: str) -> str:
    """The one fenced block of docs/gateway.md in `language` that contains `containing`."""
    blocks = re.findall(rf"```{language}\n(.*?)```", DOC.read_text("utf-8"), flags=re.S)
    found = [b for b in blocks if containing in b]
    assert len(found) == 1, f"one {language} block with {containing!r} in docs/gateway.md"
    return found[0]


def at(url: str, text: str) -> str:
    """`text` from the docs with the documented gateway address replaced by `url`."""
    assert DOC_URL in text, f"the snippet does not use {DOC_URL}"
    return text.replace(DOC_URL, url.rstrip("/"))
