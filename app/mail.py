"""Email from Berth, through the SMTP server in the settings (none set: no email). Its
one message so far: an owner's workspace will soon be stopped or deleted by itself."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage

from app.config import Settings

TIMEOUT_SECONDS = 10


class MailError(Exception):
    """A send that failed; ``recipient`` when the server refused that address only (the
    server works, other people's mail goes on)."""

    def __init__(self, message: str, recipient: bool = False):
        super().__init__(message)
        self.recipient = recipient


def configured(settings: Settings) -> bool:
    return bool(settings.smtp_host)


def plain_address(text: str | None) -> bool:
    """One bare address: local@domain, no name, no list, no spaces or control
    characters (an address from a provider or a form is sent to as nothing else)."""
    if not text or len(text) > 254 or not text.isprintable() or text.count("@") != 1:
        return False
    local, domain = text.split("@")
    return bool(local and domain) and not any(c in text for c in ' ,;<>()[]"\\:')


def send(settings: Settings, to: str, subject: str, body: str) -> None:
    """Send one plain-text message, or raise MailError naming the server and why."""
    where = f"{settings.smtp_host}:{settings.smtp_port}"
    if not plain_address(to):
        raise MailError(f"{to!r} is not one plain email address", recipient=True)
    try:
        message = EmailMessage()
        message["From"] = settings.smtp_from
        message["To"] = to
        message["Subject"] = subject
        message.set_content(body)
        if settings.smtp_tls == "ssl":
            server = smtplib.SMTP_SSL(
                settings.smtp_host,
                settings.smtp_port,
                timeout=TIMEOUT_SECONDS,
                context=ssl.create_default_context(),
            )
        else:
            server = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=TIMEOUT_SECONDS)
        with server:
            if settings.smtp_tls == "starttls":
                server.starttls(context=ssl.create_default_context())
            if settings.smtp_user:
                server.login(settings.smtp_user, settings.smtp_password)
            server.send_message(message)
    except smtplib.SMTPRecipientsRefused as exc:
        refused = f"mail to {to} through {where} was refused: {exc}"
        raise MailError(refused, recipient=True) from None
    except (OSError, smtplib.SMTPException, ValueError) as exc:
        raise MailError(f"mail to {to} through {where} failed: {exc}") from None
