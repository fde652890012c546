"""Telegram's plugin: the webhook route, the getUpdates poller for local use, and setWebhook registration."""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import Response
from sqlalchemy.exc import SQLAlchemyError
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from telegram import Update
from telegram.constants import SUPPORTED_WEBHOOK_PORTS

from adapters.telegram import ALLOWED_UPDATES, NAME, TelegramChannel
from bots.intake import answer, take_in
from bots.plugins import ChannelPlugin, ChannelStatus, missing
from bots.settings import Settings
from core.cursors import new_lease_owner, read_cursor, release_cursor, save_cursor, take_lease
from core.errors import ChannelError, ConfigurationError, PermanentChannelError, TransientChannelError
from core.messages import InboundMessage, OutboundMessage, Receipt
from core.storage.database import Database

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from bots.wiring import Services

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhooks/telegram"
CURSOR = "telegram"
# setWebhook's secret_token: 1-256 characters of A-Z, a-z, 0-9, _ and - (https://core.telegram.org/bots/api#setwebhook).
_SECRET_FORMAT = re.compile(r"[A-Za-z0-9_-]{1,256}")


def plugin(settings: Settings) -> ChannelPlugin:
    """Live with the token and the webhook secret, or with the token alone when polling."""
    needed = ["telegram_bot_token"] if settings.telegram_polling else ["telegram_bot_token", "telegram_webhook_secret"]
    absent = missing(settings, *needed)
    if absent:
        why = f"{', '.join(absent)} not set"
        if absent == ["TELEGRAM_WEBHOOK_SECRET"]:
            why += " (or run with --telegram-polling, which needs the token alone)"
        return ChannelPlugin(statuses=[ChannelStatus(NAME, False, why)])
    channel = build_channel(settings)
    pollers: list[Callable[[Services], Awaitable[None]]] = []
    why = f"webhook POST {WEBHOOK_PATH}"
    if settings.telegram_polling:
        webhook = "the webhook also open" if settings.telegram_webhook_secret else "the webhook refuses updates"
        why = f"polling getUpdates ({webhook})"
        pollers.append(TelegramPoller(channel))
    return ChannelPlugin(
        statuses=[ChannelStatus(NAME, True, why)],
        channels=[channel],
        router=webhook_router(channel),
        pollers=pollers,
        register_webhooks=register_webhooks,
        closers=[channel.close],
    )


def build_channel(settings: Settings) -> TelegramChannel:
    """The adapter from the settings; a malformed secret or base URL stops start-up naming the variable."""
    assert settings.telegram_bot_token is not None
    secret = settings.telegram_webhook_secret.get_secret_value() if settings.telegram_webhook_secret else None
    if secret is not None and not _SECRET_FORMAT.fullmatch(secret):
        raise ConfigurationError(
            "TELEGRAM_WEBHOOK_SECRET: Telegram accepts 1-256 characters from A-Z, a-z, 0-9, _ and -"
        )
    base_url = settings.telegram_api_base_url
    if base_url is not None and not _looks_like_base_url(base_url):
        raise ConfigurationError(
            "TELEGRAM_API_BASE_URL: python-telegram-bot appends the token to it, so it must end in "
            "'bot' or '/' (e.g. http://127.0.0.1:8081/bot) or contain '{token}'"
        )
    return TelegramChannel(
        token=settings.telegram_bot_token.get_secret_value(), webhook_secret=secret, base_url=base_url
    )


def _looks_like_base_url(value: str) -> bool:
    parts = urlsplit(value)
    shaped = value.endswith(("bot", "/")) or "{token}" in value
    return parts.scheme in ("http", "https") and bool(parts.netloc) and shaped


# The webhook -----------------------------------------------------------------------------------


def webhook_router(channel: TelegramChannel) -> APIRouter:
    router = APIRouter()

    @router.post(WEBHOOK_PATH)
    async def telegram_webhook(request: Request, background: BackgroundTasks) -> Response:
        seen = _Seen(channel)
        await take_in(request, seen, background)
        if seen.update is not None and seen.update.callback_query is not None:
            # A button press is stored by now, so a failed acknowledgement cannot lose it; the
            # acknowledgement runs after the response (never delaying Telegram's 200), and first
            # among the background work, so the button's spinner stops before the answer is made.
            task = BackgroundTask(acknowledge, channel, [seen.update.callback_query.id])
            background.tasks.insert(0, task)
        # An empty 200: Telegram would execute a JSON answer that names a "method".
        # https://core.telegram.org/bots/api#making-requests-when-getting-updates
        return Response(status_code=200)

    return router


class _Seen:
    """The channel as `take_in` uses it, keeping the update it parsed (for its callback query)."""

    def __init__(self, channel: TelegramChannel) -> None:
        self.channel = channel
        self.name = channel.name
        self.capabilities = channel.capabilities
        self.update: Update | None = None

    async def send(self, message: OutboundMessage) -> Receipt:
        return await self.channel.send(message)

    def verify(self, *, url: str, headers: Mapping[str, str], body: bytes) -> None:
        self.channel.verify(url=url, headers=headers, body=body)

    def parse(self, *, headers: Mapping[str, str], body: bytes) -> list[InboundMessage]:
        self.update = self.channel.parse_update(body)
        return self.channel.messages_in(self.update)


