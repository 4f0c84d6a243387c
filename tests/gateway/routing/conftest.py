"""Shared helpers for routing tests: a hand-driven clock and config files in tmp_path."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest

from flowloom.gateway.routing import Router, RouteRequest


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


BASE = """
[providers.us1]
kind = "anthropic"
base_url = "http://127.0.0.1:1"
region = "us"

[providers.us2]
kind = "openai"
base_url = "http://127.0.0.1:2"
region = "us"

[providers.eu1]
kind = "gemini"
base_url = "http://127.0.0.1:3"
region = "eu"

[providers.eu2]
kind = "azure"
base_url = "http://127.0.0.1:4"
region = "eu"

[providers.nowhere]
kind = "openai_compatible"
base_url = "http://127.0.0.1:5"
"""


def request(model: str = "m", **kw: object) -> RouteRequest:
    fields: dict[str, object] = {
        "format": "anthropic",
        "model": model,
        "stream": False,
        "has_tools": False,
        "has_images": False,
        "est_input_tokens": 100,
        "max_output_tokens": None,
        "project": None,
        "residency": None,
    }
    fields.update(kw)
    return RouteRequest(**fields)  # type: ignore[arg-type]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


MakeRouter = Callable[..., Router]


@pytest.fixture
def make_router(tmp_path: Path, clock: FakeClock) -> MakeRouter:
    def make(text: str, *, base: bool = True, seed: int = 7, **kw: object) -> Router:
        path = tmp_path / "gateway.toml"
        path.write_text((BASE if base else "") + text)
        return Router(path, clock=clock, rng=random.Random(seed), env={}, **kw)  # type: ignore[arg-type]

    return make
