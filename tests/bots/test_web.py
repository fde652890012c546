"""The web app: health, metrics, and the platform's message API with its key and its bad inputs."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from anyio import to_thread
from sqlalchemy import func, select

from bots.settings import load_settings
from bots.web import WEB_THREADS, create_app
from bots.wiring import Services, build
from core.storage.models import Message
from tests.fakes.knowledge import FakeKnowledge

KEY = "test-platform-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture()
def services(database_url: str) -> Iterator[Services]:
    built = build(load_settings(database_url=database_url, saypro_api_key=KEY), knowledge=FakeKnowledge())
    yield built
    built.database.dispose()


@pytest.fixture()
async def client(services: Services) -> httpx.AsyncClient:
    app = create_app(services, background=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
        yield client


async def test_health_answers_ok_when_the_database_answers(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


async def test_health_is_503_when_the_database_is_gone(client: httpx.AsyncClient, services: Services, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from core.storage.database import Database

    services.database = Database.from_url(f"sqlite:///{tmp_path}/missing-dir/none.db")
    client._transport.app.state.services = services  # type: ignore[attr-defined]
    response = await client.get("/healthz")
    assert response.status_code == 503


async def test_metrics_are_prometheus_text(client: httpx.AsyncClient) -> None:
    await client.post("/api/v1/messages", json={"user": "m", "text": "payout"}, headers=AUTH)
    response = await client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    assert 'saypro_messages_received_total{channel="api"}' in response.text


async def test_a_message_gets_its_reply_in_the_response(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/messages", json={"user": "u1", "text": "when is my payout?"}, headers=AUTH)
    assert response.status_code == 200
    body = response.json()
    assert isinstance(body["conversation"], int)
    assert body["replies"] == [{"text": "Payouts are sent after the campaign ends.", "options": []}]


async def test_options_come_back_as_labels_and_a_label_picks_one(client: httpx.AsyncClient) -> None:
    menu = (await client.post("/api/v1/messages", json={"user": "u2", "text": "menu"}, headers=AUTH)).json()
    assert menu["replies"][0]["options"] == [
        "I run a campaign",
        "I backed a campaign",
        "I entered a contest",
        "Talk to a person",
    ]
    picked = (
        await client.post("/api/v1/messages", json={"user": "u2", "text": "I backed a campaign"}, headers=AUTH)
    ).json()
    assert "Getting a refund" in picked["replies"][0]["options"]


async def test_a_retried_request_with_the_same_id_is_answered_once(
    client: httpx.AsyncClient, services: Services
) -> None:
    body = {"user": "u3", "text": "payout", "id": "platform-msg-9"}
    first = (await client.post("/api/v1/messages", json=body, headers=AUTH)).json()
    second = (await client.post("/api/v1/messages", json=body, headers=AUTH)).json()
    assert len(first["replies"]) == 1 and second["replies"] == [] and second["duplicate"] is True
    assert first["conversation"] == second["conversation"]


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"Authorization": "Bearer wrong"}, 403), ({"Authorization": "Basic abc"}, 401)],
)
async def test_a_missing_or_wrong_key_is_refused_and_nothing_is_stored(
    client: httpx.AsyncClient, services: Services, headers: dict[str, str], status: int
) -> None:
    response = await client.post("/api/v1/messages", json={"user": "x", "text": "hi"}, headers=headers)
    assert response.status_code == status
    with services.database.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Message)) == 0


async def test_without_a_configured_key_the_api_is_off(database_url: str) -> None:
    services = build(load_settings(database_url=database_url), knowledge=FakeKnowledge())
    app = create_app(services, background=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        response = await client.post("/api/v1/messages", json={"user": "x", "text": "hi"}, headers=AUTH)
    services.database.dispose()
    assert response.status_code == 503 and "SAYPRO_API_KEY" in response.json()["detail"]


# Bad input: a clear answer or a 4xx, never a 500, never a lost conversation.


async def test_malformed_json_is_a_422(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/messages", content=b'{"user": "u", "text": ', headers={**AUTH, "Content-Type": "application/json"}
    )
    assert response.status_code == 422


@pytest.mark.parametrize("body", [{"text": "no user"}, {"user": "", "text": "x"}, {"user": "u", "text": 5}, [1, 2]])
async def test_invalid_bodies_are_4xx(client: httpx.AsyncClient, body: object) -> None:
    response = await client.post("/api/v1/messages", json=body, headers=AUTH)
    assert response.status_code == 422


async def test_an_over_long_body_is_refused_with_a_clear_reason(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/messages", json={"user": "u", "text": "x" * 20_001}, headers=AUTH)
    assert response.status_code == 422 and "20000" in response.text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "didn't receive any text"),
        ("   ", "didn't receive any text"),
        ("x" * 20_000, "That's a long message"),
        ("🙂🙂🙂", "can only read words"),
        ("\x00\x00", "didn't receive any text"),
        ("when is my pay\x00out", "Payouts are sent"),
        ("Привет, where is 我的 payout مرحبا", "Payouts are sent"),
    ],
)
async def test_awkward_messages_get_a_clear_answer(
    client: httpx.AsyncClient, services: Services, text: str, expected: str
) -> None:
    response = await client.post("/api/v1/messages", json={"user": "odd", "text": text}, headers=AUTH)
    assert response.status_code == 200
    assert expected in response.json()["replies"][0]["text"]
    with services.database.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Message).where(Message.direction == "in")) == 1


async def test_on_postgresql_the_app_runs_its_blocking_work_on_a_few_threads(services: Services) -> None:
    app = create_app(services, background=False)
    assert to_thread.current_default_thread_limiter().total_tokens == 40  # anyio's default, before
    async with app.router.lifespan_context(app):
        expected = 40 if services.database.is_sqlite else WEB_THREADS
        assert to_thread.current_default_thread_limiter().total_tokens == expected
