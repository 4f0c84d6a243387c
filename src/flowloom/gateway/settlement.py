"""Settling an exchange's usage against its admission, in the recorder's thread.

Built from the access part alone and passed to the Recorder when it is constructed, so
the recorder needs no gateway (and nothing is patched on after construction).
"""

from __future__ import annotations

from flowloom.gateway.access.records import Admission, Usage
from flowloom.gateway.ports import AccessPort
from flowloom.gateway.recorder import Exchange
from flowloom.gateway.wire.common import Tokens

__all__ = ["Settlement"]


class Settlement:
    """The recorder's settle hook: charge what a served call used, free what a failed
    call held. Every admission ends here exactly once (the recorder settles each
    recorded exchange once)."""

    def __init__(self, access: AccessPort) -> None:
        self._access = access

    def __call__(self, exchange: Exchange, tokens: Tokens) -> float | None:
        admission = exchange.admission
        if not isinstance(admission, Admission):
            return None
        if exchange.provider is None or exchange.status >= 400:
            self._access.release(admission)
            return None
        cost = self._access.settle(
            admission,
            provider=exchange.provider,
            model=exchange.upstream_model or exchange.model,
            usage=Usage(
                tokens.input_tokens, tokens.output_tokens, tokens.cache_read, tokens.cache_write
            ),
        )
        return round(cost.total_usd, 10) if cost.priced else None
