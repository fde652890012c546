"""Twilio's plugin: the SMS and WhatsApp channels, their inbound and status webhooks, and what to register."""

from __future__ import annotations

import logging
from functools import partial
from urllib.parse import urlsplit

from fastapi import APIRouter, BackgroundTasks, HTTPException, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from adapters.twilio import EMPTY_TWIML, DeliveryReport, TwilioChannel, build_client
from bots.intake import take_in, verified
from bots.plugins import ChannelPlugin, ChannelStatus, missing
from bots.settings import Settings
from core.deliveries import record_delivery
from core.errors import InboundRejected

log = logging.getLogger(__name__)

INBOUND_PATH = "/webhooks/twilio"
STATUS_PATH = "/webhooks/twilio/status"
# The variables each channel needs, and the one naming its sender.
_NEEDS = {
    "sms": ("twilio_account_sid", "twilio_auth_token", "twilio_sms_number"),
    "whatsapp": ("twilio_account_sid", "twilio_auth_token", "twilio_whatsapp_number"),
}


def plugin(settings: Settings) -> ChannelPlugin:
    """SMS and WhatsApp, each live when its account, token and number are set; one shared client."""
    statuses = [_status(settings, name) for name in _NEEDS]
    live = [status.name for status in statuses if status.live]
    if not live:
        return ChannelPlugin(statuses=statuses)
    assert settings.twilio_account_sid is not None and settings.twilio_auth_token is not None
    token = settings.twilio_auth_token.get_secret_value()
    client = build_client(settings.twilio_account_sid, token, api_base_url=settings.twilio_api_base_url)
    channels = [
        TwilioChannel(
            name,
            client,
            sender=_sender(settings, name),
            auth_token=token,
            status_callback=settings.public_base_url + STATUS_PATH,
        )
        for name in live
    ]
    return ChannelPlugin(
        statuses=statuses, channels=list(channels), router=_router(channels[0]), register_webhooks=register_webhooks
    )


def _status(settings: Settings, name: str) -> ChannelStatus:
    absent = missing(settings, *_NEEDS[name])
    if absent:
        return ChannelStatus(name, False, f"{', '.join(absent)} not set")
    number = _sender(settings, name)
    return ChannelStatus(name, True, f"from …{number[-4:]}; webhook POST {INBOUND_PATH}")


def _sender(settings: Settings, name: str) -> str:
    number = settings.twilio_sms_number if name == "sms" else settings.twilio_whatsapp_number
    assert number is not None
    return number


def _router(webhook: TwilioChannel) -> APIRouter:
    """Both channels share one inbound route and one status route: Twilio signs both alike."""
    router = APIRouter()

    @router.post(INBOUND_PATH)
    async def twilio_inbound(request: Request, background: BackgroundTasks) -> Response:
        # An empty TwiML answer: replies go out through the REST API from the outbox, so a slow
        # answer never meets Twilio's webhook timeout (https://www.twilio.com/docs/messaging/twiml).
        await take_in(request, webhook, background)
        return Response(EMPTY_TWIML, media_type="application/xml")

    @router.post(STATUS_PATH)
    async def twilio_status(request: Request) -> Response:
        report = await _verified_report(request, webhook)
        database = request.app.state.services.database
        known = await run_in_threadpool(
            partial(
                record_delivery,
                database,
                channel=report.channel,
                receipt_id=report.message_sid,
                status=report.status,
                unreachable=report.unreachable,
            )
        )
        log.info(
            "delivery status",
            extra={
                "channel": report.channel,
                "receipt_id": report.message_sid,
                "status": report.status,
                "error_code": report.error_code,
                "known": known,
            },
        )
        return Response(status_code=204)

    return router


async def _verified_report(request: Request, webhook: TwilioChannel) -> DeliveryReport:
    """The status callback, once its signature holds: 403 when forged, 400 when unreadable."""
    _headers, body = await verified(request, webhook)
    try:
        return webhook.parse_status(body)
    except InboundRejected as exc:
        raise HTTPException(400, str(exc)) from None


async def register_webhooks(settings: Settings) -> list[str]:
    """Twilio's webhooks are set in its console, per number or sender: the URLs to enter there."""
    inbound, status = settings.public_base_url + INBOUND_PATH, settings.public_base_url + STATUS_PATH
    lines = []
    if not missing(settings, *_NEEDS["sms"]):
        lines.append(
            f'sms: in the Twilio console, set the number\'s "A message comes in" webhook to {inbound} (HTTP POST); '
            f"status callbacks go to {status} (sent with each message)"
        )
    if not missing(settings, *_NEEDS["whatsapp"]):
        lines.append(
            f"whatsapp: set the WhatsApp sender's (or sandbox's) \"When a message comes in\" URL to {inbound} "
            f"(HTTP POST) and its status callback URL to {status}"
        )
    host = urlsplit(settings.public_base_url).hostname or ""
    if lines and (host in ("localhost", "127.0.0.1", "::1") or not settings.public_base_url.startswith("https://")):
        lines.append(f"twilio: PUBLIC_BASE_URL is {settings.public_base_url}; Twilio needs a public https URL")
    return lines
