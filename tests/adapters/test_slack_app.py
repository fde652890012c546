"""Slack end to end: signed requests into the live app, replies through the real SDK to a fake Slack API."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

import bots.plugins
from bots.settings import load_settings
from bots.wiring import Services, build
from core.faq import Candidate, Decision, FaqResult
from core.outbox import RetryPolicy
from core.storage.models import Message, OutboxItem
from tests.fakes.knowledge import FakeKnowledge
from tests.fakes.live import live_app, wait_for
from tests.fakes.provider_api import FakeProviderAPI, Reply
from tests.fakes.slack_api import (
    AUTH_TEST,
    BOT_TOKEN,
    SIGNING_SECRET,
    block_action,
    event,
    fake_slack,
    fixture,
    posted,
    posts,
    signed,
)

IGNORED = ["message_changed.json", "bot_message.json", "own_message.json", "channel_message.json"]
LONG = "\n\n".join(f"Paragraph {n}. " + "Funds move through the payout pipeline in stages. " * 20 for n in range(6))


class LongKnowledge(FakeKnowledge):
    """FakeKnowledge, plus a very long answer to any question about "fees"."""

    def lookup(self, text: str) -> FaqResult:
        if "fees" in text.lower():
            candidate = Candidate("fees", "Fees", 1.0)
            return FaqResult(Decision.ANSWER, 1.0, topic="fees", title="Fees", answer=LONG, candidates=(candidate,))
        return super().lookup(text)


class Slack:
    """The live app with Slack on, its fake Slack API, and helpers to post to /slack/events."""

    def __init__(self, services: Services, fake: FakeProviderAPI, base: str) -> None:
        self.services, self.fake, self.base = services, fake, base

    def post(self, body: str, headers: dict[str, str]) -> httpx.Response:
        return httpx.post(f"{self.base}/slack/events", content=body, headers=headers, timeout=10)

    def send_event(self, payload: dict[str, Any], **extra_headers: str) -> httpx.Response:
        body = json.dumps(payload)
        return self.post(body, {**signed(body), **extra_headers})

    def press(self, value: str, *, action_ts: str = "1700000200.123456") -> httpx.Response:
        body = block_action(value, action_ts=action_ts)
        return self.post(body, signed(body, form=True))

    def stored(self) -> int:
        with self.services.database.sessions() as session:
            query = select(func.count()).select_from(Message).where(Message.direction == "in")
            return session.scalar(query) or 0

    def outbox(self) -> list[OutboxItem]:
        with self.services.database.sessions() as session:
            return list(session.scalars(select(OutboxItem).order_by(OutboxItem.id)))

    def settled(self) -> bool:
        """Every inbound message answered and every reply out of `pending`."""
        with self.services.database.sessions() as session:
            waiting = Message.direction == "in", Message.processed_at.is_(None)
            unanswered = session.scalar(select(func.count()).select_from(Message).where(*waiting))
        return not unanswered and all(item.status != "pending" for item in self.outbox())


@pytest.fixture()
def start(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Slack]]:
    """start(post=, auth=, knowledge=) -> the live app on the production wiring, with Slack on."""
    monkeypatch.setattr(bots.plugins, "PLUGIN_MODULES", ("bots.channels.slack",))
    with ExitStack() as stack:

        def begin(post: Any = posted, *, auth: list[Reply] | None = None, knowledge: Any = None) -> Slack:
            fake = fake_slack(post, auth=auth)
            stack.callback(fake.close)
            settings = load_settings(
                database_url=database_url,
                slack_bot_token=BOT_TOKEN,
                slack_signing_secret=SIGNING_SECRET,
                slack_api_base_url=f"{fake.url}/api",
            )
            services = build(settings, knowledge=knowledge or FakeKnowledge())
            stack.callback(services.database.dispose)
            services.dispatcher.policy = RetryPolicy(max_attempts=5, base_delay=0.01, max_delay=0.05)
            base = stack.enter_context(live_app(services))
            return Slack(services, fake, base)

        yield begin


def test_a_direct_message_is_answered_with_one_chat_post_message(start: Callable[..., Slack]) -> None:
    slack = start()
    response = slack.send_event(fixture("message_im.json"))
    assert response.status_code == 200

    wait_for(lambda: len(posts(slack.fake)) == 1 and slack.settled())
    [call] = slack.fake.calls("POST", "/api/chat.postMessage")
    assert call.headers["authorization"] == f"Bearer {BOT_TOKEN}"
    assert call.json["channel"] == "U2147483697"
    assert call.json["text"] == "Payouts are sent after the campaign ends."
    assert call.json["blocks"][0] == {
        "type": "section",
        "text": {"type": "mrkdwn", "text": "Payouts are sent after the campaign ends."},
    }
    [item] = slack.outbox()
    assert (item.status, item.channel, item.user_id) == ("sent", "slack", "U2147483697")
    assert item.receipt_id  # the ts Slack returned
    assert len(slack.fake.calls("POST", "/api/auth.test")) == 1


def test_menu_then_a_button_press_picks_the_option(start: Callable[..., Slack]) -> None:
    slack = start()
    slack.send_event(event("menu"))
    wait_for(lambda: len(posts(slack.fake)) == 1)
    buttons = posts(slack.fake)[0]["blocks"][-1]["elements"]
    assert [b["text"]["text"] for b in buttons] == [
        "I run a campaign",
        "I backed a campaign",
        "I entered a contest",
        "Talk to a person",
    ]
    backer = next(b for b in buttons if b["text"]["text"] == "I backed a campaign")

    started = time.monotonic()
    response = slack.press(backer["value"])
    assert response.status_code == 200 and time.monotonic() - started < 3  # acknowledged at once

    wait_for(lambda: len(posts(slack.fake)) == 2)
    second = posts(slack.fake)[1]
    assert second["channel"] == "U2147483697"
    assert second["text"] == "Which of these is your question?"
    labels = [b["text"]["text"] for b in second["blocks"][-1]["elements"]]
    assert labels == ["Getting a refund", "Contacting support", "Talk to a person"]
    assert [b["value"] for b in second["blocks"][-1]["elements"]][:1] == ["topic:refund-request"]


@pytest.mark.parametrize("name", IGNORED)
def test_edits_bot_messages_and_channel_messages_are_acknowledged_and_ignored(
    start: Callable[..., Slack], name: str
) -> None:
    slack = start()
    response = slack.send_event(fixture(name))
    assert response.status_code == 200
    time.sleep(0.3)
    assert slack.stored() == 0
    assert posts(slack.fake) == []


def test_a_slack_retry_of_the_same_event_is_answered_once(start: Callable[..., Slack]) -> None:
    slack = start()
    assert slack.send_event(fixture("message_im.json")).status_code == 200
    retry_headers = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
    retry = slack.send_event(fixture("message_im.json"), **retry_headers)
    assert retry.status_code == 200
    wait_for(slack.settled)
    time.sleep(0.3)
    assert slack.stored() == 1
    assert len(posts(slack.fake)) == 1


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(lambda body: {"Content-Type": "application/json"}, id="missing"),
        pytest.param(lambda body: signed(body, secret="not-the-signing-secret"), id="forged"),
        pytest.param(lambda body: signed(body, age=301), id="stale"),
        pytest.param(lambda body: {**signed(body), "X-Slack-Signature": "v0=" + "0" * 64}, id="tampered"),
    ],
)
def test_unsigned_forged_or_stale_requests_are_refused_with_nothing_stored(
    start: Callable[..., Slack], headers: Callable[[str], dict[str, str]]
) -> None:
    slack = start()
    body = json.dumps(fixture("message_im.json"))
    response = slack.post(body, headers(body))
    assert response.status_code in (401, 403)
    action = block_action("audience:backer")
    assert slack.post(action, {**headers(action), "Content-Type": "application/x-www-form-urlencoded"}).status_code in (
        401,
        403,
    )
    time.sleep(0.3)
    assert slack.stored() == 0
    assert slack.fake.requests == []  # nothing sent, not even auth.test


def test_the_url_verification_challenge_is_answered_when_signed(start: Callable[..., Slack]) -> None:
    slack = start()
    payload = fixture("url_verification.json")
    response = slack.send_event(payload)
    assert response.status_code == 200
    assert response.json() == {"challenge": payload["challenge"]}
    body = json.dumps(payload)
    assert slack.post(body, {"Content-Type": "application/json"}).status_code == 401


def test_a_long_answer_is_split_into_numbered_messages(start: Callable[..., Slack]) -> None:
    slack = start(knowledge=LongKnowledge())
    slack.send_event(event("what are the fees"))
    wait_for(slack.settled)
    sent = posts(slack.fake)
    assert len(sent) >= 3
    total = len(sent)
    for number, body in enumerate(sent, start=1):
        assert body["channel"] == "U2147483697"
        assert body["text"].endswith(f"({number}/{total})")
        assert all(len(block["text"]["text"]) <= 3000 for block in body["blocks"] if block["type"] == "section")
    assert "Paragraph 0." in sent[0]["text"] and "Paragraph 5." in sent[-1]["text"]


def test_a_429_is_retried_after_its_retry_after_and_delivered_once(start: Callable[..., Slack]) -> None:
    script = [
        Reply(429, {"ok": False, "error": "ratelimited"}, headers={"Retry-After": "1"}),
        Reply(200, {"ok": True, "channel": "D024BE91L", "ts": "1700000400.000100"}),
    ]
    slack = start(post=script)
    slack.send_event(fixture("message_im.json"))
    wait_for(slack.settled)
    [item] = slack.outbox()
    assert (item.status, item.attempts, item.receipt_id) == ("sent", 2, "1700000400.000100")
    assert len(posts(slack.fake)) == 2


def test_five_500s_dead_letter_the_reply(start: Callable[..., Slack]) -> None:
    slack = start(post=[Reply(500, {"ok": False, "error": "internal_error"})])
    slack.send_event(fixture("message_im.json"))
    wait_for(slack.settled, timeout=20)
    [item] = slack.outbox()
    assert (item.status, item.attempts) == ("dead", 5)
    assert "TransientChannelError" in (item.last_error or "")
    assert len(posts(slack.fake)) == 5


def test_an_unreachable_user_is_not_retried(start: Callable[..., Slack]) -> None:
    slack = start(post=[Reply(200, {"ok": False, "error": "user_not_found"})])
    slack.send_event(fixture("message_im.json"))
    wait_for(slack.settled)
    [item] = slack.outbox()
    assert (item.status, item.attempts) == ("dead", 1)
    assert len(posts(slack.fake)) == 1


def test_an_auth_test_failure_answers_500_so_slack_retries(start: Callable[..., Slack]) -> None:
    slack = start(auth=[Reply(500, {"ok": False, "error": "internal_error"}), Reply(200, AUTH_TEST)])
    assert slack.send_event(fixture("message_im.json")).status_code == 500
    assert slack.stored() == 0
    assert slack.send_event(fixture("message_im.json"), **{"X-Slack-Retry-Num": "1"}).status_code == 200
    wait_for(lambda: len(posts(slack.fake)) == 1 and slack.settled())
    assert slack.stored() == 1
