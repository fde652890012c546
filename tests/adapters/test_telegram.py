"""The Telegram adapter on its own: updates parsed, the secret checked, sendMessage through the real SDK to a fake."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import pytest

from adapters.telegram import MAX_CALLBACK_BYTES, SEND_CONNECTIONS, TelegramChannel, file_reference
from core.errors import InboundRejected, PermanentChannelError, TransientChannelError
from core.messages import Attachment, Option, OutboundMessage
from tests.fakes.provider_api import Recorded, Reply
from tests.fakes.telegram_api import TOKEN, FakeTelegramAPI, error, keyboard, load_update

SECRET = "s3cr3t_token-for-tests"
CHAT = "5512345678"


@pytest.fixture(autouse=True)
def timedelta_periods(monkeypatch: pytest.MonkeyPatch) -> None:
    """PTB 22 warns (an error under our filterwarnings) when RetryAfter is built, unless this is set."""
    monkeypatch.setenv("PTB_TIMEDELTA", "true")


@pytest.fixture()
async def telegram() -> AsyncIterator[Callable[..., tuple[TelegramChannel, FakeTelegramAPI]]]:
    """Make a channel pointed at a fresh fake; both are closed after the test."""
    made: list[tuple[TelegramChannel, FakeTelegramAPI]] = []

    def make(**fake_kwargs: object) -> tuple[TelegramChannel, FakeTelegramAPI]:
        fake = FakeTelegramAPI(**fake_kwargs)  # type: ignore[arg-type]
        channel = TelegramChannel(token=TOKEN, webhook_secret=SECRET, base_url=fake.base_url, timeout=0.5)
        made.append((channel, fake))
        return channel, fake

    yield make
    for channel, fake in made:
        await channel.close()
        fake.close()


def body(name: str, **changes: object) -> bytes:
    return json.dumps(load_update(name, **changes)).encode()


def parse(name: str, **changes: object) -> list:  # type: ignore[type-arg]
    channel = TelegramChannel(token=TOKEN, webhook_secret=SECRET)
    return channel.parse(headers={}, body=body(name, **changes))


# Inbound -------------------------------------------------------------------------------------------


def test_a_text_message_becomes_one_inbound_message_from_the_chat() -> None:
    [message] = parse("message_text")
    assert message.channel == "telegram"
    assert message.user_id == CHAT
    assert message.provider_message_id == f"815300001:{CHAT}:4121"
    assert message.text == "When will my payout arrive?"
    assert message.display_name == "Thandi"
    assert message.sent_at == datetime(2024, 6, 10, 6, 13, 20, tzinfo=UTC)
    assert message.attachments == ()


def test_the_same_update_gets_the_same_id_and_another_update_another() -> None:
    assert parse("message_text")[0].provider_message_id == parse("message_text")[0].provider_message_id
    assert (
        parse("message_text", update_id=815300099)[0].provider_message_id
        != parse("message_text")[0].provider_message_id
    )


def test_a_photo_is_kept_as_a_file_id_reference_to_its_largest_size_with_the_caption_as_text() -> None:
    [message] = parse("message_photo")
    assert message.text == "This is the payout screen I see"
    assert message.attachments == (
        Attachment(url=file_reference("AgACAgQAAxkBAAIBQ2Z-large"), content_type="image/jpeg"),
    )


def test_a_document_is_kept_as_a_file_id_reference_with_its_name_and_type() -> None:
    [message] = parse("message_document")
    assert message.text == ""
    assert message.attachments == (
        Attachment(
            url="telegram-file:BQACAgQAAxkBAAIBRGZ-document",
            content_type="application/pdf",
            name="bank-confirmation.pdf",
        ),
    )


@pytest.mark.parametrize("name", ["edited_message", "group_message", "service_message"])
def test_edits_group_chats_and_service_messages_are_not_questions(name: str) -> None:
    assert parse(name) == []


def test_a_button_press_comes_back_as_the_buttons_value() -> None:
    [message] = parse("callback_query", data="audience:organiser")
    assert message.text == "audience:organiser"
    assert message.user_id == CHAT
    assert message.provider_message_id == "815300005:callback:2368523958725730437"
    assert message.display_name == "Thandi"


@pytest.mark.parametrize(
    "payload",
    [b"not json", b"[]", b'{"message": {}}', json.dumps({"update_id": 1, "message": {"text": "no chat"}}).encode()],
    ids=["not-json", "not-an-object", "no-update-id", "malformed-message"],
)
def test_a_body_that_is_not_an_update_is_rejected(payload: bytes) -> None:
    channel = TelegramChannel(token=TOKEN, webhook_secret=SECRET)
    with pytest.raises(InboundRejected):
        channel.parse(headers={}, body=payload)


# The secret token ------------------------------------------------------------------------------------


def test_the_secret_token_header_must_match() -> None:
    channel = TelegramChannel(token=TOKEN, webhook_secret=SECRET)
    url = "https://bot.example.org/webhooks/telegram"
    channel.verify(url=url, headers={"x-telegram-bot-api-secret-token": SECRET}, body=b"{}")
    for headers in ({}, {"x-telegram-bot-api-secret-token": "wrong"}, {"x-telegram-bot-api-secret-token": "sécret"}):
        with pytest.raises(InboundRejected):
            channel.verify(url=url, headers=headers, body=b"{}")


def test_without_a_secret_configured_no_webhook_update_is_accepted() -> None:
    channel = TelegramChannel(token=TOKEN, webhook_secret=None)
    with pytest.raises(InboundRejected):
        channel.verify(url="https://x/webhooks/telegram", headers={"x-telegram-bot-api-secret-token": ""}, body=b"{}")


# Outbound ------------------------------------------------------------------------------------------


def reply(
    text: str = "Payouts are sent **after** the campaign ends & fees are shown.", *options: Option
) -> OutboundMessage:
    return OutboundMessage(channel="telegram", user_id=CHAT, text=text, options=options)


async def test_a_reply_is_one_sendmessage_in_html_with_the_options_as_inline_buttons(telegram) -> None:  # type: ignore[no-untyped-def]
    channel, fake = telegram()
    receipt = await channel.send(
        reply(
            "Hi [SayPro](https://saypro.online) <team>",
            Option("Main menu", "action:menu"),
            Option("Talk to a person", "action:agent"),
        )
    )
    [call] = fake.method("sendMessage")
    assert call.path == f"/bot{TOKEN}/sendMessage"
    assert call.form["chat_id"] == CHAT
    assert call.form["parse_mode"] == "HTML"
    assert call.form["text"] == 'Hi <a href="https://saypro.online">SayPro</a> &lt;team&gt;'
    assert keyboard(call) == [
        [{"text": "Main menu", "callback_data": "action:menu"}],
        [{"text": "Talk to a person", "callback_data": "action:agent"}],
    ]
    assert receipt.provider_message_id is not None and receipt.provider_message_id.startswith(f"{CHAT}:")
    assert not fake.method("getMe")  # no initialize(): nothing but the send itself


async def test_a_value_too_long_for_callback_data_returns_the_options_number(telegram) -> None:  # type: ignore[no-untyped-def]
    channel, fake = telegram()
    long_value = "topic:" + "é" * MAX_CALLBACK_BYTES
    await channel.send(reply("Pick one", Option("Short", "action:menu"), Option("Long", long_value)))
    [first, second] = keyboard(fake.method("sendMessage")[0])
    assert first[0]["callback_data"] == "action:menu"
    assert second[0]["callback_data"] == "2"


async def test_html_that_telegram_cannot_parse_is_sent_again_as_plain_text(telegram) -> None:  # type: ignore[no-untyped-def]
    channel, fake = telegram(send=[error(400, "Bad Request: can't parse entities: unsupported start tag"), None])
    await channel.send(reply("Payouts are sent **after** the campaign ends."))
    html, plain = fake.method("sendMessage")
    assert html.form["text"] == "Payouts are sent <b>after</b> the campaign ends."
    assert plain.form["text"] == "Payouts are sent after the campaign ends."
    assert "parse_mode" not in plain.form


@pytest.mark.parametrize(
    ("scripted", "kind", "unreachable", "retry_after"),
    [
        (error(429, "Too Many Requests: retry after 7", retry_after=7), TransientChannelError, None, 7.0),
        (error(429, "Too Many Requests"), TransientChannelError, None, None),
        (error(500, "Internal Server Error"), TransientChannelError, None, None),
        (error(502, "Bad Gateway"), TransientChannelError, None, None),
        (Reply(503, "<html>Service Unavailable</html>"), TransientChannelError, None, None),
        (error(403, "Forbidden: bot was blocked by the user"), PermanentChannelError, True, None),
        (error(400, "Bad Request: chat not found"), PermanentChannelError, True, None),
        (error(400, "Bad Request: message is too long"), PermanentChannelError, False, None),
        (error(401, "Unauthorized"), PermanentChannelError, False, None),
    ],
    ids=["429-retry-after", "429-bare", "500", "502", "503-html", "blocked", "chat-not-found", "too-long", "bad-token"],
)
async def test_provider_failures_are_translated(telegram, scripted, kind, unreachable, retry_after) -> None:  # type: ignore[no-untyped-def]
    channel, _fake = telegram(send=[scripted])
    with pytest.raises(kind) as caught:
        await channel.send(reply())
    if kind is PermanentChannelError:
        assert caught.value.unreachable is unreachable
    else:
        assert caught.value.retry_after == retry_after
    assert TOKEN not in str(caught.value)
    assert caught.value.__cause__ is not None


async def test_a_timeout_is_transient(telegram) -> None:  # type: ignore[no-untyped-def]
    channel, _fake = telegram(send=[Reply(200, {"ok": True, "result": True}, delay=1.5)])
    with pytest.raises(TransientChannelError):
        await channel.send(reply())


class SlowTelegramAPI(FakeTelegramAPI):
    """sendMessage answered after `delay` seconds; `most_at_once` is the most it held at one time."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay, self.most_at_once, self._at_once, self._count = delay, 0, 0, threading.Lock()

    def _send_message(self, request: Recorded) -> Reply:
        with self._count:
            self._at_once += 1
            self.most_at_once = max(self.most_at_once, self._at_once)
        time.sleep(self.delay)
        with self._count:
            self._at_once -= 1
        return super()._send_message(request)


