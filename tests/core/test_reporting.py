"""The support report counts what happened in the period, by channel."""

from __future__ import annotations

import asyncio

from core.channels import ChannelRegistry
from core.errors import PermanentChannelError
from core.outbox import Dispatcher
from core.reporting import support_report
from tests.fakes.channels import RecordingChannel


def test_volume_containment_tickets_and_dead_letters_are_reported(fake_bot, database) -> None:  # type: ignore[no-untyped-def]
    fake_bot.say("when is my payout", user="a")
    fake_bot.say("agent", user="b")
    failing = RecordingChannel("console", failures=[PermanentChannelError("gone")])
    items = fake_bot.inbox.process(fake_bot.inbox.receive(_message("c", "payout")).message_id)
    asyncio.run(Dispatcher(database, ChannelRegistry([failing])).dispatch(items))

    report = support_report(database, days=7)
    assert report["volume"] == {"console": {"conversations": 3, "tickets": 1, "messages_in": 3, "messages_out": 3}}
    assert report["bot_containment"] == round(2 / 3, 4)
    assert report["tickets"] == {"open": 1}
    assert report["delivery"] == {"console": {"sent": 2, "dead": 1}}


def test_an_empty_period_has_no_containment_figure(database) -> None:  # type: ignore[no-untyped-def]
    report = support_report(database, days=7)
    assert report["conversations"] == 0 and report["bot_containment"] is None


def _message(user: str, text: str):  # type: ignore[no-untyped-def]
    from core.messages import InboundMessage

    return InboundMessage(channel="console", user_id=user, provider_message_id=f"r-{user}", text=text)
