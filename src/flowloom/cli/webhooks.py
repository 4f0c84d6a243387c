"""`flowloom webhooks add|list|remove|test|redeliver`: a project's webhooks, through the API.

These talk to the team server (``--server``, else FLOWLOOM_SERVER or [server] url) with
the API key of FLOWLOOM_API_KEY or [server] api_key_file, on the project of
``flowloom --project`` (else the repository's). The server checks the role
(project.admin) and records every change in the project's ledger; `add` prints the
signing secret, which is shown this once.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import click

from flowloom.cli.context import AppContext
from flowloom.errors import ConfigError

__all__ = ["webhooks"]


class _Api:
    def __init__(self, ctx: click.Context, server: str | None) -> None:
        from flowloom.client.http import HttpClient

        settings = AppContext.of(ctx).settings()
        url = server or settings.server_url
        if not url:
            raise ConfigError(
                "no FlowLoom server to talk to",
                hint="pass --server URL, or set FLOWLOOM_SERVER or [server] url",
            )
        self.http = HttpClient(url, settings.server_api_key())
        self.base = f"/api/v1/projects/{quote(settings.project, safe='')}/webhooks"

    def call(self, method: str, path: str = "", body: Any = None) -> Any:
        content = self.http.request(method, self.base + path, body=body)
        return json.loads(content) if content else None


_SERVER = click.option("--server", metavar="URL", help="The team server (default: settings).")
_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def _show(value: Any, as_json: bool, text: str) -> None:
    click.echo(json.dumps(value, indent=2) if as_json else text)


@click.group("webhooks")
def webhooks() -> None:
    """Outbound webhooks: signed CloudEvents of this project's ledger events."""


@webhooks.command("add")
@click.argument("url")
@click.option(
    "--kind",
    "kinds",
    multiple=True,
    required=True,
    help="An event kind, a family such as 'decision.*', or '*' (repeatable).",
)
@click.option("--description", default="", help="What the receiver is.")
@click.option("--include-bodies", is_flag=True, help="Also send entries' stored bodies.")
@click.option(
    "--format",
    "format_",
    type=click.Choice(["cloudevents", "slack", "teams"]),
    default="cloudevents",
    show_default=True,
    help="CloudEvents JSON, or a Slack incoming webhook / Teams workflow webhook URL.",
)
@_SERVER
@_JSON
@click.pass_context
def add(
    ctx: click.Context,
    url: str,
    kinds: tuple[str, ...],
    description: str,
    include_bodies: bool,
    format_: str,
    server: str | None,
    as_json: bool,
) -> None:
    """Subscribe URL to the project's events of the given kinds; prints the secret once."""
    body = {
        "url": url,
        "kinds": list(kinds),
        "description": description,
        "include_bodies": include_bodies,
        "format": format_,
    }
    made = _Api(ctx, server).call("POST", body=body)
    _show(
        made,
        as_json,
        f"{made['id']} → {made['url']} ({', '.join(made['kinds'])})\n"
        f"secret: {made['secret']}\n"
        "Keep the secret now: receivers verify signatures with it, and it is not shown again.",
    )


@webhooks.command("list")
@_SERVER
@_JSON
@click.pass_context
def list_(ctx: click.Context, server: str | None, as_json: bool) -> None:
    """The project's webhooks."""
    found = _Api(ctx, server).call("GET")
    lines = [
        f"{w['id']}  {'enabled ' if w['enabled'] else 'disabled'}  {w['url']}"
        f"  {', '.join(w['kinds'])}"
        for w in found
    ]
    _show(found, as_json, "\n".join(lines) or "no webhooks")


@webhooks.command("remove")
@click.argument("webhook_id")
@_SERVER
@click.pass_context
def remove(ctx: click.Context, webhook_id: str, server: str | None) -> None:
    """Delete a webhook and its delivery history."""
    _Api(ctx, server).call("DELETE", "/" + quote(webhook_id, safe=""))
    click.echo(f"removed {webhook_id}")


@webhooks.command("test")
@click.argument("webhook_id")
@_SERVER
@_JSON
@click.pass_context
def test(ctx: click.Context, webhook_id: str, server: str | None, as_json: bool) -> None:
    """Queue a test event (no ledger content) for a webhook."""
    queued = _Api(ctx, server).call("POST", f"/{quote(webhook_id, safe='')}/test")
    _show(queued, as_json, f"queued test delivery {queued['id']} ({queued['message_id']})")


@webhooks.command("deliveries")
@click.argument("webhook_id")
@_SERVER
@_JSON
@click.pass_context
def deliveries(ctx: click.Context, webhook_id: str, server: str | None, as_json: bool) -> None:
    """A webhook's latest deliveries and their attempts, newest first."""
    found = _Api(ctx, server).call("GET", f"/{quote(webhook_id, safe='')}/deliveries")
    lines = []
    for d in found:
        where = f"#{d['ledger_index']}" if d["ledger_index"] is not None else "test"
        lines.append(f"{d['id']}  {d['status']:<9}  {d['kind']} {where}  attempts {d['attempts']}")
        for a in d["history"]:
            answer = f"HTTP {a['status_code']}" if a["status_code"] is not None else ""
            lines.append(f"    {a['at']}  {answer} {a['error'] or ''}".rstrip())
    _show(found, as_json, "\n".join(lines) or "no deliveries")


@webhooks.command("redeliver")
@click.argument("delivery_id", type=int)
@_SERVER
@_JSON
@click.pass_context
def redeliver(ctx: click.Context, delivery_id: int, server: str | None, as_json: bool) -> None:
    """Queue a delivered or dead-lettered message again (same webhook-id)."""
    queued = _Api(ctx, server).call("POST", f"/deliveries/{delivery_id}/redeliver")
    _show(queued, as_json, f"queued delivery {queued['id']} again of {delivery_id}")
