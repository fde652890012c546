"""A load generator that behaves like the providers: signed webhooks, retries, duplicate deliveries.

Users write on SMS, WhatsApp (Twilio, signed with the auth token over PUBLIC_BASE_URL + path)
and Telegram (the webhook secret header). Each user writes their messages one after another, as
a person does; many users write at once. A share of the messages is delivered twice, at the
same moment, to two different web processes, as a provider's retry can race its first try. A
delivery that gets no 2xx (a 503 while the database is away, a refused connection while a
process restarts) is retried with backoff, as Twilio and Telegram do.

Run against a running bot (see docs/operations.md):

    python -m tests.faults.load --web http://127.0.0.1:8000 --web http://127.0.0.1:8001 \\
        --users 500 --messages 2000 --public-base-url https://bot.example.org
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlencode

import httpx
from twilio.request_validator import RequestValidator

from tests.faults.provider import (
    AUTH_TOKEN,
    SMS_NUMBER,
    TELEGRAM_SECRET,
    WHATSAPP_NUMBER,
)

QUESTIONS = (
    "when will my campaign funds be paid out?",
    "how do I get a refund for my contribution?",
    "I forgot my password, how do I reset it?",
    "how long until my campaign funds are paid out?",
    "how can I contact SayPro support?",
    "can I get my money back from a cancelled campaign?",
)
CHANNELS = ("sms", "whatsapp", "telegram")


@dataclass(frozen=True)
class Sent:
    """One distinct inbound message: who, on which channel, its provider id, its place in the user's run."""

    channel: str
    user: str
    provider_id: str
    text: str
    position: int


@dataclass
class Outcome:
    """What the generator saw: the messages, deliveries by status, retries, and the time taken."""

    messages: list[Sent] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    retries: int = 0
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> dict[str, object]:
        return {
            "messages": len(self.messages),
            "statuses": dict(self.statuses),
            "retries": self.retries,
            "failed": len(self.failed),
            "seconds": round(self.seconds, 1),
        }


