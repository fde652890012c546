"""Slack as a user channel: direct messages and quick-reply buttons in, chat.postMessage out."""

from __future__ import annotations

import logging
import re
import urllib.request
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from core.errors import ChannelError, PermanentChannelError, TransientChannelError
from core.markup import to_slack_mrkdwn
from core.messages import (
    Attachment,
    Capabilities,
    InboundMessage,
    Option,
    OutboundMessage,
    Receipt,
)
from core.render import split_text

log = logging.getLogger(__name__)

NAME = "slack"
# Quick-reply buttons carry these action_ids (unique within a message, as Block Kit requires);
# the Bolt app routes exactly these to the user channel, leaving other buttons to other listeners.
OPTION_ACTION_PREFIX = "saypro_option_"
OPTION_ACTION = re.compile(rf"^{OPTION_ACTION_PREFIX}\d+$")

# Block Kit limits (https://api.slack.com/reference/block-kit/blocks#section,
# https://api.slack.com/reference/block-kit/blocks#actions,
# https://api.slack.com/reference/block-kit/block-elements#button).
SECTION_TEXT_LIMIT = 3000
ACTIONS_LIMIT = 25
BUTTON_TEXT_LIMIT = 75
BUTTON_VALUE_LIMIT = 2000
# The core splits at this length; the rest of the 3,000 is headroom for " (1/2)" and for
# mrkdwn escaping (& becomes &amp;), which can lengthen the text after the split.
MAX_TEXT_LENGTH = 2800

# chat.postMessage errors meaning this user cannot be reached on Slack at all
# (https://api.slack.com/methods/chat.postMessage#errors).
UNREACHABLE = frozenset(
    {"channel_not_found", "user_not_found", "account_inactive", "is_archived", "user_disabled", "cannot_dm_bot"}
)
# Errors Slack reports with ok=false that a later attempt may not meet.
PASSING = frozenset({"ratelimited", "fatal_error", "internal_error", "service_unavailable", "request_timeout"})


def make_client(*, token: str | None, base_url: str | None = None, timeout: int = 15) -> AsyncWebClient:
    """The Web API client for this process: no built-in retries, NO_PROXY honoured.

    slack_sdk retries connection errors by itself by default; the outbox decides retries here, so
    its handlers are off. It also reads HTTPS_PROXY but ignores NO_PROXY
    (slack_sdk/proxy_env_variable_loader.py), which would send a local fake API through the proxy.
    """
    base = (base_url or AsyncWebClient.BASE_URL).rstrip("/") + "/"
    client = AsyncWebClient(token=token, base_url=base, timeout=timeout, retry_handlers=[])
    host = urlsplit(base).hostname or ""
    if client.proxy and urllib.request.proxy_bypass_environment(host):
        client.proxy = None
    return client


class SlackChannel:
    """Sends replies into the app's DM with each user, through slack_sdk's AsyncWebClient."""

    name = NAME
    # One actions block holds up to 25 buttons; DM replies are not threaded and carry no files.
    capabilities = Capabilities(max_text_length=MAX_TEXT_LENGTH, buttons=True, max_buttons=ACTIONS_LIMIT)

    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client

    async def send(self, message: OutboundMessage) -> Receipt:
        """Post one part to the user's DM; the Receipt carries the message's `ts`."""
        text = to_slack_mrkdwn(message.text)
        try:
            # channel = the user's id posts into the app's DM with them (the App Home Messages
            # tab) with no conversations.open round trip (nor its im:write scope):
            # https://api.slack.com/methods/chat.postMessage#channels
            response = await self.client.chat_postMessage(
                channel=message.user_id,
                text=fallback_text(text, message.options),
                blocks=blocks(text, message.options) or None,
            )
        except (SlackClientError, aiohttp.ClientError, TimeoutError) as exc:
            error = translate(exc)
            log.warning(
                "slack send failed: %s", error, extra={"channel": NAME, "conversation_id": message.conversation_id}
            )
            raise error from exc
        return Receipt(provider_message_id=response.get("ts"), detail=response.get("channel"))


def blocks(mrkdwn: str, options: tuple[Option, ...]) -> list[dict[str, Any]]:
    """Section blocks for the text (each within Slack's 3,000) and one actions block of buttons."""
    result: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": piece}}
        for piece in split_text(mrkdwn, SECTION_TEXT_LIMIT)
        if piece.strip()
    ]
    if options:
        buttons = [_button(number, option) for number, option in enumerate(options[:ACTIONS_LIMIT], start=1)]
        result.append({"type": "actions", "elements": buttons})
    return result


def fallback_text(mrkdwn: str, options: tuple[Option, ...]) -> str:
    """The top-level `text`: shown in notifications, and required with blocks."""
    return mrkdwn if mrkdwn.strip() else " / ".join(option.label for option in options) or " "


