"""X DMs by polling: the real tweepy Client reads GET /2/dm_events from a fake X and answers through it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from adapters.x_dm import XCredentials, XDirectMessages
from bots.channels.x_dm import CURSOR, backoff, plugin, poll_forever, poll_once, register_webhooks
from bots.wiring import Services, build, channel_report
from core.cursors import read_cursor
from core.errors import TransientChannelError
from core.inbox import Accepted
from core.messages import InboundMessage
from core.storage.models import ChannelIdentity, Conversation, Message
from tests.fakes.knowledge import FakeKnowledge
from tests.fakes.live import live_app, wait_for
from tests.fakes.provider_api import Reply
from tests.fakes.x_api import BOT, SIPHO, THANDI, FakeXAPI, fixture, x_settings

PAYOUT = "Payouts are sent after the campaign ends."
CREDENTIALS = XCredentials("ck", "cs", "at", "ats")
MakeServices = Callable[[], Services]


@pytest.fixture()
def fake() -> Iterator[FakeXAPI]:
    api = FakeXAPI()
    yield api
    api.close()


@pytest.fixture()
def make_services(database_url: str, fake: FakeXAPI, monkeypatch: pytest.MonkeyPatch) -> Iterator[MakeServices]:
    """Builds the production wiring with only the X plugin; call again for a 'restart' on the same database."""
    monkeypatch.setattr("bots.plugins.PLUGIN_MODULES", ("bots.channels.x_dm",))
    made: list[Services] = []

    def make() -> Services:
        services = build(x_settings(fake, database_url), knowledge=FakeKnowledge())
        made.append(services)
        return services

    yield make
    for services in made:
        services.database.dispose()


def x_channel(services: Services) -> XDirectMessages:
    channel = services.channels.get("x")
    assert isinstance(channel, XDirectMessages)
    return channel


def inbound(services: Services) -> list[tuple[str, str, str]]:
    """(provider id, text, sender) of every stored inbound X message, in storage order."""
    query = (
        select(Message.provider_message_id, Message.text, ChannelIdentity.user_id)
        .join(Conversation, Conversation.id == Message.conversation_id)
        .join(ChannelIdentity, ChannelIdentity.id == Conversation.identity_id)
        .where(Message.direction == "in", Message.channel == "x")
        .order_by(Message.id)
    )
    with services.database.sessions() as session:
        return [(str(provider_id), text, user) for provider_id, text, user in session.execute(query)]


def sent_to(fake: FakeXAPI, user: str) -> list[str]:
    return [call.json["text"] for call in fake.sends() if call.path == f"/2/dm_conversations/with/{user}/messages"]


def test_a_polled_dm_is_answered_through_the_real_api_end_to_end(fake: FakeXAPI, make_services: MakeServices) -> None:
    fake.seed(fixture("dm_events.json"))
    services = make_services()
    with live_app(services):  # the app's lifespan runs the plugin's poller, as `run` and `worker` do
        wait_for(lambda: PAYOUT in sent_to(fake, THANDI) and sent_to(fake, SIPHO))
    payout = [call for call in fake.sends() if call.path == f"/2/dm_conversations/with/{THANDI}/messages"]
    assert len(payout) == 1 and payout[0].json == {"text": PAYOUT}
    authorization = payout[0].headers["authorization"]
    assert authorization.startswith("OAuth ") and 'oauth_consumer_key="ck"' in authorization
    assert 'oauth_token="at"' in authorization and "oauth_signature=" in authorization
    query = fake.reads()[0].query
    for part in (
        "dm_event.fields=id%2Cevent_type%2Ctext%2Csender_id%2Ccreated_at%2Cdm_conversation_id%2Cattachments",
        "event_types=MessageCreate",
        "expansions=sender_id%2Cattachments.media_keys",
    ):
        assert part in query
    # The user DMs only, oldest first: not the bot's own fixture message, not the join event.
    assert inbound(services) == [
        ("1883145521470001153", "hi", SIPHO),
        ("1883145673320005636", "when is my payout?", THANDI),
    ]


async def test_the_bots_own_dms_are_never_taken_in(fake: FakeXAPI, make_services: MakeServices) -> None:
    fake.seed(fixture("dm_events.json"))
    services = make_services()
    assert await poll_once(services, x_channel(services)) == 2
    sends = len(fake.sends())
    # The replies just sent are now events from the bot in the fake's DM list: they must not come back.
    assert len(fake.delivered()) == 3
    assert await poll_once(services, x_channel(services)) == 0
    assert len(fake.sends()) == sends
    assert BOT not in {sender for _id, _text, sender in inbound(services)}


async def test_a_restart_neither_repeats_nor_skips(fake: FakeXAPI, make_services: MakeServices) -> None:
    fake.seed(fixture("dm_events.json"))
    first = make_services()
    await poll_once(first, x_channel(first))
    saved = read_cursor(first.database, CURSOR)
    assert saved == "1883145673320005636"  # the newest event read; the cursor moved once it was stored
    first.database.dispose()
    before = len(fake.sends())
    # While the bot is down, two users write; then a new process starts on the same database.
    later = fake.user_writes(THANDI, "when is my payout, please?")
    latest = fake.user_writes(SIPHO, "when do payouts arrive?")
    second = make_services()
    assert await poll_once(second, x_channel(second)) == 2
    texts = [text for _id, text, _sender in inbound(second)]
    assert texts[-2:] == ["when is my payout, please?", "when do payouts arrive?"]
    assert len(inbound(second)) == 4
    new_sends = [(call.path.split("/")[-2], call.json["text"]) for call in fake.sends()[before:]]
    # One answer each. Replies to different users go out concurrently (bots.answering), so in no set order.
    assert sorted(new_sends) == sorted([(THANDI, PAYOUT), (SIPHO, PAYOUT)])
    assert int(read_cursor(second.database, CURSOR) or 0) >= int(latest) > int(later)


async def test_pages_are_read_back_to_the_cursor_and_stored_oldest_first(fake: FakeXAPI) -> None:
    ids = [fake.user_writes(THANDI if n % 2 else SIPHO, f"message {n}") for n in range(1, 6)]
    channel = XDirectMessages(credentials=CREDENTIALS, bot_user_id=BOT, api_base_url=fake.url, page_size=2)
    batch = await asyncio.to_thread(channel.fetch_since, None)
    assert [message.text for message in batch.messages] == [f"message {n}" for n in range(1, 6)]
    assert batch.newest_id == ids[-1] and len(fake.reads()) == 3
    reads = len(fake.reads())
    batch = await asyncio.to_thread(channel.fetch_since, ids[2])
    assert [message.provider_message_id for message in batch.messages] == ids[3:]
    assert len(fake.reads()) - reads == 2  # stops at the page holding the cursor, not at the end of the inbox
    assert "pagination_token=page-2" in fake.reads()[-1].query


async def test_the_first_run_leaves_an_old_inbox_alone(fake: FakeXAPI, make_services: MakeServices) -> None:
    now = datetime.now(UTC)
    fake.user_writes(THANDI, "payout? (from last night)", when=now - timedelta(hours=9))
    recent = fake.user_writes(SIPHO, "when is my payout", when=now - timedelta(minutes=5))
    services = make_services()
    assert await poll_once(services, x_channel(services)) == 1
    assert [sender for _id, _text, sender in inbound(services)] == [SIPHO]
    assert read_cursor(services.database, CURSOR) == recent
    assert sent_to(fake, THANDI) == []


async def test_a_photo_arrives_as_an_attachment_with_the_senders_name(fake: FakeXAPI) -> None:
    fake.seed(fixture("dm_event_with_media.json"))
    channel = XDirectMessages(credentials=CREDENTIALS, bot_user_id=BOT, api_base_url=fake.url)
    (message,) = (await asyncio.to_thread(channel.fetch_since, None)).messages
    assert message.user_id == SIPHO and message.display_name == "Sipho Dlamini"
    assert message.provider_message_id == "1883146002250006529"
    (attachment,) = message.attachments
    assert attachment.url.startswith("https://ton.twitter.com/1.1/ton/data/dm/")
    assert attachment.content_type == "image"


async def test_a_rate_limited_poll_stores_nothing_and_waits_for_xs_reset(
    fake: FakeXAPI, make_services: MakeServices
) -> None:
    fake.user_writes(THANDI, "when is my payout")
    reset = int(time.time()) + 30
    fake.read_replies = [Reply(429, fixture("error_rate_limited.json"), headers={"x-rate-limit-reset": str(reset)})]
    services = make_services()
    with pytest.raises(TransientChannelError) as raised:
        await poll_once(services, x_channel(services))
    retry_after = raised.value.retry_after
    assert retry_after is not None and 29 <= retry_after <= 32
    assert 29 <= backoff(1, interval=15, retry_after=retry_after) <= 33
    assert inbound(services) == [] and read_cursor(services.database, CURSOR) is None
    assert await poll_once(services, x_channel(services)) == 1  # the next poll takes the message in
    assert sent_to(fake, THANDI) == [PAYOUT]


async def test_the_poller_backs_off_after_errors_and_carries_on(fake: FakeXAPI, make_services: MakeServices) -> None:
    fake.user_writes(THANDI, "when is my payout")
    fake.read_replies = [Reply(500, fixture("error_internal.json")), Reply(503, b"upstream down")]
    services = make_services()
    task = asyncio.create_task(poll_forever(services, x_channel(services), interval=0.01))
    try:
        for _ in range(200):
            if sent_to(fake, THANDI):
                break
            await asyncio.sleep(0.02)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert sent_to(fake, THANDI) == [PAYOUT]
    assert len(fake.reads()) >= 3


def test_backoff_doubles_with_jitter_and_never_polls_faster_than_the_interval() -> None:
    for failures, low, high in ((1, 15, 30), (3, 60, 120), (10, 150, 300)):
        delays = [backoff(failures, interval=15) for _ in range(50)]
        assert all(low <= delay <= high for delay in delays)
        assert len({round(delay, 3) for delay in delays}) > 10  # jittered, not a fixed schedule
    assert all(backoff(1, interval=60) >= 60 for _ in range(50))


async def test_the_cursor_does_not_move_past_a_message_that_was_not_stored(
    fake: FakeXAPI, make_services: MakeServices, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = fake.user_writes(THANDI, "when is my payout")
    fake.user_writes(SIPHO, "when is my payout?")
    services = make_services()
    receive = services.inbox.receive
    calls = []

    def fail_on_the_second(message: InboundMessage) -> Accepted:
        calls.append(message.provider_message_id)
        if len(calls) == 2:
            raise OperationalError("INSERT", {}, Exception("database is locked"))
        return receive(message)

    monkeypatch.setattr(services.inbox, "receive", fail_on_the_second)
    with pytest.raises(OperationalError):
        await poll_once(services, x_channel(services))
    assert read_cursor(services.database, CURSOR) is None and fake.sends() == []
    monkeypatch.setattr(services.inbox, "receive", receive)
    # The first was stored before the failure: not stored again, but answered now, and once.
    assert await poll_once(services, x_channel(services)) == 1
    assert await poll_once(services, x_channel(services)) == 0
    assert [user for _id, _text, user in inbound(services)] == [THANDI, SIPHO]
    assert inbound(services)[0][0] == first
    assert sent_to(fake, SIPHO) == [PAYOUT] and len(sent_to(fake, THANDI)) == 1


async def test_the_channel_is_off_until_every_variable_is_set(database_url: str) -> None:
    from bots.settings import load_settings

    off = plugin(load_settings(database_url=database_url, x_consumer_key="ck", x_bot_user_id=BOT))
    (status,) = off.statuses
    assert (status.name, status.live) == ("x", False)
    assert status.why == "X_CONSUMER_SECRET, X_ACCESS_TOKEN, X_ACCESS_TOKEN_SECRET not set"
    assert off.channels == [] and off.pollers == [] and off.router is None and off.register_webhooks is None


async def test_when_live_the_report_says_so_and_register_names_the_url(
    fake: FakeXAPI, make_services: MakeServices
) -> None:
    services = make_services()
    (status,) = [status for status in channel_report(services.settings, services.plugins) if status.name == "x"]
    assert status.live and "polling DMs every 0.05 s" in status.why
    lines = await register_webhooks(services.settings)
    assert any("nothing to register" in line for line in lines)
    assert any("https://bot.example.org/webhooks/x" in line for line in lines)
    assert fake.api.requests == []  # building and registering never call X
