"""Logs keep phone numbers, e-mail addresses, tokens, keys and one-time codes out, and ids in.

The last test runs a realistic flow (the platform pushing records, an SMS from the owner's phone,
a Telegram user verified by a code sent by SMS and another by a code sent by e-mail) through the
real app, with every logger at DEBUG into one file, then greps that file for the test's own secrets.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from aiosmtpd.controller import Controller

from bots import logs
from bots.logs import ContextFormatter, Redactor
from bots.settings import load_settings
from bots.wiring import build
from tests.adapters.test_email import Mailbox, free_port
from tests.fakes.knowledge import FakeKnowledge
from tests.fakes.live import live_app, wait_for
from tests.fakes.telegram_api import FakeTelegramAPI, load_update
from tests.fakes.twilio_api import (
    ACCOUNT_SID,
    MESSAGES_PATH,
    PUBLIC_BASE_URL,
    SMS_NUMBER,
    fake_twilio,
    fixture,
    form_body,
    signed,
)

PHONE, PHONE_NATIONAL, PHONE_DIGITS = "+27825550142", "0825550142", "27825550142"
EMAIL, EMAIL_ONLY_OWNER = "thandi.secret@example.org", "ayanda.private@example.org"
API_KEY = "platform-key-Zq8wV3nK1s"
TELEGRAM_TOKEN = "7012345678:AAH3xQ_realistic-token-abcdefghijklmnop"
TELEGRAM_SECRET = "telegram-webhook-secret-4Kd9"
TWILIO_TOKEN = "twilio-auth-token-0c9e8d7f6a5b"
SMTP_PASSWORD = "smtp-pa55word-Hq2"


@pytest.fixture()
def root_logging() -> Iterator[None]:
    """Leave the root logger as the test found it."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def line(message: str, *args: object, **extra: object) -> str:
    record = logging.LogRecord("test", logging.INFO, __file__, 1, message, args or None, None)
    for key, value in extra.items():
        setattr(record, key, value)
    Redactor(secrets=[API_KEY]).filter(record)
    return ContextFormatter("%(message)s").format(record)


@pytest.mark.parametrize(
    ("said", "hidden"),
    [
        (f"from {PHONE}", PHONE),
        (f"from whatsapp:{PHONE}", PHONE),
        ("from +27 82 555 0142", "555 0142"),
        (f"from {PHONE_NATIONAL}", PHONE_NATIONAL),
        ("from 082 555 0142", "555 0142"),
        (f"mail {EMAIL}", "thandi.secret"),
        (f"Authorization: Bearer {API_KEY}", API_KEY),
        ("Authorization: Basic QUM6dG9rZW4xMjM0NTY=", "QUM6dG9rZW4xMjM0NTY="),
        (f"POST https://api.telegram.org/bot{TELEGRAM_TOKEN}/sendMessage", TELEGRAM_TOKEN.split(":")[1]),
        ("token xoxb-1234-5678-abcdefghijkl", "xoxb-1234-5678-abcdefghijkl"),
        ("app token xapp-1-A111-222-abcdef", "xapp-1-A111-222-abcdef"),
        (f"smtp://user:{SMTP_PASSWORD}@mail.example.org:587", SMTP_PASSWORD),
        ("Your SayPro verification code is 482913.", "482913"),
        ("code: 482 913", "482 913"),
        ("OTP 004821 typed", "004821"),
    ],
)
def test_personal_data_and_secrets_are_redacted(said: str, hidden: str) -> None:
    assert hidden not in line(said)


def test_ids_and_error_codes_stay() -> None:
    text = line(
        "sent %s (error 21211) after %d tries",
        "SM" + "0" * 31 + "7",
        3,
        message_id=123456,
        conversation_id=42,
        update_id=815300001,
        receipt_id="SM" + "a" * 32,
        chat="5512345678",
    )
    assert "SM" + "0" * 31 + "7" in text and "error 21211" in text and "message_id=123456" in text
    assert "update_id=815300001" in text and "chat=5512345678" in text and "conversation_id=42" in text


