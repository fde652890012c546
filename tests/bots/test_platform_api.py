"""The platform's record API: its key, clear 422s, idempotent and out-of-order PUTs, and what follows a change."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from bots.settings import load_settings
from bots.web import create_app
from bots.wiring import Services, build
from core.messages import Capabilities, InboundMessage
from core.records import find
from core.storage.records import Campaign, Contribution, Disbursement, Registration, StatusNotification
from tests.fakes.channels import RecordingChannel
from tests.fakes.knowledge import FakeKnowledge

KEY = "test-platform-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
THANDI = {"name": "Thandi Mokoena", "email": "Thandi@Example.org", "phone": "+27 82 555 0142"}
CAMPAIGN = {
    "title": "Clean Water Gqeberha",
    "status": "ended",
    "currency": "ZAR",
    "amount_raised": "5000.00",
    "organiser": THANDI,
    "updated_at": "2026-12-01T10:00:00+02:00",
}
PAYOUT = {
    "campaign": "SP-CAMP-1042",
    "amount": "5000.00",
    "fees": "250.00",
    "currency": "ZAR",
    "method": "bank_transfer",
    "destination_last4": "4821",
    "status": "processing",
    "expected_at": "2026-12-05T12:00:00+02:00",
    "paid_at": None,
    "failure_reason": None,
    "updated_at": "2026-12-02T09:00:00+02:00",
}
CONTRIBUTION = {
    "campaign": "SP-CAMP-1042",
    "amount": "500",
    "currency": "zar",
    "status": "succeeded",
    "backer": {"name": "Lerato Khumalo", "email": "lerato@example.org"},
    "updated_at": "2026-12-02T09:00:00Z",
}
REGISTRATION = {
    "contest": "SayPro Youth Innovation Challenge",
    "status": "confirmed",
    "fee_status": "paid",
    "submission_status": "not_submitted",
    "deadline": "2026-12-13T23:59:00+02:00",
    "participant": {"name": "Ayanda Nkosi", "phone": "0830000001"},
    "updated_at": "2026-12-02T09:00:00Z",
    "favourite_colour": "green",
}


@pytest.fixture()
def sms() -> RecordingChannel:
    return RecordingChannel("sms", capabilities=Capabilities(max_text_length=1600))


@pytest.fixture()
def services(database_url: str, sms: RecordingChannel) -> Iterator[Services]:
    built = build(
        load_settings(database_url=database_url, saypro_api_key=KEY), channels=(sms,), knowledge=FakeKnowledge()
    )
    yield built
    built.database.dispose()


@pytest.fixture()
async def client(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(services, background=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
        yield client


async def put(client: httpx.AsyncClient, path: str, body: Any, **changes: Any) -> httpx.Response:
    payload = {**body, **changes} if isinstance(body, dict) else body
    return await client.put(f"/api/v1/{path}", json=payload, headers=AUTH)


def count(services: Services, model: type) -> int:
    with services.database.sessions() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


@pytest.mark.parametrize(
    ("headers", "status"), [({}, 401), ({"Authorization": "Bearer wrong"}, 403), ({"Authorization": "Basic abc"}, 401)]
)
async def test_a_missing_or_wrong_key_is_refused_and_nothing_is_stored(
    client: httpx.AsyncClient, services: Services, headers: dict[str, str], status: int
) -> None:
    response = await client.put("/api/v1/campaigns/SP-CAMP-1042", json=CAMPAIGN, headers=headers)
    assert response.status_code == status and count(services, Campaign) == 0


async def test_a_bad_key_is_refused_before_the_body_is_even_read(client: httpx.AsyncClient) -> None:
    response = await client.put(
        "/api/v1/campaigns/SP-CAMP-1042", json={"nonsense": 1}, headers={"Authorization": "Bearer x"}
    )
    assert response.status_code == 403


async def test_without_a_configured_key_the_record_api_is_off(database_url: str) -> None:
    services = build(load_settings(database_url=database_url), knowledge=FakeKnowledge())
    app = create_app(services, background=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        response = await client.put("/api/v1/campaigns/SP-CAMP-1042", json=CAMPAIGN, headers=AUTH)
    services.database.dispose()
    assert response.status_code == 503


async def test_each_kind_of_record_is_stored(client: httpx.AsyncClient, services: Services) -> None:
    for path, body in (
        ("campaigns/SP-CAMP-1042", CAMPAIGN),
        ("disbursements/sp-pay-1042", PAYOUT),
        ("contributions/SP-DON-1001", CONTRIBUTION),
        ("registrations/SP-ENTRY-5005", REGISTRATION),
    ):
        response = await put(client, path, body)
        assert response.status_code == 200, response.text
        assert response.json()["result"] == "created"
    with services.database.sessions() as session:
        campaign, payout = find(session, "SP-CAMP-1042"), find(session, "SP-PAY-1042")
        contribution, entry = find(session, "SP-DON-1001"), find(session, "SP-ENTRY-5005")
        assert isinstance(campaign, Campaign) and (campaign.owner_email, campaign.owner_phone) == (
            "thandi@example.org",
            "+27825550142",
        )
        assert (
            isinstance(payout, Disbursement)
            and str(payout.net_amount) == "4750.00"
            and payout.destination_last4 == "4821"
        )
        assert (
            isinstance(contribution, Contribution)
            and contribution.currency == "ZAR"
            and contribution.owner_phone is None
        )
        assert isinstance(entry, Registration) and entry.owner_phone == "+27830000001"


async def test_the_same_put_twice_changes_nothing_the_second_time(
    client: httpx.AsyncClient, services: Services
) -> None:
    await put(client, "campaigns/SP-CAMP-1042", CAMPAIGN)
    first = await put(client, "disbursements/SP-PAY-1042", PAYOUT)
    second = await put(client, "disbursements/SP-PAY-1042", PAYOUT)
    assert (first.json()["result"], second.json()["result"]) == ("created", "unchanged")
    assert count(services, Disbursement) == 1


async def test_an_older_update_arriving_late_is_ignored(client: httpx.AsyncClient, services: Services) -> None:
    await put(client, "campaigns/SP-CAMP-1042", CAMPAIGN)
    await put(
        client,
        "disbursements/SP-PAY-1042",
        PAYOUT,
        status="sent",
        paid_at="2026-12-03T08:00:00+02:00",
        updated_at="2026-12-03T08:00:00+02:00",
    )
    late = await put(
        client, "disbursements/SP-PAY-1042", PAYOUT, status="processing", updated_at="2026-12-02T10:00:00+02:00"
    )
    assert late.status_code == 200 and late.json() == {
        "reference": "SP-PAY-1042",
        "kind": "disbursement",
        "result": "ignored",
        "changes": [],
    }
    with services.database.sessions() as session:
        payout = find(session, "SP-PAY-1042")
        assert payout is not None and payout.status == "sent"


async def test_a_different_body_with_the_same_updated_at_is_a_409(client: httpx.AsyncClient) -> None:
    await put(client, "campaigns/SP-CAMP-1042", CAMPAIGN)
    response = await put(client, "campaigns/SP-CAMP-1042", CAMPAIGN, status="failed")
    assert response.status_code == 409 and "same updated_at" in response.json()["detail"]


async def test_a_newer_update_reports_the_status_change(client: httpx.AsyncClient) -> None:
    await put(client, "campaigns/SP-CAMP-1042", CAMPAIGN)
    await put(client, "disbursements/SP-PAY-1042", PAYOUT)
    response = await put(
        client, "disbursements/SP-PAY-1042", PAYOUT, status="sent", updated_at="2026-12-03T08:00:00+02:00"
    )
    assert response.json()["changes"] == ["disbursement.sent"] and response.json()["result"] == "updated"


@pytest.mark.parametrize(
    ("path", "body", "changes", "says"),
    [
        ("disbursements/SP-PAY-1", PAYOUT, {"amount": 4750.5}, "decimal string"),
        ("disbursements/SP-PAY-1", PAYOUT, {"fees": "12.345"}, "at most 2 decimal places"),
        ("disbursements/SP-PAY-1", PAYOUT, {"fees": "6000.00"}, "fees cannot be more than the amount"),
        ("disbursements/SP-PAY-1", PAYOUT, {"destination_last4": "62001234567"}, "destination_last4"),
        ("disbursements/SP-PAY-1", PAYOUT, {"status": "lost"}, "'pending_kyc'"),
        ("disbursements/SP-PAY-1", PAYOUT, {"method": "cash"}, "'bank_transfer'"),
        ("disbursements/SP-PAY-1", PAYOUT, {"updated_at": "2026-12-02T09:00:00"}, "timezone"),
        ("disbursements/SP-PAY-1", PAYOUT, {"expected_at": "next week"}, "expected_at"),
        ("campaigns/SP-CAMP-1", CAMPAIGN, {"currency": "rand"}, "currency"),
        ("campaigns/SP-CAMP-1", CAMPAIGN, {"organiser": {"name": "T", "phone": "12"}}, "not a phone number"),
        ("campaigns/SP-CAMP-1", CAMPAIGN, {"organiser": {"name": "T", "email": "nope"}}, "not an e-mail address"),
        ("campaigns/SP-CAMP-1", CAMPAIGN, {"organiser": {"name": "T"}}, "needs a verified email or phone"),
        ("contributions/SP-DON-1", CONTRIBUTION, {"status": "pending"}, "'charged_back'"),
        ("registrations/SP-ENTRY-1", REGISTRATION, {"submission_status": "lost"}, "'under_review'"),
        ("registrations/SP-ENTRY-1", REGISTRATION, {"updated_at": None}, "updated_at"),
        ("campaigns/SP CAMP", CAMPAIGN, {}, "reference"),
        ("campaigns/SP-CAMP-1", [1, 2], {}, "valid dictionary"),
    ],
)
async def test_invalid_bodies_get_a_422_naming_the_problem(
    client: httpx.AsyncClient, services: Services, path: str, body: Any, changes: dict[str, Any], says: str
) -> None:
    response = await put(client, path, body, **changes)
    assert response.status_code == 422 and says in response.text, response.text
    assert count(services, Disbursement) + count(services, Campaign) + count(services, Registration) == 0


async def test_malformed_json_is_a_422(client: httpx.AsyncClient) -> None:
    response = await client.put(
        "/api/v1/campaigns/SP-CAMP-1042", content=b'{"title": ', headers={**AUTH, "Content-Type": "application/json"}
    )
    assert response.status_code == 422


async def test_a_status_change_reaches_the_owner_once(
    client: httpx.AsyncClient, services: Services, sms: RecordingChannel
) -> None:
    await put(client, "campaigns/SP-CAMP-1042", CAMPAIGN)
    await put(client, "disbursements/SP-PAY-1042", PAYOUT)
    _, greeting = services.inbox.handle(
        InboundMessage(channel="sms", user_id="+27825550142", provider_message_id="SM1", text="hi")
    )
    # The SMS webhook sends its reply at once: an update waits behind an unsent earlier reply of
    # the same conversation (the outbox keeps each conversation in order).
    await services.dispatcher.dispatch(greeting)
    changed = {"status": "sent", "paid_at": "2026-12-03T08:00:00+02:00", "updated_at": "2026-12-03T08:00:00+02:00"}
    await put(client, "disbursements/SP-PAY-1042", PAYOUT, **changed)
    await put(client, "disbursements/SP-PAY-1042", PAYOUT, **changed)  # the platform retries
    updates = [m.text for m in sms.sent if m.text.startswith("Your payout")]
    assert updates == [
        "Your payout of R4,750.00 for Clean Water Gqeberha was sent by bank transfer on Thursday 3 December 2026. (Reference SP-PAY-1042.)"
    ]
    assert count(services, StatusNotification) == 1
    assert len(sms.sent) == 2 and sms.sent[-1].text.startswith("Your payout")  # the greeting's reply, then the update


async def test_an_update_behind_an_unsent_reply_goes_after_it(
    client: httpx.AsyncClient, services: Services, sms: RecordingChannel
) -> None:
    await put(client, "campaigns/SP-CAMP-1042", CAMPAIGN)
    await put(client, "disbursements/SP-PAY-1042", PAYOUT)
    services.inbox.handle(InboundMessage(channel="sms", user_id="+27825550142", provider_message_id="SM1", text="hi"))
    changed = {"status": "sent", "paid_at": "2026-12-03T08:00:00+02:00", "updated_at": "2026-12-03T08:00:00+02:00"}
    await put(client, "disbursements/SP-PAY-1042", PAYOUT, **changed)
    assert sms.sent == []  # the reply to "hi" is still queued: the update does not overtake it
    await services.dispatcher.dispatch_due()  # the background loop's rounds: the reply first,
    await services.dispatcher.dispatch_due()  # then the update that waited for it
    assert [m.text.startswith("Your payout") for m in sms.sent] == [False, True]


async def test_the_message_api_runs_the_whole_verified_flow(client: httpx.AsyncClient, sms: RecordingChannel) -> None:
    await put(client, "campaigns/SP-CAMP-1042", CAMPAIGN)
    await put(client, "disbursements/SP-PAY-1042", PAYOUT)
    ask = await client.post(
        "/api/v1/messages", json={"user": "thandi-app", "text": "where is SP-PAY-1042?"}, headers=AUTH
    )
    assert "a code is on its way" in ask.json()["replies"][0]["text"]
    await services_dispatch(client)
    code = re.search(r"code is (\d{6})", sms.sent[-1].text)
    assert code is not None and sms.sent[-1].user_id == "+27825550142"
    answer = await client.post("/api/v1/messages", json={"user": "thandi-app", "text": code.group(1)}, headers=AUTH)
    assert "It's being processed, expected by Saturday 5 December 2026." in answer.json()["replies"][0]["text"]


async def services_dispatch(client: httpx.AsyncClient) -> None:
    """What the background loop does every half second: send the due rows (here, the code SMS)."""
    services = client._transport.app.state.services  # type: ignore[attr-defined]
    await services.dispatcher.dispatch_due()
