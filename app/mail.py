"""Email from Berth, through the SMTP server in the settings (none set: no email). Its
one message so far: an owner's workspace will soon be stopped or deleted by itself."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage

from app.config import Settings

TIMEOUT_SECONDS = 10


class MailError(Exception):
    pass


def configured(settings: Settings) -> bool:
    return bool(settings.smtp_host)


def send(settings: Settings, to: str, subject: str, body: str) -> None:
    """Send one plain-text message, or raise MailError naming the server and why."""
    message = EmailMessage()
    message["From"] = settings.smtp_from
    message["To"] = to
    message["Subject"] = subject
    message.set_content(body)
    where = f"{settings.smtp_host}:{settings.smtp_port}"
    try:
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
    except (OSError, smtplib.SMTPException, ValueError) as exc:
        raise MailError(f"mail to {to} through {where} failed: {exc}") from None
