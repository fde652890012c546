"""Forged, replayed, truncated and oversized requests, on every provider route and the platform API:
refused, and not one SQL statement run while refusing them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from slack_sdk.signature import SignatureVerifier
from sqlalchemy import func, select

from core.storage.models import Base
from tests.fakes.slack_api import SIGNING_SECRET
from tests.fakes.slack_api import signed as slack_signed
from tests.fakes.twilio_api import fixture as twilio_fixture
from tests.fakes.twilio_api import form_body
from tests.fakes.twilio_api import signed as twilio_signed
from tests.hostile.conftest import API_KEY, TELEGRAM_SECRET, X_CONSUMER_SECRET, Door

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
TELEGRAM_BODY = (FIXTURES / "telegram" / "message_text.json").read_bytes()
X_BODY = (FIXTURES / "x" / "aaa_direct_message.json").read_bytes()
SLACK_BODY = (FIXTURES / "slack" / "message_im.json").read_text(encoding="utf-8")
SMS = twilio_fixture("sms_inbound")
STATUS = twilio_fixture("status_delivered")
CAMPAIGN = json.dumps(
    {
        "title": "Clean Water",
        "status": "active",
        "currency": "ZAR",
        "amount_raised": "10.00",
        "organiser": {"name": "Thandi", "phone": "+27825550142"},
        "updated_at": "2026-01-01T00:00:00+02:00",
    }
).encode()


def x_signature(body: bytes, secret: str = X_CONSUMER_SECRET) -> str:
    return "sha256=" + base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def assert_untouched(door: Door) -> None:
    assert door.statements.seen == [], f"the database was touched: {door.statements.seen[:3]}"
    with door.services.database.sessions() as session:
        for table in Base.metadata.sorted_tables:
            assert session.scalar(select(func.count()).select_from(table)) == 0, table.name


FORGED = [
    pytest.param("/webhooks/telegram", TELEGRAM_BODY, {}, 403, id="telegram-no-secret"),
    pytest.param(
        "/webhooks/telegram",
        TELEGRAM_BODY,
        {"X-Telegram-Bot-Api-Secret-Token": "guess"},
        403,
        id="telegram-wrong-secret",
    ),
    pytest.param(
        "/webhooks/twilio",
        form_body(SMS).encode(),
        {"Content-Type": "application/x-www-form-urlencoded"},
        403,
        id="twilio-unsigned",
    ),
    pytest.param(
        "/webhooks/twilio",
        form_body(SMS).encode(),
        twilio_signed(SMS, "/webhooks/twilio", token="not-it"),
        403,
        id="twilio-forged",
    ),
    pytest.param(
        "/webhooks/twilio/status",
        form_body(STATUS).encode(),
        twilio_signed(STATUS, "/webhooks/twilio/status", token="x"),
        403,
        id="twilio-status-forged",
    ),
    pytest.param(
        "/webhooks/twilio/status",
        form_body(STATUS).encode(),
        {"Content-Type": "application/x-www-form-urlencoded"},
        403,
        id="twilio-status-unsigned",
    ),
    pytest.param(
        "/webhooks/x", X_BODY, {"x-twitter-webhooks-signature": x_signature(X_BODY, "guess")}, 403, id="x-forged"
    ),
    pytest.param("/webhooks/x", X_BODY, {}, 403, id="x-unsigned"),
    pytest.param(
        "/webhooks/x", X_BODY, {"x-twitter-webhooks-signature": "sha256=not base64!"}, 403, id="x-garbled-signature"
    ),
    pytest.param(
        "/slack/events", SLACK_BODY.encode(), slack_signed(SLACK_BODY, secret="guess"), 401, id="slack-forged"
    ),
    pytest.param("/slack/events", SLACK_BODY.encode(), {"Content-Type": "application/json"}, 401, id="slack-unsigned"),
    pytest.param("/api/v1/messages", b'{"user": "u", "text": "hi"}', {}, 401, id="api-no-key"),
    pytest.param(
        "/api/v1/messages", b'{"user": "u", "text": "hi"}', {"Authorization": "Bearer guess"}, 403, id="api-wrong-key"
    ),
]


@pytest.mark.parametrize(("path", "body", "headers", "status"), FORGED)
async def test_forged_requests_are_refused_without_touching_the_database(
    door: Door, path, body, headers, status
) -> None:  # type: ignore[no-untyped-def]
    async with door.client() as client:
        response = await client.post(path, content=body, headers=headers)
    assert response.status_code == status
    assert_untouched(door)


async def test_a_forged_platform_record_is_refused(door: Door) -> None:
    async with door.client() as client:
        response = await client.put(
            "/api/v1/campaigns/SP-CAMP-1",
            content=CAMPAIGN,
            headers={"Authorization": "Bearer guess", "Content-Type": "application/json"},
        )
    assert response.status_code == 403
    assert_untouched(door)


@pytest.mark.parametrize("age", [301, 6 * 60, 24 * 3600, -6 * 60])
async def test_a_replayed_slack_request_is_refused(door: Door, age: int) -> None:
    headers = slack_signed(SLACK_BODY, age=age)
    # The signature itself is Slack's, as it was when the request was first sent:
    at = int(headers["X-Slack-Request-Timestamp"])
    verifier = SignatureVerifier(SIGNING_SECRET, clock=type("Then", (), {"now": staticmethod(lambda: float(at))})())
    assert verifier.is_valid(SLACK_BODY, headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"])
    async with door.client() as client:
        response = await client.post("/slack/events", content=SLACK_BODY.encode(), headers=headers)
    assert response.status_code == 401
    assert_untouched(door)


def half(body: bytes) -> bytes:
    return body[: len(body) // 2]


TRUNCATED = [
    pytest.param(
        "/webhooks/twilio", half(form_body(SMS).encode()), twilio_signed(SMS, "/webhooks/twilio"), 403, id="twilio"
    ),
    pytest.param("/webhooks/x", half(X_BODY), {"x-twitter-webhooks-signature": x_signature(X_BODY)}, 403, id="x"),
    pytest.param("/slack/events", half(SLACK_BODY.encode()), slack_signed(SLACK_BODY), 401, id="slack"),
    # Telegram signs nothing: with the right secret, a cut-off update is unreadable JSON.
    pytest.param(
        "/webhooks/telegram",
        half(TELEGRAM_BODY),
        {"X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET},
        400,
        id="telegram",
    ),
    pytest.param("/api/v1/messages", b'{"user": "u", "te', {"Authorization": f"Bearer {API_KEY}"}, 422, id="api"),
]


@pytest.mark.parametrize(("path", "body", "headers", "status"), TRUNCATED)
async def test_a_body_cut_short_is_refused(door: Door, path, body, headers, status) -> None:  # type: ignore[no-untyped-def]
    async with door.client() as client:
        response = await client.post(
            path, content=body, headers={**headers, "Content-Type": "application/json"} if "api" in path else headers
        )
    assert response.status_code == status
    assert_untouched(door)


async def asgi_post(
    door: Door, path: str, headers: dict[str, str], messages: list[dict[str, object]]
) -> list[dict[str, object]]:
    """One request straight through ASGI, the body delivered as `messages` say; what was sent back."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(key.lower().encode(), value.encode()) for key, value in headers.items()],
        "client": ("203.0.113.9", 40000),
        "server": ("10.0.0.5", 8000),
    }
    queue = list(messages)
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    await door.app(scope, receive, send)
    return sent


