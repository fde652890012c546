"""Telegram end to end: the real app on uvicorn, webhooks posted to it, replies through PTB to a fake Bot API."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

import bots.plugins
from bots.channels.telegram import WEBHOOK_PATH, plugin
from bots.settings import Settings, load_settings
from bots.wiring import Services, build, channel_report
from core.errors import ConfigurationError
from core.faq import Candidate, Decision, FaqResult
from core.outbox import RetryPolicy
from core.storage.models import ChannelIdentity, Message, OutboxItem
from tests.fakes.knowledge import FakeKnowledge
from tests.fakes.live import live_app, wait_for
from tests.fakes.provider_api import Recorded
from tests.fakes.telegram_api import TOKEN, FakeTelegramAPI, error, keyboard, load_update

SECRET = "s3cr3t_token-for-tests"
CHAT = "5512345678"
ANSWER = "Payouts are sent after the campaign ends."
FAST = RetryPolicy(max_attempts=5, base_delay=0.01, max_delay=0.05)


@pytest.fixture(autouse=True)
def production_wiring(monkeypatch: pytest.MonkeyPatch) -> None:
    """build() loads this plugin as it will in production; PTB 22's RetryAfter stays warning-free."""
    monkeypatch.setattr(bots.plugins, "PLUGIN_MODULES", ("bots.channels.telegram",))
    monkeypatch.setenv("PTB_TIMEDELTA", "true")


def settings_for(database_url: str, fake: FakeTelegramAPI | None = None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "public_base_url": "https://bot.example.org",
        "telegram_bot_token": TOKEN,
        "telegram_webhook_secret": SECRET,
        "telegram_api_base_url": fake.base_url if fake else None,
    }
    return load_settings(**{**values, **overrides})


@dataclass
class Telegram:
    services: Services
    fake: FakeTelegramAPI
    base: str

    def post(self, update: dict[str, Any], *, secret: str | None = SECRET) -> httpx.Response:
        headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret is not None else {}
        return httpx.post(self.base + WEBHOOK_PATH, json=update, headers=headers, timeout=10)

    def sent(self) -> list[Recorded]:
        return self.fake.method("sendMessage")

    def rows(self) -> list[OutboxItem]:
        with self.services.database.sessions() as session:
            return list(session.scalars(select(OutboxItem).order_by(OutboxItem.id)))

    def inbound(self) -> list[Message]:
        with self.services.database.sessions() as session:
            return list(session.scalars(select(Message).where(Message.direction == "in").order_by(Message.id)))


@pytest.fixture()
def telegram(database_url: str) -> Callable[..., Any]:
    @contextmanager
    def start(*, knowledge: Any = None, **fake_kwargs: Any) -> Iterator[Telegram]:
        fake = FakeTelegramAPI(**fake_kwargs)
        services = build(settings_for(database_url, fake), knowledge=knowledge or FakeKnowledge())
        services.dispatcher.policy = FAST
        try:
            with live_app(services) as base:
                yield Telegram(services, fake, base)
        finally:
            fake.close()
            services.database.dispose()

    return start


def test_a_message_is_answered_with_one_sendmessage_to_the_chat(telegram) -> None:  # type: ignore[no-untyped-def]
    with telegram() as app:
        response = app.post(load_update("message_text"))
        assert response.status_code == 200
        assert response.content == b""  # a JSON answer naming a "method" would be executed by Telegram
        wait_for(lambda: app.sent())
        [call] = app.sent()
        assert call.path == f"/bot{TOKEN}/sendMessage"
        assert call.form["chat_id"] == CHAT
        assert call.form["text"] == ANSWER
        assert call.form["parse_mode"] == "HTML"
        [inbound] = app.inbound()
        assert inbound.text == "When will my payout arrive?"
        wait_for(lambda: app.rows()[0].status == "sent")
        assert app.rows()[0].receipt_id == f"{CHAT}:{1000 + len(ANSWER)}"


@pytest.mark.parametrize(
    "secret", [None, "", "wrong-secret", SECRET + "x"], ids=["missing", "empty", "wrong", "longer"]
)
def test_a_forged_or_missing_secret_is_refused_with_nothing_stored_or_sent(telegram, secret) -> None:  # type: ignore[no-untyped-def]
    with telegram() as app:
        response = app.post(load_update("message_text"), secret=secret)
        assert response.status_code == 403
        assert app.inbound() == []
        assert app.rows() == []
        assert app.fake.requests == []


def test_the_same_update_delivered_three_times_is_answered_once(telegram) -> None:  # type: ignore[no-untyped-def]
    with telegram() as app:
        for _ in range(3):
            assert app.post(load_update("message_text")).status_code == 200
        wait_for(lambda: app.rows() and app.rows()[0].status == "sent")
        assert len(app.inbound()) == 1
        assert len(app.sent()) == 1


