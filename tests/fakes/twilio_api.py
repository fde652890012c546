"""Twilio's Messages API faked on 127.0.0.1, and webhooks signed the way Twilio signs them."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from twilio.request_validator import RequestValidator

from tests.fakes.provider_api import FakeProviderAPI, Recorded, Reply

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "twilio"
ACCOUNT_SID = "AC" + "a" * 32
AUTH_TOKEN = "test-twilio-auth-token"
SMS_NUMBER = "+14155550100"
WHATSAPP_NUMBER = "+14155238886"
PUBLIC_BASE_URL = "https://bot.example.org"
MESSAGES_PATH = rf"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages\.json"


def fixture(name: str, **changes: str) -> dict[str, str]:
    """A webhook payload from tests/fixtures/twilio/, with some fields changed."""
    return {**json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8")), **changes}


def signed(
    params: dict[str, str], path: str, *, token: str = AUTH_TOKEN, base: str = PUBLIC_BASE_URL
) -> dict[str, str]:
    """Headers for a form POST signed as Twilio signs it: over the public URL and the params."""
    signature = RequestValidator(token).compute_signature(base + path, params)
    return {"X-Twilio-Signature": signature, "Content-Type": "application/x-www-form-urlencoded"}


def form_body(params: dict[str, str]) -> str:
    return urlencode(params)


class MessagesCreated:
    """Answers Messages.json like Twilio: 201 and the message resource, with a fresh SID each time."""

    def __init__(self) -> None:
        self._numbers = itertools.count(1)
        self.sids: list[str] = []

    def __call__(self, request: Recorded) -> Reply:
        sid = f"SM{next(self._numbers):032x}"
        self.sids.append(sid)
        sent = request.form
        body: dict[str, Any] = json.loads((FIXTURES / "messages_create_201.json").read_text(encoding="utf-8"))
        body.update(
            sid=sid,
            to=sent.get("To"),
            body=sent.get("Body", ""),
            uri=f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}.json",
        )
        body["from"] = sent.get("From")
        return Reply(201, body)


def twilio_error(status: int, code: int, *, headers: dict[str, str] | None = None) -> Reply:
    """Twilio's error body: {"code", "message", "more_info", "status"}."""
    body = {
        "code": code,
        "message": f"error {code}",
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return Reply(status, body, headers=headers or {})


def created_reply(sid: str = "SM" + "f" * 32) -> Reply:
    body = json.loads((FIXTURES / "messages_create_201.json").read_text(encoding="utf-8"))
    body["sid"] = sid
    return Reply(201, body)


def fake_twilio(handler: MessagesCreated | list[Reply] | None = None) -> FakeProviderAPI:
    """The fake with one route, POST Messages.json, answered by `handler` (default: always 201)."""
    return FakeProviderAPI({("POST", MESSAGES_PATH): handler if handler is not None else MessagesCreated()})
