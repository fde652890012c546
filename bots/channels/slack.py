"""Slack's plugin: one Bolt AsyncApp per process on POST /slack/events, and the DM channel it feeds.

Bolt verifies every request (signing secret, five-minute timestamp window: 401 otherwise),
answers url_verification, and routes events, button presses and slash commands to listeners.
Listeners store, then acknowledge; the answer is worked out after the HTTP response.

Why `process_before_response=True` and FastAPI background tasks rather than Bolt's default
(ack first, run the listener as a task) or its lazy listeners: storing is one indexed insert, so
the listener finishes far inside Slack's 3 seconds, and an HTTP 200 then means "stored": a crash
afterwards loses nothing (the worker answers stored, unanswered messages) and a failure to store
answers 500, so Slack delivers the event again. Lazy listeners would rerun on each of Slack's
retries and do not know the stored message's id; the answer instead runs through the same
`bots.intake.answer` as every other webhook, after the response is sent.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable, Iterable
from typing import Any

from fastapi import APIRouter, BackgroundTasks, HTTPException, Request, Response
from slack_bolt.adapter.starlette.async_handler import (
    to_async_bolt_request,
    to_starlette_response,
)
from slack_bolt.async_app import AsyncApp, AsyncBoltContext
from slack_bolt.authorization import AuthorizeResult
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient
from starlette.concurrency import run_in_threadpool

from adapters.slack import (
    NAME,
    OPTION_ACTION,
    SlackChannel,
    make_client,
    message_from_action,
    message_from_event,
    translate,
)
from bots.intake import answer, read_body
from bots.plugins import ChannelPlugin, ChannelStatus, missing
from bots.settings import Settings
from core.errors import ConfigurationError
from core.messages import InboundMessage

log = logging.getLogger(__name__)

PATH = "/slack/events"
# Keys under which the route hands each request's services and background tasks to listeners.
SERVICES, BACKGROUND = "saypro_services", "saypro_background"
# Registers further listeners on the one AsyncApp; see build_app.
Registrar = Callable[[AsyncApp, Settings], None]
# Modules that add listeners to the same app and route, each exposing `register(app, settings)`:
# the agents' desk in SLACK_AGENT_CHANNEL (threads, Claim/Resolve/Back to bot, /saypro).
LISTENER_MODULES: tuple[str, ...] = ("bots.desk",)
OAUTH_CONFLICT = "SLACK_CLIENT_ID and SLACK_CLIENT_SECRET are set: unset them, this bot uses SLACK_BOT_TOKEN"


def plugin(settings: Settings) -> ChannelPlugin:
    """Live when SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET are set; no network here."""
    absent = missing(settings, "slack_bot_token", "slack_signing_secret")
    if absent:
        return ChannelPlugin(statuses=[ChannelStatus(NAME, False, f"{', '.join(absent)} not set")])
    if _oauth_variables_set():
        return ChannelPlugin(statuses=[ChannelStatus(NAME, False, OAUTH_CONFLICT)])
    assert settings.slack_bot_token is not None and settings.slack_signing_secret is not None
    client = make_client(token=settings.slack_bot_token.get_secret_value(), base_url=settings.slack_api_base_url)
    registrars = [importlib.import_module(name).register for name in LISTENER_MODULES]
    app = build_app(settings, client=client, registrars=registrars)
    desk, pollers = _desk(settings, client)
    return ChannelPlugin(
        statuses=[ChannelStatus(NAME, True, f"direct messages on POST {PATH}"), desk],
        channels=[SlackChannel(client)],
        router=router(app, signing_secret=settings.slack_signing_secret.get_secret_value()),
        pollers=pollers,
        register_webhooks=register_webhooks,
    )


def _desk(settings: Settings, client: AsyncWebClient) -> tuple[ChannelStatus, list[Callable[..., Any]]]:
    """The agents' desk: live with SLACK_AGENT_CHANNEL, its loop (timers, posts) run by `run` and `worker`."""
    if not settings.slack_agent_channel:
        return ChannelStatus("desk", False, "SLACK_AGENT_CHANNEL not set: handoffs give support's contact details"), []
    from bots.desk.loop import desk_poller  # the desk's modules import this one

    status = ChannelStatus("desk", True, f"agents' desk in Slack channel {settings.slack_agent_channel}")
    return status, [desk_poller(client, settings)]


def build_app(settings: Settings, *, client: AsyncWebClient, registrars: Iterable[Registrar] = ()) -> AsyncApp:
    """The process's Bolt app: user DMs and quick replies, then each registrar's listeners.

    Bolt runs the first listener that matches a request, so the catch-all for other messages
    is registered last, after the registrars' own.
    """
    if _oauth_variables_set():
        raise ConfigurationError(OAUTH_CONFLICT)
    assert settings.slack_signing_secret is not None
    app = AsyncApp(
        signing_secret=settings.slack_signing_secret.get_secret_value(),
        # The app's own client has no token: `authorize` hands it to each request's client.
        client=make_client(token=None, base_url=client.base_url),
        authorize=_authorization(client),
        process_before_response=True,
        name="saypro-slack",
        logger=_bolt_logger(),
    )
    register_direct_messages(app, settings)
    for register in registrars:
        register(app, settings)
    app.event("message")(_ignore)
    return app


