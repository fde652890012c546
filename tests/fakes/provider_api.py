"""A recording fake provider API on 127.0.0.1 that the real SDKs are pointed at.

Routes map (METHOD, path regex) to a handler; a handler may also be a list of canned replies
played in order (the last one repeats), so a test can script "429, then 200".
Every request is recorded with its method, path, query, headers, raw body and parsed form/JSON.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Recorded:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes

    @property
    def form(self) -> dict[str, str]:
        """The body as a form, last value per key (Telegram and Twilio send forms)."""
        return {key: values[-1] for key, values in parse_qs(self.body.decode(), keep_blank_values=True).items()}

    @property
    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class Reply:
    """A canned answer: status, a JSON-able body (or bytes/str), headers, and an optional delay."""

    status: int = 200
    body: Any = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


Handler = Callable[[Recorded], Reply]


class FakeProviderAPI:
    """Start with routes, point the SDK at `.url`, then assert on `.requests`; `close()` at the end."""

    def __init__(self, routes: dict[tuple[str, str], Handler | list[Reply]]) -> None:
        self.routes: list[tuple[str, re.Pattern[str], Handler | list[Reply]]] = [
            (method, re.compile(path), handler) for (method, path), handler in routes.items()
        ]
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def calls(self, method: str, path_pattern: str) -> list[Recorded]:
        """The recorded requests whose method matches and whose path matches the regex."""
        pattern = re.compile(path_pattern)
        return [r for r in self.requests if r.method == method and pattern.fullmatch(r.path)]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _reply_for(self, request: Recorded) -> Reply:
        for method, pattern, handler in self.routes:
            if method == request.method and pattern.fullmatch(request.path):
                if isinstance(handler, list):
                    with self._lock:
                        return handler.pop(0) if len(handler) > 1 else handler[0]
                return handler(request)
        return Reply(404, {"error": f"no fake route for {request.method} {request.path}"})

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                request = Recorded(
                    self.command, parts.path, parts.query, {k.lower(): v for k, v in self.headers.items()}, body
                )
                with outer._lock:
                    outer.requests.append(request)
                reply = outer._reply_for(request)
                if reply.delay:
                    time.sleep(reply.delay)
                payload, headers = reply.body, dict(reply.headers)
                if not isinstance(payload, (bytes, str)):
                    payload = json.dumps(payload)
                    headers.setdefault("Content-Type", "application/json")
                data = payload.encode() if isinstance(payload, str) else payload
                self.send_response(reply.status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

        return Handler