def _button(number: int, option: Option) -> dict[str, Any]:
    label = option.label if len(option.label) <= BUTTON_TEXT_LIMIT else option.label[: BUTTON_TEXT_LIMIT - 1] + "…"
    # A value too long for a button goes back as the option's number, which also picks it.
    value = option.value if len(option.value) <= BUTTON_VALUE_LIMIT else str(number)
    return {
        "type": "button",
        "action_id": f"{OPTION_ACTION_PREFIX}{number}",
        "text": {"type": "plain_text", "text": label, "emoji": True},
        "value": value,
    }


def translate(exc: Exception) -> ChannelError:
    """slack_sdk and aiohttp failures as the core's channel errors."""
    if not isinstance(exc, SlackApiError):
        if isinstance(exc, (aiohttp.ClientError, TimeoutError)):
            return TransientChannelError(f"Slack API unreachable: {type(exc).__name__}")
        return PermanentChannelError(f"Slack request refused: {type(exc).__name__}")
    response = exc.response
    status = getattr(response, "status_code", 0) or 0
    data = getattr(response, "data", None)
    error = str(data.get("error") or "") if isinstance(data, Mapping) else ""
    if status == 429 or error == "ratelimited":
        # https://api.slack.com/apis/rate-limits: the wait comes in Retry-After, in seconds.
        return TransientChannelError(f"Slack rate limit ({status})", retry_after=_seconds(response.headers))
    if status >= 500 or error in PASSING:
        return TransientChannelError(f"Slack API error {status} {error}".rstrip())
    if error in UNREACHABLE:
        return PermanentChannelError(f"Slack user unreachable: {error}", unreachable=True)
    return PermanentChannelError(f"Slack API error {status} {error}".rstrip())


def _seconds(headers: Mapping[str, str] | None) -> float | None:
    value = (headers or {}).get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def message_from_event(event: Mapping[str, Any]) -> InboundMessage | None:
    """A user's direct message to the bot, or None for anything else.

    Ignored: other bots and the bot itself (`bot_id`, subtype bot_message), edits and deletions
    (message_changed / message_deleted) and every other subtype, and messages outside IMs.
    https://api.slack.com/events/message.im and https://api.slack.com/events/message#subtypes
    """
    if event.get("type") != "message" or event.get("channel_type") != "im":
        return None
    if event.get("subtype") not in (None, "file_share") or event.get("bot_id"):
        return None
    user, channel, ts = event.get("user"), event.get("channel"), event.get("ts")
    if not (isinstance(user, str) and user and isinstance(channel, str) and channel and isinstance(ts, str) and ts):
        return None
    profile = event.get("user_profile")
    name = (
        _string(profile.get("display_name")) or _string(profile.get("real_name"))
        if isinstance(profile, Mapping)
        else None
    )
    return InboundMessage(
        channel=NAME,
        user_id=user,
        # ts is unique within a channel, and Slack's retries of an event carry the same one.
        provider_message_id=f"{channel}:{ts}",
        text=plain_text(str(event.get("text") or "")),
        sent_at=_time(ts),
        attachments=_files(event.get("files")),
        display_name=name or None,
        raw=dict(event),
    )


def message_from_action(body: Mapping[str, Any], action: Mapping[str, Any]) -> InboundMessage | None:
    """A press of one of our quick-reply buttons, as the option's value typed by the user."""
    user = body.get("user")
    user_id = user.get("id") if isinstance(user, Mapping) else None
    value, action_ts = action.get("value"), action.get("action_ts")
    if not (isinstance(user_id, str) and user_id and isinstance(value, str) and isinstance(action_ts, str)):
        return None
    assert isinstance(user, Mapping)
    return InboundMessage(
        channel=NAME,
        user_id=user_id,
        # Each press has its own action_ts; interactivity requests are not retried by Slack.
        provider_message_id=f"action:{user_id}:{action_ts}",
        text=value,
        sent_at=_time(action_ts),
        display_name=_string(user.get("name")) or _string(user.get("username")),
        raw={"type": body.get("type"), "action": dict(action)},
    )


_LINK = re.compile(r"<((?:https?|mailto):[^|>]+)(?:\|([^>]*))?>")


def plain_text(text: str) -> str:
    """Slack's message text as typed: links unwrapped, &amp; &lt; &gt; unescaped.

    https://api.slack.com/reference/surfaces/formatting#escaping
    """
    text = _LINK.sub(lambda m: m.group(2) or m.group(1).removeprefix("mailto:"), text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _time(ts: str) -> datetime:
    try:
        return datetime.fromtimestamp(float(ts), tz=UTC)
    except (ValueError, OverflowError, OSError):
        return datetime.now(UTC)


def _files(files: object) -> tuple[Attachment, ...]:
    if not isinstance(files, list):
        return ()
    return tuple(
        Attachment(url=str(f["url_private"]), content_type=_string(f.get("mimetype")), name=_string(f.get("name")))
        for f in files
        if isinstance(f, Mapping) and f.get("url_private")
    )


def _string(value: object) -> str | None:
    """A payload's text field, or None when it is missing, empty or not text."""
    return value if isinstance(value, str) and value else None
