"""Webhook intake shared by every provider route: size check, signature, parse, store, then answer.

Also the door's rate limits: `SourceGuard` limits per source address (the platform API's callers,
and whoever keeps failing signatures), and `answer` lets core.ratelimit hold back the replies to
a channel identity that floods.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import ipaddress
import json
import logging
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor

from fastapi import BackgroundTasks, HTTPException, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bots.settings import Settings
from core.channels import WebhookChannel
from core.errors import InboundRejected
from core.inbox import Accepted, Inbox
from core.messages import InboundMessage
from core.ratelimit import AddressLimit

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 1_000_000
# Per source address and minute: refused requests (401, 403, 413) before the address is refused
# outright with 429, and platform API calls. The app takes them from the settings of the same
# names (SOURCE_REFUSALS_PER_MINUTE, PLATFORM_API_CALLS_PER_MINUTE); these are the defaults.
SOURCE_REFUSALS_PER_MINUTE = 30
PLATFORM_API_CALLS_PER_MINUTE = 600
PLATFORM_API_PREFIX = "/api/"
REFUSED_STATUSES = frozenset({401, 403, 413})
# Threads that only store arriving messages: a few, since each batch of stores is one short
# transaction (and on SQLite one process's writers queue on one lock anyway).
INTAKE_THREADS = 4
# Messages one intake thread stores in one transaction, when that many wait for it.
STORE_BATCH = 16
_INTAKE = ThreadPoolExecutor(INTAKE_THREADS, thread_name_prefix="intake")
# What waits for an intake thread, per inbox (tests run several apps), and how many threads work for it.
_QUEUE_LOCK = threading.Lock()
_WAITING: dict[Inbox, deque[tuple[InboundMessage, Future[Accepted], contextvars.Context]]] = {}
_DRAINING: dict[Inbox, int] = {}


async def read_body(request: Request) -> bytes:
    """The request body, or 413 past MAX_BODY_BYTES without reading further."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise HTTPException(413, "request body too large")
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                raise HTTPException(413, "request body too large")
    except ClientDisconnect:
        raise HTTPException(400, "the request body was cut off") from None
    if declared is not None and declared.isdigit() and int(declared) != len(body):
        raise HTTPException(400, "the request body does not match its Content-Length")
    return bytes(body)


def public_url(request: Request) -> str:
    """The URL the provider called and signed: PUBLIC_BASE_URL + path (+ query), never the internal one."""
    base = request.app.state.services.settings.public_base_url
    query = request.url.query
    return f"{base}{request.url.path}" + (f"?{query}" if query else "")


async def verified(request: Request, channel: WebhookChannel) -> tuple[dict[str, str], bytes]:
    """The lower-cased headers and the body of a request the provider signed; 413 or 403 otherwise."""
    body = await read_body(request)
    headers = {key.lower(): value for key, value in request.headers.items()}
    try:
        channel.verify(url=public_url(request), headers=headers, body=body)
    except InboundRejected as exc:
        log.warning("webhook refused: %s", exc, extra={"channel": channel.name})
        raise HTTPException(403, "request signature is not valid") from None
    return headers, body


async def store(inbox: Inbox, message: InboundMessage) -> Accepted:
    """Store `message` on the intake's own threads: a webhook's store never queues behind the
    answers worked out in the default thread pool (bots.answering). The messages waiting for a
    thread are stored together, up to STORE_BATCH in one transaction (Inbox.receive_all)."""
    future: Future[Accepted] = Future()
    with _QUEUE_LOCK:
        waiting = _WAITING.setdefault(inbox, deque())
        waiting.append((message, future, contextvars.copy_context()))
        draining = _DRAINING.get(inbox, 0)
        start = draining < INTAKE_THREADS
        if start:
            _DRAINING[inbox] = draining + 1
    if start:
        _INTAKE.submit(_drain, inbox)
    return await asyncio.wrap_future(future)