async def test_a_burst_of_replies_shares_a_few_connections_and_waits_for_them() -> None:
    # Four waves of 0.4 s each: the last waits 1.2 s for a connection, past python-telegram-bot's
    # default pool timeout (1 s), within the channel's timeout.
    fake = SlowTelegramAPI(delay=0.4)
    channel = TelegramChannel(token=TOKEN, base_url=fake.base_url, timeout=3.0)
    try:
        burst = [
            OutboundMessage(channel="telegram", user_id=str(100 + n), text="hi") for n in range(4 * SEND_CONNECTIONS)
        ]
        receipts = await asyncio.gather(*(channel.send(message) for message in burst))
    finally:
        await channel.close()
        fake.close()
    assert len(receipts) == len(burst)
    assert sorted(call.form["chat_id"] for call in fake.method("sendMessage")) == sorted(m.user_id for m in burst)
    assert fake.most_at_once == SEND_CONNECTIONS


def test_a_channel_sends_from_one_event_loop_then_another() -> None:
    """aiohttp's connections belong to the event loop that made them: a command that runs
    asyncio.run twice (saypro-bot chat, say) gets a new session in the second."""
    fake = FakeTelegramAPI()
    channel = TelegramChannel(token=TOKEN, base_url=fake.base_url, timeout=3.0)
    try:
        for text in ("first", "second"):
            asyncio.run(channel.send(OutboundMessage(channel="telegram", user_id=CHAT, text=text)))
    finally:
        asyncio.run(channel.close())
        fake.close()
    assert fake.sent_texts() == ["first", "second"]


async def test_an_unreachable_api_is_transient() -> None:
    from tests.fakes.live import free_port

    channel = TelegramChannel(token=TOKEN, base_url=f"http://127.0.0.1:{free_port()}/bot", timeout=0.5)
    try:
        with pytest.raises(TransientChannelError) as caught:
            await channel.send(reply())
        assert TOKEN not in str(caught.value)
    finally:
        await channel.close()


async def test_acknowledging_a_press_calls_answercallbackquery(telegram) -> None:  # type: ignore[no-untyped-def]
    channel, fake = telegram()
    await channel.acknowledge("2368523958725730437")
    [call] = fake.method("answerCallbackQuery")
    assert call.form["callback_query_id"] == "2368523958725730437"
