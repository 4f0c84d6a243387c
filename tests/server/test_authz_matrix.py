"""Every route × every principal × own/other project: exactly the allowed set gets in.

The expected matrix is data (tests/server/authz_matrix.py), written apart from the
permission table; a route the app serves that is missing from it fails the test.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient

from flowloom.auth.reviews import AccessReviews
from flowloom.server.app import create_app
from flowloom.webhooks.service import Webhooks
from tests.server.authz_matrix import MATRIX, PRINCIPALS, TOKEN_ONLY_PREFIX, Call, Rule
from tests.server.support import OTHER, OWN, World, make_world

_counter = itertools.count()


class MatrixCtx:
    def __init__(self, world: World, who: str, own: bool) -> None:
        self.world = world
        self.who = who
        self.own = own
        self.project = OWN if own else OTHER
        self.index = world.body_index[self.project]

    def grant(self, who: str, project: str, role: str) -> None:
        self.world.server.directory.grant(self.world.user_ids[who], project, role)

    def grant_team(self, team: str, project: str, role: str) -> None:
        self.world.server.directory.grant_team(team, project, role)

    def person(self, *, disabled: bool = False) -> str:
        directory = self.world.server.directory
        user = directory.create_user(self.fresh("p") + "@example.org", "Spare Person")
        if disabled:
            directory.disable_user(user.id)
        return user.id

    def user_id(self, who: str) -> str:
        return self.world.user_ids[who]

    def spare_key(self, who: str) -> str:
        user = self.world.user_ids[who]
        key, _ = self.world.server.directory.create_key(user, name=self.fresh("spare"))
        return key.id

    def fresh(self, prefix: str) -> str:
        return f"{prefix}{next(_counter)}"

    def review(self, scope: str) -> tuple[str, int]:
        return self.world.reviews[scope]

    def _hooks(self) -> Webhooks:
        assert self.world.server.webhooks is not None
        return self.world.server.webhooks

    def webhook(self, project: str) -> str:
        owner = self.world.user_ids["instance_owner"]
        by = self.world.server.directory.principal_for_user(owner, via="cli")
        made = self._hooks().create(project, url="http://127.0.0.1:9/h", kinds=["*"], by=by)
        return made.subscription.id

    def webhook_delivery(self, project: str) -> int:
        owner = self.world.user_ids["instance_owner"]
        by = self.world.server.directory.principal_for_user(owner, via="cli")
        return self._hooks().send_test(project, self.webhook(project), by=by).id


@pytest.fixture(scope="module")
def matrix_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp: Path = tmp_path_factory.mktemp("matrix")
    world = make_world(str(tmp / "server.db"), tmp / "home")
    directory = world.server.directory
    directory.create_user(
        "login@example.org", "Login Person", password="correct horse battery staple"
    )
    victim = directory.create_user("victim@example.org", "Victim Person")
    world.user_ids["victim"] = victim.id
    directory.create_team("matrix-team")
    for project in (OWN, OTHER):
        ledger = world.server.ledger(project)
        ack = ledger.record("agent.prompt", body=b"a body", meta={"session": "s-0"})
        world.body_index[project] = ack.index
    reviews = AccessReviews(directory, world.server.ledger)
    opener = directory.principal_for_user(world.user_ids["instance_owner"], via="cli")
    for scope in (OWN, OTHER, "*"):
        if scope != "*":
            directory.grant(victim.id, scope, "auditor")
        campaign = reviews.open(opener, scope)
        line = next(ln for ln in campaign.lines if ln.user_id == victim.id)
        world.reviews[scope] = (campaign.id, line.line)
    yield world
    world.close()


def _served(world: World) -> set[tuple[str, str]]:
    app = create_app(world.server)
    found: set[tuple[str, str]] = set()
    # iter_route_contexts flattens included routers (app.routes holds them unexpanded).
    for route in iter_route_contexts(app.routes):
        for method in route.methods or ():
            if method != "HEAD" and route.path is not None:
                found.add((method, route.path))
    assert len(found) > 20, "the app's routes could not be enumerated"
    return found


def test_every_route_has_a_row(matrix_world: World) -> None:
    served = _served(matrix_world)
    missing = sorted(served - set(MATRIX))
    stale = sorted(set(MATRIX) - served)
    assert not missing, f"routes without a row in tests/server/authz_matrix.py: {missing}"
    assert not stale, f"rows for routes the app does not serve: {stale}"


def _call(
    client: TestClient, world: World, method: str, path: str, rule: Rule, ctx: MatrixCtx
) -> int:
    call = rule.request(ctx) if rule.request is not None else Call()
    values = {"project": ctx.project, "index": str(ctx.index), **call.path}
    url = re.sub(r"\{(\w+):path\}", r"{\1}", path).format(**values)
    response = client.request(
        method,
        url,
        params=dict(call.query),
        json=call.json,
        headers=world.headers(ctx.who),
    )
    client.cookies.clear()  # a sign-in must not lend its session to the next caller
    return response.status_code


def test_authorization_matrix(matrix_world: World) -> None:
    world = matrix_world
    client = TestClient(create_app(world.server), raise_server_exceptions=True)
    wrong: list[str] = []
    checked = 0
    for (method, path), rule in sorted(MATRIX.items()):
        scopes = [True] if rule.other is None else [True, False]
        for own, who in itertools.product(scopes, PRINCIPALS):
            allowed_set = rule.own if own else rule.other
            assert allowed_set is not None
            allowed = who in allowed_set
            status = _call(client, world, method, path, rule, MatrixCtx(world, who, own))
            checked += 1
            where = f"{method} {path} as {who} on {'own' if own else 'other'}: {status}"
            if status >= 500:
                wrong.append(f"{where} (server error)")
            elif allowed and not (status < 400 or status in rule.ok):
                wrong.append(f"{where}, expected allowed")
            elif not allowed:
                token_only = path.startswith(TOKEN_ONLY_PREFIX)
                expected = {401} if who == "anonymous" or token_only else {403, 404}
                if status not in expected:
                    wrong.append(f"{where}, expected one of {sorted(expected)}")
    assert not wrong, f"{len(wrong)} of {checked} checks wrong:\n" + "\n".join(wrong)
    assert checked >= len(MATRIX) * len(PRINCIPALS)
