"""A fake Twilio Messages API and Telegram Bot API for the fault tests, with faults on cue.

Unlike tests/fakes/provider_api.py it tells *accepted* messages (the provider took them: they
reach the user) from mere requests, which is what "answered exactly once" is about:

- `hold` seconds before accepting, watching the connection: if the client goes away meanwhile
  (its process was killed), the message is dropped, as a provider drops a request it never
  finished receiving;
- `linger` seconds after accepting, before answering: a client killed then has had its
  message accepted without learning so, the case that makes delivery at-least-once;
- a script of faults per request: a status (500, 429 with Retry-After), or "stall" (no answer
  for `stall` seconds, then the connection is closed: the client's timeout), then normal service.
"""

from __future__ import annotations

import itertools
import json
import select
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

ACCOUNT_SID = "AC" + "f" * 32
AUTH_TOKEN = "fault-test-twilio-token"
SMS_NUMBER = "+14155550100"
WHATSAPP_NUMBER = "+14155238886"
TELEGRAM_TOKEN = "424242:FAULT-test_token"
TELEGRAM_SECRET = "fault-test-telegram-secret"
TWILIO_PATH = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
TELEGRAM_PATH = f"/bot{TELEGRAM_TOKEN}/sendMessage"
UPDATES_PATH = f"/bot{TELEGRAM_TOKEN}/getUpdates"


@dataclass(frozen=True)
class Delivered:
    """A message the provider accepted: to whom, on which channel, what, and in which order."""

    number: int
    channel: str
    user: str
    text: str
    at: float


@dataclass
class Fault:
    """One scripted answer instead of normal service: an HTTP status, or "stall"."""

    status: int = 500
    stall: bool = False
    retry_after: str | None = None


