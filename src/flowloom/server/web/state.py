"""WebState: what the web pages share in one server process — templates and caches.

Built with the application and kept on its state (never module-level), beside the
ServerState it reads from; closed when the application's lifespan ends (`close`: the
background worker stops). Its caches hold only what the ledger can rebuild:
project summaries (updated incrementally), compliance assessments and full
verifications, each keyed by the log size they describe, so a grown log misses.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from fastapi import Request
from jinja2 import Environment, PackageLoader, StrictUndefined

from flowloom.server.state import ServerState
from flowloom.server.web.background import Background
from flowloom.server.web.summary import SummaryBook

__all__ = ["WebState", "web_state"]

T = TypeVar("T")
_CACHE_SIZE = 32


class _Cache:
    """A small LRU of computed results; a value is computed outside the lock."""

    def __init__(self, size: int = _CACHE_SIZE) -> None:
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                found: T = self._items[key]
                return found
        value = compute()
        with self._lock:
            self._items[key] = value
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return value

    def peek(self, key: Hashable) -> Any | None:
        with self._lock:
            return self._items.get(key)


class WebState:
    """Templates (autoescaped Jinja2) and the derived-data caches of the web pages."""

    def __init__(self, server: ServerState) -> None:
        self.server = server
        self.templates = Environment(
            loader=PackageLoader("flowloom.server", "templates"),
            autoescape=True,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.summaries = SummaryBook(server.store)
        self.assessments = _Cache()
        self.background = Background(self.assessments)
        self.verifications = _Cache(8)

    def render(self, template: str, context: dict[str, Any]) -> str:
        return self.templates.get_template(template).render(context)

    def close(self) -> None:
        """End the background worker (waits for the computation under way)."""
        self.background.close()


def web_state(request: Request) -> WebState:
    """The WebState of this application (made by `flowloom.server.app.create_app`)."""
    found = getattr(request.app.state, "flowloom_web", None)
    if not isinstance(found, WebState):
        raise RuntimeError("the web pages need an application made by create_app")
    return found