def _drain(inbox: Inbox) -> None:
    """On an intake thread: store what waits for this inbox, a batch at a time, until nothing does."""
    while True:
        with _QUEUE_LOCK:
            waiting = _WAITING[inbox]
            if not waiting:
                _DRAINING[inbox] -= 1
                if not _DRAINING[inbox]:
                    del _DRAINING[inbox], _WAITING[inbox]
                return
            taken = [waiting.popleft() for _ in range(min(STORE_BATCH, len(waiting)))]
        # a webhook whose client went away (its wait cancelled) is not stored: it got no 200, so the
        # provider sends it again
        taken = [item for item in taken if item[1].set_running_or_notify_cancel()]
        if not taken:
            continue
        messages = [message for message, _, _ in taken]
        try:
            results: list[Accepted | Exception] = list(taken[0][2].run(inbox.receive_all, messages))
        except Exception:  # noqa: BLE001 (each is stored again alone, and raises its own error)
            # one of them met a concurrent store of itself or of its new user, or could not be
            # stored: the others must not fail with it, so each is stored in a transaction of its own
            results = [_receive_alone(inbox, message, context) for message, _, context in taken]
        for (_, future, _), result in zip(taken, results, strict=True):
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)


def _receive_alone(inbox: Inbox, message: InboundMessage, context: contextvars.Context) -> Accepted | Exception:
    try:
        return context.run(inbox.receive, message)
    except Exception as exc:  # noqa: BLE001 (not swallowed: the message's webhook raises it)
        return exc


async def take_in(request: Request, channel: WebhookChannel, background: BackgroundTasks) -> list[Accepted]:
    """Verify, parse and store a provider's request; the answers are worked out after the response."""
    services = request.app.state.services
    headers, body = await verified(request, channel)
    try:
        messages = channel.parse(headers=headers, body=body)
    except InboundRejected as exc:
        log.warning("webhook unreadable: %s", exc, extra={"channel": channel.name})
        raise HTTPException(400, str(exc)) from None
    accepted = [await store(services.inbox, message) for message in messages]
    fresh = [item.message_id for item in accepted if not item.duplicate]
    if fresh:
        background.add_task(answer, services, fresh)
    return accepted


async def answer(services, message_ids: list[int]) -> None:  # type: ignore[no-untyped-def]
    """Answer stored messages and send their replies (bots.answering), after the webhook's response.

    A message from an identity over its rate limit is not answered (core.ratelimit): at most
    one notice to slow down goes out instead. With ANSWERS_BY_WORKERS the messages are left to
    the worker processes (bots.worker.answer_waiting), and this process's sweep answers any of
    them still waiting after a while, should no worker be running.
    """
    if services.settings.answers_by_workers:
        return
    await services.answerer.answer(message_ids)


def handle_limited(services, message: InboundMessage) -> tuple[Accepted, list[int]]:  # type: ignore[no-untyped-def]
    """Inbox.handle under the identity's rate limit, for the platform API: store, then answer or
    hold back; a duplicate is not answered again. The outbox rows written."""
    accepted = services.inbox.receive(message)
    if accepted.duplicate:
        return accepted, []
    return accepted, services.inbox.process(accepted.message_id, screen=services.answerer.throttle.screen)


def source_key(scope: Scope) -> str:
    """Who is calling: the client address (an IPv6 caller by its /64, which one host usually holds).

    Behind a reverse proxy, set FORWARDED_ALLOW_IPS (uvicorn's --forwarded-allow-ips) so that
    the client is the real caller and not the proxy; otherwise every caller shares the proxy's
    address, and so its limits.
    """
    client = scope.get("client")
    return _address_key(str(client[0]) if client else "unknown")


# Every request asks, and a provider's webhooks come from a few addresses: parsing each one anew
# was 4 % of the web process's samples (py-spy) while it stored the benchmark's webhooks. Bounded:
# a flood from many addresses only turns the cache over.
@functools.lru_cache(maxsize=4096)
def _address_key(host: str) -> str:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


