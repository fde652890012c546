"""The desk end to end: the live app with Slack (user channel and agents' desk), Telegram and Twilio on,
real SDKs against fake provider APIs on 127.0.0.1, signed Slack requests, and a clock the test moves."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode

import httpx
import pytest
from sqlalchemy import select

import bots.plugins
from bots.channels.telegram import WEBHOOK_PATH
from bots.settings import load_settings
from bots.wiring import Services, build
from core.outbox import RetryPolicy
from core.storage.models import Ticket
from tests.fakes.knowledge import FakeKnowledge
from tests.fakes.live import live_app, wait_for
from tests.fakes.provider_api import FakeProviderAPI, Recorded, Reply
from tests.fakes.slack_api import AUTH_TEST, BOT_TOKEN, SIGNING_SECRET, signed
from tests.fakes.telegram_api import FakeTelegramAPI, load_update
from tests.fakes.twilio_api import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    MESSAGES_PATH,
    PUBLIC_BASE_URL,
    SMS_NUMBER,
    WHATSAPP_NUMBER,
    MessagesCreated,
    form_body,
)
from tests.fakes.twilio_api import fixture as twilio_fixture
from tests.fakes.twilio_api import signed as twilio_signed

DESK = "C0AGENTDSK"
ONDUTY = "S0ONDUTY01"
AGENT, COLLEAGUE, OUTSIDER = "U0AGENT001", "U0AGENT002", "U0OUTSIDE1"
NAMES = {AGENT: "Sipho Dlamini", COLLEAGUE: "Lerato Nkosi", OUTSIDER: "Mallory Smith"}
TELEGRAM_SECRET = "s3cr3t_token-for-tests"
# Monday 2 February 2026, 10:00 in Johannesburg: inside the default support hours.
MONDAY_10 = datetime(2026, 2, 2, 8, 0, tzinfo=UTC)


class Clock:
    """The desk's clock, moved by the test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class FakeSlackDesk(FakeProviderAPI):
    """Slack's Web API as the desk uses it: posts, updates, ephemerals, channel members and user names."""

    def __init__(self, members: tuple[str, ...] = (AGENT, COLLEAGUE)) -> None:
        self.members = list(members)
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()
        super().__init__(
            {
                ("POST", "/api/auth.test"): [Reply(200, AUTH_TEST)],
                ("POST", "/api/chat.postMessage"): self._post,
                ("POST", "/api/chat.update"): lambda r: Reply(
                    200, {"ok": True, "channel": r.json["channel"], "ts": r.json["ts"]}
                ),
                ("POST", "/api/chat.postEphemeral"): lambda r: Reply(200, {"ok": True, "message_ts": "1.1"}),
                ("GET", "/api/conversations.members"): lambda r: Reply(
                    200, {"ok": True, "members": self.members, "response_metadata": {"next_cursor": ""}}
                ),
                ("GET", "/api/users.info"): self._user,
            }
        )

    def _post(self, request: Recorded) -> Reply:
        with self._lock:
            ts = f"1770000{next(self._numbers):03d}.000100"
        return Reply(200, {"ok": True, "channel": request.json["channel"], "ts": ts, "message": {}})

    def _user(self, request: Recorded) -> Reply:
        user = parse_qs(request.query).get("user", [""])[0]
        name = NAMES.get(user, "Someone Else")
        return Reply(
            200,
            {
                "ok": True,
                "user": {
                    "id": user,
                    "name": name.split()[0].lower(),
                    "profile": {"real_name": name, "display_name": ""},
                },
            },
        )

    def posts(self) -> list[dict[str, Any]]:
        """Every chat.postMessage body, in order, with its ts as the fake answered."""
        return [r.json for r in self.calls("POST", "/api/chat.postMessage")]

    def parents(self) -> list[dict[str, Any]]:
        return [p for p in self.posts() if p["channel"] == DESK and "thread_ts" not in p and p.get("blocks")]

    def thread(self, thread_ts: str) -> list[str]:
        return [p["text"] for p in self.posts() if p.get("thread_ts") == thread_ts]

    def updates(self) -> list[dict[str, Any]]:
        return [r.json for r in self.calls("POST", "/api/chat.update")]

    def ephemerals(self) -> list[dict[str, Any]]:
        return [r.json for r in self.calls("POST", "/api/chat.postEphemeral")]


