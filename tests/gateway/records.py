"""The exchanges a gateway process recorded, with their bodies, for tests that read both."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flowloom.services import open_store


def exchanges_with_bodies(database: Path) -> list[dict[str, Any]]:
    """Every gateway.exchange event in `database`, any log, oldest first per log, with
    its body (request and response) parsed as "_body"."""
    store = open_store(str(database))
    try:
        out = []
        for log in store.logs():
            for index in range(store.size(log)):
                entry = store.entry(log, index)
                assert entry is not None
                envelope = json.loads(entry.envelope)
                if envelope["kind"] != "gateway.exchange":
                    continue
                body = store.body(envelope["body"]) if "body" in envelope else None
                envelope["_body"] = json.loads(body.content) if body is not None else None
                out.append(envelope)
        return out
    finally:
        store.close()
