"""Email over SMTP: the server's mail relay, for the notifications people ask for.

Configured by environment variables of `flowloom serve` (FLOWLOOM_SMTP_HOST, _PORT,
_FROM, _STARTTLS, _USER and _PASSWORD_FILE; docs/integrations.md). Without a host, no
mail is sent and the messages wait in the queue, retried, until one is configured.
A message says what happened and links to FlowLoom; replying or clicking in it approves
nothing.
"""

from __future__ import annotations

import os
import smtplib
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

from flowloom.errors import ConfigError

__all__ = ["Mailer", "SmtpSettings"]


@dataclass(frozen=True)
class SmtpSettings:
    host: str | None = None
    port: int = 587
    sender: str = "flowloom@localhost"
    starttls: bool = True
    user: str | None = None
    password_file: Path | None = None
    timeout_s: float = 15.0

    @classmethod
    def from_environ(cls, env: Mapping[str, str] | None = None) -> SmtpSettings:
        env = os.environ if env is None else env
        port_text = env.get("FLOWLOOM_SMTP_PORT", "587")
        try:
            port = int(port_text)
        except ValueError:
            raise ConfigError(
                f"FLOWLOOM_SMTP_PORT must be a port number, not {port_text!r}"
            ) from None
        flag = env.get("FLOWLOOM_SMTP_STARTTLS", "true").strip().lower()
        if flag not in ("true", "false", "1", "0", "yes", "no"):
            raise ConfigError("FLOWLOOM_SMTP_STARTTLS must be true or false")
        password = env.get("FLOWLOOM_SMTP_PASSWORD_FILE")
        return cls(
            host=env.get("FLOWLOOM_SMTP_HOST") or None,
            port=port,
            sender=env.get("FLOWLOOM_SMTP_FROM") or "flowloom@localhost",
            starttls=flag in ("true", "1", "yes"),
            user=env.get("FLOWLOOM_SMTP_USER") or None,
            password_file=Path(password) if password else None,
        )


class Mailer:
    """Sends one plain-text message per call; raises OSError/SMTPException on failure."""

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings

    def send(self, to: str, subject: str, text: str, *, message_id: str) -> None:
        settings = self.settings
        if settings.host is None:
            raise ConnectionError("no SMTP relay is configured (FLOWLOOM_SMTP_HOST)")
        message = EmailMessage()
        message["From"] = settings.sender
        message["To"] = to
        message["Subject"] = subject
        message["Message-ID"] = make_msgid(idstring=message_id)
        message["X-FlowLoom-Message"] = message_id
        message.set_content(text)
        with smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout_s) as smtp:
            if settings.starttls:
                smtp.starttls()
            if settings.user is not None:
                password = ""
                if settings.password_file is not None:
                    password = settings.password_file.read_text("utf-8").strip()
                smtp.login(settings.user, password)
            smtp.send_message(message)
