"""Directory records as API models: what a response may show (never a secret or hash)."""

from __future__ import annotations

from flowloom.auth.principals import Principal
from flowloom.auth.records import ApiKey, Grant, Member, Team, User
from flowloom.server.models import ApiKeyOut, GrantOut, MemberOut, MeOut, TeamOut, UserOut

__all__ = ["grant_out", "key_out", "me_out", "member_out", "team_out", "user_out"]


def user_out(user: User) -> UserOut:
    return UserOut(
        id=user.id,
        email=user.email,
        name=user.name,
        kind=user.kind,
        disabled=user.disabled,
        created_at=user.created_at,
        deleted_at=user.deleted_at,
    )


def grant_out(grant: Grant) -> GrantOut:
    return GrantOut(project=grant.project, role=grant.role, team=grant.team)


def member_out(member: Member) -> MemberOut:
    return MemberOut(
        user=user_out(member.user),
        roles=sorted(member.roles),
        direct_roles=sorted(member.direct_roles),
    )


def team_out(team: Team) -> TeamOut:
    return TeamOut(id=team.id, name=team.name, created_at=team.created_at)


def key_out(key: ApiKey) -> ApiKeyOut:
    return ApiKeyOut(
        id=key.id,
        user_id=key.user_id,
        name=key.name,
        prefix=key.prefix,
        scopes=sorted(key.scopes) if key.scopes is not None else None,
        created_at=key.created_at,
        expires_at=key.expires_at,
        revoked_at=key.revoked_at,
        last_used_at=key.last_used_at,
        rotated_from=key.rotated_from,
    )


def me_out(principal: Principal) -> MeOut:
    return MeOut(
        user_id=principal.user_id,
        email=principal.email,
        name=principal.name,
        kind=principal.kind,
        grants={p: sorted(r) for p, r in sorted(principal.grants.items())},
        scopes=sorted(principal.scopes) if principal.scopes is not None else None,
        via=principal.via,
        key_id=principal.key_id,
    )
