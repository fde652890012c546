"""Slack's plugin: live or off, the webhook lines, one app other listeners extend, no secrets in the log."""

from __future__ import annotations

import json
import logging
from urllib.parse import urlencode

import httpx
import pytest
from slack_bolt.async_app import AsyncApp

import bots.plugins
from bots.channels import slack as slack_plugin
from bots.settings import Settings, load_settings
from bots.web import create_app
from bots.wiring import build, channel_report
from core.errors import ConfigurationError
from tests.fakes.knowledge import FakeKnowledge
from tests.fakes.slack_api import BOT_TOKEN, SIGNING_SECRET, fake_slack, fixture, signed


def settings_with(**values: object) -> Settings:
    return load_settings(public_base_url="https://bot.example.org", **values)


def test_slack_is_off_naming_the_missing_variables() -> None:
    plugin = slack_plugin.plugin(settings_with(slack_bot_token=BOT_TOKEN))
    [status] = plugin.statuses
    assert (status.name, status.live) == ("slack", False)
    assert "SLACK_SIGNING_SECRET" in status.why and "SLACK_BOT_TOKEN" not in status.why
    assert plugin.channels == [] and plugin.router is None


async def test_slack_is_live_with_token_and_signing_secret(monkeypatch: pytest.MonkeyPatch, database_url: str) -> None:
    monkeypatch.setattr(bots.plugins, "PLUGIN_MODULES", ("bots.channels.slack",))
    settings = load_settings(database_url=database_url, slack_bot_token=BOT_TOKEN, slack_signing_secret=SIGNING_SECRET)
    services = build(settings, knowledge=FakeKnowledge())
    try:
        assert "slack" in services.channels.names()
        report = {status.name: status for status in channel_report(settings, services.plugins)}
        assert report["slack"].live and "/slack/events" in report["slack"].why
        transport = httpx.ASGITransport(app=create_app(services, background=False))
        async with httpx.AsyncClient(transport=transport, base_url="http://bot") as client:
            unsigned = await client.post("/slack/events", content=b"{}", headers={"Content-Type": "application/json"})
        assert unsigned.status_code == 401  # the route is there, behind Bolt's signature check
    finally:
        services.database.dispose()


async def test_webhooks_register_prints_the_three_urls_and_calls_nothing() -> None:
    plugin = slack_plugin.plugin(settings_with(slack_bot_token=BOT_TOKEN, slack_signing_secret=SIGNING_SECRET))
    assert plugin.register_webhooks is not None
    lines = await plugin.register_webhooks(settings_with())
    url = "https://bot.example.org/slack/events"
    assert lines == [
        f"Slack Event Subscriptions request URL (bot event message.im): {url}",
        f"Slack Interactivity request URL: {url}",
        f"Slack slash command request URL: {url}",
    ]


def test_oauth_variables_in_the_environment_turn_slack_off_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_CLIENT_ID", "111.222")
    monkeypatch.setenv("SLACK_CLIENT_SECRET", "shh")
    settings = settings_with(slack_bot_token=BOT_TOKEN, slack_signing_secret=SIGNING_SECRET)
    plugin = slack_plugin.plugin(settings)
    [status] = plugin.statuses
    assert not status.live and "SLACK_CLIENT_ID" in status.why and plugin.channels == []
    with pytest.raises(ConfigurationError, match="SLACK_CLIENT_SECRET"):
        slack_plugin.build_app(settings, client=slack_plugin.make_client(token=BOT_TOKEN))