@dataclass
class Desk:
    """The running app and its fakes, with the moves a test makes as a user and as agents."""

    services: Services
    slack: FakeSlackDesk
    telegram: FakeTelegramAPI
    twilio: FakeProviderAPI
    base: str
    clock: Clock
    _ts: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _updates: Iterator[int] = field(default_factory=lambda: itertools.count(815400001))

    # --- the user ---
    def user_says(self, text: str) -> None:
        update = load_update("message_text", text=text, update_id=next(self._updates))
        update["message"]["message_id"] = next(self._ts)
        headers = {"X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET}
        response = httpx.post(self.base + WEBHOOK_PATH, json=update, headers=headers, timeout=10)
        assert response.status_code == 200

    def whatsapp_says(self, text: str, *, sid: str) -> None:
        params = twilio_fixture("whatsapp_text", Body=text, MessageSid=sid, SmsMessageSid=sid, SmsSid=sid)
        response = httpx.post(
            self.base + "/webhooks/twilio",
            content=form_body(params),
            headers=twilio_signed(params, "/webhooks/twilio"),
            timeout=10,
        )
        assert response.status_code == 200

    def telegram_texts(self) -> list[str]:
        return self.telegram.sent_texts()

    def whatsapp_sent(self) -> list[dict[str, str]]:
        return [r.form for r in self.twilio.calls("POST", MESSAGES_PATH)]

    # --- the agents, through signed Slack requests ---
    def next_ts(self) -> str:
        return f"1770100{next(self._ts):03d}.000200"

    def event(self, event: dict[str, Any], *, retry: int | None = None) -> httpx.Response:
        payload = {
            "token": "Jhj5dZrVaK7ZwHHjRyZWjbDl",
            "team_id": "T061EG9R6",
            "api_app_id": "A0PNCHHK2",
            "event": event,
            "type": "event_callback",
            "event_id": f"Ev{event.get('event_ts', '0').replace('.', '')}",
            "event_time": int(time.time()),
        }
        body = json.dumps(payload)
        headers = signed(body)
        if retry:
            headers |= {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"}
        return httpx.post(f"{self.base}/slack/events", content=body, headers=headers, timeout=10)

    def reply(
        self, thread_ts: str, text: str, *, user: str = AGENT, ts: str | None = None, retry: int | None = None
    ) -> str:
        """An agent's message in a ticket's thread; its ts."""
        ts = ts or self.next_ts()
        event = {
            "type": "message",
            "channel": DESK,
            "channel_type": "channel",
            "user": user,
            "text": text,
            "ts": ts,
            "thread_ts": thread_ts,
            "event_ts": ts,
            "user_profile": {"real_name": NAMES.get(user, "Someone Else"), "display_name": ""},
        }
        assert self.event(event, retry=retry).status_code == 200
        return ts

    def press(
        self, action_id: str, value: str, *, user: str = AGENT, message_ts: str = "1770000001.000100"
    ) -> httpx.Response:
        payload = {
            "type": "block_actions",
            "user": {
                "id": user,
                "username": NAMES.get(user, "x").split()[0].lower(),
                "name": NAMES.get(user, "x").split()[0].lower(),
                "team_id": "T061EG9R6",
            },
            "api_app_id": "A0PNCHHK2",
            "token": "Jhj5dZrVaK7ZwHHjRyZWjbDl",
            "trigger_id": "1.2.3",
            "team": {"id": "T061EG9R6", "domain": "saypro"},
            "enterprise": None,
            "is_enterprise_install": False,
            "container": {"type": "message", "message_ts": message_ts, "channel_id": DESK, "is_ephemeral": False},
            "channel": {"id": DESK, "name": "support-desk"},
            "message": {"type": "message", "ts": message_ts, "text": "ticket", "bot_id": "B0BOT0001"},
            "response_url": "https://hooks.slack.com/actions/T061EG9R6/1/abc",
            "actions": [
                {
                    "action_id": action_id,
                    "block_id": "desk_ticket",
                    "value": value,
                    "type": "button",
                    "text": {"type": "plain_text", "text": "x"},
                    "action_ts": f"{time.time():.6f}",
                }
            ],
        }
        body = urlencode({"payload": json.dumps(payload)})
        return httpx.post(f"{self.base}/slack/events", content=body, headers=signed(body, form=True), timeout=10)

    def command(self, text: str, *, user: str = AGENT) -> httpx.Response:
        body = urlencode(
            {
                "token": "Jhj5dZrVaK7ZwHHjRyZWjbDl",
                "team_id": "T061EG9R6",
                "team_domain": "saypro",
                "channel_id": DESK,
                "channel_name": "support-desk",
                "user_id": user,
                "user_name": NAMES.get(user, "x").split()[0].lower(),
                "command": "/saypro",
                "text": text,
                "api_app_id": "A0PNCHHK2",
                "trigger_id": "1.2.3",
                "response_url": "https://hooks.slack.com/commands/T061EG9R6/1/abc",
            }
        )
        return httpx.post(f"{self.base}/slack/events", content=body, headers=signed(body, form=True), timeout=10)

    # --- what happened ---
    def tickets(self) -> list[Ticket]:
        with self.services.database.sessions() as session:
            return list(session.scalars(select(Ticket).order_by(Ticket.id)))

    def ticket(self) -> Ticket:
        [ticket] = self.tickets()
        return ticket

    def parent_ts(self) -> str:
        wait_for(lambda: self.ticket().desk_ts is not None)
        ts = self.ticket().desk_ts
        assert ts is not None
        return ts

    def handed_off(self) -> str:
        """The user asks for a person; the parent's ts once it is posted."""
        self.user_says("I want to talk to a human")
        wait_for(lambda: any("SP-" in text for text in self.telegram_texts()))
        return self.parent_ts()


@pytest.fixture()
def desk(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Desk]]:
    """desk(members=, clock=, **settings) -> the app with the desk live, on the production wiring."""
    monkeypatch.setattr(
        bots.plugins, "PLUGIN_MODULES", ("bots.channels.telegram", "bots.channels.twilio", "bots.channels.slack")
    )
    monkeypatch.setenv("PTB_TIMEDELTA", "true")
    with ExitStack() as stack:

        def start(
            *, members: tuple[str, ...] = (AGENT, COLLEAGUE), now: datetime | None = None, **overrides: Any
        ) -> Desk:
            slack, telegram, twilio = (
                FakeSlackDesk(members),
                FakeTelegramAPI(),
                FakeProviderAPI({("POST", MESSAGES_PATH): MessagesCreated()}),
            )
            for fake in (slack, telegram, twilio):
                stack.callback(fake.close)
            values: dict[str, Any] = {
                "database_url": database_url,
                "public_base_url": PUBLIC_BASE_URL,
                "slack_bot_token": BOT_TOKEN,
                "slack_signing_secret": SIGNING_SECRET,
                "slack_api_base_url": f"{slack.url}/api",
                "slack_agent_channel": DESK,
                "slack_escalation_usergroup": ONDUTY,
                "telegram_bot_token": telegram.token,
                "telegram_webhook_secret": TELEGRAM_SECRET,
                "telegram_api_base_url": telegram.base_url,
                "twilio_account_sid": ACCOUNT_SID,
                "twilio_auth_token": AUTH_TOKEN,
                "twilio_sms_number": SMS_NUMBER,
                "twilio_whatsapp_number": WHATSAPP_NUMBER,
                "twilio_api_base_url": twilio.url,
            }
            services = build(load_settings(**{**values, **overrides}), knowledge=FakeKnowledge())
            stack.callback(services.database.dispose)
            services.dispatcher.policy = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05)
            clock = Clock(now or MONDAY_10)
            services.desk.clock = clock
            base = stack.enter_context(live_app(services))
            return Desk(services, slack, telegram, twilio, base, clock)

        yield start
