"""X DMs out: plain text through tweepy's create_direct_message, split when long, and X's failures mapped."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from adapters.x_dm import MAX_TEXT, XCredentials, XDirectMessages
from bots.channels.x_dm import poll_once
from bots.wiring import Services, build
from core.errors import PermanentChannelError, TransientChannelError
from core.faq import Candidate, Decision, FaqResult
from core.messages import OutboundMessage
from core.outbox import RetryPolicy
from core.storage.models import ChannelIdentity, OutboxItem
from tests.fakes.knowledge import FakeKnowledge
from tests.fakes.live import free_port
from tests.fakes.provider_api import Reply
from tests.fakes.x_api import BOT, THANDI, FakeXAPI, fixture, x_settings

PAYOUT = "Payouts are sent after the campaign ends."
PARAGRAPH = "Payouts go to the bank account on your campaign once it ends and the checks are done. " * 6
LONG_ANSWER = "\n\n".join(f"{n}. {PARAGRAPH.strip()}" for n in range(1, 31))  # about 15,600 characters


class LongKnowledge(FakeKnowledge):
    """Answers every payout question with a text longer than one DM."""

    def lookup(self, text: str) -> FaqResult:
        if "payout" not in text.lower():
            return super().lookup(text)
        return FaqResult(
            decision=Decision.ANSWER,
            confidence=1.0,
            topic="disbursement-timeline",
            title="Payouts",
            answer=LONG_ANSWER,
            candidates=(Candidate("disbursement-timeline", "Payouts", 1.0),),
        )


@pytest.fixture()
def fake() -> Iterator[FakeXAPI]:
    api = FakeXAPI()
    yield api
    api.close()


@pytest.fixture()
def services(database_url: str, fake: FakeXAPI, monkeypatch: pytest.MonkeyPatch) -> Iterator[Services]:
    monkeypatch.setattr("bots.plugins.PLUGIN_MODULES", ("bots.channels.x_dm",))
    built = build(x_settings(fake, database_url), knowledge=FakeKnowledge())
    built.dispatcher.policy = RetryPolicy(max_attempts=5, base_delay=0.01, max_delay=0.05)
    yield built
    built.database.dispose()


def channel_for(url: str) -> XDirectMessages:
    return XDirectMessages(credentials=XCredentials("ck", "cs", "at", "ats"), bot_user_id=BOT, api_base_url=url)


def outbox(services: Services) -> list[OutboxItem]:
    with services.database.sessions() as session:
        return list(session.scalars(select(OutboxItem).where(OutboxItem.channel == "x").order_by(OutboxItem.id)))


def identity(services: Services, user: str) -> ChannelIdentity:
    with services.database.sessions() as session:
        found = session.scalars(select(ChannelIdentity).where(ChannelIdentity.user_id == user)).one()
        session.expunge(found)
        return found


async def settle(services: Services, *, done: str = "pending", rounds: int = 200) -> None:
    """Run the dispatcher (as the background loop would) until no X row is `done` any more."""
    for _ in range(rounds):
        if all(item.status != done for item in outbox(services)):
            return
        await services.dispatcher.dispatch_due()
        await asyncio.sleep(0.02)
    raise AssertionError("the outbox did not settle")


async def test_markdown_goes_out_as_plain_text_and_the_receipt_is_the_dm_event_id(fake: FakeXAPI) -> None:
    text = "**Payouts** are listed [here](https://saypro.online/payouts)."
    message = OutboundMessage(channel="x", user_id=THANDI, text=text)
    receipt = await channel_for(fake.url).send(message)
    (call,) = fake.sends()
    assert call.path == f"/2/dm_conversations/with/{THANDI}/messages"
    assert call.json == {"text": "Payouts are listed here: https://saypro.online/payouts."}
    (event,) = fake.delivered()
    assert receipt.provider_message_id == event["id"] and receipt.detail == event["dm_conversation_id"]


async def test_quick_replies_become_a_numbered_list(fake: FakeXAPI, services: Services) -> None:
    fake.user_writes(THANDI, "menu")
    await poll_once(services, services.channels.get("x"))  # type: ignore[arg-type]
    (call,) = fake.sends()
    assert "\n1. " in call.json["text"] and call.json["text"].endswith("Reply with a number.")


async def test_a_long_answer_is_split_into_numbered_dms_under_the_limit(
    database_url: str, fake: FakeXAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("bots.plugins.PLUGIN_MODULES", ("bots.channels.x_dm",))
    services = build(x_settings(fake, database_url), knowledge=LongKnowledge())
    fake.user_writes(THANDI, "when is my payout")
    await poll_once(services, services.channels.get("x"))  # type: ignore[arg-type]
    texts = [call.json["text"] for call in fake.sends()]
    assert len(texts) == 2 and texts[0].endswith("(1/2)") and texts[1].endswith("(2/2)")
    assert all(len(text) <= MAX_TEXT < 10_000 for text in texts)
    assert texts[0].startswith("1. ") and "30. Payouts" in texts[1]
    services.database.dispose()


async def test_a_429_is_retried_after_xs_reset_and_delivered_once(fake: FakeXAPI, services: Services) -> None:
    reset = str(int(time.time()))
    fake.send_replies = [Reply(429, fixture("error_rate_limited.json"), headers={"x-rate-limit-reset": reset})]
    fake.user_writes(THANDI, "when is my payout")
    await poll_once(services, services.channels.get("x"))  # type: ignore[arg-type]
    await settle(services)
    assert len(fake.sends()) == 2
    assert [event["text"] for event in fake.delivered()] == [PAYOUT]
    (item,) = outbox(services)
    assert (item.status, item.attempts, item.receipt_id) == ("sent", 2, fake.delivered()[0]["id"])


async def test_a_server_error_five_times_is_dead_lettered(fake: FakeXAPI, services: Services) -> None:
    fake.send_replies = [Reply(500, fixture("error_internal.json")) for _ in range(5)]
    fake.user_writes(THANDI, "when is my payout")
    await poll_once(services, services.channels.get("x"))  # type: ignore[arg-type]
    await settle(services)
    (item,) = outbox(services)
    assert (item.status, item.attempts) == ("dead", 5)
    assert "TransientChannelError" in (item.last_error or "")
    assert len(fake.sends()) == 5 and fake.delivered() == []
    assert identity(services, THANDI).unreachable_at is None


async def test_a_user_who_takes_no_dms_from_the_bot_is_marked_unreachable(fake: FakeXAPI, services: Services) -> None:
    fake.send_replies = [Reply(403, fixture("error_dm_forbidden.json"))]
    fake.user_writes(THANDI, "when is my payout")
    await poll_once(services, services.channels.get("x"))  # type: ignore[arg-type]
    (item,) = outbox(services)
    assert (item.status, item.attempts) == ("dead", 1)
    assert identity(services, THANDI).unreachable_at is not None


async def test_an_app_without_dm_permission_is_not_blamed_on_the_user(fake: FakeXAPI, services: Services) -> None:
    fake.send_replies = [Reply(403, fixture("error_oauth1_permissions.json"))]
    fake.user_writes(THANDI, "when is my payout")
    await poll_once(services, services.channels.get("x"))  # type: ignore[arg-type]
    (item,) = outbox(services)
    assert item.status == "dead" and "oauth1" in (item.last_error or "")
    assert identity(services, THANDI).unreachable_at is None


@pytest.mark.parametrize("status", [400, 401, 404])
async def test_other_client_errors_are_permanent(fake: FakeXAPI, status: int) -> None:
    fake.send_replies = [Reply(status, {"title": "Invalid Request", "status": status, "detail": "nope"})]
    with pytest.raises(PermanentChannelError) as raised:
        await channel_for(fake.url).send(OutboundMessage(channel="x", user_id=THANDI, text="hello"))
    assert raised.value.unreachable is False


async def test_an_unreachable_api_is_transient() -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(TransientChannelError) as raised:
        await channel_for(closed).send(OutboundMessage(channel="x", user_id=THANDI, text="hello"))
    assert raised.value.retry_after is None