def test_extras_named_for_secrets_or_text_are_withheld_whatever_they_hold() -> None:
    text = line("event", text="my payout please", body="Body=hi", code="482913", signing_secret="abc", error_code=30005)
    assert "my payout" not in text and "Body=hi" not in text and "482913" not in text and "abc" not in text
    assert "error_code=30005" in text


def test_a_traceback_is_redacted_too() -> None:
    try:
        raise RuntimeError(f"could not reach {PHONE} with key {API_KEY}")
    except RuntimeError:
        record = logging.LogRecord("test", logging.ERROR, __file__, 1, "failed", None, __import__("sys").exc_info())
    Redactor(secrets=[API_KEY]).filter(record)
    formatted = ContextFormatter("%(message)s").format(record)
    assert "RuntimeError" in formatted and PHONE not in formatted and API_KEY not in formatted


def test_configure_redacts_on_every_root_handler_and_knows_the_environment_secrets(root_logging, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", TWILIO_TOKEN)
    other = io.StringIO()
    logging.getLogger().addHandler(logging.StreamHandler(other))
    ours = io.StringIO()
    logs.configure("DEBUG", stream=ours)
    logging.getLogger("saypro.test").info("token %s for %s", TWILIO_TOKEN, EMAIL)
    for written in (ours.getvalue(), other.getvalue()):
        assert "token [redacted]" in written and TWILIO_TOKEN not in written and EMAIL not in written


# The realistic flow ---------------------------------------------------------------------------


def secrets_in(text: str, codes: list[str]) -> list[str]:
    found = [
        s
        for s in (
            PHONE,
            PHONE_DIGITS,
            PHONE_NATIONAL,
            "555 0142",
            EMAIL,
            EMAIL_ONLY_OWNER,
            "thandi.secret",
            "ayanda.private",
            API_KEY,
            TELEGRAM_TOKEN,
            TELEGRAM_TOKEN.split(":")[1],
            TELEGRAM_SECRET,
            TWILIO_TOKEN,
            SMTP_PASSWORD,
        )
        if s in text
    ]
    return found + [code for code in codes if re.search(rf"(?<!\d){code}(?!\d)", text)]


def test_a_whole_run_logs_none_of_its_secrets(
    database_url: str, tmp_path: Path, root_logging, capfd, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr("bots.plugins.PLUGIN_MODULES", ("bots.channels.telegram", "bots.channels.twilio"))
    log_path = tmp_path / "run.log"
    telegram, twilio, mailbox, port = FakeTelegramAPI(token=TELEGRAM_TOKEN), fake_twilio(), Mailbox(), free_port()
    smtp = Controller(
        mailbox, hostname="127.0.0.1", port=port, auth_require_tls=False, authenticator=lambda *a: _accept()
    )
    smtp.start()
    settings = load_settings(
        database_url=database_url,
        public_base_url=PUBLIC_BASE_URL,
        saypro_api_key=API_KEY,
        telegram_bot_token=TELEGRAM_TOKEN,
        telegram_webhook_secret=TELEGRAM_SECRET,
        telegram_api_base_url=telegram.base_url,
        twilio_account_sid=ACCOUNT_SID,
        twilio_auth_token=TWILIO_TOKEN,
        twilio_sms_number=SMS_NUMBER,
        twilio_api_base_url=twilio.url,
        smtp_url=f"smtp://bot:{SMTP_PASSWORD}@127.0.0.1:{port}",
    )
    codes: list[str] = []
    with log_path.open("w", encoding="utf-8") as log_file:
        logs.configure("DEBUG", stream=log_file)  # the secrets come from `build`, as they would from a .env file
        services = build(settings, knowledge=FakeKnowledge())
        try:
            with live_app(services) as base:
                run_the_flow(base, telegram, twilio, mailbox, codes)
        finally:
            services.database.dispose()
            telegram.close()
            twilio.close()
            smtp.stop()
    written = log_path.read_text(encoding="utf-8")
    captured = capfd.readouterr()
    # the run was logged, python-telegram-bot's line with the Bot API URL (the token in it) included
    assert "reply sent" in written and "/bot[redacted]" in written
    assert len(codes) == 2
    assert secrets_in(written, codes) == []
    assert secrets_in(captured.out + captured.err, codes) == []


def _accept():  # type: ignore[no-untyped-def]
    from aiosmtpd.smtp import AuthResult

    return AuthResult(success=True)


def run_the_flow(base: str, telegram: FakeTelegramAPI, twilio, mailbox: Mailbox, codes: list[str]) -> None:  # type: ignore[no-untyped-def]
    auth = {"Authorization": f"Bearer {API_KEY}"}
    owner = {"name": "Thandi Mokoena", "email": EMAIL, "phone": PHONE_NATIONAL}
    puts = [
        (
            "campaigns/SP-CAMP-1042",
            {
                "title": "Clean Water",
                "status": "ended",
                "currency": "ZAR",
                "amount_raised": "5000.00",
                "organiser": owner,
            },
        ),
        (
            "disbursements/SP-PAY-1042",
            {
                "campaign": "SP-CAMP-1042",
                "amount": "5000.00",
                "fees": "250.00",
                "currency": "ZAR",
                "method": "bank_transfer",
                "status": "processing",
            },
        ),
        (
            "registrations/SP-ENTRY-2001",
            {
                "contest": "Youth Challenge",
                "status": "confirmed",
                "fee_status": "paid",
                "submission_status": "received",
                "participant": {"name": "Ayanda", "email": EMAIL_ONLY_OWNER},
            },
        ),
    ]
    for path, body in puts:
        response = httpx.put(
            f"{base}/api/v1/{path}", json={**body, "updated_at": "2026-01-05T10:00:00+02:00"}, headers=auth
        )
        assert response.status_code == 200, response.text
    assert (
        httpx.post(f"{base}/api/v1/messages", json={"user": "x"}, headers={"Authorization": "Bearer wrong"}).status_code
        == 403
    )
    # The owner writes by SMS from her phone, and is answered as the owner.
    sms = fixture("sms_inbound", From=PHONE, Body="where is my payout SP-PAY-1042?", MessageSid="SM" + "1" * 32)
    assert (
        httpx.post(
            f"{base}/webhooks/twilio",
            content=form_body(sms),
            headers=signed(sms, "/webhooks/twilio", token=TWILIO_TOKEN),
        ).status_code
        == 200
    )
    wait_for(lambda: any("4,750" in call.form.get("Body", "") for call in twilio.calls("POST", MESSAGES_PATH)))
    # Somebody on Telegram asks: the code goes to her phone; they type it back.
    ask_on_telegram(base, telegram, 1, "status of SP-PAY-1042")
    wait_for(lambda: code_in_sms(twilio) is not None)
    codes.append(code_in_sms(twilio))  # type: ignore[arg-type]
    ask_on_telegram(base, telegram, 2, codes[0])
    wait_for(lambda: any("4,750" in text for text in telegram.sent_texts()))
    # And about an entry whose owner has only an e-mail: the code goes by e-mail.
    ask_on_telegram(base, telegram, 3, "status of SP-ENTRY-2001")
    wait_for(lambda: len(mailbox.mails) == 1)
    codes.append(re.search(r"code is (\d{6})", mailbox.mails[0].get_payload(decode=True).decode()).group(1))  # type: ignore[union-attr]
    ask_on_telegram(base, telegram, 4, codes[1])
    wait_for(lambda: any("Youth Challenge" in text for text in telegram.sent_texts()))
    forged = load_update("message_text", update_id=99, text="hi")
    assert (
        httpx.post(
            f"{base}/webhooks/telegram", json=forged, headers={"X-Telegram-Bot-Api-Secret-Token": "guess"}
        ).status_code
        == 403
    )


def ask_on_telegram(base: str, telegram: FakeTelegramAPI, number: int, text: str) -> None:
    update = load_update("message_text", update_id=815300100 + number, text=text)
    update["message"]["message_id"] = 5000 + number
    before = len(telegram.sent_texts())
    response = httpx.post(
        f"{base}/webhooks/telegram", json=update, headers={"X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET}
    )
    assert response.status_code == 200
    wait_for(lambda: len(telegram.sent_texts()) > before)


def code_in_sms(twilio) -> str | None:  # type: ignore[no-untyped-def]
    for call in twilio.calls("POST", MESSAGES_PATH):
        found = re.search(r"code is (\d{6})", call.form.get("Body", ""))
        if found:
            return found.group(1)
    return None
