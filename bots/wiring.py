"""Builds the services a process needs from the settings: database, knowledge base, channels, inbox."""

from __future__ import annotations

from dataclasses import dataclass

from adapters.api import ApiChannel
from bots.plugins import ChannelPlugin, ChannelStatus, load_plugins, missing
from bots.settings import Settings
from core.channels import Channel, ChannelRegistry
from core.dialogue import Dialogue
from core.faq import KnowledgeBase
from core.inbox import Inbox
from core.outbox import Dispatcher
from core.storage.database import Database


@dataclass
class Services:
    settings: Settings
    database: Database
    knowledge: KnowledgeBase
    channels: ChannelRegistry
    inbox: Inbox
    dispatcher: Dispatcher
    api: ApiChannel
    plugins: list[ChannelPlugin]


def build(
    settings: Settings, *, channels: tuple[Channel, ...] = (), knowledge: KnowledgeBase | None = None
) -> Services:
    """Open the database (migrating it to head), fit the knowledge base, and connect the core."""
    plugins = load_plugins(settings)
    database = Database.from_url(settings.database_url)
    database.upgrade()
    if knowledge is None:
        from knowledge.service import KnowledgeService  # fits the matcher: only when no other is given

        knowledge = KnowledgeService.load(settings.knowledge_dir)
    api = ApiChannel()
    registry = ChannelRegistry((api, *channels, *(c for plugin in plugins for c in plugin.channels)))
    inbox = Inbox(database, Dialogue(knowledge), registry)
    return Services(
        settings=settings,
        database=database,
        knowledge=knowledge,
        channels=registry,
        inbox=inbox,
        dispatcher=Dispatcher(database, registry),
        api=api,
        plugins=plugins,
    )


# Channels whose provider module is not part of this version yet, and the variables each will need.
_PLANNED: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("telegram", ("telegram_bot_token", "telegram_webhook_secret")),
    ("sms", ("twilio_account_sid", "twilio_auth_token", "twilio_sms_number")),
    ("whatsapp", ("twilio_account_sid", "twilio_auth_token", "twilio_whatsapp_number")),
    ("x", ("x_consumer_key", "x_consumer_secret", "x_access_token", "x_access_token_secret", "x_bot_user_id")),
    ("slack", ("slack_bot_token", "slack_signing_secret")),
)


def channel_report(settings: Settings, plugins: list[ChannelPlugin] | None = None) -> list[ChannelStatus]:
    """Every channel, live or off, with the reason, for the start-up log."""
    api_why = "POST /api/v1/messages" if settings.saypro_api_key else "SAYPRO_API_KEY not set: the API answers 503"
    report = [ChannelStatus("api", True, api_why)]
    for plugin in load_plugins(settings) if plugins is None else plugins:
        report.extend(plugin.statuses)
    known = {status.name for status in report}
    for name, variables in _PLANNED:
        if name in known:
            continue
        absent = missing(settings, *variables)
        why = f"{', '.join(absent)} not set" if absent else "credentials set, but this version has no adapter for it yet"
        report.append(ChannelStatus(name, False, why))
    return report
