"""A fake Slack Web API (auth.test, chat.postMessage) and Slack-signed requests, for the Slack tests."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from tests.fakes.provider_api import FakeProviderAPI, Recorded, Reply

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "slack"
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
BOT_TOKEN = "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy"
AUTH_TEST = {
    "ok": True,
    "url": "https://saypro.slack.com/",
    "team": "SayPro",
    "user": "saypro_bot",
    "team_id": "T061EG9R6",
    "user_id": "U0BOT0001",
    "bot_id": "B0BOT0001",
}
POST_PATH = "/api/chat.postMessage"


def posted(request: Recorded) -> Reply:
    """chat.postMessage's success: the DM channel and the new message's ts."""
    return Reply(200, {"ok": True, "channel": "D0USERDM1", "ts": f"{time.time():.6f}", "message": {}})


def fake_slack(post: Any = posted, *, auth: list[Reply] | None = None) -> FakeProviderAPI:
    """A fake Slack API under `.url + "/api"`; `post` and `auth` are handlers or lists of canned replies."""
    return FakeProviderAPI({("POST", "/api/auth.test"): auth or [Reply(200, AUTH_TEST)], ("POST", POST_PATH): post})


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def event(text: str = "hi", *, ts: str = "1700000100.000200", **changes: Any) -> dict[str, Any]:
    """The message.im fixture with another text and ts (and any event fields changed)."""
    body = fixture("message_im.json")
    body["event"].update(text=text, ts=ts, event_ts=ts, client_msg_id=f"msg-{ts}", **changes)
    body["event_id"] = f"Ev{ts.replace('.', '')}"
    return body


def block_action(value: str, *, action_ts: str = "1700000200.123456") -> str:
    """The block_actions fixture for a press of a button carrying `value`, form-encoded as Slack sends it."""
    payload = fixture("block_actions.json")
    payload["actions"][0].update(value=value, action_ts=action_ts)
    return urlencode({"payload": json.dumps(payload)})


def signature(body: str, timestamp: str, secret: str = SIGNING_SECRET) -> str:
    """https://api.slack.com/authentication/verifying-requests-from-slack: v0=hex HMAC-SHA256."""
    base = f"v0:{timestamp}:{body}".encode()
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def signed(body: str, *, form: bool = False, age: int = 0, secret: str = SIGNING_SECRET) -> dict[str, str]:
    """The headers Slack sends with `body`, signed `age` seconds ago."""
    timestamp = str(int(time.time()) - age)
    return {
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": signature(body, timestamp, secret),
        "Content-Type": "application/x-www-form-urlencoded" if form else "application/json",
    }


def posts(fake: FakeProviderAPI) -> list[dict[str, Any]]:
    """The JSON bodies of every chat.postMessage the fake received, in order."""
    return [request.json for request in fake.calls("POST", POST_PATH)]