def test_an_edited_message_is_not_answered_again(telegram) -> None:  # type: ignore[no-untyped-def]
    with telegram() as app:
        app.post(load_update("message_text"))
        wait_for(lambda: app.sent())
        assert app.post(load_update("edited_message")).status_code == 200
        assert len(app.inbound()) == 1
        assert len(app.sent()) == 1


class LongKnowledge(FakeKnowledge):
    """Answers every question with a long, multi-paragraph text containing characters HTML must escape."""

    PARAGRAPH = "Fees & timings for payouts <in detail>: " + "The payout is sent after the campaign ends. " * 30

    def lookup(self, text: str) -> FaqResult:
        answer = "\n\n".join([self.PARAGRAPH.strip()] * 8)
        candidate = Candidate("disbursement-timeline", "Payouts", 1.0)
        return FaqResult(Decision.ANSWER, 1.0, "disbursement-timeline", "Payouts", answer, (candidate,))


def test_a_long_answer_is_split_into_numbered_messages_under_telegrams_limit(telegram) -> None:  # type: ignore[no-untyped-def]
    with telegram(knowledge=LongKnowledge()) as app:
        app.post(load_update("message_text"))
        wait_for(lambda: app.rows() and all(row.status == "sent" for row in app.rows()))
        texts = [call.form["text"] for call in app.sent()]
        assert len(texts) == len(app.rows()) >= 2
        for number, text in enumerate(texts, start=1):
            assert text.endswith(f"({number}/{len(texts)})")
            assert len(text.replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")) <= 4096
            assert "Fees &amp; timings for payouts &lt;in detail&gt;" in text


def test_a_429_is_retried_and_the_reply_delivered_once(telegram) -> None:  # type: ignore[no-untyped-def]
    with telegram(send=[error(429, "Too Many Requests: retry after 1", retry_after=1), None]) as app:
        app.post(load_update("message_text"))
        wait_for(lambda: app.rows() and app.rows()[0].status == "sent")
        assert [call.form["text"] for call in app.sent()] == [ANSWER, ANSWER]
        [row] = app.rows()
        assert row.attempts == 2
        assert row.receipt_id is not None


def test_five_500s_leave_the_reply_dead(telegram) -> None:  # type: ignore[no-untyped-def]
    with telegram(send=[error(500, "Internal Server Error")]) as app:
        app.post(load_update("message_text"))
        wait_for(lambda: app.rows() and app.rows()[0].status == "dead")
        [row] = app.rows()
        assert row.attempts == 5
        assert len(app.sent()) == 5


def test_a_user_who_blocked_the_bot_is_marked_unreachable_and_not_retried(telegram) -> None:  # type: ignore[no-untyped-def]
    with telegram(send=[error(403, "Forbidden: bot was blocked by the user")]) as app:
        app.post(load_update("message_text"))
        wait_for(lambda: app.rows() and app.rows()[0].status == "dead")
        assert len(app.sent()) == 1
        with app.services.database.sessions() as session:
            identity = session.scalars(select(ChannelIdentity).where(ChannelIdentity.user_id == CHAT)).one()
            assert identity.unreachable_at is not None


def test_a_button_press_is_acknowledged_first_and_picks_the_option(telegram) -> None:  # type: ignore[no-untyped-def]
    with telegram() as app:
        app.post(load_update("message_text", text="hi"))
        wait_for(lambda: app.sent())
        buttons = [row[0]["callback_data"] for row in keyboard(app.sent()[0])]
        assert "audience:organiser" in buttons
        assert app.post(load_update("callback_query", data="audience:organiser")).status_code == 200
        wait_for(lambda: len(app.sent()) == 2)
        [ack] = app.fake.method("answerCallbackQuery")
        assert ack.form["callback_query_id"] == "2368523958725730437"
        assert app.fake.requests.index(ack) < app.fake.requests.index(app.sent()[1])
        assert app.inbound()[-1].text == "audience:organiser"
        assert keyboard(app.sent()[1])[0][0]["callback_data"].startswith("topic:")


def test_a_failed_acknowledgement_does_not_lose_the_press(telegram) -> None:  # type: ignore[no-untyped-def]
    too_old = error(400, "Bad Request: query is too old and response timeout expired or query ID is invalid")
    with telegram(answer_callback=[too_old]) as app:
        assert app.post(load_update("callback_query", data="action:menu")).status_code == 200
        wait_for(lambda: app.sent())
        assert len(app.fake.method("answerCallbackQuery")) == 1
        assert app.inbound()[0].text == "action:menu"


def test_in_polling_mode_without_a_secret_the_webhook_refuses_updates(database_url: str) -> None:
    fake = FakeTelegramAPI()
    settings = settings_for(database_url, fake, telegram_webhook_secret=None, telegram_polling=True)
    services = build(settings, knowledge=FakeKnowledge())
    try:
        with live_app(services, background=False) as base:
            for headers in ({}, {"X-Telegram-Bot-Api-Secret-Token": "anything"}):
                response = httpx.post(base + WEBHOOK_PATH, json=load_update("message_text"), headers=headers)
                assert response.status_code == 403
    finally:
        fake.close()
        services.database.dispose()


# Statuses and registration -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "live", "why"),
    [
        (
            {"telegram_bot_token": None, "telegram_webhook_secret": None},
            False,
            "TELEGRAM_BOT_TOKEN, TELEGRAM_WEBHOOK_SECRET not set",
        ),
        ({"telegram_webhook_secret": None}, False, "TELEGRAM_WEBHOOK_SECRET not set (or run with --telegram-polling"),
        ({"telegram_bot_token": None, "telegram_polling": True}, False, "TELEGRAM_BOT_TOKEN not set"),
        ({}, True, "webhook POST /webhooks/telegram"),
        ({"telegram_webhook_secret": None, "telegram_polling": True}, True, "polling getUpdates"),
    ],
    ids=["nothing", "token-only", "polling-without-token", "webhook", "polling"],
)
def test_the_channel_is_live_with_its_credentials_and_says_why_not(database_url, overrides, live, why) -> None:  # type: ignore[no-untyped-def]
    fake = FakeTelegramAPI()
    try:
        settings = settings_for(database_url, fake, **overrides)
        made = plugin(settings)
        [status] = made.statuses
        assert (status.name, status.live) == ("telegram", live)
        assert status.why.startswith(why)
        assert len(made.channels) == (1 if live else 0)
        assert len(made.pollers) == (1 if live and settings.telegram_polling else 0)
        assert [s for s in channel_report(settings) if s.name == "telegram"] == [status]
        assert fake.requests == []  # no network at start-up
    finally:
        fake.close()


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"telegram_webhook_secret": "has spaces and ünicode"}, "TELEGRAM_WEBHOOK_SECRET"),
        ({"telegram_api_base_url": "http://127.0.0.1:8081"}, "TELEGRAM_API_BASE_URL"),
    ],
)
def test_a_malformed_secret_or_base_url_stops_start_up_naming_it(database_url, overrides, variable) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigurationError, match=variable):
        build(settings_for(database_url, **overrides), knowledge=FakeKnowledge())


