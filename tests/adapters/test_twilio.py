"""Twilio end to end: the real app and the real twilio SDK against a fake Messages API on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import func, select

from bots.settings import load_settings
from bots.wiring import Services, build
from core import texts
from core.faq import Candidate, Decision, FaqResult
from core.outbox import RetryPolicy
from core.storage.models import ChannelIdentity, Message, OutboxItem
from tests.fakes.knowledge import FakeKnowledge
from tests.fakes.live import live_app, wait_for
from tests.fakes.provider_api import FakeProviderAPI, Recorded, Reply
from tests.fakes.twilio_api import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    MESSAGES_PATH,
    PUBLIC_BASE_URL,
    SMS_NUMBER,
    WHATSAPP_NUMBER,
    MessagesCreated,
    created_reply,
    fake_twilio,
    fixture,
    form_body,
    signed,
    twilio_error,
)

INBOUND, STATUS = "/webhooks/twilio", "/webhooks/twilio/status"
LONG_ANSWER = " ".join(
    f"Step {n}: check the payout details on your dashboard and confirm the bank account." for n in range(1, 25)
)


class LongKnowledge(FakeKnowledge):
    """FakeKnowledge, plus a long answer for any question about 'steps'."""

    def lookup(self, text: str) -> FaqResult:
        if "steps" in text.lower():
            return FaqResult(
                decision=Decision.ANSWER,
                confidence=1.0,
                topic="payout-steps",
                title="Payout steps",
                answer=LONG_ANSWER,
                candidates=(Candidate("payout-steps", "Payout steps", 1.0),),
            )
        return super().lookup(text)


@dataclass
class Twilio:
    """A running app with both Twilio channels live, and the fake API they send to."""

    services: Services
    fake: FakeProviderAPI
    base: str

    def post(
        self, params: dict[str, str], path: str = INBOUND, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        sent = signed(params, path) if headers is None else headers
        return httpx.post(self.base + path, content=form_body(params), headers=sent, timeout=10)

    def sent(self) -> list[Recorded]:
        return self.fake.calls("POST", MESSAGES_PATH)

    def rows(self) -> list[OutboxItem]:
        with self.services.database.sessions() as session:
            return list(session.scalars(select(OutboxItem).order_by(OutboxItem.id)))

    def identity(self, channel: str, user_id: str) -> ChannelIdentity:
        with self.services.database.sessions() as session:
            found = session.scalars(
                select(ChannelIdentity).where(ChannelIdentity.channel == channel, ChannelIdentity.user_id == user_id)
            ).one()
            session.expunge(found)
            return found

    def stored_inbound(self) -> int:
        with self.services.database.sessions() as session:
            query = select(func.count()).select_from(Message).where(Message.direction == "in")
            return session.scalar(query) or 0


@pytest.fixture()
def twilio(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Twilio]]:
    """Start the app through the production wiring, with the fake answering as told."""
    monkeypatch.setattr("bots.plugins.PLUGIN_MODULES", ("bots.channels.twilio",))
    opened: list[tuple[Services, FakeProviderAPI]] = []

    @contextmanager
    def start(handler: MessagesCreated | list[Reply] | None = None, *, knowledge=None) -> Iterator[Twilio]:  # type: ignore[no-untyped-def]
        fake = fake_twilio(handler)
        settings = load_settings(
            database_url=database_url,
            public_base_url=PUBLIC_BASE_URL,
            twilio_account_sid=ACCOUNT_SID,
            twilio_auth_token=AUTH_TOKEN,
            twilio_sms_number=SMS_NUMBER,
            twilio_whatsapp_number=WHATSAPP_NUMBER,
            twilio_api_base_url=fake.url,
        )
        services = build(settings, knowledge=knowledge or FakeKnowledge())
        services.dispatcher.policy = RetryPolicy(max_attempts=5, base_delay=0.01, max_delay=0.05)
        opened.append((services, fake))
        with live_app(services) as base:
            yield Twilio(services, fake, base)

    yield start
    for services, fake in opened:
        fake.close()
        services.database.dispose()


def test_an_sms_is_answered_with_one_messages_json_call(twilio) -> None:  # type: ignore[no-untyped-def]
    with twilio() as app:
        response = app.post(fixture("sms_inbound"))
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/xml")
        assert response.text.replace(" ", "") == '<?xmlversion="1.0"encoding="UTF-8"?><Response/>'
        wait_for(lambda: len(app.sent()) == 1)
        call = app.sent()[0]
        assert call.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
        assert call.headers["authorization"].startswith("Basic ")
        assert call.form == {
            "To": "+27820000001",
            "From": SMS_NUMBER,
            "Body": "Payouts are sent after the campaign ends.",
            "StatusCallback": f"{PUBLIC_BASE_URL}{STATUS}",
            "SmartEncoded": "true",
        }
        wait_for(lambda: app.rows()[0].status == "sent")
        assert app.rows()[0].receipt_id == "SM" + f"{1:032x}"


def test_a_whatsapp_message_is_answered_on_whatsapp(twilio) -> None:  # type: ignore[no-untyped-def]
    with twilio() as app:
        assert app.post(fixture("whatsapp_text")).status_code == 200
        wait_for(lambda: len(app.sent()) == 1)
        call = app.sent()[0]
        assert call.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
        assert (call.form["To"], call.form["From"]) == ("whatsapp:+27820000002", f"whatsapp:{WHATSAPP_NUMBER}")
        assert call.form["Body"] == "Payouts are sent after the campaign ends."
        assert "SmartEncoded" not in call.form
        identity = app.identity("whatsapp", "+27820000002")
        assert identity.display_name == "Thandi"


def test_a_whatsapp_photo_is_stored_with_its_media(twilio) -> None:  # type: ignore[no-untyped-def]
    with twilio() as app:
        payload = fixture("whatsapp_media")
        assert app.post(payload).status_code == 200
        wait_for(lambda: app.stored_inbound() == 1)
        with app.services.database.sessions() as session:
            stored = session.scalars(select(Message).where(Message.direction == "in")).one()
            assert (stored.channel, stored.provider_message_id) == ("whatsapp", payload["MessageSid"])
            assert stored.attachments == [{"url": payload["MediaUrl0"], "content_type": "image/jpeg", "name": None}]


def test_a_numbered_reply_picks_that_option(twilio) -> None:  # type: ignore[no-untyped-def]
    with twilio() as app:
        app.post(fixture("sms_inbound", Body="menu", MessageSid="SM" + "1" * 32))
        wait_for(lambda: len(app.sent()) == 1)
        menu = app.sent()[0].form["Body"]
        assert "1. " in menu and "2. " in menu and "Reply with a number." in menu
        wait_for(lambda: app.rows()[0].status == "sent")
        app.post(fixture("sms_inbound", Body="2", MessageSid="SM" + "2" * 32))
        wait_for(lambda: len(app.sent()) == 2)
        assert f"2. {texts.AUDIENCE_BACKER}" in menu  # so "2" asks for the backers' topics
        topics = app.sent()[1].form["Body"]
        assert "Getting a refund" in topics and "Contacting support" in topics


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Content-Type": "application/x-www-form-urlencoded"}, id="missing"),
        pytest.param(signed(fixture("sms_inbound"), INBOUND, token="not-the-token"), id="wrong-token"),
        pytest.param(signed(fixture("sms_inbound", Body="something else"), INBOUND), id="other-body"),
        pytest.param(signed(fixture("sms_inbound"), STATUS), id="other-path"),
        pytest.param(signed(fixture("sms_inbound"), INBOUND, base="http://127.0.0.1:8000"), id="internal-url"),
    ],
)
def test_a_forged_or_unsigned_webhook_is_refused_and_nothing_is_stored(twilio, headers) -> None:  # type: ignore[no-untyped-def]
    with twilio() as app:
        response = app.post(fixture("sms_inbound"), headers=headers)
        assert response.status_code == 403
        assert app.stored_inbound() == 0
        assert app.rows() == [] and app.sent() == []


def test_the_same_message_delivered_three_times_is_answered_once(twilio) -> None:  # type: ignore[no-untyped-def]
    with twilio() as app:
        for _ in range(3):
            assert app.post(fixture("sms_inbound")).status_code == 200
        wait_for(lambda: len(app.sent()) == 1)
        wait_for(lambda: all(row.status == "sent" for row in app.rows()))
        assert app.stored_inbound() == 1 and len(app.sent()) == 1 and len(app.rows()) == 1


def test_a_long_sms_answer_is_split_into_numbered_parts_of_at_most_three_segments(twilio) -> None:  # type: ignore[no-untyped-def]
    with twilio(knowledge=LongKnowledge()) as app:
        app.post(fixture("sms_inbound", Body="what are the steps"))
        wait_for(lambda: len(app.rows()) > 1 and all(row.status == "sent" for row in app.rows()))
        bodies = [call.form["Body"] for call in app.sent()]
        total = len(bodies)
        assert total == len(app.rows()) > 1
        for number, body in enumerate(bodies, start=1):
            assert body.endswith(f"({number}/{total})")
            assert len(body) <= 3 * 153  # three concatenated GSM-7 segments
        assert "Step 1:" in bodies[0] and "Step 24:" in bodies[-1]


def test_a_long_whatsapp_answer_is_split_under_twilios_1600_characters(twilio) -> None:  # type: ignore[no-untyped-def]
    with twilio(knowledge=LongKnowledge()) as app:
        app.post(fixture("whatsapp_text", Body="what are the steps"))
        wait_for(lambda: len(app.rows()) > 1 and all(row.status == "sent" for row in app.rows()))
        bodies = [call.form["Body"] for call in app.sent()]
        assert len(bodies) == 2 and all(len(body) <= 1600 for body in bodies)
        assert bodies[0].endswith("(1/2)") and bodies[1].endswith("(2/2)")


def test_a_429_is_retried_and_the_reply_delivered_once(twilio) -> None:  # type: ignore[no-untyped-def]
    replies = [twilio_error(429, 20429, headers={"Retry-After": "1"}), created_reply("SM" + "9" * 32)]
    with twilio(replies) as app:
        app.post(fixture("sms_inbound"))
        wait_for(lambda: app.rows() and app.rows()[0].status == "sent")
        row = app.rows()[0]
        assert (row.attempts, row.receipt_id) == (2, "SM" + "9" * 32)
        assert len(app.sent()) == 2  # the refused call, then the one that went through
        assert app.sent()[0].form == app.sent()[1].form


def test_five_500s_leave_the_reply_dead(twilio) -> None:  # type: ignore[no-untyped-def]
    with twilio([twilio_error(500, 20500)]) as app:
        app.post(fixture("sms_inbound"))
        wait_for(lambda: app.rows() and app.rows()[0].status == "dead", timeout=20)
        row = app.rows()[0]
        assert row.attempts == 5 and len(app.sent()) == 5
        assert "500" in (row.last_error or "")


def test_an_unsubscribed_number_is_dead_at_once_and_marked_unreachable(twilio) -> None:  # type: ignore[no-untyped-def]
    with twilio([twilio_error(400, 21610)]) as app:
        app.post(fixture("sms_inbound"))
        wait_for(lambda: app.rows() and app.rows()[0].status == "dead")
        assert app.rows()[0].attempts == 1 and len(app.sent()) == 1
        assert app.identity("sms", "+27820000001").unreachable_at is not None


def test_a_status_callback_is_recorded_on_the_outbox_row(twilio) -> None:  # type: ignore[no-untyped-def]
    with twilio() as app:
        app.post(fixture("sms_inbound"))
        wait_for(lambda: app.rows() and app.rows()[0].status == "sent")
        sid = app.rows()[0].receipt_id
        assert sid
        forged = fixture("status_delivered", MessageSid=sid, SmsSid=sid)
        assert app.post(forged, STATUS, headers=signed(forged, STATUS, token="nope")).status_code == 403
        assert app.rows()[0].delivery_status is None
        response = app.post(fixture("status_delivered", MessageSid=sid, SmsSid=sid), STATUS)
        assert response.status_code == 204
        assert app.rows()[0].delivery_status == "delivered"
        assert app.identity("sms", "+27820000001").unreachable_at is None


def test_a_failed_status_for_an_unsubscribed_number_marks_it_unreachable(twilio) -> None:  # type: ignore[no-untyped-def]
    with twilio() as app:
        app.post(fixture("whatsapp_text"))
        wait_for(lambda: app.rows() and app.rows()[0].status == "sent")
        sid = app.rows()[0].receipt_id
        assert sid
        failed = fixture(
            "status_failed_unsubscribed",
            MessageSid=sid,
            SmsSid=sid,
            ErrorCode="63003",
            To="whatsapp:+27820000002",
            From=f"whatsapp:{WHATSAPP_NUMBER}",
        )
        assert app.post(failed, STATUS).status_code == 204
        assert app.rows()[0].delivery_status == "failed"
        assert app.identity("whatsapp", "+27820000002").unreachable_at is not None


def test_stop_on_sms_is_recorded_as_an_opt_out_and_not_answered(twilio) -> None:  # type: ignore[no-untyped-def]
    with twilio() as app:
        assert app.post(fixture("sms_stop")).status_code == 200
        wait_for(lambda: app.identity("sms", "+27820000001").opted_out_at is not None)
        with app.services.database.sessions() as session:
            stored = session.scalars(select(Message).where(Message.direction == "in")).one()
            assert stored.processed_at is not None and stored.details == {"opt_out": True}
        assert app.rows() == [] and app.sent() == []
