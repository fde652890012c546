"""E-mail through SMTP_URL as an outbound-only channel ("email"): one-time codes, later transcripts.

It implements core.channels.Channel, so a code e-mail is an outbox row like any reply:
retried with backoff, dead-lettered, and its secret dropped once sent. The user id of an
"email" identity is the address. `smtp://` uses STARTTLS whenever the server offers it (and
refuses to send a password without it, except to this machine); `smtps://` is TLS from the
start (port 465). https://docs.python.org/3/library/smtplib.html
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from urllib.parse import unquote, urlsplit

from core.errors import ConfigurationError, PermanentChannelError, TransientChannelError
from core.messages import Capabilities, OutboundMessage, Receipt

log = logging.getLogger(__name__)
DEFAULT_SUBJECT = "A message from SayPro support"


@dataclass(frozen=True)
class SmtpServer:
    """Where and how to send: parsed from SMTP_URL."""

    host: str
    port: int
    tls: bool  # smtps://: TLS from the first byte
    username: str | None = None
    password: str | None = None

    @property
    def is_local(self) -> bool:
        try:
            return self.host == "localhost" or ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def parse_smtp_url(url: str) -> SmtpServer:
    """SMTP_URL as a server, e.g. smtp://user:pass@host:587 or smtps://host; ConfigurationError if not."""
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ConfigurationError("SMTP_URL: expected smtp://user:pass@host:587 or smtps://user:pass@host:465")
    try:
        port = parts.port or (465 if parts.scheme == "smtps" else 587)
    except ValueError as exc:
        raise ConfigurationError("SMTP_URL: the port is not a number") from exc
    return SmtpServer(
        host=parts.hostname,
        port=port,
        tls=parts.scheme == "smtps",
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


class SmtpChannel:
    """Sends each outbound message as a plain-text e-mail to the address in its user id."""

    name = "email"
    capabilities = Capabilities()

    def __init__(
        self, server: SmtpServer, *, sender: str, subject: str = DEFAULT_SUBJECT, timeout: float = 20.0
    ) -> None:
        self.server = server
        self.sender = sender
        self.subject = subject
        self.timeout = timeout

    async def send(self, message: OutboundMessage) -> Receipt:
        return await asyncio.to_thread(self._send_now, message)

    def _send_now(self, message: OutboundMessage) -> Receipt:
        mail = EmailMessage()
        mail["From"], mail["To"], mail["Subject"] = self.sender, message.user_id, self.subject
        mail["Message-ID"] = make_msgid(domain="saypro.bot")
        mail.set_content(message.text)
        try:
            with self._connect() as client:
                client.send_message(mail)
        except smtplib.SMTPRecipientsRefused as exc:
            raise PermanentChannelError("the mail server refused the address", unreachable=True) from exc
        except smtplib.SMTPAuthenticationError as exc:
            raise PermanentChannelError("the mail server refused SMTP_URL's user name or password") from exc
        except smtplib.SMTPResponseException as exc:
            if 400 <= exc.smtp_code < 500:
                raise TransientChannelError(f"mail server answered {exc.smtp_code}") from exc
            raise PermanentChannelError(f"mail server answered {exc.smtp_code}") from exc
        except (smtplib.SMTPException, OSError) as exc:  # disconnects, timeouts, refused connections
            raise TransientChannelError(f"mail server unavailable: {type(exc).__name__}") from exc
        log.info("e-mail sent", extra={"channel": self.name, "conversation_id": message.conversation_id})
        return Receipt(provider_message_id=str(mail["Message-ID"]))

    def _connect(self) -> smtplib.SMTP:
        server, context = self.server, ssl.create_default_context()
        if server.tls:
            client: smtplib.SMTP = smtplib.SMTP_SSL(server.host, server.port, timeout=self.timeout, context=context)
        else:
            client = smtplib.SMTP(server.host, server.port, timeout=self.timeout)
        try:
            client.ehlo()
            if not server.tls and client.has_extn("starttls"):
                client.starttls(context=context)
                client.ehlo()
            elif not server.tls and server.username and not server.is_local:
                raise PermanentChannelError(
                    "the mail server offers no STARTTLS: not sending SMTP_URL's password in clear"
                )
            if server.username and server.password:
                client.login(server.username, server.password)
        except BaseException:
            client.close()
            raise
        return client
