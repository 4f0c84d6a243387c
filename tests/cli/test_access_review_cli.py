"""`flowloom access-review …` as a real process, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from flowloom.auth.directory import INSTANCE_PROJECT
from tests.cli.test_admin import PASSWORD, Admin


class Reviews(Admin):
    """Runs `python -m flowloom access-review …` (and `admin …` to set up)."""

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "flowloom", "access-review", *args],
            capture_output=True,
            text=True,
            cwd=self.cwd,
            env=self.env,
            timeout=120,
            check=False,
        )

    def review(self, *args: str) -> str:
        result = self.run(*args)
        assert result.returncode == 0, result.stderr
        return result.stdout


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def reviews(request: pytest.FixtureRequest, tmp_path: Path) -> Reviews:
    database = (
        str(tmp_path / "ledger.db") if request.param == "sqlite"
        else request.getfixturevalue("pg_url")
    )  # fmt: skip
    built = Reviews(tmp_path, database)
    built.ok("create-owner", "--email", "olive@example.org", "--name", "Olive", "--password-stdin",
             input=PASSWORD + "\n")  # fmt: skip
    built.ok("create-project", "alpha")
    built.ok("create-project", "beta")
    built.ok("create-user", "--email", "dev@example.org", "--name", "Dev")
    built.ok("grant", "--email", "dev@example.org", "--project", "alpha", "--role", "developer")
    return built


def test_open_list_show_dormant_close(reviews: Reviews) -> None:
    opened = json.loads(
        reviews.review("open", "alpha", "--as", "olive@example.org", "--due-days", "7", "--json")
    )
    assert opened["scope"] == "alpha" and opened["status"] == "open"
    [line] = opened["lines"]
    assert line["email"] == "dev@example.org" and line["role"] == "developer"
    assert line["last_activity"] is None and line["decision"] is None

    listed = reviews.review("list", "alpha")
    assert opened["id"] in listed and "open" in listed
    shown = reviews.review("show", opened["id"])
    assert "dev@example.org  developer on alpha" in shown and "pending" in shown
    dormant = json.loads(reviews.review("dormant", "alpha", "--days", "1", "--json"))
    assert dormant == []  # created today: not dormant yet

    pending = reviews.run("close", opened["id"], "--as", "olive@example.org")
    assert pending.returncode != 0
    assert "undecided" in pending.stderr
    again = reviews.run("open", "alpha", "--as", "olive@example.org")
    assert "already open" in again.stderr
    not_owner = reviews.run("open", "beta", "--as", "dev@example.org")
    assert "not an instance owner" in not_owner.stderr
    neither = reviews.run("open", "--as", "olive@example.org")
    assert "PROJECT or pass --instance" in neither.stderr

    # Nobody holds a role on beta: a campaign with no line closes at once.
    empty = reviews.review("open", "beta", "--as", "olive@example.org")
    campaign = empty.split()[1]
    assert "0 lines" in empty
    assert "closed " + campaign in reviews.review("close", campaign, "--as", "olive@example.org")
    assert "closed" in reviews.review("list", "beta", "--status", "closed")

    instance = reviews.review("open", "--instance", "--as", "olive@example.org")
    assert "over *" in instance
    kinds = reviews.kinds(INSTANCE_PROJECT)
    assert kinds.count("access.review_opened") == 1
    assert reviews.kinds("alpha").count("access.review_opened") == 1
    assert reviews.kinds("beta")[-2:] == ["access.review_opened", "access.review_closed"]
    envelope = reviews.envelopes("beta")[-1]
    assert envelope["actor"]["id"] == "flowloom-admin-cli"  # type: ignore[index]
    assert envelope["refs"]["claimed_by"]["name"] == "Olive"  # type: ignore[index]


DOCS = Path(__file__).resolve().parents[2] / "docs" / "auth.md"


def test_the_documented_commands(reviews: Reviews) -> None:
    """Every `flowloom access-review …` line of docs/auth.md, in order, with a reviewer's
    signed decision in between (as the server would take it)."""
    from flowloom.auth.directory import Directory
    from flowloom.auth.reviews import AccessReviews
    from flowloom.auth.signatures import ReauthCredentials, SignatureService
    from flowloom.config import load_settings
    from flowloom.services import AuditLedgers

    section = DOCS.read_text("utf-8").split("## Access reviews", 1)[1]
    block = section.split("```", 2)[1]
    commands = [shlex.split(line)[2:] for line in block.splitlines() if line.startswith("flowloom")]
    assert len(commands) == 6, commands
    reviews.ok("create-project", "payments")
    reviews.ok(
        "grant", "--email", "dev@example.org", "--project", "payments", "--role", "developer"
    )
    campaign = ""
    for command in commands:
        args = [campaign if a == "AR-0123456789" else a for a in command]
        if args[0] == "close":  # Olive signs her decision on the one line first.
            ledgers = AuditLedgers(load_settings(reviews.cwd, env=reviews.env))
            directory = Directory(reviews.database, audit=ledgers)
            try:
                olive = directory.user_by_email("olive@example.org")
                _, token, _ = directory.create_session(olive.id, via="password")
                signer = directory.principal_for_session(token)
                service = AccessReviews(
                    directory, ledgers.ledger, SignatureService(directory, ledgers.ledger)
                )
                [line] = service.get(campaign).lines
                service.decide(
                    signer, campaign, line.line, "revoke",
                    credentials=ReauthCredentials(password=PASSWORD, email="olive@example.org"),
                )  # fmt: skip
                assert directory.grants_of(line.user_id) == {"alpha": frozenset({"developer"})}
            finally:
                directory.close()
                ledgers.close()
        out = reviews.review(*args)
        if args[0] == "open" and not campaign:
            campaign = out.split()[1]
            assert "1 lines" in out and "payments" in out
    assert "closed " + campaign in out or "over *" in out
    assert reviews.kinds("payments").count("access.review_decided") == 1
    assert reviews.kinds("payments").count("access.review_closed") == 1