def test_webhooks_register_sets_the_webhook_with_the_secret(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from bots.cli import app as cli

    fake = FakeTelegramAPI()
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://bot.example.org")
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("TELEGRAM_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("TELEGRAM_API_BASE_URL", fake.base_url)
    try:
        result = CliRunner().invoke(cli, ["webhooks", "register"])
        assert result.exit_code == 0, result.output
        [call] = fake.method("setWebhook")
        assert call.form["url"] == "https://bot.example.org/webhooks/telegram"
        assert call.form["secret_token"] == SECRET
        assert call.form["allowed_updates"] == '["message", "edited_message", "callback_query"]'
        assert "webhook set to https://bot.example.org/webhooks/telegram" in result.output
        assert SECRET not in result.output
    finally:
        fake.close()


@pytest.mark.parametrize(
    ("public", "says"),
    [("http://127.0.0.1:8000", "only https://"), ("https://bot.example.org:8000", "only on ports")],
)
async def test_webhooks_register_refuses_urls_telegram_will_not_call(database_url, public, says) -> None:  # type: ignore[no-untyped-def]
    fake = FakeTelegramAPI()
    try:
        settings = settings_for(database_url, fake, public_base_url=public)
        registrar = plugin(settings).register_webhooks
        assert registrar is not None
        [line] = await registrar(settings)
        assert "not registered" in line and says in line
        assert fake.requests == []
    finally:
        fake.close()


async def test_a_refused_setwebhook_is_reported_not_raised(database_url: str) -> None:
    fake = FakeTelegramAPI(set_webhook=[error(400, "Bad Request: bad webhook: Failed to resolve host")])
    try:
        settings = settings_for(database_url, fake)
        registrar = plugin(settings).register_webhooks
        assert registrar is not None
        [line] = await registrar(settings)
        assert line.startswith("telegram: setWebhook FAILED") and "failed to resolve host" in line
        assert SECRET not in line
    finally:
        fake.close()
