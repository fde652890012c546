"""The ASGI app: health, metrics and the platform API (routes verify, store, answer, return)."""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from anyio import to_thread
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from adapters.api import ApiMessageIn, ApiMessagesOut, ApiReply
from bots.intake import guard, handle_limited
from bots.platform_api import router as records_router
from bots.privacy_cli import retention_loops
from bots.wiring import Services, knowledge_watchers
from bots.worker import run_forever
from core.storage.models import OutboxItem

log = logging.getLogger(__name__)
# Threads for the web process's blocking work (database transactions, mostly) on PostgreSQL,
# instead of anyio's default of 40: they take turns on one interpreter lock, and 40 of them
# under a burst spent more time handing it over than working. A handful keeps the database
# busy, since a thread waiting for it lets another run. On SQLite, where one process's writers
# queue on a lock of their own anyway, 8 threads answered fewer messages than 40 and the default
# stays (bench/README.md has the figures).
WEB_THREADS = 8


def create_app(services: Services, *, background: bool = True) -> FastAPI:
    """The web app; with `background`, the dispatcher runs in the same process."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if not services.database.is_sqlite:
            to_thread.current_default_thread_limiter().total_tokens = WEB_THREADS
        tasks = []
        if background:
            tasks.append(asyncio.create_task(run_forever(services.inbox, services.dispatcher)))
            tasks += [asyncio.create_task(poller(services)) for plugin in services.plugins for poller in plugin.pollers]
            tasks += [asyncio.create_task(loop) for loop in retention_loops(services.settings, services.database)]
        tasks += [asyncio.create_task(watcher) for watcher in knowledge_watchers(services)]  # hot reload
        yield
        for task in tasks:
            task.cancel()
        # gather, not suppress(CancelledError) per task: that would also swallow a cancellation
        # of the shutdown itself.
        for outcome in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(outcome, Exception):
                log.error("a background task ended with %s at shutdown", type(outcome).__name__)
        for plugin in services.plugins:
            for close in plugin.closers:
                await close()

    app = FastAPI(title="SayPro support bot", version="0.1.0", lifespan=lifespan)
    app.state.services = services
    guard(app, services.settings)  # bots/intake.py: body size, per-source rate limits, safe 422s

    @app.exception_handler(SQLAlchemyError)
    async def database_unavailable(_request: Request, exc: SQLAlchemyError) -> JSONResponse:
        # The provider or client should retry: nothing was lost, the message was not taken.
        log.error("database error: %s", type(exc).__name__)
        return JSONResponse({"detail": "the database is unavailable, try again shortly"}, status_code=503)

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        try:
            healthy = await run_in_threadpool(services.database.ping)
        except SQLAlchemyError:
            healthy = False
        if healthy:
            return JSONResponse({"status": "ok"})
        return JSONResponse({"status": "unavailable"}, status_code=503)

    @app.get("/metrics")
    async def metrics() -> Response:
        # The report's gauges query the database at each scrape: off the event loop.
        return Response(await run_in_threadpool(generate_latest), media_type=CONTENT_TYPE_LATEST)

    for plugin in services.plugins:
        if plugin.router is not None:
            app.include_router(plugin.router)
    app.post("/api/v1/messages", response_model=ApiMessagesOut, dependencies=[Depends(platform_key)])(
        _messages_route(services)
    )
    app.include_router(records_router, dependencies=[Depends(platform_key)])
    return app


def platform_key(request: Request) -> None:
    """The platform API's bearer key: 503 when none is configured, 401 when absent, 403 when wrong."""
    configured = request.app.state.services.settings.saypro_api_key
    if configured is None:
        raise HTTPException(503, "the platform API is off: SAYPRO_API_KEY is not set")
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        log.warning("platform API call without a bearer key", extra={"path": request.url.path})
        raise HTTPException(401, "a bearer key is required", headers={"WWW-Authenticate": "Bearer"})
    if not hmac.compare_digest(given.strip().encode(), configured.get_secret_value().encode()):
        log.warning("platform API call with a wrong key", extra={"path": request.url.path})
        raise HTTPException(403, "the bearer key is not valid")


def _messages_route(services: Services):  # type: ignore[no-untyped-def]
    async def post_message(body: ApiMessageIn) -> ApiMessagesOut:
        inbound = services.api.parse(body)
        accepted, item_ids = await run_in_threadpool(handle_limited, services, inbound)  # bots/intake.py
        await services.dispatcher.dispatch(item_ids)
        replies = await run_in_threadpool(_replies, services, item_ids)
        return ApiMessagesOut(conversation=accepted.conversation_id, replies=replies, duplicate=accepted.duplicate)

    return post_message


def _replies(services: Services, item_ids: list[int]) -> list[ApiReply]:
    if not item_ids:
        return []
    with services.database.sessions() as session:
        items = session.scalars(select(OutboxItem).where(OutboxItem.id.in_(item_ids)).order_by(OutboxItem.id))
        return [ApiReply(text=item.text, options=[option["label"] for option in item.options]) for item in items]
