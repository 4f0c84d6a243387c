"""Offboarding and teams' roles in the web pages, over real HTTP on loopback: disable,
enable and delete buttons (CSRF-protected forms, delete behind a confirmation page), a
disabled user's session and key refused at once, teams' roles granted and revoked on
the members page, each change recorded with the signed-in administrator as actor."""

from __future__ import annotations

import re

import httpx

from flowloom.ledger.event import Event
from flowloom.server import INSTANCE_PROJECT
from tests.server.support import OWN, World
from tests.web.support import PASSWORD, Populated, csrf_of, sign_in

ADMIN = "/ui/admin"


def _events(world: World, project: str, kind: str) -> list[Event]:
    ledger = world.server.ledger(project)
    return [Event.parse(e.envelope) for e in ledger.store.entries(project, kind=kind)]


def _post_forms_have_csrf(page: str) -> None:
    for form in re.findall(r"<form[^>]*method=\"post\"[^>]*>.*?</form>", page, re.S):
        assert 'name="csrf_token"' in form, form


def test_disable_enable_delete_from_the_admin_page(
    web_world: tuple[World, Populated], web_url: str
) -> None:
    world, _ = web_world
    directory = world.server.directory
    root = world.user_ids["instance_owner"]
    dev = world.user_ids["developer"]
    directory.set_password(root, PASSWORD)
    dev_key = {"Authorization": f"Bearer {world.keys['developer']}"}
    with httpx.Client(base_url=web_url) as admin, httpx.Client(base_url=web_url) as leaver:
        assert sign_in(admin, "root@example.org").status_code == 200
        assert sign_in(leaver, "developer@example.org").status_code == 200
        assert leaver.get(f"/ui/projects/{OWN}/timeline").status_code == 200

        page = admin.get(ADMIN).text
        _post_forms_have_csrf(page)
        assert f'action="/ui/admin/users/{dev}/disable"' in page
        assert f'href="/ui/admin/users/{dev}/delete"' in page
        assert f'action="/ui/admin/users/{root}/disable"' not in page  # not oneself
        csrf = csrf_of(page)

        done = admin.post(f"{ADMIN}/users/{dev}/disable", data={"csrf_token": csrf})
        assert done.status_code == 303 and done.headers["location"] == ADMIN
        # The developer's open session and API key stop working at once.
        assert leaver.get(f"/ui/projects/{OWN}/timeline").status_code == 401
        assert httpx.get(f"{web_url}/api/v1/me", headers=dev_key).status_code == 401
        page = admin.get(ADMIN).text
        assert f'action="/ui/admin/users/{dev}/enable"' in page

        # Oneself is refused even when the form is posted by hand; without CSRF, too.
        own = admin.post(f"{ADMIN}/users/{root}/disable", data={"csrf_token": csrf})
        assert own.status_code == 403 and "your own account" in own.text
        forged = admin.post(f"{ADMIN}/users/{dev}/enable", data={})
        assert forged.status_code == 403 and directory.get_user(dev).disabled

        assert admin.post(f"{ADMIN}/users/{dev}/enable", data={"csrf_token": csrf}).status_code == (
            303
        )
        assert sign_in(leaver, "developer@example.org").status_code == 200
        assert httpx.get(f"{web_url}/api/v1/me", headers=dev_key).status_code == 401

        confirm = admin.get(f"{ADMIN}/users/{dev}/delete")
        assert confirm.status_code == 200
        assert "Type developer@example.org to confirm" in confirm.text
        _post_forms_have_csrf(confirm.text)
        wrong = admin.post(
            f"{ADMIN}/users/{dev}/delete", data={"csrf_token": csrf, "confirm": "developer"}
        )
        assert wrong.status_code == 400 and directory.get_user(dev).deleted_at is None
        deleted = admin.post(
            f"{ADMIN}/users/{dev}/delete",
            data={"csrf_token": csrf, "confirm": "Developer@Example.org"},
        )
        assert deleted.status_code == 303
        assert leaver.get(f"/ui/projects/{OWN}/timeline").status_code == 401
        page = admin.get(ADMIN).text
        assert "developer@example.org" not in page and "deleted user" in page
        # The developer's past events still show on the timeline.
        assert admin.get(f"/ui/projects/{OWN}/timeline").status_code == 200

    for kind in ("auth.user_disabled", "auth.user_enabled", "auth.user_deleted"):
        [event] = [e for e in _events(world, INSTANCE_PROJECT, kind) if e.subject == dev]
        assert event.actor.id == root and event.refs["auth_via"] == "session", kind


def test_team_roles_on_the_members_page(web_world: tuple[World, Populated], web_url: str) -> None:
    world, _ = web_world
    directory = world.server.directory
    directory.create_team("code reviewers")
    directory.add_member("code reviewers", world.user_ids["auditor"])
    members = f"/ui/projects/{OWN}/members"
    with httpx.Client(base_url=web_url) as owner, httpx.Client(base_url=web_url) as auditor:
        sign_in(owner, "owner@example.org")  # owner of alpha: project.admin there
        sign_in(auditor, "auditor@example.org")
        page = owner.get(members).text
        assert "No team has a role on this project." in page
        assert 'action="/ui/projects/alpha/teams"' in page
        granted = owner.post(
            f"/ui/projects/{OWN}/teams",
            data={"csrf_token": csrf_of(page), "team": "code reviewers", "role": "approver"},
        )
        assert granted.status_code == 303 and granted.headers["location"] == members
        assert "approver" in directory.grants_of(world.user_ids["auditor"])[OWN]
        page = owner.get(members).text
        _post_forms_have_csrf(page)
        revoke = f"/ui/projects/{OWN}/teams/code%20reviewers/approver/revoke"
        assert f'action="{revoke}"' in page
        # The auditor (a member of the team, not a project admin) sees no revoke button
        # and is refused when posting the form anyway.
        their_page = auditor.get(members).text
        assert f'action="{revoke}"' not in their_page and "code reviewers" in their_page
        refused = auditor.post(revoke, data={"csrf_token": csrf_of(their_page)})
        assert refused.status_code == 403
        assert owner.post(revoke, data={"csrf_token": csrf_of(page)}).status_code == 303
        assert OWN not in directory.grants_of(world.user_ids["auditor"]) or (
            "approver" not in directory.grants_of(world.user_ids["auditor"])[OWN]
        )
        again = owner.post(revoke, data={"csrf_token": csrf_of(page)})
        assert again.status_code == 404

    owner_id = world.user_ids["owner"]
    changes = [
        (e.kind, e.refs["role"], e.actor.id)
        for kind in ("auth.role_granted", "auth.role_revoked")
        for e in _events(world, OWN, kind)
        if e.refs.get("team") == "code reviewers"
    ]
    assert changes == [
        ("auth.role_granted", "approver", owner_id),
        ("auth.role_revoked", "approver", owner_id),
    ]