async def test_another_module_can_add_listeners_to_the_same_app() -> None:
    """The desk's way in: a registrar adds a slash command; the DM listeners still work beside it."""

    def register_saypro_command(app: AsyncApp, _settings: Settings) -> None:
        @app.command("/saypro")
        async def saypro(ack, command) -> None:  # type: ignore[no-untyped-def]
            await ack(f"desk got: {command['text']}")

    fake = fake_slack()
    try:
        settings = settings_with(
            slack_bot_token=BOT_TOKEN, slack_signing_secret=SIGNING_SECRET, slack_api_base_url=f"{fake.url}/api"
        )
        client = slack_plugin.make_client(token=BOT_TOKEN, base_url=settings.slack_api_base_url)
        app = slack_plugin.build_app(settings, client=client, registrars=[register_saypro_command])
        body = urlencode(
            {
                "token": "Jhj5dZrVaK7ZwHHjRyZWjbDl",
                "team_id": "T061EG9R6",
                "team_domain": "saypro",
                "channel_id": "C0AGENTDSK",
                "channel_name": "support-desk",
                "user_id": "U0AGENT01",
                "user_name": "thandi",
                "command": "/saypro",
                "text": "claim T-42",
                "api_app_id": "A0PNCHHK2",
                "response_url": "https://hooks.slack.com/commands/T061EG9R6/1/abc",
                "trigger_id": "1.2.3",
            }
        )
        transport = httpx.ASGITransport(app=_bare(app))
        async with httpx.AsyncClient(transport=transport, base_url="http://bot") as web_client:
            response = await web_client.post("/slack/events", content=body, headers=signed(body, form=True))
        assert response.status_code == 200 and response.text == "desk got: claim T-42"
    finally:
        fake.close()


@pytest.mark.parametrize(
    ("body", "sign", "status"),
    [
        ("{not json", False, 401),
        ("{not json", True, 400),
        ("payload=%7Bbad", True, 400),
        ("[1]", False, 401),
        (b"\xff\xfe", False, 401),
    ],
)
async def test_an_unreadable_body_is_refused_without_a_crash(body: str | bytes, sign: bool, status: int) -> None:
    settings = settings_with(slack_bot_token=BOT_TOKEN, slack_signing_secret=SIGNING_SECRET)
    app = slack_plugin.build_app(settings, client=slack_plugin.make_client(token=BOT_TOKEN))
    text = body.decode("latin-1") if isinstance(body, bytes) else body
    headers = signed(text) if sign else {"Content-Type": "application/json"}
    transport = httpx.ASGITransport(app=_bare(app))
    async with httpx.AsyncClient(transport=transport, base_url="http://bot") as client:
        response = await client.post("/slack/events", content=body, headers=headers)
    assert response.status_code == status


def _bare(app: AsyncApp):  # type: ignore[no-untyped-def]
    """The plugin's route around `app`, without services (a slash command stores nothing)."""
    from fastapi import FastAPI

    web = FastAPI()
    web.state.services = None
    web.include_router(slack_plugin.router(app, signing_secret=SIGNING_SECRET))
    return web


async def test_a_refused_request_logs_neither_its_body_nor_its_signature(
    monkeypatch: pytest.MonkeyPatch, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(bots.plugins, "PLUGIN_MODULES", ("bots.channels.slack",))
    fake = fake_slack()
    settings = load_settings(
        database_url=database_url,
        slack_bot_token=BOT_TOKEN,
        slack_signing_secret=SIGNING_SECRET,
        slack_api_base_url=f"{fake.url}/api",
    )
    services = build(settings, knowledge=FakeKnowledge())
    caplog.set_level(logging.INFO)
    body = json.dumps(fixture("message_im.json"))
    forged = signed(body, secret="wrong")
    try:
        transport = httpx.ASGITransport(app=create_app(services, background=False))
        async with httpx.AsyncClient(transport=transport, base_url="http://bot") as client:
            response = await client.post("/slack/events", content=body, headers=forged)
    finally:
        services.database.dispose()
        fake.close()
    assert response.status_code == 401
    visible = " ".join(r.getMessage() for r in caplog.records if r.levelno > logging.DEBUG)
    assert "signature not valid" in visible
    assert "payout" not in visible and forged["X-Slack-Signature"] not in visible and BOT_TOKEN not in visible
    assert fake.requests == []
