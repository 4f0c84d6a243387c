"""Chat targets: a ledger event as a Slack incoming-webhook message or a Microsoft Teams
workflow-webhook Adaptive Card.

A chat message says what happened (kind, project, entry, actor, subject) and links to
FlowLoom's page for it; it carries no body, ever. For a decision the link opens the
decision's page, where approving is an electronic signature with re-authentication:
the only buttons are links (Slack ``url`` buttons, Teams ``Action.OpenUrl``), so no
approval is ever made by a click in chat.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

__all__ = ["CHAT_FORMATS", "EMAIL", "FORMATS", "ChatNote", "email_text", "render", "shown_url"]

EMAIL = "email"
"""A person's own notification subscription (made from their preferences, not the API)."""
FORMATS = ("cloudevents", "slack", "teams")
CHAT_FORMATS = frozenset({"slack", "teams"})
_DECISION_ID = re.compile(r"^D-[0-9a-f]{10}$")


def shown_url(url: str) -> str:
    """What may be shown of a chat target's URL (its path is the credential)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.hostname or "", "/…", "", ""))


class ChatNote:
    """The few facts a chat message states, and where FlowLoom shows the rest."""

    def __init__(self, title: str, lines: list[str], link: str, link_text: str) -> None:
        self.title = title
        self.lines = lines
        self.link = link
        self.link_text = link_text

    @classmethod
    def of_entry(
        cls, *, public_url: str, project: str, index: int, kind: str, envelope: dict[str, Any]
    ) -> ChatNote:
        base = f"{public_url.rstrip('/')}/ui/projects/{quote(project, safe='')}"
        found = envelope.get("actor")
        actor: dict[str, Any] = found if isinstance(found, dict) else {}
        who = str(actor.get("name") or actor.get("id") or "someone")
        subject = envelope.get("subject") if isinstance(envelope.get("subject"), str) else None
        lines = [f"Project {project}, entry #{index}, by {who}."]
        if subject:
            lines.append(f"Subject: {subject}")
        if kind == "decision.record" and subject and _DECISION_ID.match(subject):
            return cls(
                f"Decision {subject} recorded: it may need your approval",
                [*lines, "Approving is a signature on FlowLoom's page, not in chat."],
                f"{base}/decisions/{subject}",
                "Review and sign in FlowLoom",
            )
        if kind == "decision.approve" and subject and _DECISION_ID.match(subject):
            return cls(
                f"Decision {subject} was approved or rejected",
                lines,
                f"{base}/decisions/{subject}",
                "Open the decision",
            )
        return cls(f"{kind} in {project}", lines, f"{base}/entries/{index}", "Open in FlowLoom")

    @classmethod
    def test(cls, *, public_url: str, project: str) -> ChatNote:
        return cls(
            f"FlowLoom test message for {project}",
            ["This channel will receive the project's events it subscribed to."],
            f"{public_url.rstrip('/')}/ui/projects/{quote(project, safe='')}/webhooks",
            "Open the project's webhooks",
        )


def render(target: str, note: ChatNote) -> bytes:
    """The JSON body for `target` ("slack" or "teams")."""
    if target == "slack":
        return json.dumps(_slack(note)).encode("utf-8")
    if target == "teams":
        return json.dumps(_teams(note)).encode("utf-8")
    raise ValueError(f"not a chat target: {target}")


def email_text(note: ChatNote) -> tuple[str, str]:
    """(subject, plain text) of the email for `note`."""
    lines = [*note.lines, "", f"{note.link_text}: {note.link}", ""]
    lines.append("You receive this because of your FlowLoom notification preferences.")
    return f"[FlowLoom] {note.title}", "\n".join(lines)


def _slack(note: ChatNote) -> dict[str, Any]:
    text = "\n".join(_escape_mrkdwn(line) for line in note.lines)
    return {
        "text": f"{note.title}: {note.link}",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": note.title[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}},
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": note.link_text},
                        "url": note.link,
                    }
                ],
            },
        ],
    }


def _teams(note: ChatNote) -> dict[str, Any]:
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {"type": "TextBlock", "text": note.title, "weight": "Bolder", "wrap": True},
            *({"type": "TextBlock", "text": line, "wrap": True} for line in note.lines),
        ],
        "actions": [{"type": "Action.OpenUrl", "title": note.link_text, "url": note.link}],
    }
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": card,
            }
        ],
    }


def _escape_mrkdwn(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
