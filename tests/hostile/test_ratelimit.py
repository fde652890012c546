"""Rate limits: a flooding user is told once to slow down and not answered for the rest of the window,
while everyone else is answered; per source address, forgers and greedy API callers get 429, and a
provider whose requests verify never does."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import timedelta

import httpx
import limits.storage.memory
import pytest
from fastapi import APIRouter, BackgroundTasks, Request
from sqlalchemy import select

import core.ratelimit
from bots.answering import identity_limit
from bots.intake import source_key, take_in
from bots.plugins import ChannelPlugin, ChannelStatus
from bots.settings import load_settings
from bots.web import create_app
from bots.wiring import Services, build
from core import texts
from core.errors import ConfigurationError, InboundRejected
from core.messages import Capabilities, InboundMessage
from core.ratelimit import (
    DEFAULT_MESSAGES,
    SLOW_DOWN,
    THROTTLED,
    AddressLimit,
    IdentityLimit,
    Throttle,
)
from core.storage.models import Conversation, Message, utcnow
from tests.fakes.channels import RecordingChannel
from tests.fakes.knowledge import FakeKnowledge
from tests.hostile.conftest import API_KEY

PAYOUT = "Payouts are sent after the campaign ends."


class SignedChannel(RecordingChannel):
    """A provider posting JSON {"id", "user", "text"} signed with a shared header."""

    def __init__(self) -> None:
        super().__init__("fake", capabilities=Capabilities())

    def verify(self, *, url: str, headers: Mapping[str, str], body: bytes) -> None:
        if headers.get("x-signature") != "good":
            raise InboundRejected("bad signature")

    def parse(self, *, headers: Mapping[str, str], body: bytes) -> list[InboundMessage]:
        data = json.loads(body)
        return [InboundMessage(channel="fake", user_id=data["user"], provider_message_id=data["id"], text=data["text"])]


@pytest.fixture()
def provider(database_url: str) -> Iterator[tuple[Services, SignedChannel]]:
    channel = SignedChannel()
    router = APIRouter()

    @router.post("/webhooks/fake")
    async def fake_webhook(request: Request, background: BackgroundTasks) -> dict[str, int]:
        return {"stored": len(await take_in(request, channel, background))}

    settings = load_settings(
        database_url=database_url, public_base_url="https://bot.example.org", saypro_api_key=API_KEY
    )
    services = build(settings, channels=(channel,), knowledge=FakeKnowledge())
    services.plugins.append(ChannelPlugin(statuses=[ChannelStatus("fake", True, "test")], router=router))
    yield services, channel
    services.database.dispose()


class Wire:
    """One app for a test (its per-source counts live in it); requests from any address."""

    def __init__(self, services: Services, *, refusals: int = 30, api_calls: int = 600) -> None:
        limits = {"source_refusals_per_minute": refusals, "platform_api_calls_per_minute": api_calls}
        services.settings = services.settings.model_copy(update=limits)
        self.app = create_app(services, background=False)
        self.numbers = iter(range(1, 10_000))

    async def say(
        self, user: str, text: str, *, source: str = "198.51.100.1", signature: str = "good"
    ) -> httpx.Response:
        body = json.dumps({"id": f"m{next(self.numbers)}", "user": user, "text": text}).encode()
        transport = httpx.ASGITransport(app=self.app, client=(source, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://10.0.0.5:8000") as client:
            return await client.post("/webhooks/fake", content=body, headers={"x-signature": signature})

    async def api(self, user: str, *, source: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=self.app, client=(source, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://10.0.0.5:8000") as client:
            return await client.post(
                "/api/v1/messages",
                json={"user": user, "text": "when is my payout"},
                headers={"Authorization": f"Bearer {API_KEY}"},
            )


def told(channel: SignedChannel, user: str) -> list[str]:
    return [message.text for message in channel.sent if message.user_id == user]


def inbound(services: Services, user_text: str | None = None) -> list[Message]:
    with services.database.sessions() as session:
        query = select(Message).where(Message.direction == "in").order_by(Message.id)
        return [m for m in session.scalars(query) if user_text is None or m.text == user_text]


async def test_a_flooding_user_is_told_once_and_everyone_else_is_answered(provider) -> None:  # type: ignore[no-untyped-def]
    services, channel = provider
    wire = Wire(services)
    flood = DEFAULT_MESSAGES + 5
    for number in range(flood):
        assert (await wire.say("flooder", f"payout {number}?")).status_code == 200
        if number % 5 == 0:
            assert (await wire.say("neighbour", "when is my payout")).status_code == 200
    assert told(channel, "flooder") == [PAYOUT] * DEFAULT_MESSAGES + [SLOW_DOWN]
    assert told(channel, "neighbour") == [PAYOUT] * 4
    stored = [m for m in inbound(services) if m.text.startswith("payout ")]
    assert len(stored) == flood  # every message kept
    assert [bool(m.details.get(THROTTLED)) for m in stored] == [False] * DEFAULT_MESSAGES + [True] * 5
    assert all(m.processed_at is not None for m in stored)  # and none left for the worker to answer


async def test_stop_still_works_for_a_throttled_user(provider) -> None:  # type: ignore[no-untyped-def]
    services, channel = provider
    wire = Wire(services)
    for number in range(DEFAULT_MESSAGES + 2):
        await wire.say("flooder", f"payout {number}?")
    await wire.say("flooder", "STOP")
    assert told(channel, "flooder")[-2:] == [SLOW_DOWN, texts.STOPPED]


def test_the_limit_lifts_when_the_window_has_passed(provider) -> None:  # type: ignore[no-untyped-def]
    services, _channel = provider
    now = [utcnow()]
    throttle = Throttle(
        services.channels, limit=IdentityLimit(messages=2, window=timedelta(seconds=60)), clock=lambda: now[0]
    )
    ids = [
        services.inbox.receive(
            InboundMessage(channel="fake", user_id="u", provider_message_id=f"w{n}", text="hi")
        ).message_id
        for n in range(4)
    ]
    assert [throttle.screen_stored(services.database, i) is None for i in ids[:2]] == [True, True]
    notice = throttle.screen_stored(services.database, ids[2])
    assert notice is not None and len(notice) == 1  # the notice's one outbox row
    now[0] += timedelta(seconds=61)
    assert throttle.screen_stored(services.database, ids[3]) is None  # a new minute: answered as usual


def test_the_count_is_of_the_identitys_own_messages_only(provider) -> None:  # type: ignore[no-untyped-def]
    """The count asked before every answer, with other users' messages around it (the plan that
    reads it is checked in tests/storage/test_query_plans.py)."""
    services, _channel = provider
    throttle = Throttle(services.channels)
    for number in range(30):
        services.inbox.receive(
            InboundMessage(channel="fake", user_id=f"other-{number % 3}", provider_message_id=f"o{number}", text="hi")
        )
    mine = [
        services.inbox.receive(
            InboundMessage(channel="fake", user_id="me", provider_message_id=f"m{n}", text="hi")
        ).message_id
        for n in range(4)
    ]
    since = utcnow() - timedelta(minutes=5)
    with services.database.sessions() as session:
        me = session.get(Message, mine[0])
        conversation = session.get(Conversation, me.conversation_id) if me is not None else None
        assert conversation is not None
        identity_id = conversation.identity_id
        assert throttle.recent(session, identity_id, since=since) == 4
        assert throttle.recent(session, identity_id, since=since, up_to=mine[1]) == 2
        assert throttle.recent(session, identity_id, since=utcnow() + timedelta(minutes=1)) == 0


def test_the_limits_come_from_the_settings(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)  # no .env from the working tree
    assert identity_limit(load_settings()) == IdentityLimit()
    monkeypatch.setenv("RATE_LIMIT_MESSAGES", "3")
    monkeypatch.setenv("RATE_LIMIT_WINDOW_SECONDS", "10")
    assert identity_limit(load_settings()) == IdentityLimit(messages=3, window=timedelta(seconds=10))
    monkeypatch.setenv("RATE_LIMIT_MESSAGES", "0")
    with pytest.raises(ConfigurationError, match="RATE_LIMIT_MESSAGES"):
        load_settings()
    with pytest.raises(ValueError):
        IdentityLimit(messages=0)


async def test_a_forger_is_cut_off_and_the_provider_is_not(provider) -> None:  # type: ignore[no-untyped-def]
    services, channel = provider
    wire = Wire(services, refusals=5)
    forger, other_forger, provider_address = "192.0.2.66", "192.0.2.77", "198.51.100.1"
    assert [(await wire.say("x", "hi", source=forger, signature="bad")).status_code for _ in range(5)] == [403] * 5
    cut_off = await wire.say("x", "hi", source=forger, signature="bad")
    assert cut_off.status_code == 429 and 1 <= int(cut_off.headers["retry-after"]) <= 60
    assert (await wire.say("x", "hi", source=forger)).status_code == 429  # even signed, for the rest of the minute
    assert (await wire.say("x", "hi", source=other_forger, signature="bad")).status_code == 403
    # The provider posts more than the forger's allowance, all of it signed: never slowed.
    statuses = [
        (await wire.say(f"user-{n}", "when is my payout", source=provider_address)).status_code for n in range(8)
    ]
    assert statuses == [200] * 8 and len(channel.sent) == 8


async def test_a_flooding_platform_api_user_is_told_once_too(provider) -> None:  # type: ignore[no-untyped-def]
    services, _channel = provider
    wire = Wire(services)
    replies = [
        (await wire.api("app-user", source="203.0.113.5")).json()["replies"] for _ in range(DEFAULT_MESSAGES + 3)
    ]
    assert all(reply[0]["text"] == PAYOUT for reply in replies[:DEFAULT_MESSAGES])
    assert [reply[0]["text"] if reply else None for reply in replies[DEFAULT_MESSAGES:]] == [SLOW_DOWN, None, None]
    assert (await wire.api("other-user", source="203.0.113.5")).json()["replies"][0]["text"] == PAYOUT


async def test_platform_api_callers_are_limited_per_address(provider) -> None:  # type: ignore[no-untyped-def]
    services, _channel = provider
    wire = Wire(services, api_calls=3)
    statuses = [(await wire.api(f"u{n}", source="203.0.113.5")).status_code for n in range(4)]
    assert statuses == [200, 200, 200, 429]
    assert (await wire.api("u9", source="203.0.113.6")).status_code == 200


class Clock:
    """time.time() for the `limits` library's memory storage, moved by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


