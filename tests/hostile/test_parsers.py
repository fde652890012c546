"""Every inbound parser, fed any bytes, any JSON and real payloads with parts replaced: a message
the core can store, nothing, or InboundRejected; never another exception."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from adapters.api import ApiChannel, ApiMessageIn
from adapters.slack import message_from_action, message_from_event
from adapters.telegram import TelegramChannel
from adapters.twilio import TwilioChannel, build_client
from adapters.x_dm import XCredentials, XDirectMessages
from core.errors import InboundRejected
from core.messages import InboundMessage
from tests.hostile.strategies import (
    any_text,
    json_bytes,
    json_values,
    mutated,
    storable,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
BOT_USER = "1582358281239683072"
EXAMPLES = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def fixture(channel: str, name: str) -> Any:
    return json.loads((FIXTURES / channel / name).read_text(encoding="utf-8"))


def check(messages: list[InboundMessage] | InboundMessage | None) -> None:
    """What a parser returned is well-formed and storable as it stands."""
    found = [] if messages is None else [messages] if isinstance(messages, InboundMessage) else messages
    for message in found:
        assert isinstance(message, InboundMessage)
        for text in (message.channel, message.user_id, message.provider_message_id, message.text, message.display_name):
            assert text is None or isinstance(text, str)
            assert storable(text), f"not storable: {text!r}"
        for attachment in message.attachments:
            for text in (attachment.url, attachment.content_type, attachment.name):
                assert text is None or isinstance(text, str)
                assert storable(text), f"not storable: {text!r}"


def only_rejections(parse: Callable[[], Any]) -> None:
    try:
        result = parse()
    except InboundRejected:
        return
    check(result)


@pytest.fixture(scope="module")
def telegram() -> TelegramChannel:
    return TelegramChannel(token="123456:TEST-token_for-the-fake", webhook_secret="s")


@pytest.fixture(scope="module")
def twilio() -> TwilioChannel:
    client = build_client("AC" + "a" * 32, "token")
    return TwilioChannel("sms", client, sender="+14155550100", auth_token="token")


@pytest.fixture(scope="module")
def x_channel() -> XDirectMessages:
    credentials = XCredentials(consumer_key="ck", consumer_secret="cs", access_token="at", access_token_secret="ats")
    return XDirectMessages(credentials=credentials, bot_user_id=BOT_USER)


TELEGRAM_PAYLOADS = st.one_of(
    *(mutated(fixture("telegram", name)) for name in ("message_text.json", "callback_query.json", "message_photo.json"))
)


@EXAMPLES
@given(body=st.binary(max_size=2000) | json_values.map(json_bytes) | TELEGRAM_PAYLOADS.map(json_bytes))
def test_telegram_updates(telegram: TelegramChannel, body: bytes) -> None:
    only_rejections(lambda: telegram.parse(headers={}, body=body))


TWILIO_FORMS = st.one_of(
    *(
        st.fixed_dictionaries({}, optional={key: any_text for key in fixture("twilio", name)})
        for name in ("sms_inbound.json", "whatsapp_media.json", "status_failed_unsubscribed.json")
    ),
    st.dictionaries(any_text, any_text, max_size=8),
)


def form(fields: dict[str, str]) -> bytes:
    return urlencode(fields, encoding="utf-8", errors="surrogatepass").encode()


@EXAMPLES
@given(body=st.binary(max_size=2000) | TWILIO_FORMS.map(form))
def test_twilio_messages_and_status_callbacks(twilio: TwilioChannel, body: bytes) -> None:
    only_rejections(lambda: twilio.parse(headers={}, body=body))
    try:
        twilio.parse_status(body)
    except InboundRejected:
        pass


X_PAYLOADS = st.one_of(
    *(mutated(fixture("x", name)) for name in ("aaa_direct_message.json", "aaa_media_message.json", "aaa_typing.json"))
)


@EXAMPLES
@given(body=st.binary(max_size=2000) | json_values.map(json_bytes) | X_PAYLOADS.map(json_bytes))
def test_x_account_activity(x_channel: XDirectMessages, body: bytes) -> None:
    only_rejections(lambda: x_channel.parse(headers={}, body=body))


SLACK_EVENTS = mutated(fixture("slack", "message_im.json")["event"]) | mutated(
    fixture("slack", "message_im_file.json")["event"]
)


@EXAMPLES
@given(event=SLACK_EVENTS | json_values)
def test_slack_events(event: Any) -> None:
    # Bolt hands listeners a dict; anything else never reaches the parser.
    if isinstance(event, dict):
        only_rejections(lambda: message_from_event(event))


SLACK_ACTIONS = mutated(fixture("slack", "block_actions.json"))


@EXAMPLES
@given(
    body=SLACK_ACTIONS | json_values, action=mutated(fixture("slack", "block_actions.json")["actions"][0]) | json_values
)
def test_slack_button_presses(body: Any, action: Any) -> None:
    if isinstance(body, dict) and isinstance(action, dict):
        only_rejections(lambda: message_from_action(body, action))


@EXAMPLES
@given(data=json_values | st.fixed_dictionaries({"user": any_text, "text": any_text}, optional={"id": any_text}))
def test_platform_api_messages(data: Any) -> None:
    try:
        body = ApiMessageIn.model_validate(data)
    except ValidationError:
        return  # FastAPI answers 422 before the channel sees it
    check(ApiChannel().parse(body))
