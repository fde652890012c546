"""The background loop: send due outbox rows and answer any inbound message left unanswered."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from sqlalchemy.exc import OperationalError
from starlette.concurrency import run_in_threadpool

from core.inbox import Inbox
from core.outbox import Dispatcher
from core.storage.models import utcnow

log = logging.getLogger(__name__)
# An inbound message still unanswered this long after it was stored was dropped by a crash.
STRANDED_AFTER = timedelta(seconds=30)


async def sweep_stranded(inbox: Inbox) -> int:
    """Answer inbound messages whose processing never finished (a process died mid-way)."""
    stranded = await run_in_threadpool(inbox.pending, before=utcnow() - STRANDED_AFTER)
    for message_id in stranded:
        await run_in_threadpool(inbox.process, message_id)
    return len(stranded)


async def run_forever(inbox: Inbox, dispatcher: Dispatcher, *, interval: float = 0.5) -> None:
    """Dispatch and sweep until cancelled; a database outage pauses the loop, it does not end it."""
    ticks = 0
    while True:
        try:
            sent = await dispatcher.dispatch_due()
            if ticks % 20 == 0:
                await sweep_stranded(inbox)
        except OperationalError as exc:
            log.warning("database unavailable, retrying: %s", type(exc.orig).__name__)
            sent = 0
        ticks += 1
        if not sent:
            await asyncio.sleep(interval)
