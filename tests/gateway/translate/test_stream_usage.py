"""Where a translated Anthropic stream gets its input count (docs/gateway.md, Compatibility).

Chat Completions reports usage only in its last chunk (`stream_options.include_usage`) and
Responses only in `response.completed`, so `message_start` cannot wait for it without
holding back the first token: it carries the gateway's estimate, and the final
`message_delta` the provider's counts, which the Anthropic SDKs keep. Gemini sends its
counts with the first chunk, so there `message_start` has them.
"""

from __future__ import annotations

import json
from typing import Any

from flowloom.gateway.translate import StreamTranslator
from flowloom.gateway.wire.sse import SseEvent

ESTIMATE = 42


def _events(src: str, chunks: list[tuple[str | None, dict[str, Any]]]) -> list[dict[str, Any]]:
    translator = StreamTranslator(src, "anthropic", model="m", input_tokens=ESTIMATE)  # type: ignore[arg-type]
    out = []
    for name, data in chunks:
        out.extend(translator.feed(SseEvent(name, json.dumps(data))))
    out.extend(translator.close())
    return [json.loads(e.data) for e in out]


def _usage(events: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    event = next(e for e in events if e["type"] == kind)
    return dict(event["message"]["usage"] if kind == "message_start" else event["usage"])


def test_a_chat_stream_starts_with_the_estimate_and_ends_with_the_reported_counts() -> None:
    base = {"id": "c1", "object": "chat.completion.chunk", "model": "m", "created": 1}
    events = _events(
        "openai",
        [
            (
                None,
                {
                    **base,
                    "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"}}],
                },
            ),
            (None, {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
            (None, {**base, "choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 2}}),
        ],
    )
    assert _usage(events, "message_start")["input_tokens"] == ESTIMATE
    final = _usage(events, "message_delta")
    assert (final["input_tokens"], final["output_tokens"]) == (7, 2)


def test_a_gemini_stream_starts_with_the_providers_count() -> None:
    chunk = {
        "candidates": [{"content": {"role": "model", "parts": [{"text": "Hi"}]}, "index": 0}],
        "usageMetadata": {"promptTokenCount": 7, "candidatesTokenCount": 1},
    }
    last = {
        "candidates": [
            {
                "content": {"role": "model", "parts": [{"text": "!"}]},
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": {"promptTokenCount": 7, "candidatesTokenCount": 2},
    }
    events = _events("gemini", [(None, chunk), (None, last)])
    assert _usage(events, "message_start")["input_tokens"] == 7