class SourceGuard:
    """ASGI middleware: limits per source address, answered with 429 and Retry-After.

    Provider webhooks come from a few addresses of Twilio, Telegram and Slack carrying many
    users' messages, so only *refused* requests (401, 403, 413: forged, unsigned, oversized)
    count against an address: a provider whose requests verify is never slowed, and a flood
    of forgeries is cut off before its bodies are read or each one is logged. The platform
    API's callers are counted on every call. Counts live in this process's memory
    (core.ratelimit.AddressLimit says why).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        refusals_per_minute: int = SOURCE_REFUSALS_PER_MINUTE,
        api_calls_per_minute: int | None = PLATFORM_API_CALLS_PER_MINUTE,
        window_seconds: int = 60,
    ) -> None:
        self.app = app
        self.refusals = AddressLimit(refusals_per_minute, window_seconds=window_seconds)
        self.api_calls = (
            AddressLimit(api_calls_per_minute, window_seconds=window_seconds) if api_calls_per_minute else None
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        source = source_key(scope)
        if self.refusals.spent(source):
            await _too_many(send, self.refusals.retry_after(source))
            return
        if self.api_calls is not None and str(scope.get("path", "")).startswith(PLATFORM_API_PREFIX):
            calls = self.api_calls.hit(source)
            if calls > self.api_calls.limit:
                if calls == self.api_calls.limit + 1:  # logged once per window, not per call
                    log.warning("platform API calls over the limit for a source", extra={"source": source})
                await _too_many(send, self.api_calls.retry_after(source))
                return
        status: list[int] = []

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(int(message["status"]))
            await send(message)

        await self.app(scope, receive, watch)
        if status and status[0] in REFUSED_STATUSES and self.refusals.hit(source) == self.refusals.limit:
            log.warning("source refused too often: further requests get 429 for a while", extra={"source": source})


class BodyLimit:
    """ASGI middleware: 413 for any request body over MAX_BODY_BYTES, webhook or platform API.

    A declared Content-Length over the limit is refused before a byte is read; a chunked body
    is read here up to the limit (so at most that much is ever held) and handed on whole.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            if declared.isdigit() and int(declared) > self.max_bytes:
                await _refuse(send, 413, b'{"detail":"request body too large"}')
                return
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size, more = 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: nothing to answer
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = bool(message.get("more_body", False))
            if size > self.max_bytes:
                await _refuse(send, 413, b'{"detail":"request body too large"}')
                return
        await self.app(scope, _replay(b"".join(chunks), receive), send)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: only http.disconnect remains

    return replayed


def guard(app: Starlette, settings: Settings) -> None:
    """Put the door's limits on the web app: the body limit, then the per-source limits outside it
    (SOURCE_REFUSALS_PER_MINUTE, PLATFORM_API_CALLS_PER_MINUTE: 0 is no limit on API calls),
    and 422 answers that survive any input."""
    app.add_middleware(BodyLimit)
    app.add_middleware(
        SourceGuard,
        refusals_per_minute=settings.source_refusals_per_minute,
        api_calls_per_minute=settings.platform_api_calls_per_minute or None,
    )
    app.add_exception_handler(RequestValidationError, unprocessable)


async def unprocessable(_request: Request, exc: Exception) -> Response:
    """FastAPI's 422, in ASCII-only JSON: its own handler echoes the input back and fails with a
    500 when that holds a lone surrogate (a "\\ud800" escape in the JSON body)."""
    assert isinstance(exc, RequestValidationError)
    content = json.dumps({"detail": jsonable_encoder(exc.errors())}, ensure_ascii=True)
    return Response(content, status_code=422, media_type="application/json")


async def _too_many(send: Send, retry_after: int) -> None:
    await _refuse(
        send, 429, b'{"detail":"too many requests, slow down"}', [(b"retry-after", str(retry_after).encode())]
    )


async def _refuse(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