async def test_a_body_shorter_than_its_content_length_is_refused(door: Door) -> None:
    headers = {"X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET, "Content-Length": str(len(TELEGRAM_BODY))}
    sent = await asgi_post(
        door, "/webhooks/telegram", headers, [{"type": "http.request", "body": half(TELEGRAM_BODY), "more_body": False}]
    )
    assert sent[0]["status"] == 400
    assert_untouched(door)


async def test_a_client_that_hangs_up_mid_body_stores_nothing(door: Door) -> None:
    headers = {"X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET, "Content-Length": str(len(TELEGRAM_BODY))}
    sent = await asgi_post(
        door, "/webhooks/telegram", headers, [{"type": "http.request", "body": half(TELEGRAM_BODY), "more_body": True}]
    )
    assert [message["status"] for message in sent if "status" in message] in ([], [400])
    assert_untouched(door)


OVERSIZED_ROUTES = [
    ("/webhooks/telegram", {"X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET}),
    ("/webhooks/twilio", twilio_signed(SMS, "/webhooks/twilio")),
    ("/webhooks/twilio/status", twilio_signed(STATUS, "/webhooks/twilio/status")),
    ("/webhooks/x", {}),
    ("/slack/events", slack_signed(SLACK_BODY)),
    ("/api/v1/messages", {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}),
    ("/api/v1/campaigns/SP-CAMP-1", {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}),
]
TOO_BIG = b"x" * 1_000_001


async def chunked(body: bytes) -> AsyncIterator[bytes]:
    """A body with no Content-Length, as a client streaming it would send it."""
    for start in range(0, len(body), 64 * 1024):
        yield body[start : start + 64 * 1024]


@pytest.mark.parametrize(("path", "headers"), OVERSIZED_ROUTES)
@pytest.mark.parametrize("streamed", [False, True], ids=["declared", "chunked"])
async def test_a_body_over_one_megabyte_is_413(door: Door, path: str, headers: dict[str, str], streamed: bool) -> None:
    method = "PUT" if "campaigns" in path else "POST"
    async with door.client() as client:
        response = await client.request(
            method, path, content=chunked(TOO_BIG) if streamed else TOO_BIG, headers=headers
        )
    assert response.status_code == 413
    assert_untouched(door)


async def test_one_megabyte_exactly_still_gets_in(door: Door) -> None:
    """The limit is 1,000,000 bytes: a body of exactly that much is read (and refused only as unsigned)."""
    async with door.client() as client:
        response = await client.post(
            "/webhooks/x", content=b" " * 1_000_000, headers={"x-twitter-webhooks-signature": "sha256=AAAA"}
        )
    assert response.status_code == 403


async def test_the_x_crc_check_refuses_a_malformed_token(door: Door) -> None:
    async with door.client() as client:
        for token in ("", "{" * 10, "a" * 5000):
            assert (await client.get("/webhooks/x", params={"crc_token": token})).status_code == 400
    assert_untouched(door)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/v1/messages", b'{"user": "u", "text": "\\ud800"}'),
        ("POST", "/api/v1/messages", b'{"user": "\\udfff", "text": "hi"}'),
        ("PUT", "/api/v1/campaigns/SP-CAMP-1", CAMPAIGN.replace(b'"Clean Water"', b'"\\ud83d"')),
    ],
)
async def test_a_lone_surrogate_in_a_json_body_is_a_422_not_a_crash(
    door: Door, method: str, path: str, body: bytes
) -> None:
    """JSON may escape half a surrogate pair; Python reads it, and FastAPI's own 422 could not write it back."""
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    async with door.client() as client:
        response = await client.request(method, path, content=body, headers=headers)
    assert response.status_code == 422 and response.json()["detail"]
    assert_untouched(door)
