"""A fake Telegram Bot API on 127.0.0.1 for python-telegram-bot: sendMessage, answerCallbackQuery, setWebhook, getUpdates."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from tests.fakes.provider_api import FakeProviderAPI, Recorded, Reply

TOKEN = "123456:TEST-token_for-the-fake"
# Every reply closes its connection. python-telegram-bot keeps connections alive; one left open
# in a finished test's event loop (uvicorn's thread) would surface later as a ResourceWarning.
CLOSE = {"Connection": "close"}


def ok(result: Any) -> Reply:
    return Reply(200, {"ok": True, "result": result}, headers=dict(CLOSE))


def error(status: int, description: str, **parameters: Any) -> Reply:
    """A Bot API error as Telegram words it (https://core.telegram.org/bots/api#making-requests)."""
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if parameters:
        body["parameters"] = parameters
    return Reply(status, body, headers=dict(CLOSE))


def sent_message(request: Recorded) -> Reply:
    """sendMessage's result: the Message Telegram created (message_id, date and chat.type are required)."""
    form = request.form
    chat_id = int(form["chat_id"])
    return ok(
        {
            "message_id": 1000 + len(form["text"]),
            "date": 1700000000,
            "text": form["text"],
            "chat": {"id": chat_id, "type": "private", "first_name": "Thandi"},
        }
    )


class FakeTelegramAPI(FakeProviderAPI):
    """Point python-telegram-bot at `base_url`; script replies per method, assert on `calls(method)`.

    `send` scripts sendMessage like FakeProviderAPI's lists (the last one repeats), where None
    stands for a successful send. `updates` is a queue of getUpdates batches (or error replies):
    each call takes the next one; once empty, calls wait `idle` seconds (a long poll cut short)
    and answer no updates.
    """

    def __init__(
        self,
        *,
        send: list[Reply | None] | None = None,
        answer_callback: list[Reply] | None = None,
        set_webhook: list[Reply] | None = None,
        updates: list[list[dict[str, Any]] | Reply] | None = None,
        idle: float = 0.05,
        token: str = TOKEN,
    ) -> None:
        self.token = token
        self.send_script: list[Reply | None] = list(send or [None])
        self.batches = list(updates or [])
        self.idle = idle
        self._batch_lock = threading.Lock()
        prefix = f"/bot{token}"
        super().__init__(
            {
                ("POST", f"{prefix}/sendMessage"): self._send_message,
                ("POST", f"{prefix}/answerCallbackQuery"): answer_callback or [ok(True)],
                ("POST", f"{prefix}/setWebhook"): set_webhook or [ok(True)],
                ("POST", f"{prefix}/getUpdates"): self._get_updates,
                ("POST", f"{prefix}/getMe"): [
                    ok({"id": 123456, "is_bot": True, "first_name": "SayPro", "username": "saypro_bot"})
                ],
            }
        )

    @property
    def base_url(self) -> str:
        """TELEGRAM_API_BASE_URL for this fake: python-telegram-bot appends the token."""
        return f"{self.url}/bot"

    def method(self, name: str) -> list[Recorded]:
        """The recorded calls of one Bot API method, in order."""
        return self.calls("POST", f"/bot{self.token}/{name}")

    def sent_texts(self) -> list[str]:
        return [call.form["text"] for call in self.method("sendMessage")]

    def _send_message(self, request: Recorded) -> Reply:
        with self._batch_lock:
            scripted = self.send_script.pop(0) if len(self.send_script) > 1 else self.send_script[0]
        return sent_message(request) if scripted is None else scripted

    def _get_updates(self, request: Recorded) -> Reply:
        with self._batch_lock:
            batch = self.batches.pop(0) if self.batches else None
        if batch is None:
            return Reply(200, {"ok": True, "result": []}, headers=dict(CLOSE), delay=self.idle)
        if isinstance(batch, Reply):
            return batch
        return ok(batch)


def keyboard(request: Recorded) -> list[list[dict[str, str]]]:
    """The inline keyboard a sendMessage carried (PTB sends reply_markup as a JSON string in the form)."""
    markup = request.form.get("reply_markup")
    return json.loads(markup)["inline_keyboard"] if markup else []


FIXTURES = Path(__file__).parent.parent / "fixtures" / "telegram"


def load_update(name: str, **changes: Any) -> dict[str, Any]:
    """A fixture update from tests/fixtures/telegram/NAME.json.

    `update_id`, `text` (the message's) and `data` (the button's) change those fields; any other
    keyword replaces a top-level key of the update.
    """
    update: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    if "update_id" in changes:
        update["update_id"] = changes.pop("update_id")
    if "text" in changes:
        update["message"]["text"] = changes.pop("text")
    if "data" in changes:
        update["callback_query"]["data"] = changes.pop("data")
    update.update(changes)
    return update
