"""Telegram by getUpdates (local use): the same parse path, the offset kept across restarts, backoff on errors."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest
from sqlalchemy import select

import bots.plugins
from adapters.telegram import TelegramChannel
from bots.channels.telegram import CURSOR, TelegramPoller
from bots.settings import load_settings
from bots.wiring import Services, build
from core.cursors import read_cursor
from core.errors import TransientChannelError
from core.storage.models import Message, OutboxItem
from tests.fakes.knowledge import FakeKnowledge
from tests.fakes.telegram_api import TOKEN, FakeTelegramAPI, error, load_update

ANSWER = "Payouts are sent after the campaign ends."
FIRST = load_update("message_text")  # update_id 815300001
SECOND = load_update("message_text", update_id=815300002, text="menu")


@pytest.fixture(autouse=True)
def production_wiring(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bots.plugins, "PLUGIN_MODULES", ("bots.channels.telegram",))
    monkeypatch.setenv("PTB_TIMEDELTA", "true")


@dataclass
class Process:
    """One `saypro-bot run --telegram-polling` process: its services and its poller task."""

    services: Services
    fake: FakeTelegramAPI
    task: asyncio.Task[None] | None = None

    @property
    def database(self):  # type: ignore[no-untyped-def]
        return self.services.database

    async def stop(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


@pytest.fixture()
async def polling(database_url: str) -> AsyncIterator[Callable[..., Process]]:
    """Start a process in polling mode (token only) against a fake; everything is stopped after the test."""
    started: list[Process] = []

    def start(fake: FakeTelegramAPI, *, run: bool = True) -> Process:
        settings = load_settings(
            database_url=database_url,
            telegram_bot_token=TOKEN,
            telegram_api_base_url=fake.base_url,
            telegram_polling=True,
        )
        process = Process(build(settings, knowledge=FakeKnowledge()), fake)
        [poller] = process.services.plugins[0].pollers
        if run:
            process.task = asyncio.create_task(poller(process.services))
        started.append(process)
        return process

    yield start
    for process in started:
        await process.stop()
        for channel in process.services.plugins[0].channels:
            await channel.close()  # type: ignore[attr-defined]
        process.fake.close()
        process.database.dispose()


async def until(condition: Callable[[], object], *, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


def pending_rows(database) -> int:  # type: ignore[no-untyped-def]
    with database.sessions() as session:
        return len(list(session.scalars(select(OutboxItem.id).where(OutboxItem.status == "pending"))))


def inbound_texts(services: Services) -> list[str]:
    with services.database.sessions() as session:
        return list(session.scalars(select(Message.text).where(Message.direction == "in").order_by(Message.id)))


async def test_polled_updates_are_answered_and_the_offset_is_saved(polling) -> None:  # type: ignore[no-untyped-def]
    fake = FakeTelegramAPI(updates=[[FIRST]])
    process = polling(fake)
    await until(lambda: fake.sent_texts() and len(fake.method("getUpdates")) >= 2)
    assert fake.sent_texts() == [ANSWER]
    assert fake.method("sendMessage")[0].form["chat_id"] == "5512345678"
    assert read_cursor(process.database, CURSOR) == "815300002"
    first, second = fake.method("getUpdates")[:2]
    assert "offset" not in first.form
    assert second.form["offset"] == "815300002"  # confirms update 815300001 to Telegram
    assert second.form["timeout"] == "30"
    assert second.form["allowed_updates"] == '["message", "edited_message", "callback_query"]'


async def test_a_restart_resumes_from_the_saved_offset_and_repeats_nothing(polling) -> None:  # type: ignore[no-untyped-def]
    before = FakeTelegramAPI(updates=[[FIRST]])
    first = polling(before)
    # Stopped once its reply is recorded as sent: a stop in the middle of a send is the fault
    # tests' business (the row would wait out its lease, and the next reply behind it).
    await until(
        lambda: (
            before.sent_texts()
            and read_cursor(first.database, CURSOR) == "815300002"
            and not pending_rows(first.database)
        )
    )
    await first.stop()
    # The restarted process asks from the saved offset; this fake hands the first update over
    # again anyway (as Telegram would, had the offset never reached it) with a new one.
    after = FakeTelegramAPI(updates=[[FIRST, SECOND]])
    restarted = polling(after)
    await until(lambda: after.sent_texts())
    await until(lambda: read_cursor(restarted.database, CURSOR) == "815300003")
    assert after.method("getUpdates")[0].form["offset"] == "815300002"
    assert inbound_texts(restarted.services) == ["When will my payout arrive?", "menu"]
    assert len(before.sent_texts()) == 1
    assert len(after.sent_texts()) == 1 and after.sent_texts()[0] != ANSWER  # only "menu" is answered


async def test_a_polled_button_press_is_acknowledged_and_answered(polling) -> None:  # type: ignore[no-untyped-def]
    fake = FakeTelegramAPI(updates=[[load_update("callback_query", data="action:menu")]])
    process = polling(fake)
    await until(lambda: fake.sent_texts())
    [ack] = fake.method("answerCallbackQuery")
    assert ack.form["callback_query_id"] == "2368523958725730437"
    assert inbound_texts(process.services) == ["action:menu"]


async def test_polling_backs_off_on_errors_and_carries_on(polling, caplog) -> None:  # type: ignore[no-untyped-def]
    conflict = error(
        409,
        "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first",
    )
    fake = FakeTelegramAPI(updates=[error(502, "Bad Gateway"), conflict, [FIRST]])
    process = polling(fake, run=False)
    channel = process.services.plugins[0].channels[0]
    assert isinstance(channel, TelegramChannel)
    poller = TelegramPoller(channel, base_delay=0.01, max_delay=0.05)
    with caplog.at_level(logging.WARNING, logger="bots.channels.telegram"):
        process.task = asyncio.create_task(poller(process.services))
        await until(lambda: fake.sent_texts())
    assert fake.sent_texts() == [ANSWER]
    assert any("deleteWebhook" in record.getMessage() for record in caplog.records)
    assert TOKEN not in caplog.text


def test_backoff_honours_retry_after_and_otherwise_grows_with_jitter() -> None:
    poller = TelegramPoller(TelegramChannel(token=TOKEN), base_delay=1.0, max_delay=60.0)
    assert poller.delay(1, TransientChannelError("flood", retry_after=7.0)) == 7.0
    assert 0.5 <= poller.delay(1, TransientChannelError("down")) <= 1.0
    assert 4.0 <= poller.delay(4, TransientChannelError("down")) <= 8.0
    assert 30.0 <= poller.delay(20, TransientChannelError("down")) <= 60.0
