"""Embeddings as OpenAI (and Azure) and Gemini answer them: deterministic small vectors.

Each text's vector comes from its SHA-256 (the same text always gets the same unit
vector), 16 dimensions unless the request asks for another size. OpenAI's SDK asks for
base64 by default (float32, little-endian), so both encodings are served.
"""

from __future__ import annotations

import base64
import hashlib
import math
import struct
from collections.abc import Mapping
from typing import Any

from flowloom.gateway.mock.base import dumps

__all__ = ["gemini_batch_embed", "gemini_embed", "openai_embeddings"]

DEFAULT_DIMENSIONS = 16
MAX_DIMENSIONS = 3072


def vector(text: str, dimensions: int = DEFAULT_DIMENSIONS) -> list[float]:
    """A unit vector of `dimensions` floats derived from `text` alone."""
    values: list[float] = []
    counter = 0
    while len(values) < dimensions:
        digest = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        values.extend((b - 127.5) / 127.5 for b in digest)
        counter += 1
    values = values[:dimensions]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [round(v / norm, 6) for v in values]


def _size(value: Any) -> int | None:
    if value is None:
        return DEFAULT_DIMENSIONS
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_DIMENSIONS:
        return value
    return None


def _tokens(text: str) -> int:
    return len(text) // 4 + 1


def openai_embeddings(body: Mapping[str, Any]) -> tuple[int, str | bytes]:
    """(status, error message or response body) for an OpenAI embeddings request."""
    raw = body.get("input")
    if isinstance(raw, str):
        texts = [raw]
    elif isinstance(raw, list) and raw and all(isinstance(t, str) for t in raw):
        texts = list(raw)
    elif isinstance(raw, list) and raw and all(isinstance(t, int) for t in raw):
        texts = [" ".join(str(t) for t in raw)]  # one input given as token ids
    else:
        return 400, "'input' must be a non-empty string or array of strings"
    size = _size(body.get("dimensions"))
    if size is None:
        return 400, f"'dimensions' must be an integer from 1 to {MAX_DIMENSIONS}"
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        return 400, "'encoding_format' must be 'float' or 'base64'"
    data = []
    for index, text in enumerate(texts):
        values = vector(text, size)
        embedding: Any = values
        if encoding == "base64":
            packed = struct.pack(f"<{len(values)}f", *values)
            embedding = base64.b64encode(packed).decode()
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    tokens = sum(_tokens(t) for t in texts)
    return 200, dumps(
        {
            "object": "list",
            "data": data,
            "model": body.get("model"),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    ).encode()


def _content_text(content: Any) -> str | None:
    if not isinstance(content, Mapping):
        return None
    parts = content.get("parts")
    if not isinstance(parts, list) or not parts:
        return None
    texts = [p.get("text") for p in parts if isinstance(p, Mapping)]
    if not texts or not all(isinstance(t, str) for t in texts):
        return None
    return "".join(str(t) for t in texts)


def _one(request: Mapping[str, Any]) -> list[float] | str:
    text = _content_text(request.get("content"))
    if text is None:
        return "content must hold parts with text"
    size = _size(request.get("outputDimensionality", request.get("output_dimensionality")))
    if size is None:
        return f"outputDimensionality must be an integer from 1 to {MAX_DIMENSIONS}"
    return vector(text, size)


def gemini_embed(body: Mapping[str, Any]) -> tuple[int, str | bytes]:
    """(status, error message or response body) for Gemini embedContent."""
    values = _one(body)
    if isinstance(values, str):
        return 400, values
    return 200, dumps({"embedding": {"values": values}}).encode()


def gemini_batch_embed(body: Mapping[str, Any]) -> tuple[int, str | bytes]:
    """(status, error message or response body) for Gemini batchEmbedContents."""
    requests = body.get("requests")
    if not isinstance(requests, list) or not requests:
        return 400, "requests must be a non-empty array"
    out = []
    for index, request in enumerate(requests):
        values = _one(request) if isinstance(request, Mapping) else "must be an object"
        if isinstance(values, str):
            return 400, f"requests[{index}]: {values}"
        out.append({"values": values})
    return 200, dumps({"embeddings": out}).encode()