def test_address_counts_forget_everything_when_the_window_turns(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock(1_000.0)
    monkeypatch.setattr(limits.storage.memory, "time", clock)
    monkeypatch.setattr(core.ratelimit, "time", clock)
    counter = AddressLimit(2, window_seconds=60)
    assert [counter.hit("a"), counter.hit("a"), counter.hit("b")] == [1, 2, 1]
    assert counter.spent("a") and not counter.spent("b")
    assert counter.hit("a") == 3 and counter.spent("a")  # refused hits count too: the log says it once
    clock.now += 30
    assert counter.retry_after("a") == 30
    clock.now += 31
    assert not counter.spent("a") and counter.hit("a") == 1
    with pytest.raises(ValueError):
        AddressLimit(0)


@pytest.mark.parametrize(
    ("client", "key"),
    [
        (("203.0.113.5", 1), "203.0.113.5"),
        (("2001:db8:1:2:aaaa::1", 1), "2001:db8:1:2::/64"),
        (("2001:db8:1:2:bbbb::9", 1), "2001:db8:1:2::/64"),
        (("::ffff:203.0.113.5", 1), "203.0.113.5"),
        (None, "unknown"),
        (("testclient", 1), "testclient"),
    ],
)
def test_a_source_is_its_address_or_its_ipv6_network(client, key: str) -> None:  # type: ignore[no-untyped-def]
    assert source_key({"type": "http", "client": client}) == key