async def acknowledge(
    channel: TelegramChannel, query_ids: Sequence[str], *, attempts: int = 3, pause: float = 0.5
) -> None:
    """answerCallbackQuery for each press, a few quick tries each; failures are logged, never raised.

    Only the spinner depends on it, and Telegram refuses an answer after a few seconds ("query is
    too old"), so there is no point in queueing it for later like a reply.
    """
    for query_id in query_ids:
        for attempt in range(1, attempts + 1):
            try:
                await channel.acknowledge(query_id)
                break
            except TransientChannelError as exc:
                if attempt == attempts:
                    log.warning("button press not acknowledged: %s", exc, extra={"channel": NAME})
                    break
                await asyncio.sleep(min(exc.retry_after or pause * attempt, 3.0))
            except PermanentChannelError as exc:
                log.warning("button press not acknowledged: %s", exc, extra={"channel": NAME})
                break


# Polling (local use) ----------------------------------------------------------------------------


@dataclass
class TelegramPoller:
    """getUpdates in a loop, fed through the webhook's parse path; the offset is kept in core.cursors.

    Each batch is stored before the offset moves on, and storing is idempotent, so a restart
    between the two fetches the batch again and answers nothing twice; an offset saved only
    after storing means nothing is skipped. (The offset also confirms the batch to Telegram.)
    """

    channel: TelegramChannel
    timeout: int = 30  # long-poll seconds per getUpdates
    base_delay: float = 1.0
    max_delay: float = 60.0

    async def __call__(self, services: Services) -> None:
        owner = new_lease_owner()
        try:
            await self._poll_forever(services, owner)
        finally:  # a clean stop hands the lease over at once; a crash lets it lapse
            release_cursor(services.database, CURSOR, owner=owner)

    async def _poll_forever(self, services: Services, owner: str) -> None:
        failures = 0
        while True:
            try:
                # Two pollers on one bot make Telegram answer "Conflict": one process polls at a time.
                if not await take_lease(services.database, CURSOR, owner=owner, seconds=self.timeout + 30):
                    await asyncio.sleep(self.timeout / 2)
                    continue
                await self.poll_once(services)
            except (ChannelError, SQLAlchemyError) as exc:
                # A webhook still set, or a second poller, shows here as "Conflict": Telegram says
                # which. The webhook is not deleted for you: it may be production's.
                failures += 1
                delay = self.delay(failures, exc)
                log.warning("telegram polling failed, retrying in %.1f s: %s", delay, exc, extra={"channel": NAME})
                await asyncio.sleep(delay)
            else:
                failures = 0

    def delay(self, failures: int, error: Exception) -> float:
        """Telegram's retry_after when it gave one, else exponential backoff with jitter."""
        if isinstance(error, TransientChannelError) and error.retry_after is not None:
            return min(error.retry_after, self.max_delay)
        return min(self.base_delay * 2 ** (failures - 1), self.max_delay) * random.uniform(0.5, 1.0)

    async def poll_once(self, services: Services) -> int:
        """Fetch, store, move the offset on, acknowledge presses, answer; the number of updates."""
        saved = await run_in_threadpool(read_cursor, services.database, CURSOR)
        updates = await self.channel.fetch_updates(offset=int(saved) if saved else None, timeout=self.timeout)
        if not updates:
            return 0
        messages = [message for update in updates for message in self.channel.messages_in(update)]
        accepted = [await run_in_threadpool(services.inbox.receive, message) for message in messages]
        await run_in_threadpool(_save_offset, services.database, max(u.update_id for u in updates) + 1)
        await acknowledge(self.channel, [u.callback_query.id for u in updates if u.callback_query is not None])
        fresh = [item.message_id for item in accepted if not item.duplicate]
        if fresh:
            await answer(services, fresh)
        return len(updates)


def _save_offset(database: Database, offset: int) -> None:
    with database.transaction() as session:
        save_cursor(session, CURSOR, str(offset))


# `saypro-bot webhooks register` -------------------------------------------------------------------


async def register_webhooks(settings: Settings) -> list[str]:
    """setWebhook to PUBLIC_BASE_URL + /webhooks/telegram with the secret; one line saying what happened."""
    if settings.telegram_webhook_secret is None:
        return ["telegram: not registered: TELEGRAM_WEBHOOK_SECRET is not set (polling needs no webhook)"]
    url = settings.public_base_url + WEBHOOK_PATH
    problem = _webhook_url_problem(url)
    if problem:
        return [f"telegram: not registered: {problem}"]
    secret = settings.telegram_webhook_secret.get_secret_value()
    channel = build_channel(settings)
    try:
        await channel.set_webhook(url=url, secret=secret)
    except ChannelError as exc:
        return [f"telegram: setWebhook FAILED for {url}: {str(exc).removeprefix('telegram: ')}"]
    finally:
        await channel.close()
    updates = ", ".join(ALLOWED_UPDATES)
    return [f"telegram: webhook set to {url} (secret token {_masked(secret)}; updates: {updates})"]


def _webhook_url_problem(url: str) -> str | None:
    # Telegram calls webhooks over HTTPS only, on these ports (https://core.telegram.org/bots/api#setwebhook).
    parts = urlsplit(url)
    if parts.scheme != "https":
        return "Telegram calls only https:// webhooks; set PUBLIC_BASE_URL (or poll locally with --telegram-polling)"
    if (parts.port or 443) not in SUPPORTED_WEBHOOK_PORTS:
        return f"Telegram calls webhooks only on ports {', '.join(map(str, SUPPORTED_WEBHOOK_PORTS))}"
    return None


def _masked(secret: str) -> str:
    shown = secret[:4] + "…" if len(secret) >= 16 else ""
    return f"{shown}({len(secret)} characters)"
