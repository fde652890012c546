"""The Twilio adapter on its own: webhook checks and parsing, and every send outcome through the real SDK."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from urllib.parse import urlencode

import pytest

from adapters.twilio import (
    SMS_CAPABILITIES,
    WHATSAPP_CAPABILITIES,
    TwilioChannel,
    TwilioHttpClientWithRetryAfter,
    build_client,
)
from bots.settings import load_settings
from core.errors import InboundRejected, PermanentChannelError, TransientChannelError
from core.messages import OutboundMessage, Template
from tests.fakes.provider_api import FakeProviderAPI, Reply
from tests.fakes.twilio_api import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    MESSAGES_PATH,
    PUBLIC_BASE_URL,
    SMS_NUMBER,
    WHATSAPP_NUMBER,
    MessagesCreated,
    created_reply,
    fake_twilio,
    fixture,
    signed,
    twilio_error,
)

URL = PUBLIC_BASE_URL + "/webhooks/twilio"


def channel(name: str = "sms", *, base_url: str = "http://127.0.0.1:9") -> TwilioChannel:
    sender = SMS_NUMBER if name == "sms" else WHATSAPP_NUMBER
    client = build_client(ACCOUNT_SID, AUTH_TOKEN, api_base_url=base_url)
    return TwilioChannel(name, client, sender=sender, auth_token=AUTH_TOKEN, status_callback=URL + "/status")


def lowered(headers: dict[str, str]) -> dict[str, str]:
    return {key.lower(): value for key, value in headers.items()}


@pytest.fixture()
def fake() -> Iterator[FakeProviderAPI]:
    api = fake_twilio(MessagesCreated())
    yield api
    api.close()


# --- the webhook -------------------------------------------------------------------------------


def test_a_signed_webhook_verifies_and_a_tampered_one_does_not() -> None:
    params = fixture("sms_inbound")
    headers = lowered(signed(params, "/webhooks/twilio"))
    sms = channel()
    sms.verify(url=URL, headers=headers, body=urlencode(params).encode())
    # Twilio may sign with or without the default port: the SDK accepts both.
    sms.verify(url=PUBLIC_BASE_URL + ":443/webhooks/twilio", headers=headers, body=urlencode(params).encode())
    with pytest.raises(InboundRejected):
        sms.verify(url=URL, headers=headers, body=urlencode({**params, "Body": "changed"}).encode())
    with pytest.raises(InboundRejected):
        sms.verify(url=URL, headers={}, body=urlencode(params).encode())
    with pytest.raises(InboundRejected):
        sms.verify(url=URL, headers=headers, body=b"\xff\xfe")


def test_a_webhook_signed_with_a_shared_key_is_refused_with_a_reason() -> None:
    params = fixture("sms_inbound")
    headers = lowered(signed(params, "/webhooks/twilio"))
    headers["x-twilio-webhooks-signature-settings"] = "key=webhooks_sharedkey_1,algorithm=HMAC_SHA256"
    with pytest.raises(InboundRejected, match="SharedKey"):
        channel().verify(url=URL, headers=headers, body=urlencode(params).encode())


def test_an_sms_parses_into_one_sms_message() -> None:
    params = fixture("sms_inbound")
    [message] = channel("whatsapp").parse(headers={}, body=urlencode(params).encode())
    assert (message.channel, message.user_id, message.provider_message_id) == (
        "sms",
        "+27820000001",
        params["MessageSid"],
    )
    assert message.text == "When is my payout?" and message.attachments == () and message.display_name is None
    assert message.raw is not None and message.raw["AccountSid"] == ACCOUNT_SID


def test_a_whatsapp_photo_parses_with_its_media_and_profile_name() -> None:
    params = fixture("whatsapp_media")
    [message] = channel().parse(headers={}, body=urlencode(params).encode())
    assert (message.channel, message.user_id, message.display_name) == ("whatsapp", "+27820000002", "Thandi")
    assert message.provider_message_id == params["MessageSid"]
    assert message.text == "Here is the proof of payment"
    [attachment] = message.attachments
    assert (attachment.url, attachment.content_type) == (params["MediaUrl0"], "image/jpeg")


def test_an_advanced_opt_out_keyword_reaches_the_core_as_stop() -> None:
    params = fixture("sms_stop", Body="REVOKE", OptOutType="STOP")
    [message] = channel().parse(headers={}, body=urlencode(params).encode())
    assert message.text == "STOP"


def test_a_form_without_message_sid_or_from_is_unreadable() -> None:
    with pytest.raises(InboundRejected):
        channel().parse(headers={}, body=urlencode({"Body": "hi", "From": "+27820000001"}).encode())
    with pytest.raises(InboundRejected):
        channel().parse(headers={}, body=urlencode({"Body": "hi", "MessageSid": "SM1"}).encode())


def test_status_callbacks_parse_with_their_channel_and_error_code() -> None:
    delivered = channel().parse_status(urlencode(fixture("status_delivered", MessageSid="SM1")).encode())
    assert (delivered.channel, delivered.message_sid, delivered.status, delivered.error_code) == (
        "sms",
        "SM1",
        "delivered",
        None,
    )
    assert not delivered.unreachable
    failed = channel().parse_status(
        urlencode(fixture("status_failed_unsubscribed", MessageSid="SM2", To="whatsapp:+27820000002")).encode()
    )
    assert (failed.channel, failed.error_code, failed.unreachable) == ("whatsapp", 21610, True)
    busy = channel().parse_status(urlencode(fixture("status_failed_unsubscribed", ErrorCode="30003")).encode())
    assert not busy.unreachable  # handset off: it may be reachable tomorrow
    with pytest.raises(InboundRejected):
        channel().parse_status(urlencode({"MessageSid": "SM3"}).encode())


# --- sending -----------------------------------------------------------------------------------


def test_capabilities_fit_sms_segments_and_the_whatsapp_window() -> None:
    assert SMS_CAPABILITIES.max_text_length == 459 and SMS_CAPABILITIES.carrier_opt_out
    assert not SMS_CAPABILITIES.buttons and SMS_CAPABILITIES.reply_window_hours is None
    assert WHATSAPP_CAPABILITIES.max_text_length is not None and WHATSAPP_CAPABILITIES.max_text_length <= 1600
    assert WHATSAPP_CAPABILITIES.reply_window_hours == 24 and not WHATSAPP_CAPABILITIES.carrier_opt_out


async def test_sms_text_is_plain_and_gsm_friendly(fake: FakeProviderAPI) -> None:
    receipt = await channel(base_url=fake.url).send(
        OutboundMessage("sms", "+27820000001", "**Payouts**:\n- see [the guide](https://saypro.example/payouts)")
    )
    call = fake.calls("POST", MESSAGES_PATH)[0]
    assert call.form["Body"] == "Payouts:\n- see the guide: https://saypro.example/payouts"
    assert call.form["SmartEncoded"] == "true" and call.form["From"] == SMS_NUMBER
    assert receipt.provider_message_id == "SM" + f"{1:032x}"


async def test_whatsapp_keeps_its_bullets(fake: FakeProviderAPI) -> None:
    await channel("whatsapp", base_url=fake.url).send(OutboundMessage("whatsapp", "+27820000002", "- one\n- two"))
    call = fake.calls("POST", MESSAGES_PATH)[0]
    assert call.form["Body"] == "• one\n• two"
    assert (call.form["To"], call.form["From"]) == ("whatsapp:+27820000002", f"whatsapp:{WHATSAPP_NUMBER}")


async def test_a_template_goes_as_content_sid_and_variables_without_a_body(fake: FakeProviderAPI) -> None:
    template = Template("HX" + "0" * 32, (("1", "R4,750.00"), ("2", "Friday")))
    await channel("whatsapp", base_url=fake.url).send(
        OutboundMessage("whatsapp", "+27820000002", "Your payout of R4,750.00 leaves on Friday.", template=template)
    )
    call = fake.calls("POST", MESSAGES_PATH)[0]
    assert call.form["ContentSid"] == "HX" + "0" * 32
    assert json.loads(call.form["ContentVariables"]) == {"1": "R4,750.00", "2": "Friday"}
    assert "Body" not in call.form


@pytest.mark.parametrize(
    ("reply", "kind", "unreachable", "retry_after"),
    [
        pytest.param(
            twilio_error(429, 20429, headers={"Retry-After": "7"}), TransientChannelError, None, 7.0, id="429"
        ),
        pytest.param(twilio_error(429, 20429), TransientChannelError, None, None, id="429-no-hint"),
        pytest.param(twilio_error(500, 20500), TransientChannelError, None, None, id="500"),
        pytest.param(twilio_error(503, 20503), TransientChannelError, None, None, id="503"),
        pytest.param(twilio_error(400, 21610), PermanentChannelError, True, None, id="unsubscribed"),
        pytest.param(twilio_error(400, 21211), PermanentChannelError, True, None, id="invalid-number"),
        pytest.param(twilio_error(400, 21614), PermanentChannelError, True, None, id="not-mobile"),
        pytest.param(twilio_error(400, 63003), PermanentChannelError, True, None, id="not-on-whatsapp"),
        pytest.param(twilio_error(400, 21617), PermanentChannelError, False, None, id="too-long"),
        pytest.param(twilio_error(401, 20003), PermanentChannelError, False, None, id="bad-credentials"),
        pytest.param(Reply(201, b"<html>oops</html>"), PermanentChannelError, False, None, id="unreadable-2xx"),
    ],
)
async def test_provider_failures_map_to_the_core_errors(reply, kind, unreachable, retry_after) -> None:  # type: ignore[no-untyped-def]
    api = fake_twilio([reply])
    try:
        with pytest.raises(kind) as raised:
            await channel(base_url=api.url).send(OutboundMessage("sms", "+27820000001", "hi"))
    finally:
        api.close()
    error = raised.value
    if isinstance(error, PermanentChannelError):
        assert error.unreachable is unreachable
    else:
        assert error.retry_after == retry_after
    assert error.__cause__ is not None  # translated at the boundary, the SDK's error kept


async def test_a_refused_connection_is_transient() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(TransientChannelError):
        await channel(base_url=f"http://127.0.0.1:{port}").send(OutboundMessage("sms", "+27820000001", "hi"))


async def test_a_timeout_is_transient() -> None:
    api = fake_twilio([Reply(201, {"sid": "SM1"}, delay=1.0)])
    client = build_client(ACCOUNT_SID, AUTH_TOKEN, api_base_url=api.url)
    client.http_client = TwilioHttpClientWithRetryAfter(timeout=0.2)
    sms = TwilioChannel("sms", client, sender=SMS_NUMBER, auth_token=AUTH_TOKEN)
    try:
        with pytest.raises(TransientChannelError, match="Timeout"):
            await sms.send(OutboundMessage("sms", "+27820000001", "hi"))
    finally:
        api.close()


async def test_the_message_sid_is_the_receipt() -> None:
    api = fake_twilio([created_reply("SM" + "7" * 32)])
    try:
        receipt = await channel(base_url=api.url).send(OutboundMessage("sms", "+27820000001", "hi"))
    finally:
        api.close()
    assert receipt.provider_message_id == "SM" + "7" * 32


# --- the plugin --------------------------------------------------------------------------------


def settings(**values: str):  # type: ignore[no-untyped-def]
    return load_settings(database_url="sqlite:///unused.db", public_base_url="https://bot.example.org", **values)


def test_both_channels_are_off_naming_what_is_missing() -> None:
    from bots.channels.twilio import plugin

    result = plugin(settings(twilio_account_sid=ACCOUNT_SID))
    assert result.channels == [] and result.router is None
    by_name = {status.name: status for status in result.statuses}
    assert not by_name["sms"].live and by_name["sms"].why == "TWILIO_AUTH_TOKEN, TWILIO_SMS_NUMBER not set"
    assert not by_name["whatsapp"].live and "TWILIO_WHATSAPP_NUMBER" in by_name["whatsapp"].why


def test_sms_alone_is_live_with_its_number_masked() -> None:
    from bots.channels.twilio import plugin

    result = plugin(
        settings(twilio_account_sid=ACCOUNT_SID, twilio_auth_token=AUTH_TOKEN, twilio_sms_number=SMS_NUMBER)
    )
    assert [channel.name for channel in result.channels] == ["sms"]
    live = {status.name: status for status in result.statuses}["sms"]
    assert live.live and SMS_NUMBER not in live.why and AUTH_TOKEN not in live.why
    assert result.router is not None


def test_both_channels_share_one_client() -> None:
    from bots.channels.twilio import plugin

    result = plugin(
        settings(
            twilio_account_sid=ACCOUNT_SID,
            twilio_auth_token=AUTH_TOKEN,
            twilio_sms_number=SMS_NUMBER,
            twilio_whatsapp_number=WHATSAPP_NUMBER,
            twilio_api_base_url="http://127.0.0.1:9",
        )
    )
    sms, whatsapp = result.channels
    assert isinstance(sms, TwilioChannel) and isinstance(whatsapp, TwilioChannel)
    assert sms.client is whatsapp.client
    assert sms.client.api.base_url == "http://127.0.0.1:9"
    assert sms.status_callback == "https://bot.example.org/webhooks/twilio/status"


async def test_register_webhooks_prints_the_urls_per_live_channel() -> None:
    from bots.channels.twilio import plugin

    values = {
        "twilio_account_sid": ACCOUNT_SID,
        "twilio_auth_token": AUTH_TOKEN,
        "twilio_sms_number": SMS_NUMBER,
        "twilio_whatsapp_number": WHATSAPP_NUMBER,
    }
    result = plugin(settings(**values))
    assert result.register_webhooks is not None
    lines = await result.register_webhooks(settings(**values))
    assert len(lines) == 2
    assert lines[0].startswith("sms:") and lines[1].startswith("whatsapp:")
    for line in lines:
        assert "https://bot.example.org/webhooks/twilio " in line
        assert "https://bot.example.org/webhooks/twilio/status" in line
        assert AUTH_TOKEN not in line
    local = await result.register_webhooks(
        load_settings(
            database_url="sqlite:///unused.db",
            twilio_sms_number=SMS_NUMBER,
            twilio_account_sid=ACCOUNT_SID,
            twilio_auth_token=AUTH_TOKEN,
        )
    )
    assert len(local) == 2 and "public https URL" in local[-1]
