"""X's plugin: the DM channel, its poller (the default way in), the Account Activity webhook, and what to register."""

from __future__ import annotations

import asyncio
import logging
import random
from typing import TYPE_CHECKING

from fastapi import APIRouter, BackgroundTasks, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from pydantic import SecretStr
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from adapters.x_dm import CHANNEL, XCredentials, XDirectMessages
from bots.intake import answer, take_in
from bots.plugins import ChannelPlugin, ChannelStatus, missing
from bots.settings import Settings
from core.cursors import new_lease_owner, read_cursor, release_cursor, save_cursor, take_lease
from core.errors import ChannelError, PermanentChannelError
from core.storage.database import Database
from core.storage.models import PollerCursor

if TYPE_CHECKING:
    from bots.wiring import Services

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhooks/x"
CURSOR = "x-dm"
# Failed polls back off up to 5 minutes. A 429 waits for X's reset instead: DM lookup allows 300
# requests per 15-minute window (https://docs.x.com/x-api/direct-messages/lookup/introduction);
# a reset further off than an hour (a spent credit cap, say) is waited for an hour at a time.
MAX_BACKOFF = 300.0
MAX_RATE_LIMIT_WAIT = 3600.0
# A CRC token is an opaque short string; refusing braces keeps the CRC answer from ever being a
# valid signature for a JSON event body (both are HMAC-SHA256 with the same consumer secret).
MAX_CRC_TOKEN = 1024
_NEEDS = ("x_consumer_key", "x_consumer_secret", "x_access_token", "x_access_token_secret", "x_bot_user_id")


def plugin(settings: Settings) -> ChannelPlugin:
    """X DMs, live when the app's keys, the bot account's tokens and its user id are set."""
    absent = missing(settings, *_NEEDS)
    if absent:
        return ChannelPlugin(statuses=[ChannelStatus(CHANNEL, False, f"{', '.join(absent)} not set")])
    channel = XDirectMessages(
        credentials=_credentials(settings),
        bot_user_id=str(settings.x_bot_user_id),
        api_base_url=settings.x_api_base_url,
    )
    interval = settings.x_poll_seconds

    async def poller(services: Services) -> None:
        await poll_forever(services, channel, interval=interval)

    why = f"polling DMs every {interval:g} s; Account Activity webhook at {WEBHOOK_PATH}"
    return ChannelPlugin(
        statuses=[ChannelStatus(CHANNEL, True, why)],
        channels=[channel],
        router=_router(channel),
        pollers=[poller],
        register_webhooks=register_webhooks,
    )


def _credentials(settings: Settings) -> XCredentials:
    return XCredentials(
        consumer_key=_secret(settings.x_consumer_key),
        consumer_secret=_secret(settings.x_consumer_secret),
        access_token=_secret(settings.x_access_token),
        access_token_secret=_secret(settings.x_access_token_secret),
    )


def _secret(value: SecretStr | None) -> str:
    assert value is not None, "plugin() checks every X variable is set first"
    return value.get_secret_value()


async def register_webhooks(settings: Settings) -> list[str]:
    """Polling needs nothing registered; Account Activity needs the URL entered at X (never done here)."""
    return [
        f"x: polling GET /2/dm_events every {settings.x_poll_seconds:g} s is the default; nothing to register",
        (
            f"x: with Account Activity access, register {settings.public_base_url}{WEBHOOK_PATH} as the webhook in "
            "the X developer portal and subscribe the bot account to it (X sends a CRC check to it first)"
        ),
    ]


def _router(channel: XDirectMessages) -> APIRouter:
    router = APIRouter()

    @router.get(WEBHOOK_PATH)
    async def x_crc(crc_token: str | None = None) -> JSONResponse:
        # X's challenge-response check, at registration and about hourly
        # (https://docs.x.com/x-api/webhooks/introduction).
        if not crc_token or len(crc_token) > MAX_CRC_TOKEN or "{" in crc_token:
            log.warning("X CRC request refused: no usable crc_token", extra={"channel": CHANNEL})
            raise HTTPException(400, "crc_token is missing or malformed")
        return JSONResponse(channel.crc_response(crc_token))

    @router.post(WEBHOOK_PATH)
    async def x_activity(request: Request, background: BackgroundTasks) -> Response:
        await take_in(request, channel, background)
        return Response(status_code=200)

    return router


async def poll_once(services: Services, channel: XDirectMessages) -> int:
    """Store the DMs newer than the saved cursor, oldest first, move the cursor, then answer; how many were new."""
    database = services.database
    cursor = await run_in_threadpool(read_cursor, database, CURSOR)
    batch = await run_in_threadpool(channel.fetch_since, cursor)
    accepted = [await run_in_threadpool(services.inbox.receive, message) for message in batch.messages]
    # Only now that every message is stored may the cursor move past them: a crash before this
    # line re-reads them next time, and the inbox's deduplication makes that harmless.
    if batch.newest_id is not None and batch.newest_id != cursor:
        await run_in_threadpool(advance_cursor, database, batch.newest_id)
    fresh = sum(not item.duplicate for item in accepted)
    if fresh:
        log.info("X DMs received", extra={"channel": CHANNEL, "count": fresh})
    # Duplicates too: one stored by an earlier poll that failed before answering is answered now;
    # the inbox answers a message once, so the others cost a look-up each.
    await answer(services, [item.message_id for item in accepted])
    return fresh


def advance_cursor(database: Database, event_id: str) -> None:
    """Move the cursor forward to `event_id`, never back (a second poller may have gone further)."""
    with database.transaction() as session:
        current = session.get(PollerCursor, CURSOR, with_for_update=True)
        if current is None or current.value is None or int(event_id) > int(current.value):
            save_cursor(session, CURSOR, event_id)


async def poll_forever(services: Services, channel: XDirectMessages, *, interval: float) -> None:
    """Poll every `interval` seconds until cancelled; failures back off with jitter, a 429 until X's reset."""
    owner = new_lease_owner()
    try:
        await _poll_leased(services, channel, interval=interval, owner=owner)
    finally:  # a clean stop hands the lease over at once; a crash lets it lapse
        release_cursor(services.database, CURSOR, owner=owner)


async def _poll_leased(services: Services, channel: XDirectMessages, *, interval: float, owner: str) -> None:
    failures = 0
    while True:
        try:
            # One process polls at a time; the others wait for its lease to lapse.
            if await take_lease(services.database, CURSOR, owner=owner, seconds=interval * 3):
                await poll_once(services, channel)
            failures, delay = 0, interval
        except ChannelError as exc:
            failures += 1
            delay = backoff(failures, interval=interval, retry_after=getattr(exc, "retry_after", None))
            level = logging.ERROR if isinstance(exc, PermanentChannelError) else logging.WARNING
            log.log(level, "X DM poll failed (%s); next try in %.0f s", exc, delay, extra={"channel": CHANNEL})
        except SQLAlchemyError as exc:
            failures += 1
            delay = backoff(failures, interval=interval)
            log.warning("X DM poll paused, database unavailable: %s", type(exc).__name__, extra={"channel": CHANNEL})
        await asyncio.sleep(delay)


def backoff(failures: int, *, interval: float, retry_after: float | None = None) -> float:
    """Seconds before the next poll after `failures` failures in a row: X's reset time, or doubling with jitter."""
    if retry_after is not None:
        return min(max(retry_after, interval), MAX_RATE_LIMIT_WAIT) + random.uniform(0, 1)
    ceiling = min(interval * 2**failures, MAX_BACKOFF)
    return max(interval, random.uniform(ceiling / 2, ceiling))
