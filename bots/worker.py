"""The background loop: send due outbox rows and answer any inbound message left unanswered.

Every process runs it (`run` beside the web app, each `worker` alone) against the one database:
outbox rows are claimed with a lease (core.outbox), a stranded message is answered under its
conversation's row lock (core.inbox), and pollers hold a named lease (core.cursors), so any
number of processes share the work and none does a piece of it twice.

With ANSWERS_BY_WORKERS, the web processes only store the messages, and each `worker` also
answers them as they come (`answer_waiting`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from core.inbox import Inbox
from core.outbox import Dispatcher
from core.storage.models import utcnow

if TYPE_CHECKING:
    from bots.answering import Answerer

log = logging.getLogger(__name__)
# An inbound message still unanswered this long after it was stored was dropped: its process
# died, or the database went away, between storing it and answering it. Answering it from
# another process is safe even if the first is merely slow: the conversation's lock lets one
# of them answer and the other find it answered.
STRANDED_AFTER = timedelta(seconds=10)
SWEEP_EVERY_SECONDS = 5.0
# After an unexpected database error (not an outage), wait this long before the next round.
ERROR_PAUSE_SECONDS = 5.0
# answer_waiting: how often it looks for new messages, from right after it found some to idle
# (the wait doubles at each look that finds none); how many messages it keeps in hand at most.
LOOK_EVERY_SECONDS = (0.01, 0.1)
IN_HAND = 128
# answer_waiting: while the database is away, look again this often (one warning each time).
OUTAGE_PAUSE_SECONDS = 0.5


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


async def answer_waiting(inbox: Inbox, answerer: Answerer, *, stopping: asyncio.Event | None = None) -> None:
    """Answer the messages the web processes stored and left to the workers, as they come.

    Looks for unanswered messages, oldest first, every 10 ms while it finds new ones and up to
    every 100 ms when idle, and hands those it does not hold yet to `answerer`'s lanes. Several
    workers may take the same message: its conversation's lock lets one answer it, and the others
    find it answered. With `stopping`, a shutdown lets the answers in hand finish.
    """
    in_hand: set[int] = set()
    answering: set[asyncio.Task[None]] = set()
    wait = LOOK_EVERY_SECONDS[0]
    while stopping is None or not stopping.is_set():
        found: list[int] = []
        if len(in_hand) < IN_HAND:
            try:
                found = await run_in_threadpool(inbox.pending, limit=len(in_hand) + IN_HAND)
            except (OperationalError, InterfaceError) as exc:
                log.warning("database unavailable, retrying: %s", type(exc.orig).__name__)
                await _pause(OUTAGE_PAUSE_SECONDS, stopping)
                continue
            except SQLAlchemyError:
                log.exception("looking for messages to answer: database error")
                await _pause(ERROR_PAUSE_SECONDS, stopping)
                continue
        fresh = [message_id for message_id in found if message_id not in in_hand]
        if fresh:
            in_hand.update(fresh)
            task = asyncio.create_task(answerer.answer(fresh))
            answering.add(task)

            def done(task: asyncio.Task[None], ids: list[int] = fresh) -> None:
                answering.discard(task)
                in_hand.difference_update(ids)

            task.add_done_callback(done)
        # full hands look again soon too: a lane that finishes frees room for the next messages
        busy = fresh or len(in_hand) >= IN_HAND
        wait = LOOK_EVERY_SECONDS[0] if busy else min(wait * 2, LOOK_EVERY_SECONDS[1])
        await _pause(wait, stopping)
    await asyncio.gather(*answering, return_exceptions=True)


async def _pause(seconds: float, stopping: asyncio.Event | None) -> None:
    if stopping is None:
        await asyncio.sleep(seconds)
        return
    try:
        await asyncio.wait_for(stopping.wait(), timeout=seconds)
    except TimeoutError:
        pass
