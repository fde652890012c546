"""X direct messages through tweepy: DM events polled (or Account Activity webhooks) in, one DM per reply out."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
import tweepy
from requests.adapters import HTTPAdapter

from core.errors import ChannelError, InboundRejected, PermanentChannelError, TransientChannelError
from core.markup import to_plain
from core.messages import Attachment, Capabilities, InboundMessage, OutboundMessage, Receipt

log = logging.getLogger(__name__)

CHANNEL = "x"
# tweepy hard-codes this host in BaseClient.request; X_API_BASE_URL replaces it (tests, proxies).
X_HOST = "https://api.twitter.com"
# X accepts 10,000 characters per DM (https://developer.x.com/en/docs/x-api/direct-messages/manage,
# and tweepy's create_direct_message docstring); links are wrapped in t.co (23 characters each),
# so a part stays well under it.
MAX_TEXT = 9_000
# GET /2/dm_events returns only id, event_type and text unless asked for more
# (https://docs.x.com/x-api/direct-messages/lookup/integrate).
EVENT_FIELDS = ["id", "event_type", "text", "sender_id", "created_at", "dm_conversation_id", "attachments"]
EXPANSIONS = ["sender_id", "attachments.media_keys"]
MEDIA_FIELDS = ["media_key", "type", "url", "preview_image_url"]
USER_FIELDS = ["name", "username"]
# 403 problem types that describe the app's own access, not the recipient
# (https://docs.x.com/x-api/fundamentals/response-codes-and-errors).
_APP_PROBLEMS = ("oauth1-permissions", "client-forbidden", "client-not-enrolled", "unsupported-authentication")
_MEDIA_KINDS = {"photo": "image", "video": "video", "animated_gif": "video"}


@dataclass(frozen=True)
class XCredentials:
    """OAuth 1.0a user context: the app's consumer key pair and the bot account's access token pair."""

    consumer_key: str = field(repr=False)
    consumer_secret: str = field(repr=False)
    access_token: str = field(repr=False)
    access_token_secret: str = field(repr=False)


class _ToBaseUrl(HTTPAdapter):
    """Sends tweepy's https://api.twitter.com requests to `base_url`, with a timeout tweepy never sets."""

    def __init__(self, base_url: str | None, timeout: float) -> None:
        super().__init__()
        self.base_url = base_url.rstrip("/") if base_url else None
        self.timeout = timeout

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if self.base_url and request.url:
            request.url = request.url.replace(X_HOST, self.base_url, 1)
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        return super().send(request, **kwargs)


def make_client(credentials: XCredentials, *, api_base_url: str | None = None, timeout: float = 30.0) -> tweepy.Client:
    """A tweepy v2 Client signing with OAuth 1.0a; no network until a method is called."""
    client = tweepy.Client(
        consumer_key=credentials.consumer_key,
        consumer_secret=credentials.consumer_secret,
        access_token=credentials.access_token,
        access_token_secret=credentials.access_token_secret,
    )
    client.session.mount(X_HOST, _ToBaseUrl(api_base_url, timeout))
    if api_base_url:
        # requests picks proxies for api.twitter.com before the adapter rewrites the URL.
        client.session.trust_env = False
    return client


def signature(secret: str, data: bytes) -> str:
    """X's webhook signature: "sha256=" + base64(HMAC-SHA256(consumer secret, data))."""
    digest = hmac.new(secret.encode(), data, hashlib.sha256).digest()
    return "sha256=" + base64.b64encode(digest).decode()


def translate(exc: Exception) -> ChannelError:
    """The project's error for a tweepy or transport failure (raise it `from exc`)."""
    if isinstance(exc, tweepy.TooManyRequests):
        return TransientChannelError("X rate limit reached", retry_after=_seconds_until(exc.reset_time))
    if isinstance(exc, tweepy.TwitterServerError):
        return TransientChannelError(f"X server error: {exc}")
    if isinstance(exc, tweepy.Forbidden):
        if _problem(exc).endswith(_APP_PROBLEMS):
            return PermanentChannelError(f"the X app may not do this: {exc}")
        # For example the user does not accept DMs from the bot, or has blocked it.
        return PermanentChannelError(f"X forbade it (the user takes no DMs from the bot?): {exc}", unreachable=True)
    if isinstance(exc, tweepy.HTTPException):
        return PermanentChannelError(f"X refused the request: {exc}")
    if isinstance(exc, requests.RequestException):
        return TransientChannelError(f"X unreachable: {type(exc).__name__}")
    return PermanentChannelError(f"X client error: {exc}")


