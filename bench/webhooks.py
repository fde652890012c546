"""The messages of the load: "hi" from a new user each time, as a Telegram update with the webhook
secret or a Twilio SMS or WhatsApp form signed with the auth token, exactly as the providers send
them."""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass
from urllib.parse import urlencode

from bench.common import (
    HOST,
    TELEGRAM_SECRET,
    TWILIO_ACCOUNT_SID,
    TWILIO_AUTH_TOKEN,
    TWILIO_SMS_NUMBER,
    TWILIO_WHATSAPP_NUMBER,
)


@dataclass(frozen=True)
class Outgoing:
    channel: str  # telegram, sms or whatsapp
    recipient: str  # whom the reply goes to: the chat id, or the E.164 number
    path: str
    body: bytes
    headers: dict[str, str]

    @property
    def key(self) -> tuple[str, str]:
        return self.channel, self.recipient


class MessageMaker:
    """New users, update ids and MessageSids per run (a random block), so a reused database sees no repeat."""

    def __init__(self, *, mix: list[str], bot_port: int, text: str = "hi") -> None:
        from twilio.request_validator import RequestValidator

        self.mix = mix
        self.text = text
        self.public = f"http://{HOST}:{bot_port}"  # PUBLIC_BASE_URL of the bot
        self.validator = RequestValidator(TWILIO_AUTH_TOKEN)
        block = int.from_bytes(os.urandom(3), "big")
        self.telegram_base = 6_000_000_000 + block * 10_000  # a private chat's id is its user's: positive
        self.phone_base = 27_600_000_000 + block * 1_000  # +27 6x xxx xxxx
        self.count = 0

    def next(self) -> Outgoing:
        index = self.count
        self.count += 1
        channel = self.mix[index % len(self.mix)]
        if channel == "telegram":
            return self._telegram(index)
        return self._twilio(index, whatsapp=channel == "whatsapp")

    def _telegram(self, index: int) -> Outgoing:
        chat = self.telegram_base + index
        update = {
            "update_id": chat % 2_000_000_000,
            "message": {
                "message_id": 1 + index,
                "from": {
                    "id": chat,
                    "is_bot": False,
                    "first_name": "Bench",
                    "language_code": "en",
                },
                "chat": {"id": chat, "first_name": "Bench", "type": "private"},
                "date": int(time.time()),
                "text": self.text,
            },
        }
        headers = {
            "Content-Type": "application/json",
            "X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET,
        }
        return Outgoing(
            "telegram",
            str(chat),
            "/webhooks/telegram",
            json.dumps(update).encode(),
            headers,
        )

    def _twilio(self, index: int, *, whatsapp: bool) -> Outgoing:
        number = f"+{self.phone_base + index}"
        sid = "SM" + uuid.uuid4().hex
        params = {
            "ToCountry": "US",
            "SmsMessageSid": sid,
            "NumMedia": "0",
            "SmsSid": sid,
            "SmsStatus": "received",
            "Body": self.text,
            "FromCountry": "ZA",
            "NumSegments": "1",
            "MessageSid": sid,
            "AccountSid": TWILIO_ACCOUNT_SID,
            "ApiVersion": "2010-04-01",
            "To": f"whatsapp:{TWILIO_WHATSAPP_NUMBER}" if whatsapp else TWILIO_SMS_NUMBER,
            "From": f"whatsapp:{number}" if whatsapp else number,
        }
        if whatsapp:
            params["ProfileName"] = "Bench"
        path = "/webhooks/twilio"
        signature = self.validator.compute_signature(self.public + path, params)
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature,
        }
        return Outgoing(
            "whatsapp" if whatsapp else "sms",
            number,
            path,
            urlencode(params).encode(),
            headers,
        )
