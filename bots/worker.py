"""The background loop: send due outbox rows and answer any inbound message left unanswered.

Every process runs it (`run` beside the web app, each `worker` alone) against the one database:
outbox rows are claimed with a lease (core.outbox), a stranded message is answered under its
conversation's row lock (core.inbox), and pollers hold a named lease (core.cursors), so any
number of processes share the work and none does a piece of it twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta

from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from core.inbox import Inbox
from core.outbox import Dispatcher
from core.storage.models import utcnow

log = logging.getLogger(__name__)
# An inbound message still unanswered this long after it was stored was dropped: its process
# died, or the database went away, between storing it and answering it. Answering it from
# another process is safe even if the first is merely slow: the conversation's lock lets one
# of them answer and the other find it answered.
STRANDED_AFTER = timedelta(seconds=10)
SWEEP_EVERY_SECONDS = 5.0
# After an unexpected database error (not an outage), wait this long before the next round.
ERROR_PAUSE_SECONDS = 5.0


async def sweep_stranded(inbox: Inbox) -> int:
    """Answer inbound messages whose processing never finished (a process died mid-way)."""
    stranded = await run_in_threadpool(inbox.pending, before=utcnow() - STRANDED_AFTER)
    for message_id in stranded:
        await run_in_threadpool(inbox.process, message_id)
    return len(stranded)


async def run_forever(
    inbox: Inbox, dispatcher: Dispatcher, *, interval: float = 0.5, stopping: asyncio.Event | None = None
) -> None:
    """Dispatch and sweep until cancelled or `stopping` is set; a database outage pauses the loop.

    With `stopping`, a shutdown lets the round under way finish (its sends settle in the
    database) instead of cutting a send off after the provider took it, which would send it
    again once its lease ran out.
    """
    swept = 0.0
    while stopping is None or not stopping.is_set():
        try:
            sent = await dispatcher.dispatch_due()
            if time.monotonic() - swept >= SWEEP_EVERY_SECONDS:
                swept = time.monotonic()
                await sweep_stranded(inbox)
        except (OperationalError, InterfaceError) as exc:
            log.warning("database unavailable, retrying: %s", type(exc.orig).__name__)
            sent = 0
        except SQLAlchemyError:
            # Not an outage: keep the traceback, and keep the loop (and every other row) going.
            log.exception("background loop: database error")
            await _pause(ERROR_PAUSE_SECONDS, stopping)
            continue
        if not sent:
            await _pause(interval, stopping)


async def _pause(seconds: float, stopping: asyncio.Event | None) -> None:
    if stopping is None:
        await asyncio.sleep(seconds)
        return
    try:
        await asyncio.wait_for(stopping.wait(), timeout=seconds)
    except TimeoutError:
        pass