def _oauth_variables_set() -> bool:
    # AsyncApp reads these itself and, with both set, silently switches to OAuth installs and
    # ignores the bot token (slack_bolt/app/async_app.py, AsyncApp.__init__).
    return bool(os.environ.get("SLACK_CLIENT_ID") and os.environ.get("SLACK_CLIENT_SECRET"))


class _BoltLogFilter(logging.Filter):
    """Keeps message text and signatures out of Bolt's INFO and WARNING lines.

    Bolt logs a refused request's signature and raw body at INFO, and an unhandled request's body
    at WARNING (slack_bolt/middleware/request_verification/request_verification.py,
    slack_bolt/logger/messages.py); the route logs the refusal itself, without them.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith(("Invalid request signature detected", "As you gave `client` as well")):
            # The second: SLACK_BOT_TOKEN in the environment; the token reaches Bolt through `authorize`.
            return False
        if message.startswith("Unhandled request") and record.levelno > logging.DEBUG:
            record.msg, record.args = "Unhandled Slack request (body withheld)", ()
        return True


def _bolt_logger() -> logging.Logger:
    """Bolt's base logger: its middleware loggers copy this one's filters when they are created."""
    logger = logging.getLogger(f"{__name__}.bolt")
    if not any(isinstance(existing, _BoltLogFilter) for existing in logger.filters):
        logger.addFilter(_BoltLogFilter())
    return logger


def _authorization(client: AsyncWebClient) -> Callable[..., Any]:
    """auth.test once per process (it names the bot, whose own messages Bolt then drops).

    Bolt's built-in single-team authorization turns an auth.test failure into a 200 that
    acknowledges, and so loses, the event; raising instead makes Bolt answer 500 and Slack retry.
    """
    cached: list[AuthorizeResult] = []

    async def authorize() -> AuthorizeResult:
        if not cached:
            try:
                response = await client.auth_test()
            except SlackApiError as exc:
                raise translate(exc) from exc
            cached.append(AuthorizeResult.from_auth_test_response(bot_token=client.token, auth_test_response=response))
        return cached[0]

    return authorize


def register_direct_messages(app: AsyncApp, _settings: Settings) -> None:
    """Users' DMs to the bot and presses of its quick-reply buttons."""

    async def in_direct_message(event: dict[str, Any]) -> bool:
        return event.get("channel_type") == "im"

    async def on_direct_message(event: dict[str, Any], context: AsyncBoltContext) -> None:
        message = message_from_event(event)
        if message is None:
            log.debug("slack event ignored", extra={"channel": NAME, "subtype": event.get("subtype")})
            return
        await _store(context, message)

    async def on_option(ack: Any, body: dict[str, Any], action: dict[str, Any], context: AsyncBoltContext) -> None:
        message = message_from_action(body, action)
        if message is not None:
            await _store(context, message)
        await ack()

    app.event("message", matchers=[in_direct_message])(on_direct_message)
    app.action(OPTION_ACTION)(on_option)


async def _ignore() -> None:
    """Messages no listener took (channels the bot is in, until the desk listens to its own)."""


async def _store(context: AsyncBoltContext, message: InboundMessage) -> None:
    services, background = context[SERVICES], context[BACKGROUND]
    accepted = await run_in_threadpool(services.inbox.receive, message)
    extra = {"channel": NAME, "conversation_id": accepted.conversation_id, "message_id": accepted.message_id}
    if accepted.duplicate:
        log.info("slack message already stored", extra=extra)
        return
    log.info("slack message stored", extra=extra)
    background.add_task(answer, services, [accepted.message_id])


def router(app: AsyncApp, *, signing_secret: str) -> APIRouter:
    """POST /slack/events: size-checked, then Bolt's verification and listeners."""
    routes = APIRouter()
    verifier = SignatureVerifier(signing_secret)

    @routes.post(PATH, include_in_schema=False)
    async def slack_events(request: Request, background: BackgroundTasks) -> Response:
        body = await read_body(request)
        try:
            bolt_request = to_async_bolt_request(
                request, body, {SERVICES: request.app.state.services, BACKGROUND: background}
            )
        except (ValueError, AttributeError):
            # Bolt parses before it verifies: an unreadable body is refused as unsigned (401)
            # unless Slack really signed it (400).
            if not verifier.is_valid_request(body, dict(request.headers)):
                log.warning("slack request refused: signature not valid", extra={"channel": NAME})
                raise HTTPException(401, "invalid request") from None
            raise HTTPException(400, "not a Slack payload") from None
        bolt_response = await app.async_dispatch(bolt_request)
        if bolt_response.status == 401:
            log.warning("slack request refused: signature not valid", extra={"channel": NAME})
        # FastAPI attaches `background` to the returned response: answers run after it is sent.
        return to_starlette_response(bolt_response)

    return routes


async def register_webhooks(settings: Settings) -> list[str]:
    """What to enter in the Slack app's settings; Slack has no API for it, so nothing is called."""
    url = f"{settings.public_base_url}{PATH}"
    return [
        f"Slack Event Subscriptions request URL (bot event message.im): {url}",
        f"Slack Interactivity request URL: {url}",
        f"Slack slash command request URL: {url}",
    ]
