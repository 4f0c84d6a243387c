"""Deprovisioning beyond the directory: a disabled or deleted user's gateway keys.

The Directory ends a user's sessions and revokes their API keys in the transaction that
disables them; MCP over HTTP checks the API key on every request, so it stops with them.
The gateway's virtual keys live in the gateway's tables, which the directory does not
know: `gateway_cut_off` is the hook (flowloom.auth.scim.CutOffHook) that revokes the keys
owned by the user (by id or by email) and records each as ``auth.vkey_revoked`` with the
reason and who deprovisioned them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowloom.auth.principals import Principal
from flowloom.auth.records import User

if TYPE_CHECKING:
    from flowloom.auth.scim import CutOffHook
    from flowloom.gateway.access.records import VirtualKey
    from flowloom.server.state import ServerState

__all__ = ["gateway_cut_off", "owners_of", "record_revoked"]


def owners_of(user: User) -> list[str]:
    """The names a virtual key may give as its user owner: the id, and the email."""
    return [name for name in (user.id, user.email) if name]


def record_revoked(
    server: ServerState, keys: list[VirtualKey], user: User, by: Principal | None, why: str
) -> None:
    """One ``auth.vkey_revoked`` per key, in the key's project's log (else the instance's)."""
    for key in keys:
        refs: dict[str, Any] = {
            "vkey_id": key.id,
            "prefix": key.prefix,
            "owner": key.owner,
            "user_id": user.id,
            "reason": f"user {why}",
        }
        meta: dict[str, Any] = {"subject": key.id, "refs": refs}
        if by is not None:
            meta["actor"] = by.actor()
            refs["auth_via"] = by.via
        server.audit("auth.vkey_revoked", key.project, meta)


def gateway_cut_off(server: ServerState) -> CutOffHook:
    """The hook revoking a deprovisioned user's virtual keys through the server's view."""

    def cut_off(user: User, by: Principal | None, why: str) -> None:
        if server.gateway is None:
            return
        revoked = server.gateway.revoke_user_keys(owners_of(user))
        record_revoked(server, revoked, user, by, why)

    return cut_off
