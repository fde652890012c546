"""X Account Activity: the CRC check on GET /webhooks/x, and signed DM events on POST answered through tweepy."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import func, select

from adapters.x_dm import XDirectMessages
from bots.channels.x_dm import poll_once
from bots.web import create_app
from bots.wiring import Services, build
from core.storage.models import Message
from tests.fakes.knowledge import FakeKnowledge
from tests.fakes.live import live_app, wait_for
from tests.fakes.x_api import CONSUMER_SECRET, SIPHO, THANDI, FakeXAPI, fixture, x_settings

PAYOUT = "Payouts are sent after the campaign ends."
MESSAGE = json.dumps(fixture("aaa_direct_message.json")).encode()


def sign(body: bytes, secret: str = CONSUMER_SECRET) -> str:
    return "sha256=" + base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


@pytest.fixture()
def fake() -> Iterator[FakeXAPI]:
    api = FakeXAPI()
    yield api
    api.close()


@pytest.fixture()
def services(database_url: str, fake: FakeXAPI, monkeypatch: pytest.MonkeyPatch) -> Iterator[Services]:
    monkeypatch.setattr("bots.plugins.PLUGIN_MODULES", ("bots.channels.x_dm",))
    built = build(x_settings(fake, database_url), knowledge=FakeKnowledge())
    yield built
    built.database.dispose()


def stored(services: Services) -> int:
    with services.database.sessions() as session:
        return session.scalar(select(func.count()).select_from(Message).where(Message.direction == "in")) or 0


async def call(services: Services, method: str, path: str, **kwargs: object) -> httpx.Response:
    """One request to the app in process; background answers run before it returns."""
    app = create_app(services, background=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://10.0.0.5:8000") as client:
        return await client.request(method, path, **kwargs)  # type: ignore[arg-type]


async def post(services: Services, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return await call(services, "POST", "/webhooks/x", content=body, headers=headers or {})


async def test_the_crc_answer_is_the_hmac_of_the_token_under_the_consumer_secret(services: Services) -> None:
    response = await call(services, "GET", "/webhooks/x", params={"crc_token": "abc"})
    assert response.status_code == 200
    # Worked out by hand: printf abc | openssl dgst -sha256 -hmac cs -binary | base64
    assert response.json() == {"response_token": "sha256=9A6upFKmcYpGAU4ty9hP5IiVcm7nRz9nI14mv7XjPBk="}
    assert response.json()["response_token"] == sign(b"abc")


@pytest.mark.parametrize(
    "params", [{}, {"crc_token": ""}, {"crc_token": MESSAGE.decode()}], ids=["missing", "empty", "a-json-body"]
)
async def test_a_crc_request_without_a_plain_token_is_refused(services: Services, params: dict[str, str]) -> None:
    # A JSON body as the "token" would make the answer a valid signature for that body.
    response = await call(services, "GET", "/webhooks/x", params=params)
    assert response.status_code == 400 and "response_token" not in response.text


def test_a_signed_dm_is_answered_through_the_real_api_end_to_end(fake: FakeXAPI, services: Services) -> None:
    with live_app(services) as base:
        response = httpx.post(
            f"{base}/webhooks/x",
            content=MESSAGE,
            headers={"content-type": "application/json", "x-twitter-webhooks-signature": sign(MESSAGE)},
        )
        assert response.status_code == 200
        wait_for(lambda: len(fake.delivered()) == 1)
    (sent,) = fake.sends()
    assert sent.path == f"/2/dm_conversations/with/{THANDI}/messages"
    assert sent.json == {"text": PAYOUT}
    assert sent.headers["authorization"].startswith("OAuth ")
    with services.database.sessions() as session:
        (message,) = session.scalars(select(Message).where(Message.direction == "in"))
        assert (message.provider_message_id, message.text) == ("1883147110010007553", "when is my payout?")


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-twitter-webhooks-signature": "sha256=" + base64.b64encode(b"\0" * 32).decode()},
        {"x-twitter-webhooks-signature": sign(MESSAGE, secret="another-apps-secret")},
    ],
    ids=["missing", "forged", "other-secret"],
)
async def test_an_unsigned_or_forged_post_is_refused_with_nothing_stored_or_sent(
    fake: FakeXAPI, services: Services, headers: dict[str, str]
) -> None:
    response = await post(services, MESSAGE, headers)
    assert response.status_code == 403
    assert stored(services) == 0 and fake.sends() == []


async def test_the_same_event_delivered_three_times_is_answered_once(fake: FakeXAPI, services: Services) -> None:
    for _ in range(3):
        response = await post(services, MESSAGE, {"x-twitter-webhooks-signature": sign(MESSAGE)})
        assert response.status_code == 200
    assert stored(services) == 1
    assert [call.json["text"] for call in fake.sends()] == [PAYOUT]


async def test_a_dm_taken_by_webhook_and_then_polled_is_answered_once(fake: FakeXAPI, services: Services) -> None:
    # Account Activity and GET /2/dm_events carry the same DM event id.
    await post(services, MESSAGE, {"x-twitter-webhooks-signature": sign(MESSAGE)})
    event = fixture("aaa_direct_message.json")["direct_message_events"][0]
    fake.seed(
        {
            "data": [
                {
                    "id": event["id"],
                    "event_type": "MessageCreate",
                    "text": "when is my payout?",
                    "sender_id": THANDI,
                    "dm_conversation_id": f"{THANDI}-{fake.bot_user_id}",
                }
            ]
        }
    )
    channel = services.channels.get("x")
    assert isinstance(channel, XDirectMessages)
    assert await poll_once(services, channel) == 0
    assert stored(services) == 1 and len(fake.sends()) == 1


@pytest.mark.parametrize("name", ["aaa_own_message.json", "aaa_typing.json"])
async def test_the_bots_own_dms_and_other_activity_store_nothing(fake: FakeXAPI, services: Services, name: str) -> None:
    body = json.dumps(fixture(name)).encode()
    response = await post(services, body, {"x-twitter-webhooks-signature": sign(body)})
    assert response.status_code == 200
    assert stored(services) == 0 and fake.sends() == []


async def test_activity_for_another_account_is_ignored(fake: FakeXAPI, services: Services) -> None:
    payload = fixture("aaa_direct_message.json") | {"for_user_id": "44196397"}
    body = json.dumps(payload).encode()
    response = await post(services, body, {"x-twitter-webhooks-signature": sign(body)})
    assert response.status_code == 200 and stored(services) == 0


@pytest.mark.parametrize("body", [b'{"for_user_id": "1', b"[1, 2]"])
async def test_a_signed_but_unreadable_body_is_400(services: Services, body: bytes) -> None:
    response = await post(services, body, {"x-twitter-webhooks-signature": sign(body)})
    assert response.status_code == 400 and stored(services) == 0


def test_a_photo_dm_loses_its_tco_link_and_keeps_the_media(services: Services) -> None:
    channel = services.channels.get("x")
    assert isinstance(channel, XDirectMessages)
    (message,) = channel.parse(headers={}, body=json.dumps(fixture("aaa_media_message.json")).encode())
    assert (message.user_id, message.text, message.display_name) == (SIPHO, "here is my receipt", "Sipho Dlamini")
    (attachment,) = message.attachments
    assert attachment.url.endswith("/Qm3vTz8a.jpg") and attachment.content_type == "image"
    assert message.sent_at.year >= 2026
