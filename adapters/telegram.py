"""Telegram through python-telegram-bot: verify and parse updates, send HTML replies with inline buttons."""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from telegram import Bot, CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.constants import ChatType, ParseMode
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
)

from adapters.telegram_http import AiohttpRequest
from core.errors import ChannelError, InboundRejected, PermanentChannelError, TransientChannelError
from core.markup import to_plain, to_telegram_html
from core.messages import Attachment, Capabilities, InboundMessage, Option, OutboundMessage, Receipt

log = logging.getLogger(__name__)

NAME = "telegram"
SECRET_HEADER = "x-telegram-bot-api-secret-token"
# The update types the bot asks for (setWebhook and getUpdates `allowed_updates`).
ALLOWED_UPDATES = ("message", "edited_message", "callback_query")
# sendMessage takes 1-4,096 characters *after entity parsing*, counted by Telegram in UTF-16 code
# units (https://core.telegram.org/bots/api#sendmessage). Our HTML tags vanish in that count and
# the visible text is never longer than the Markdown, so the headroom is for characters outside
# the BMP (emoji), which count twice.
MAX_TEXT_LENGTH = 4000
# callback_data is 1-64 bytes (https://core.telegram.org/bots/api#inlinekeyboardbutton).
MAX_CALLBACK_BYTES = 64
# Telegram refuses inline keyboards of more than 100 buttons ("reply markup is too long"); the
# Bot API page does not state the number.
MAX_BUTTONS = 100
# Connections the replies share: Telegram answers one bot about 30 messages a second in all,
# which a few connections carry.
# https://core.telegram.org/bots/faq#my-bot-is-hitting-limits-how-do-i-avoid-this
SEND_CONNECTIONS = 8
# Attachment kinds kept as references: the message's attribute and a content type when Telegram
# gives none. Files are not downloaded: a download URL would carry the bot token.
_FILE_KINDS = (
    ("document", None),
    ("video", "video/mp4"),
    ("audio", "audio/mpeg"),
    ("voice", "audio/ogg"),
    ("video_note", "video/mp4"),
    ("animation", "video/mp4"),
    ("sticker", "image/webp"),
)
# Things a user can send that carry no words and no file; they still deserve an answer.
_OTHER_CONTENT = ("location", "venue", "contact", "poll", "dice", "story")


