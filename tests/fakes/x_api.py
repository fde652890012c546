"""A fake X API v2 for direct messages on 127.0.0.1: a DM event store behind GET /2/dm_events, and DM sends.

Like X, it answers GET /2/dm_events newest first, pages with `next_token`, returns only the
fields asked for in `dm_event.fields` (id, event_type and text by default), filters on
`event_types`, and adds `includes.users`/`includes.media` for the matching expansions. A DM
sent through POST /2/dm_conversations/with/{id}/messages becomes an event from the bot, as on X,
so the next poll sees the bot's own message. Scripted replies (`send_replies`, `read_replies`)
are played first, one per request, to stage 429s and 500s.
"""

from __future__ import annotations

import copy
import itertools
import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from bots.settings import Settings, load_settings
from tests.fakes.provider_api import FakeProviderAPI, Recorded, Reply

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "x"
# The accounts in the fixtures: the bot, and two users who write to it.
BOT = "1582358281239683072"
THANDI = "1143532010442407937"
SIPHO = "906948460078698496"
CONSUMER_SECRET = "cs"
DEFAULT_FIELDS = {"id", "event_type", "text"}
SEND_PATH = r"/2/dm_conversations/with/(\d+)/messages"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def x_settings(fake: FakeXAPI, database_url: str, **overrides: Any) -> Settings:
    """Settings with X live against `fake` (consumer secret CONSUMER_SECRET) and a fast poll."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "public_base_url": "https://bot.example.org",
        "x_consumer_key": "ck",
        "x_consumer_secret": CONSUMER_SECRET,
        "x_access_token": "at",
        "x_access_token_secret": "ats",
        "x_bot_user_id": fake.bot_user_id,
        "x_api_base_url": fake.url,
        "x_poll_seconds": 0.05,
    }
    return load_settings(**{**values, **overrides})


def x_time(when: datetime) -> str:
    """X's timestamp format, e.g. 2026-01-20T15:38:16.000Z."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


class FakeXAPI:
    """Seed with `seed()` or `user_writes()`, point X_API_BASE_URL at `.url`, assert on `sends()` and `reads()`."""

    def __init__(self, *, bot_user_id: str = BOT) -> None:
        self.bot_user_id = bot_user_id
        self.events: list[dict[str, Any]] = []
        self.users: dict[str, dict[str, Any]] = {}
        self._add_user(bot_user_id, "SayPro Support")
        self.media: dict[str, dict[str, Any]] = {}
        self.send_replies: list[Reply] = []
        self.read_replies: list[Reply] = []
        self._ids = itertools.count(1_880_000_000_000_000_000)
        self._lock = threading.Lock()
        self.api = FakeProviderAPI({("GET", r"/2/dm_events"): self._dm_events, ("POST", SEND_PATH): self._create})
        self.url = self.api.url

    def close(self) -> None:
        self.api.close()

    def seed(self, response: dict[str, Any], *, fresh: bool = True) -> None:
        """Load a GET /2/dm_events response (fixture); with `fresh`, its times move to the last minutes, in order."""
        events = sorted(copy.deepcopy(response.get("data", [])), key=lambda event: int(event["id"]))
        now = datetime.now(UTC)
        for age, event in enumerate(reversed(events), start=1):
            if fresh:
                event["created_at"] = x_time(now - timedelta(seconds=10 * age))
        with self._lock:
            self.events.extend(events)
            for user in response.get("includes", {}).get("users", []):
                self.users[user["id"]] = user
            for item in response.get("includes", {}).get("media", []):
                self.media[item["media_key"]] = item
        self._ids = itertools.count(max(int(e["id"]) for e in self.events) + 1000 if self.events else 1)

    def user_writes(self, sender_id: str, text: str, *, name: str | None = None, when: datetime | None = None) -> str:
        """A new DM from `sender_id` to the bot; its event id."""
        with self._lock:
            event_id = str(next(self._ids))
            if sender_id not in self.users:
                self._add_user(sender_id, name or f"User {sender_id}")
            self.events.append(self._event(event_id, sender_id, text, peer=sender_id, when=when))
        return event_id

    def sends(self) -> list[Recorded]:
        """Every DM send request received (failed ones too)."""
        return self.api.calls("POST", SEND_PATH)

    def delivered(self) -> list[dict[str, Any]]:
        """The DMs the fake accepted: the bot's own MessageCreate events."""
        with self._lock:
            return [event for event in self.events if event["sender_id"] == self.bot_user_id]

    def reads(self) -> list[Recorded]:
        return self.api.calls("GET", r"/2/dm_events")

    def _add_user(self, user_id: str, name: str) -> None:
        self.users[user_id] = {"id": user_id, "name": name, "username": f"u{user_id}"}

    def _event(
        self, event_id: str, sender_id: str, text: str, *, peer: str, when: datetime | None = None
    ) -> dict[str, Any]:
        low, high = sorted((int(self.bot_user_id), int(peer)))
        return {
            "id": event_id,
            "event_type": "MessageCreate",
            "text": text,
            "sender_id": sender_id,
            "dm_conversation_id": f"{low}-{high}",
            "created_at": x_time(when or datetime.now(UTC)),
        }

    def _dm_events(self, request: Recorded) -> Reply:
        if self.read_replies:
            return self.read_replies.pop(0)
        if not request.headers.get("authorization", "").startswith("OAuth "):
            return Reply(401, {"title": "Unauthorized", "type": "about:blank", "status": 401})
        query = {key: values[-1] for key, values in parse_qs(request.query).items()}
        size = int(query.get("max_results", "100"))
        if not 1 <= size <= 100:
            return Reply(400, {"title": "Invalid Request", "detail": "max_results must be 1 to 100", "status": 400})
        start = int(query.get("pagination_token", "page-0").removeprefix("page-"))
        with self._lock:
            events = sorted(self.events, key=lambda event: int(event["id"]), reverse=True)
            types = query.get("event_types")
            events = [event for event in events if not types or event["event_type"] in types.split(",")]
            page = events[start : start + size]
            body = self._page(page, query)
        if start + size < len(events):
            body["meta"]["next_token"] = f"page-{start + size}"
        return Reply(200, body)

    def _page(self, page: list[dict[str, Any]], query: dict[str, str]) -> dict[str, Any]:
        fields = DEFAULT_FIELDS | set(query.get("dm_event.fields", "").split(","))
        expansions = set(query.get("expansions", "").split(","))
        body: dict[str, Any] = {"meta": {"result_count": len(page)}}
        if page:
            body["data"] = [{key: value for key, value in event.items() if key in fields} for event in page]
        includes: dict[str, Any] = {}
        if "sender_id" in expansions:
            senders = dict.fromkeys(event["sender_id"] for event in page)
            includes["users"] = [self.users[sender] for sender in senders if sender in self.users]
        if "attachments.media_keys" in expansions:
            keys = [key for event in page for key in event.get("attachments", {}).get("media_keys", [])]
            includes["media"] = [self.media[key] for key in keys if key in self.media]
        body["includes"] = {key: value for key, value in includes.items() if value}
        if not body["includes"]:
            del body["includes"]
        return body

    def _create(self, request: Recorded) -> Reply:
        if self.send_replies:
            reply = self.send_replies.pop(0)
            if reply.status >= 300:
                return reply
        recipient = request.path.split("/")[-2]
        with self._lock:
            event_id = str(next(self._ids))
            event = self._event(event_id, self.bot_user_id, str(request.json.get("text", "")), peer=recipient)
            self.events.append(event)
        return Reply(201, {"data": {"dm_conversation_id": event["dm_conversation_id"], "dm_event_id": event_id}})
