"""The Slack adapter on its own: the exact chat.postMessage through the real AsyncWebClient, errors, parsing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from adapters.slack import (
    ACTIONS_LIMIT,
    SECTION_TEXT_LIMIT,
    SlackChannel,
    blocks,
    make_client,
    message_from_action,
    message_from_event,
    plain_text,
)
from core.errors import PermanentChannelError, TransientChannelError
from core.messages import Attachment, Option, OutboundMessage
from tests.fakes.provider_api import FakeProviderAPI, Reply
from tests.fakes.slack_api import BOT_TOKEN, POST_PATH, fake_slack, fixture


@pytest.fixture()
def fake():  # type: ignore[no-untyped-def]
    api = fake_slack()
    yield api
    api.close()


def channel_for(api: FakeProviderAPI) -> SlackChannel:
    return SlackChannel(make_client(token=BOT_TOKEN, base_url=f"{api.url}/api"))


def reply(text: str, *options: Option) -> OutboundMessage:
    return OutboundMessage(channel="slack", user_id="U2147483697", text=text, options=options, conversation_id=7)


async def test_send_posts_mrkdwn_section_and_buttons_to_the_users_dm(fake: FakeProviderAPI) -> None:
    message = reply(
        "**Payouts** go out after the campaign ends: see [the guide](https://saypro.example/payouts) & more.",
        Option("I backed a campaign", "audience:backer"),
        Option("Talk to a person", "action:agent"),
    )
    receipt = await channel_for(fake).send(message)

    [request] = fake.calls("POST", POST_PATH)
    assert request.headers["authorization"] == f"Bearer {BOT_TOKEN}"
    assert request.headers["content-type"].startswith("application/json")
    mrkdwn = "*Payouts* go out after the campaign ends: see <https://saypro.example/payouts|the guide> &amp; more."
    assert request.json == {
        "channel": "U2147483697",
        "text": mrkdwn,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": mrkdwn}},
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "action_id": "saypro_option_1",
                        "text": {"type": "plain_text", "text": "I backed a campaign", "emoji": True},
                        "value": "audience:backer",
                    },
                    {
                        "type": "button",
                        "action_id": "saypro_option_2",
                        "text": {"type": "plain_text", "text": "Talk to a person", "emoji": True},
                        "value": "action:agent",
                    },
                ],
            },
        ],
    }
    assert receipt.detail == "D0USERDM1"


async def test_the_receipt_is_the_ts_slack_returned() -> None:
    ok = Reply(200, {"ok": True, "channel": "D0USERDM1", "ts": "1700000300.000100"})
    api = FakeProviderAPI({("POST", POST_PATH): [ok]})
    try:
        receipt = await channel_for(api).send(reply("hello"))
    finally:
        api.close()
    assert receipt.provider_message_id == "1700000300.000100"


def test_blocks_respect_slacks_limits() -> None:
    long_label, long_value = "L" * 100, "v" * 2001
    options = tuple(Option(f"option {n}", f"value:{n}") for n in range(30)) + (Option(long_label, long_value),)
    text = ("word " * 700).strip()  # 3,499 characters: more than one section holds
    result = blocks(text, options)
    sections = [block for block in result if block["type"] == "section"]
    assert len(sections) == 2 and all(len(s["text"]["text"]) <= SECTION_TEXT_LIMIT for s in sections)
    assert " ".join(s["text"]["text"].strip() for s in sections) == text
    [actions] = [block for block in result if block["type"] == "actions"]
    assert len(actions["elements"]) == ACTIONS_LIMIT
    assert len({button["action_id"] for button in actions["elements"]}) == ACTIONS_LIMIT
    odd = blocks("x", (Option(long_label, long_value),))[1]["elements"][0]
    assert len(odd["text"]["text"]) == 75 and odd["text"]["text"].endswith("…")
    assert odd["value"] == "1"  # too long for a button: the option's number, which picks it too


def test_capabilities_leave_headroom_under_the_section_limit() -> None:
    capabilities = SlackChannel.capabilities
    assert capabilities.buttons and capabilities.max_buttons == ACTIONS_LIMIT
    assert capabilities.max_text_length is not None and capabilities.max_text_length < SECTION_TEXT_LIMIT


@pytest.fixture(scope="module")
def scripted():  # type: ignore[no-untyped-def]
    """One fake for the error table; each test queues the single answer chat.postMessage gives."""
    queue: list[Reply] = []
    api = FakeProviderAPI({("POST", POST_PATH): lambda _request: queue.pop(0)})
    yield api, queue
    api.close()


@pytest.mark.parametrize(
    ("answer", "kind", "unreachable", "retry_after"),
    [
        (
            Reply(429, {"ok": False, "error": "ratelimited"}, headers={"Retry-After": "7"}),
            TransientChannelError,
            None,
            7.0,
        ),
        (Reply(500, "<html>oops</html>", headers={"Content-Type": "text/html"}), TransientChannelError, None, None),
        (Reply(503, {"ok": False, "error": "service_unavailable"}), TransientChannelError, None, None),
        (Reply(200, {"ok": False, "error": "internal_error"}), TransientChannelError, None, None),
        (Reply(200, {"ok": False, "error": "channel_not_found"}), PermanentChannelError, True, None),
        (Reply(200, {"ok": False, "error": "user_not_found"}), PermanentChannelError, True, None),
        (Reply(200, {"ok": False, "error": "account_inactive"}), PermanentChannelError, True, None),
        (Reply(200, {"ok": False, "error": "is_archived"}), PermanentChannelError, True, None),
        (Reply(200, {"ok": False, "error": "invalid_blocks"}), PermanentChannelError, False, None),
        (Reply(200, {"ok": False, "error": "not_authed"}), PermanentChannelError, False, None),
    ],
)
async def test_slack_errors_map_to_the_cores(  # type: ignore[no-untyped-def]
    scripted, answer: Reply, kind: type, unreachable: bool | None, retry_after: float | None
) -> None:
    api, queue = scripted
    before = len(api.calls("POST", POST_PATH))
    queue.append(answer)
    with pytest.raises(kind) as raised:
        await channel_for(api).send(reply("hello"))
    assert len(api.calls("POST", POST_PATH)) == before + 1  # slack_sdk's own retry handlers are off
    if unreachable is not None:
        assert raised.value.unreachable is unreachable
    if retry_after is not None:
        assert raised.value.retry_after == retry_after
    assert raised.value.__cause__ is not None


async def test_a_connection_failure_is_transient_and_not_retried_by_the_sdk() -> None:
    api = FakeProviderAPI({})
    url = api.url
    api.close()  # nothing listens on this port any more
    channel = SlackChannel(make_client(token=BOT_TOKEN, base_url=f"{url}/api"))
    with pytest.raises(TransientChannelError):
        await channel.send(reply("hello"))


def test_no_proxy_is_honoured_for_a_local_api_but_the_proxy_kept_for_slack(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    assert make_client(token="t", base_url="http://127.0.0.1:9/api").proxy is None
    assert make_client(token="t").proxy == "http://proxy.invalid:3128"
    assert make_client(token="t").base_url == "https://slack.com/api/"
    assert make_client(token="t", base_url="http://127.0.0.1:9/api").base_url == "http://127.0.0.1:9/api/"


def test_a_direct_message_is_parsed_with_a_retry_stable_id() -> None:
    body = fixture("message_im.json")
    message = message_from_event(body["event"])
    assert message is not None
    assert (message.channel, message.user_id, message.text) == ("slack", "U2147483697", "When do I get my payout?")
    assert message.provider_message_id == "D024BE91L:1700000100.000200"
    assert message.sent_at == datetime.fromtimestamp(1700000100.0002, tz=UTC)
    assert message.display_name is None  # not in the event, and users.info is not called on the hot path


def test_a_file_share_keeps_the_file_and_unescapes_the_text() -> None:
    message = message_from_event(fixture("message_im_file.json")["event"])
    assert message is not None
    assert message.text == "Here is my receipt & the link my campaign"
    assert message.attachments == (
        Attachment("https://files.slack.com/files-pri/T061EG9R6-F0RECEIPT1/receipt.png", "image/png", "receipt.png"),
    )


IGNORED = ["message_changed.json", "bot_message.json", "own_message.json", "channel_message.json"]


@pytest.mark.parametrize("name", IGNORED)
def test_edits_bots_and_channel_messages_are_not_user_messages(name: str) -> None:
    assert message_from_event(fixture(name)["event"]) is None


def test_a_button_press_is_the_options_value() -> None:
    body = fixture("block_actions.json")
    message = message_from_action(body, body["actions"][0])
    assert message is not None
    assert (message.user_id, message.text, message.display_name) == ("U2147483697", "audience:backer", "spengler")
    assert message.provider_message_id == "action:U2147483697:1700000200.123456"


def test_plain_text_unwraps_slack_links_and_entities() -> None:
    text = "a &lt;b&gt; &amp;amp; <mailto:x@y.org|x@y.org> <https://a.example>"
    assert plain_text(text) == "a <b> &amp; x@y.org https://a.example"