class TelegramChannel:
    """Holds a python-telegram-bot `Bot`; every Bot API call of the project goes through here."""

    name = NAME
    capabilities = Capabilities(max_text_length=MAX_TEXT_LENGTH, buttons=True, max_buttons=MAX_BUTTONS)

    def __init__(
        self,
        *,
        token: str,
        webhook_secret: str | None = None,
        base_url: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        # Two request objects, as python-telegram-bot itself does: a long getUpdates poll must not
        # hold a connection that replies need. No network here: `Bot.initialize()` (getMe) is never
        # called; PTB does not need it to send, and its InvalidToken message would quote the token.
        # Replies share SEND_CONNECTIONS kept-alive connections, and a reply waits for one as long
        # as for Telegram's answer (PTB's default is 256 connections and a 1 s wait).
        self._requests = (
            AiohttpRequest(connections=SEND_CONNECTIONS, timeout=timeout),
            AiohttpRequest(connections=1, timeout=timeout),
        )
        self.bot = Bot(
            token,
            base_url=base_url or "https://api.telegram.org/bot",
            request=self._requests[0],
            get_updates_request=self._requests[1],
        )
        self._token = token
        self._secret = webhook_secret.encode() if webhook_secret else None

    async def close(self) -> None:
        """Close the HTTP connections (python-telegram-bot keeps them alive between calls)."""
        for request in self._requests:
            await request.shutdown()

    # Inbound -----------------------------------------------------------------------------------

    def verify(self, *, url: str, headers: Mapping[str, str], body: bytes) -> None:
        """Telegram signs nothing; it echoes setWebhook's secret_token in a header, compared in constant time."""
        if self._secret is None:
            raise InboundRejected("TELEGRAM_WEBHOOK_SECRET is not set: webhook updates are not accepted")
        given = headers.get(SECRET_HEADER)
        if given is None:
            raise InboundRejected("no secret token header")
        if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), self._secret):
            raise InboundRejected("wrong secret token")

    def parse(self, *, headers: Mapping[str, str], body: bytes) -> list[InboundMessage]:
        return self.messages_in(self.parse_update(body))

    def parse_update(self, body: bytes) -> Update:
        """The Update in a webhook body, or InboundRejected when it is not one."""
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise InboundRejected("the body is not JSON") from exc
        if not isinstance(data, dict) or not isinstance(data.get("update_id"), int):
            raise InboundRejected("the body is not a Telegram update")
        try:
            update = Update.de_json(data, self.bot)
        except (KeyError, TypeError, ValueError, AttributeError, ArithmeticError, OSError) as exc:
            # PTB trusts Telegram's JSON: a field of the wrong type fails in many ways (a bool
            # where an object should be, a date past the year 9999, ...).
            raise InboundRejected("the update is malformed") from exc
        return update

    def messages_in(self, update: Update) -> list[InboundMessage]:
        """The user messages in one update (webhook or getUpdates): none, or one."""
        try:
            return self._messages_in(update)
        except (TypeError, ValueError, AttributeError, KeyError) as exc:
            # PTB does not check the JSON's types: a list where Telegram sends text, say.
            raise InboundRejected("the update is malformed") from exc

    def _messages_in(self, update: Update) -> list[InboundMessage]:
        if update.message is not None:
            found = _from_message(update.update_id, update.message)
        elif update.callback_query is not None:
            found = _from_callback(update.update_id, update.callback_query)
        else:
            # edited_message (and any other type): ignored, nothing recorded. Telegram sends an
            # edit as a new update carrying the old message_id; the original was answered already,
            # and answering the edit as a new question would repeat the bot.
            # https://core.telegram.org/bots/api#update
            found = None
        if found is None:
            log.debug("telegram update ignored", extra={"channel": NAME, "update_id": update.update_id})
            return []
        return [found]

    # Outbound ----------------------------------------------------------------------------------

    async def send(self, message: OutboundMessage) -> Receipt:
        """One sendMessage in HTML parse mode, the options as an inline keyboard."""
        keyboard = inline_keyboard(message.options)
        try:
            sent = await self._send_html(message.user_id, message.text, keyboard)
        except TelegramError as exc:
            raise self.translate(exc) from exc
        return Receipt(provider_message_id=f"{sent.chat.id}:{sent.message_id}")

    async def _send_html(self, chat_id: str, markdown: str, keyboard: InlineKeyboardMarkup | None) -> Message:
        try:
            return await self.bot.send_message(
                chat_id=chat_id, text=to_telegram_html(markdown), parse_mode=ParseMode.HTML, reply_markup=keyboard
            )
        except BadRequest as exc:
            # "Can't parse entities": Telegram's HTML parser refused our markup. Send the same
            # words as plain text rather than lose the reply. https://core.telegram.org/bots/api#html-style
            if "parse entities" not in exc.message.lower():
                raise
            log.warning("telegram refused the HTML, sending plain text", extra={"channel": NAME})
            return await self.bot.send_message(chat_id=chat_id, text=to_plain(markdown), reply_markup=keyboard)

    async def acknowledge(self, callback_query_id: str) -> None:
        """answerCallbackQuery: the user's client shows a spinner on the button until this arrives.

        https://core.telegram.org/bots/api#answercallbackquery
        """
        try:
            await self.bot.answer_callback_query(callback_query_id)
        except TelegramError as exc:
            raise self.translate(exc) from exc

    async def fetch_updates(self, *, offset: int | None, timeout: int) -> tuple[Update, ...]:
        """getUpdates, long-polling up to `timeout` seconds; `offset` confirms every earlier update.

        https://core.telegram.org/bots/api#getupdates
        """
        try:
            return await self.bot.get_updates(offset=offset, timeout=timeout, allowed_updates=list(ALLOWED_UPDATES))
        except TelegramError as exc:
            raise self.translate(exc) from exc
        except (KeyError, TypeError, ValueError) as exc:  # PTB could not read an update in the batch
            raise TransientChannelError("telegram: getUpdates returned an unreadable update") from exc

    async def set_webhook(self, *, url: str, secret: str) -> None:
        """setWebhook with our secret_token, which Telegram then sends in SECRET_HEADER."""
        try:
            await self.bot.set_webhook(url=url, secret_token=secret, allowed_updates=list(ALLOWED_UPDATES))
        except TelegramError as exc:
            raise self.translate(exc) from exc

    def translate(self, exc: TelegramError) -> ChannelError:
        """The project's error for a python-telegram-bot one (see `translate_error`), token redacted."""
        return translate_error(exc, redact=self._token)


