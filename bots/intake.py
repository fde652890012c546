"""Webhook intake shared by every provider route: size check, signature, parse, store, then answer."""

from __future__ import annotations

import logging

from fastapi import BackgroundTasks, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from core.channels import WebhookChannel
from core.errors import InboundRejected
from core.inbox import Accepted

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 1_000_000


async def read_body(request: Request) -> bytes:
    """The request body, or 413 past MAX_BODY_BYTES without reading further."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise HTTPException(413, "request body too large")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise HTTPException(413, "request body too large")
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


async def take_in(request: Request, channel: WebhookChannel, background: BackgroundTasks) -> list[Accepted]:
    """Verify, parse and store a provider's request; the answers are worked out after the response."""
    services = request.app.state.services
    headers, body = await verified(request, channel)
    try:
        messages = channel.parse(headers=headers, body=body)
    except InboundRejected as exc:
        log.warning("webhook unreadable: %s", exc, extra={"channel": channel.name})
        raise HTTPException(400, str(exc)) from None
    accepted = [await run_in_threadpool(services.inbox.receive, message) for message in messages]
    fresh = [item.message_id for item in accepted if not item.duplicate]
    if fresh:
        background.add_task(answer, services, fresh)
    return accepted


async def answer(services, message_ids: list[int]) -> None:  # type: ignore[no-untyped-def]
    """Process stored messages and send their replies now (the background loop catches any left)."""
    for message_id in message_ids:
        item_ids = await run_in_threadpool(services.inbox.process, message_id)
        await services.dispatcher.dispatch(item_ids)