@dataclass
class FaultyProvider:
    """Serves both APIs on 127.0.0.1; read `delivered`, `abandoned` and `attempts`; `close()` at the end."""

    hold: float = 0.0
    linger: float = 0.0
    stall: float = 3.0
    faults: list[Fault] = field(default_factory=list)
    delivered: list[Delivered] = field(default_factory=list)
    abandoned: list[tuple[str, str, str]] = field(default_factory=list)
    attempts: int = 0
    in_flight: int = 0
    # Telegram's getUpdates: the updates waiting, and each call's (offset, started, ended).
    updates: list[dict[str, Any]] = field(default_factory=list)
    polls: list[tuple[int | None, float, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._numbers = itertools.count(1)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.httpd.daemon_threads = True
        self.httpd.request_queue_size = 256
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def by_user(self) -> dict[tuple[str, str], list[str]]:
        """Accepted texts per (channel, user), in the order the provider accepted them."""
        grouped: dict[tuple[str, str], list[str]] = {}
        with self._lock:
            for item in sorted(self.delivered, key=lambda d: d.number):
                grouped.setdefault((item.channel, item.user), []).append(item.text)
        return grouped

    def wait_for_in_flight(self, count: int = 1, *, timeout: float = 60.0) -> None:
        """Until at least `count` requests are held or lingering (a send is under way)."""
        deadline = time.monotonic() + timeout
        while self.in_flight < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"no send under way within {timeout} s")
            time.sleep(0.01)

    # -- the server side ------------------------------------------------------------------------

    def _next_fault(self) -> Fault | None:
        with self._lock:
            self.attempts += 1
            return self.faults.pop(0) if self.faults else None

    def _accept(self, channel: str, user: str, text: str) -> int:
        with self._lock:
            number = next(self._numbers)
            self.delivered.append(Delivered(number, channel, user, text, time.monotonic()))
            return number

    def _track(self, change: int) -> None:
        with self._lock:
            self.in_flight += change


def _parse(path: str, body: bytes) -> tuple[str, str, str] | None:
    """(channel, user, text) of a send request, or None for a path this fake does not serve."""
    form = {key: values[-1] for key, values in parse_qs(body.decode(), keep_blank_values=True).items()}
    if path == TWILIO_PATH:
        to = form.get("To", "")
        channel = "whatsapp" if to.startswith("whatsapp:") else "sms"
        return channel, to.removeprefix("whatsapp:"), form.get("Body", "")
    if path == TELEGRAM_PATH:
        if not form and body:
            form = {key: str(value) for key, value in json.loads(body).items()}
        return "telegram", form.get("chat_id", ""), form.get("text", "")
    return None


def _gone(connection: socket.socket, seconds: float) -> bool:
    """Wait up to `seconds`; True as soon as the client closes its end (its process died)."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select([connection], [], [], min(left, 0.05))
        if readable:
            try:
                if connection.recv(1, socket.MSG_PEEK) == b"":
                    return True
            except OSError:
                return True
            time.sleep(min(left, 0.05))  # pipelined bytes, not a close: keep waiting
    return False


def _created(path: str, number: int, channel: str, user: str, text: str) -> dict[str, Any]:
    if path == TWILIO_PATH:
        sid = f"SM{number:032x}"
        return {
            "sid": sid,
            "status": "queued",
            "to": user,
            "body": text,
            "account_sid": ACCOUNT_SID,
            "uri": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}.json",
            "num_segments": "1",
            "direction": "outbound-api",
            "date_created": "Mon, 23 Nov 2026 10:00:00 +0000",
        }
    return {
        "ok": True,
        "result": {
            "message_id": number,
            "date": 1700000000,
            "text": text,
            "chat": {"id": int(user) if user.lstrip("-").isdigit() else 0, "type": "private"},
        },
    }


def _handler(provider: FaultyProvider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            path = urlsplit(self.path).path
            if path == UPDATES_PATH:
                self._updates(body)
                return
            parsed = _parse(path, body)
            if parsed is None:
                self._answer(404, {"error": f"no fake route for {path}"})
                return
            fault = provider._next_fault()
            if fault is not None:
                self._fault(fault)
                return
            provider._track(+1)
            try:
                if provider.hold and _gone(self.connection, provider.hold):
                    with provider._lock:
                        provider.abandoned.append(parsed)
                    self.close_connection = True
                    return
                number = provider._accept(*parsed)
                if provider.linger:
                    time.sleep(provider.linger)
            finally:
                provider._track(-1)
            self._answer(201 if path == TWILIO_PATH else 200, _created(path, number, *parsed))

        def _updates(self, body: bytes) -> None:
            """getUpdates: the updates from `offset` on (earlier ones are confirmed and dropped), or
            an empty answer after half a second (a long poll cut short)."""
            form = {key: values[-1] for key, values in parse_qs(body.decode(), keep_blank_values=True).items()}
            if not form and body:
                form = {key: str(value) for key, value in json.loads(body).items()}
            offset = int(form["offset"]) if form.get("offset") else None
            started = time.monotonic()
            deadline = started + 0.5
            while True:
                with provider._lock:
                    if offset is not None:
                        provider.updates[:] = [u for u in provider.updates if u["update_id"] >= offset]
                    batch = list(provider.updates[:100])
                if batch or time.monotonic() > deadline:
                    break
                time.sleep(0.02)
            with provider._lock:
                provider.polls.append((offset, started, time.monotonic()))
            self._answer(200, {"ok": True, "result": batch})

        def _fault(self, fault: Fault) -> None:
            if fault.stall:
                time.sleep(provider.stall)
                self.close_connection = True
                return
            headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            self._answer(
                fault.status,
                {
                    "code": 20500 if fault.status >= 500 else 20429,
                    "message": f"fault {fault.status}",
                    "status": fault.status,
                },
                headers,
            )

        def _answer(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Connection", "close")
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)
            except OSError:
                pass  # the client is gone (killed): what was accepted stays accepted
            self.close_connection = True

    return Handler


def twilio_env(provider: FaultyProvider) -> dict[str, str]:
    """The variables that make SMS, WhatsApp and Telegram live against this fake."""
    return {
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_SMS_NUMBER": SMS_NUMBER,
        "TWILIO_WHATSAPP_NUMBER": WHATSAPP_NUMBER,
        "TWILIO_API_BASE_URL": provider.url,
        "TELEGRAM_BOT_TOKEN": TELEGRAM_TOKEN,
        "TELEGRAM_WEBHOOK_SECRET": TELEGRAM_SECRET,
        "TELEGRAM_API_BASE_URL": f"{provider.url}/bot",
    }
