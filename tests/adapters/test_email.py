"""The SMTP channel against a real local SMTP server (aiosmtpd on 127.0.0.1), and codes by e-mail end to end."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message as Email

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope, Session

from adapters.email import SmtpChannel, SmtpServer, parse_smtp_url
from core.errors import ConfigurationError, PermanentChannelError, TransientChannelError
from core.messages import OutboundMessage
from tests.core.test_status_fixtures import StatusBot, seed_payout


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Mailbox:
    """An aiosmtpd handler that keeps every mail, and refuses addresses at refused.example.org."""

    def __init__(self) -> None:
        self.mails: list[Email] = []
        self.envelopes: list[Envelope] = []

    async def handle_RCPT(self, server, session: Session, envelope: Envelope, address: str, rcpt_options):  # type: ignore[no-untyped-def]
        if address.endswith("@refused.example.org"):
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session: Session, envelope: Envelope) -> str:  # type: ignore[no-untyped-def]
        self.envelopes.append(envelope)
        self.mails.append(message_from_bytes(envelope.original_content or b""))
        return "250 Message accepted"


@pytest.fixture()
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    handler, port = Mailbox(), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def channel(port: int) -> SmtpChannel:
    return SmtpChannel(parse_smtp_url(f"smtp://127.0.0.1:{port}"), sender="SayPro <no-reply@saypro.online>", timeout=5)


def test_a_message_is_sent_as_a_plain_text_email(mailbox: tuple[Mailbox, int]) -> None:
    handler, port = mailbox
    receipt = asyncio.run(
        channel(port).send(OutboundMessage(channel="email", user_id="thandi@example.org", text="Hello Thandi"))
    )
    [mail] = handler.mails
    assert (mail["To"], mail["From"], mail["Subject"]) == (
        "thandi@example.org",
        "SayPro <no-reply@saypro.online>",
        "A message from SayPro support",
    )
    assert mail.get_payload(decode=True).decode().strip() == "Hello Thandi"  # type: ignore[union-attr]
    assert receipt.provider_message_id == mail["Message-ID"]


def test_a_refused_address_is_permanent_and_unreachable(mailbox: tuple[Mailbox, int]) -> None:
    _handler, port = mailbox
    with pytest.raises(PermanentChannelError) as caught:
        asyncio.run(channel(port).send(OutboundMessage(channel="email", user_id="x@refused.example.org", text="hi")))
    assert caught.value.unreachable


def test_no_server_is_worth_retrying() -> None:
    with pytest.raises(TransientChannelError):
        asyncio.run(channel(free_port()).send(OutboundMessage(channel="email", user_id="t@example.org", text="hi")))


def test_a_password_is_never_sent_to_a_remote_server_without_tls() -> None:
    assert SmtpServer("127.0.0.1", 25, tls=False).is_local and SmtpServer("localhost", 25, tls=False).is_local
    assert not SmtpServer("smtp.example.org", 587, tls=False, username="u", password="p").is_local


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://user:p%40ss@mail.example.org:587", SmtpServer("mail.example.org", 587, False, "user", "p@ss")),
        ("smtps://mail.example.org", SmtpServer("mail.example.org", 465, True)),
        ("smtp://127.0.0.1:2525", SmtpServer("127.0.0.1", 2525, False)),
    ],
)
def test_smtp_urls_are_read(url: str, expected: SmtpServer) -> None:
    assert parse_smtp_url(url) == expected


@pytest.mark.parametrize("url", ["http://mail.example.org", "smtp://", "smtp://host:port"])
def test_a_bad_smtp_url_names_the_variable_and_not_the_password(url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_smtp_url(url)
    assert str(caught.value).startswith("SMTP_URL:")


def test_a_code_by_email_end_to_end(database, mailbox: tuple[Mailbox, int]) -> None:  # type: ignore[no-untyped-def]
    handler, port = mailbox
    seed_payout(database)
    bot = StatusBot(database, live=("console",))
    bot.registry.add(channel(port))  # routes look at the live channels when a code is asked for
    assert "a code is on its way" in bot.say("status of SP-PAY-1042")
    [mail] = handler.mails
    assert handler.envelopes[0].rcpt_tos == ["thandi@example.org"]
    code = re.search(r"code is (\d{6})", mail.get_payload(decode=True).decode())  # type: ignore[union-attr]
    assert code is not None
    assert "R4,750.00" in bot.say(code.group(1))
