"""The desk's background work, run by `run` and `worker` as a Slack plugin poller: timers, outcomes, posts.

Each tick fires the due timers (service-level reminders and breaches, the weekly report) with the
desk's clock, tells threads what became of relayed replies, and sends the queued posts. Every
step is a claim on database rows, so any number of processes may run this loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING

from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.exc import SQLAlchemyError

from bots.desk.sender import DeskSender
from bots.settings import Settings
from core.desk_actions import report_outcomes
from core.timers import Timers, WeeklyTime

if TYPE_CHECKING:
    from bots.wiring import Services

log = logging.getLogger(__name__)
INTERVAL = 0.5
WEEKLY_CHECK_SECONDS = 60.0


class DeskWork:
    """One tick of the desk's background work; `tick` is what tests drive with a controlled clock."""

    def __init__(self, services: Services, client: AsyncWebClient, settings: Settings) -> None:
        self.services = services
        self.sender = DeskSender(services, client, settings)
        self.timers = Timers(services.database, services.desk.timer_handlers())
        self.weekly = WeeklyTime.parse(settings.weekly_report_time)
        self._weekly_checked: float | None = None

    async def tick(self) -> None:
        desk = self.services.desk
        now = desk.now()
        if self._weekly_checked is None or time.monotonic() - self._weekly_checked > WEEKLY_CHECK_SECONDS:
            await asyncio.to_thread(self.timers.schedule_weekly, self.weekly, desk.levels.hours.zone, now)
            self._weekly_checked = time.monotonic()
        await asyncio.to_thread(self.timers.fire_due, now)
        await asyncio.to_thread(self._outcomes, now)
        await self.sender.flush()

    def _outcomes(self, now: datetime) -> int:
        with self.services.database.transaction() as session:
            return report_outcomes(session, now)


def desk_poller(client: AsyncWebClient, settings: Settings) -> Callable[[Services], Awaitable[None]]:
    """The poller the Slack plugin hands to `run` and `worker` when the desk is configured."""

    async def run_desk(services: Services) -> None:
        work = DeskWork(services, client, settings)
        while True:
            try:
                await work.tick()
            except SQLAlchemyError as exc:  # a database outage pauses the desk, it does not end it
                log.warning("desk loop: database unavailable: %s", type(exc).__name__)
            await asyncio.sleep(INTERVAL)

    return run_desk
