"""The limits and defaults of one gateway process."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["GatewaySettings"]


@dataclass(frozen=True)
class GatewaySettings:
    """Limits and defaults of one gateway process."""

    default_project: str = "gateway"
    max_request_bytes: int = 32 * 1024 * 1024
    max_response_bytes: int = 64 * 1024 * 1024
    max_record_bytes: int = 8 * 1024 * 1024
    request_timeout_s: float = 600.0
    connect_timeout_s: float = 10.0
    max_retry_wait_s: float = 10.0
    reload_interval_s: float = 2.0
    pool_size: int = 512
