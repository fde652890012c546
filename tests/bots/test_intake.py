"""Webhook intake: forged and oversized requests are refused before anything is stored; retries answered once."""

from __future__ import annotations

import json
from collections.abc import Mapping

import httpx
import pytest
from fastapi import APIRouter, BackgroundTasks, Request
from sqlalchemy import func, select

from bots.plugins import ChannelPlugin, ChannelStatus
from bots.settings import load_settings
from bots.web import create_app
from bots.wiring import build
from core.errors import InboundRejected
from core.messages import Capabilities, InboundMessage
from core.storage.models import Message
from tests.fakes.channels import RecordingChannel
from tests.fakes.knowledge import FakeKnowledge


class SignedChannel(RecordingChannel):
    """A provider that signs with a shared header and posts JSON {"id", "user", "text"}."""

    def __init__(self) -> None:
        super().__init__("fake", capabilities=Capabilities())
        self.verified_urls: list[str] = []

    def verify(self, *, url: str, headers: Mapping[str, str], body: bytes) -> None:
        self.verified_urls.append(url)
        if headers.get("x-signature") != "good":
            raise InboundRejected("bad signature")

    def parse(self, *, headers: Mapping[str, str], body: bytes) -> list[InboundMessage]:
        try:
            data = json.loads(body)
            return [
                InboundMessage(channel="fake", user_id=data["user"], provider_message_id=data["id"], text=data["text"])
            ]
        except (ValueError, KeyError, TypeError) as exc:
            raise InboundRejected("not a message") from exc


@pytest.fixture()
def setup(database_url: str):  # type: ignore[no-untyped-def]
    from bots.intake import take_in

    channel = SignedChannel()
    router = APIRouter()

    @router.post("/webhooks/fake")
    async def fake_webhook(request: Request, background: BackgroundTasks) -> dict[str, int]:
        return {"stored": len(await take_in(request, channel, background))}

    settings = load_settings(database_url=database_url, public_base_url="https://bot.example.org")
    services = build(settings, channels=(channel,), knowledge=FakeKnowledge())
    services.plugins.append(ChannelPlugin(statuses=[ChannelStatus("fake", True, "test")], router=router))
    yield services, channel
    services.database.dispose()


def stored(services) -> int:  # type: ignore[no-untyped-def]
    with services.database.sessions() as session:
        return session.scalar(select(func.count()).select_from(Message).where(Message.direction == "in")) or 0


async def post(services, body: bytes, headers: dict[str, str]) -> httpx.Response:  # type: ignore[no-untyped-def]
    app = create_app(services, background=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://10.0.0.5:8000") as client:
        return await client.post("/webhooks/fake?x=1", content=body, headers=headers)


MESSAGE = json.dumps({"id": "p-1", "user": "u", "text": "when is my payout"}).encode()


async def test_a_signed_message_is_stored_and_answered_once_however_often_delivered(setup) -> None:  # type: ignore[no-untyped-def]
    services, channel = setup
    for _ in range(3):
        response = await post(services, MESSAGE, {"x-signature": "good"})
        assert response.status_code == 200
    assert stored(services) == 1
    assert [message.text for message in channel.sent] == ["Payouts are sent after the campaign ends."]


async def test_the_signature_is_checked_against_the_public_url(setup) -> None:  # type: ignore[no-untyped-def]
    services, channel = setup
    await post(services, MESSAGE, {"x-signature": "good"})
    assert channel.verified_urls == ["https://bot.example.org/webhooks/fake?x=1"]


@pytest.mark.parametrize("headers", [{}, {"x-signature": "forged"}])
async def test_a_forged_request_is_refused_before_anything_is_stored(setup, headers: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    services, channel = setup
    response = await post(services, MESSAGE, headers)
    assert response.status_code == 403
    assert stored(services) == 0 and channel.sent == []


async def test_an_oversized_request_is_413(setup) -> None:  # type: ignore[no-untyped-def]
    services, _channel = setup
    response = await post(services, b"x" * 1_000_001, {"x-signature": "good"})
    assert response.status_code == 413 and stored(services) == 0


async def test_an_unreadable_signed_request_is_400(setup) -> None:  # type: ignore[no-untyped-def]
    services, _channel = setup
    response = await post(services, b'{"id": "p-2"', {"x-signature": "good"})
    assert response.status_code == 400 and stored(services) == 0