@dataclass
class Load:
    """`users` people writing `messages` messages in all to the `webs`, a `duplicate_share` of them twice."""

    webs: list[str]
    users: int
    messages: int
    public_base_url: str
    duplicate_share: float = 0.2
    concurrency: int = 40
    retry_for: float = 120.0
    seed: int = 7
    run_id: str = field(default_factory=lambda: f"{int(time.time() * 1000) % 10**9:09d}")

    def plan(self) -> list[list[Sent]]:
        """Each user's messages in the order they write them (messages spread evenly over users)."""
        per_user = [
            self.messages // self.users + (1 if n < self.messages % self.users else 0) for n in range(self.users)
        ]
        plan = []
        for number, count in enumerate(per_user):
            channel = CHANNELS[number % len(CHANNELS)]
            user = _user_id(channel, number, self.run_id)
            plan.append(
                [
                    Sent(
                        channel,
                        user,
                        _provider_id(channel, self.run_id, number, position),
                        QUESTIONS[(number + position) % len(QUESTIONS)],
                        position,
                    )
                    for position in range(count)
                ]
            )
        return plan

    async def run(self) -> Outcome:
        outcome = Outcome()
        rng = random.Random(self.seed)
        plan = self.plan()
        twice = {sent.provider_id for run in plan for sent in run if rng.random() < self.duplicate_share}
        gate = asyncio.Semaphore(self.concurrency)
        started = time.monotonic()
        limits = httpx.Limits(max_connections=self.concurrency * 2, max_keepalive_connections=self.concurrency * 2)
        async with httpx.AsyncClient(timeout=30, limits=limits) as client:

            async def one_user(number: int, run: list[Sent]) -> None:
                async with gate:
                    for sent in run:
                        outcome.messages.append(sent)
                        first = self.webs[(number + sent.position) % len(self.webs)]
                        if sent.provider_id in twice and len(self.webs) > 1:
                            second = self.webs[(number + sent.position + 1) % len(self.webs)]
                            await asyncio.gather(
                                self._deliver(client, first, sent, outcome),
                                self._deliver(client, second, sent, outcome),
                            )
                        else:
                            await self._deliver(client, first, sent, outcome)

            await asyncio.gather(*(one_user(number, run) for number, run in enumerate(plan)))
        outcome.seconds = time.monotonic() - started
        return outcome

    async def run_one(self, sent: Sent) -> Outcome:
        """Deliver one message to the first web process (retrying as a provider does)."""
        outcome = Outcome(messages=[sent])
        async with httpx.AsyncClient(timeout=30) as client:
            await self._deliver(client, self.webs[0], sent, outcome)
        assert not outcome.failed, outcome.failed
        return outcome

    async def _deliver(self, client: httpx.AsyncClient, web: str, sent: Sent, outcome: Outcome) -> None:
        """POST until a 2xx, like a provider: back off on 5xx, 429 and refused connections."""
        path, content, headers = self.request(sent)
        deadline = time.monotonic() + self.retry_for
        pause = 0.2
        while True:
            try:
                response = await client.post(web + path, content=content, headers=headers)
                outcome.statuses[response.status_code] += 1
                if response.status_code < 300:
                    return
                if response.status_code < 500 and response.status_code != 429:
                    outcome.failed.append(f"{sent.provider_id}: {response.status_code} {response.text[:200]}")
                    return
            except httpx.TransportError:
                outcome.statuses[0] += 1
            if time.monotonic() > deadline:
                outcome.failed.append(f"{sent.provider_id}: no 2xx within {self.retry_for} s")
                return
            outcome.retries += 1
            await asyncio.sleep(pause * random.uniform(0.5, 1.0))
            pause = min(pause * 2, 2.0)

    def request(self, sent: Sent) -> tuple[str, bytes, dict[str, str]]:
        """The webhook request a provider would make for this message: path, body, headers."""
        if sent.channel == "telegram":
            chat = int(sent.user)
            update_id, message_id = sent.provider_id.split(":")[0], sent.provider_id.split(":")[2]
            person = {"id": chat, "is_bot": False, "first_name": "Load"}
            update = {
                "update_id": int(update_id),
                "message": {
                    "message_id": int(message_id),
                    "from": person,
                    "chat": {**person, "type": "private"},
                    "date": int(time.time()),
                    "text": sent.text,
                },
            }
            return (
                "/webhooks/telegram",
                json.dumps(update).encode(),
                {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET},
            )
        whatsapp = sent.channel == "whatsapp"
        params = {
            "MessageSid": sent.provider_id,
            "SmsMessageSid": sent.provider_id,
            "AccountSid": "AC" + "f" * 32,
            "From": f"whatsapp:{sent.user}" if whatsapp else sent.user,
            "To": f"whatsapp:{WHATSAPP_NUMBER}" if whatsapp else SMS_NUMBER,
            "Body": sent.text,
            "NumMedia": "0",
            "NumSegments": "1",
            "ApiVersion": "2010-04-01",
        }
        if whatsapp:
            params["ProfileName"] = "Load"
        path = "/webhooks/twilio"
        signature = RequestValidator(AUTH_TOKEN).compute_signature(self.public_base_url + path, params)
        return (
            path,
            urlencode(params).encode(),
            {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature},
        )


def _user_id(channel: str, number: int, run_id: str) -> str:
    if channel == "telegram":
        return str(7_000_000_000 + int(run_id[-5:]) * 10_000 + number)
    return f"+278{int(run_id[-4:]):04d}{number:04d}"


def _provider_id(channel: str, run_id: str, number: int, position: int) -> str:
    if channel == "telegram":
        update_id = int(run_id[-6:]) * 100_000 + number * 50 + position
        return f"{update_id}:{_user_id(channel, number, run_id)}:{position + 1}"
    return f"SM{run_id}{number:08d}{position:04d}".ljust(34, "0")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--web", action="append", required=True, help="a web process's base URL (repeat)")
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--duplicates", type=float, default=0.2, help="share delivered twice")
    parser.add_argument("--concurrency", type=int, default=40, help="users writing at once")
    parser.add_argument("--public-base-url", default="http://127.0.0.1:8000")
    args = parser.parse_args()
    load = Load(
        webs=args.web,
        users=args.users,
        messages=args.messages,
        public_base_url=args.public_base_url,
        duplicate_share=args.duplicates,
        concurrency=args.concurrency,
    )
    print(json.dumps(asyncio.run(load.run()).summary()))


if __name__ == "__main__":
    main()