def translate_error(exc: TelegramError, *, redact: str = "") -> ChannelError:
    """Map python-telegram-bot's exceptions, which it derives from the HTTP status, not from `ok`.

    PTB raises RetryAfter when the body carries parameters.retry_after (a 429 without it is a
    NetworkError), Forbidden on 403, BadRequest on 400, InvalidToken on 401/404, Conflict on 409,
    and NetworkError on 5xx, other statuses and connection errors; TimedOut is a NetworkError.
    """
    detail = exc.message.replace(redact, "<token>") if redact else exc.message
    if isinstance(exc, RetryAfter):
        return TransientChannelError(f"telegram: {detail}", retry_after=_seconds(exc))
    if isinstance(exc, Forbidden):  # bot blocked by the user, user deactivated
        return PermanentChannelError(f"telegram: {detail}", unreachable=True)
    if isinstance(exc, BadRequest):  # a subclass of NetworkError: test it first
        unreachable = "chat not found" in detail.lower()
        return PermanentChannelError(f"telegram: {detail}", unreachable=unreachable)
    if isinstance(exc, InvalidToken):
        return PermanentChannelError("telegram: the bot token was rejected; check TELEGRAM_BOT_TOKEN")
    if isinstance(exc, ChatMigrated):  # groups only; the bot answers private chats
        return PermanentChannelError(f"telegram: the chat moved to {exc.new_chat_id}")
    if isinstance(exc, NetworkError):
        return TransientChannelError(f"telegram: {detail}")
    # Conflict (another getUpdates, or a webhook set while polling) and anything unforeseen:
    # worth another try later; the outbox gives up after its maximum attempts.
    return TransientChannelError(f"telegram: {type(exc).__name__}: {detail}")


def _seconds(exc: RetryAfter) -> float:
    # An int, or a timedelta once PTB_TIMEDELTA is set (PTB 22.2 deprecates the int form).
    value: Any = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def inline_keyboard(options: Sequence[Option]) -> InlineKeyboardMarkup | None:
    """One button per row (labels can be long); each returns its option's value when pressed.

    A value over 64 bytes cannot be callback_data, so that button returns the option's number
    instead, which the dialogue also accepts as a choice (core.dialogue.pick_option).
    """
    if not options:
        return None
    rows = [
        [InlineKeyboardButton(option.label, callback_data=callback_data(option, number))]
        for number, option in enumerate(options, start=1)
    ]
    return InlineKeyboardMarkup(rows)


def callback_data(option: Option, number: int) -> str:
    size = len(option.value.encode("utf-8"))
    return option.value if 1 <= size <= MAX_CALLBACK_BYTES else str(number)


def _from_message(update_id: int, message: Message) -> InboundMessage | None:
    """A private chat's message; its id starts with the update_id.

    Telegram redelivers an update it could not hand over with the same update_id, so the id
    dedups those retries; but after a week without updates the next update_id is chosen at random
    (https://core.telegram.org/bots/api#update), so the chat and message ids (or, for a button,
    the callback query id) keep a new update from colliding with an old one.
    """
    if message.chat.type != ChatType.PRIVATE:
        # Support answers carry personal details (payouts, contributions): never into a group.
        return None
    attachments = _attachments(message)
    text = message.text or message.caption or ""
    if not text and not attachments and not any(getattr(message, kind) for kind in _OTHER_CONTENT):
        return None  # a service message (pinned, payment, ...), not something the user said
    sender = message.from_user
    return InboundMessage(
        channel=NAME,
        user_id=str(message.chat.id),
        provider_message_id=f"{update_id}:{message.chat.id}:{message.message_id}",
        text=text,
        sent_at=message.date,
        attachments=attachments,
        display_name=sender.first_name if sender else None,
    )


def _from_callback(update_id: int, query: CallbackQuery) -> InboundMessage | None:
    chat = query.message.chat if query.message is not None else None
    if chat is not None and chat.type != ChatType.PRIVATE:
        return None
    if not query.data:
        return None  # a game button: nothing the dialogue offered
    return InboundMessage(
        channel=NAME,
        # A private chat's id is the user's id: the fallback covers inline-mode messages.
        user_id=str(chat.id if chat is not None else query.from_user.id),
        provider_message_id=f"{update_id}:callback:{query.id}",
        text=query.data,
        sent_at=datetime.now(UTC),  # a press carries no date; it arrives as it happens
        display_name=query.from_user.first_name,
    )


def _attachments(message: Message) -> tuple[Attachment, ...]:
    found: list[Attachment] = []
    if message.photo:
        largest = message.photo[-1]  # sizes come smallest first
        found.append(Attachment(url=file_reference(largest.file_id), content_type="image/jpeg"))
    for kind, default_type in _FILE_KINDS:
        item = getattr(message, kind)
        if item is None:
            continue
        found.append(
            Attachment(
                url=file_reference(item.file_id),
                content_type=getattr(item, "mime_type", None) or default_type,
                name=getattr(item, "file_name", None),
            )
        )
    return tuple(found)


def file_reference(file_id: str) -> str:
    """How a Telegram file is recorded: its file_id, fetched later with getFile if ever needed."""
    return f"telegram-file:{file_id}"
