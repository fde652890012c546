"""The app with every channel live (credentials only: no provider is ever called), and a count of the
SQL statements it runs, for the hostile-input tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event

from bots.settings import load_settings
from bots.web import create_app
from bots.wiring import Services, build
from tests.fakes.knowledge import FakeKnowledge
from tests.fakes.slack_api import SIGNING_SECRET
from tests.fakes.twilio_api import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    PUBLIC_BASE_URL,
    SMS_NUMBER,
    WHATSAPP_NUMBER,
)
from tests.storage.postgres import PostgresServer

API_KEY = "hostile-test-api-key-7f3a"
TELEGRAM_TOKEN = "123456:TEST-token_for-the-fake"
TELEGRAM_SECRET = "telegram-webhook-secret-9b1c"
X_CONSUMER_SECRET = "x-consumer-secret-51d2"
X_BOT = "1582358281239683072"
# Nothing listens here: a test that reached a provider would fail to connect, loudly.
NOWHERE = "http://127.0.0.1:9"


@dataclass
class Statements:
    """SQL statements run on the engine since the last `reset`."""

    seen: list[str] = field(default_factory=list)

    def __call__(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        self.seen.append(statement)

    def reset(self) -> None:
        self.seen.clear()


@dataclass
class Door:
    services: Services
    app: FastAPI
    statements: Statements

    def client(self, source: str = "203.0.113.7") -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app, client=(source, 40000))
        return httpx.AsyncClient(transport=transport, base_url="http://10.0.0.5:8000")


def all_channels(database_url: str, **overrides: Any) -> Services:
    settings = load_settings(
        database_url=database_url,
        public_base_url=PUBLIC_BASE_URL,
        saypro_api_key=API_KEY,
        telegram_bot_token=TELEGRAM_TOKEN,
        telegram_webhook_secret=TELEGRAM_SECRET,
        telegram_api_base_url=NOWHERE + "/bot",
        twilio_account_sid=ACCOUNT_SID,
        twilio_auth_token=AUTH_TOKEN,
        twilio_sms_number=SMS_NUMBER,
        twilio_whatsapp_number=WHATSAPP_NUMBER,
        twilio_api_base_url=NOWHERE,
        slack_bot_token="xoxb-hostile-test-token",
        slack_signing_secret=SIGNING_SECRET,
        slack_api_base_url=NOWHERE,
        x_consumer_key="ck",
        x_consumer_secret=X_CONSUMER_SECRET,
        x_access_token="at",
        x_access_token_secret="ats",
        x_bot_user_id=X_BOT,
        x_api_base_url=NOWHERE,
        **overrides,
    )
    return build(settings, knowledge=FakeKnowledge())


@pytest.fixture(scope="module")
def shared_door(tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer | None) -> Iterator[Door]:
    """One app for a module of tests that never write (each checks so): building and migrating a
    database for each of them would take most of their time. Refusals per source are not limited
    here, so that one test's forgeries do not turn the next one's answer into a 429
    (tests/hostile/test_ratelimit.py covers that limit)."""
    if postgres is None:
        url = f"sqlite:///{tmp_path_factory.mktemp('door') / 'door.db'}"
    else:
        url = postgres.emptied_shared_database()
    services = all_channels(url, source_refusals_per_minute=10**9)
    app = create_app(services, background=False)
    statements = Statements()
    event.listen(services.database.engine, "before_cursor_execute", statements)
    yield Door(services, app, statements)
    event.remove(services.database.engine, "before_cursor_execute", statements)
    services.database.dispose()


@pytest.fixture()
def door(shared_door: Door) -> Door:
    """The app as production builds it (dispatcher loop off), with the door's limits."""
    shared_door.statements.reset()
    return shared_door