def _seconds_until(reset_epoch: int | None) -> float | None:
    if reset_epoch is None:
        return None
    # x-rate-limit-reset is whole epoch seconds: wait one more so the window has surely turned.
    return max(reset_epoch - time.time(), 0.0) + 1.0


def _problem(exc: tweepy.HTTPException) -> str:
    try:
        body = exc.response.json()
    except ValueError:
        return ""
    return str(body.get("type", "")) if isinstance(body, dict) else ""


@dataclass(frozen=True)
class DmBatch:
    """New DMs from users, oldest first, and the newest event id seen (where the cursor goes next)."""

    messages: tuple[InboundMessage, ...]
    newest_id: str | None


class XDirectMessages:
    """The X DM channel: sends replies, reads new DM events, and verifies Account Activity webhooks."""

    name = CHANNEL
    # X DMs have no quick-reply buttons through the v2 API: options become a numbered list.
    capabilities = Capabilities(max_text_length=MAX_TEXT, buttons=False)

    def __init__(
        self,
        *,
        credentials: XCredentials,
        bot_user_id: str,
        api_base_url: str | None = None,
        page_size: int = 50,
        first_run_lookback: timedelta = timedelta(hours=1),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.bot_user_id = str(bot_user_id)
        self._consumer_secret = credentials.consumer_secret
        # Two sessions: the poller's thread and the senders' threads never share one.
        self._sender = make_client(credentials, api_base_url=api_base_url)
        self._reader = make_client(credentials, api_base_url=api_base_url)
        self._page_size = page_size
        self._lookback = first_run_lookback
        self._clock = clock

    async def send(self, message: OutboundMessage) -> Receipt:
        """POST /2/dm_conversations/with/{user}/messages with the plain-text reply."""
        text = to_plain(message.text)
        try:
            response = await asyncio.to_thread(
                self._sender.create_direct_message, participant_id=message.user_id, text=text
            )
        except (tweepy.TweepyException, requests.RequestException) as exc:
            raise translate(exc) from exc
        data = response.data if isinstance(response.data, dict) else {}
        event_id = data.get("dm_event_id")
        return Receipt(provider_message_id=str(event_id) if event_id else None, detail=data.get("dm_conversation_id"))

    def fetch_since(self, cursor: str | None) -> DmBatch:
        """DM events newer than `cursor` (the newest id already stored), as inbound messages, oldest first.

        GET /2/dm_events has no since_id and pages from the newest event backwards, so pages are
        read until one reaches the cursor. Without a cursor (the very first run) only events from
        the last `first_run_lookback` are taken, so an old inbox is not answered all at once.
        """
        floor = int(cursor) if cursor else None
        since = None if floor is not None else self._clock() - self._lookback

        def seen(event: tweepy.DirectMessageEvent) -> bool:
            if floor is not None:
                return bool(event.id <= floor)
            return since is not None and event.created_at is not None and event.created_at < since

        pages = self._read_back(until=seen)
        events = {event.id: event for page in pages for event in page.data or []}
        users = {str(user.id): user.name for page in pages for user in page.includes.get("users", [])}
        media = {item.media_key: item for page in pages for item in page.includes.get("media", [])}
        fresh = [events[key] for key in sorted(events) if not seen(events[key]) and self._from_a_user(events[key])]
        newest = max([*events, *([floor] if floor is not None else [])], default=None)
        return DmBatch(
            messages=tuple(self._inbound(event, users, media) for event in fresh),
            newest_id=None if newest is None else str(newest),
        )

    def _read_back(self, *, until: Callable[[tweepy.DirectMessageEvent], bool]) -> list[Any]:
        """Pages of DM events, newest first, up to the first page holding an event `until` accepts."""
        pages: list[Any] = []
        token: str | None = None
        while True:
            page = self._read_page(token)
            pages.append(page)
            token = page.meta.get("next_token")
            if not token or any(until(event) for event in page.data or []):
                return pages

    def _from_a_user(self, event: tweepy.DirectMessageEvent) -> bool:
        # The bot's own DMs are events too; so are joins and leaves, should a type filter be ignored.
        sender = event.sender_id
        return event.event_type == "MessageCreate" and sender is not None and str(sender) != self.bot_user_id

    def _read_page(self, token: str | None) -> Any:
        try:
            return self._reader.get_direct_message_events(
                dm_event_fields=EVENT_FIELDS,
                event_types="MessageCreate",
                expansions=EXPANSIONS,
                media_fields=MEDIA_FIELDS,
                user_fields=USER_FIELDS,
                max_results=self._page_size,
                pagination_token=token,
            )
        except (tweepy.TweepyException, requests.RequestException) as exc:
            raise translate(exc) from exc

    def _inbound(
        self, event: tweepy.DirectMessageEvent, users: Mapping[str, str], media: Mapping[str, tweepy.Media]
    ) -> InboundMessage:
        sender = str(event.sender_id)
        keys = (event.attachments or {}).get("media_keys", [])
        attachments = tuple(_attachment(key, media.get(key)) for key in keys)
        return InboundMessage(
            channel=CHANNEL,
            user_id=sender,
            provider_message_id=str(event.id),
            text=event.text or "",
            sent_at=event.created_at or self._clock(),
            attachments=attachments,
            display_name=users.get(sender),
            raw=dict(event.data),
        )

    def crc_response(self, crc_token: str) -> dict[str, str]:
        """The answer to X's challenge-response check (GET with `crc_token`)."""
        return {"response_token": signature(self._consumer_secret, crc_token.encode())}

    def verify(self, *, url: str, headers: Mapping[str, str], body: bytes) -> None:
        """Account Activity POSTs carry x-twitter-webhooks-signature over the raw body (the URL is not signed)."""
        given = headers.get("x-twitter-webhooks-signature", "")
        if not given or not hmac.compare_digest(given.encode(), signature(self._consumer_secret, body).encode()):
            raise InboundRejected("x-twitter-webhooks-signature is missing or wrong")

    def parse(self, *, headers: Mapping[str, str], body: bytes) -> list[InboundMessage]:
        """The users' DMs in an Account Activity payload; other activity (typing, reads, tweets) is none."""
        try:
            payload = json.loads(body)
        except ValueError as exc:
            raise InboundRejected("the body is not JSON") from exc
        if not isinstance(payload, dict):
            raise InboundRejected("the body is not a JSON object")
        owner = str(payload.get("for_user_id", ""))
        if owner != self.bot_user_id:
            log.warning("X activity for another account ignored: check X_BOT_USER_ID", extra={"channel": CHANNEL})
            return []
        users = payload.get("users")
        users = users if isinstance(users, dict) else {}
        events = payload.get("direct_message_events") or []
        if not isinstance(events, list):
            raise InboundRejected("direct_message_events is not a list")
        return [message for event in events if (message := _webhook_message(event, owner, users)) is not None]


def _attachment(key: str, item: tweepy.Media | None) -> Attachment:
    if item is None:
        return Attachment(url=f"x-media:{key}")
    url = item.url or item.preview_image_url or f"x-media:{key}"
    return Attachment(url=url, content_type=_MEDIA_KINDS.get(item.type), name=item.type)


def _webhook_message(event: Any, owner: str, users: Mapping[str, Any]) -> InboundMessage | None:
    """One Account Activity DM event, or None for anything the bot itself sent or that is not a message."""
    if not isinstance(event, dict) or event.get("type") != "message_create":
        return None
    try:
        create = event["message_create"]
        sender = str(create["sender_id"])
        data = create.get("message_data") or {}
        event_id = str(event["id"])
    except (KeyError, TypeError, AttributeError) as exc:
        raise InboundRejected("a message_create event lacks its id or sender") from exc
    if not sender or not event_id or not isinstance(data, dict):
        raise InboundRejected("a message_create event lacks its id, sender or message data")
    if sender == owner:  # the bot's own DMs (our replies included) come back as events too
        return None
    text, attachments = _webhook_media(str(data.get("text") or ""), data.get("attachment"))
    profile = users.get(sender)
    return InboundMessage(
        channel=CHANNEL,
        user_id=sender,
        provider_message_id=event_id,
        text=text,
        sent_at=_from_millis(event.get("created_timestamp")),
        attachments=attachments,
        display_name=_text_or_none(profile.get("name")) if isinstance(profile, dict) else None,
        raw=event,
    )


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _webhook_media(text: str, attachment: object) -> tuple[str, tuple[Attachment, ...]]:
    """The text without the attached media's t.co link (X appends it), and the media as an attachment."""
    media = attachment.get("media") if isinstance(attachment, dict) else None
    if not isinstance(media, dict):
        return text, ()
    link = str(media.get("url") or "")
    if link:
        text = text.replace(link, "").strip()
    url = str(media.get("media_url_https") or link or f"x-media:{media.get('id_str', '')}")
    kind = str(media.get("type") or "")
    return text, (Attachment(url=url, content_type=_MEDIA_KINDS.get(kind), name=kind or None),)


def _from_millis(value: object) -> datetime:
    try:
        return datetime.fromtimestamp(int(str(value)) / 1000, tz=UTC)
    except (TypeError, ValueError):
        return datetime.now(UTC)
