"""Builds the services a process needs from the settings: database, knowledge base, channels, inbox."""

from __future__ import annotations

from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from adapters.api import ApiChannel
from adapters.email import SmtpChannel, parse_smtp_url
from bots import logs
from bots.answering import Answerer, identity_limit
from bots.demo import DemoCodeRoute
from bots.desk import metrics as report_metrics
from bots.plugins import ChannelPlugin, ChannelStatus, load_plugins
from bots.settings import Settings
from core.channels import Channel, ChannelRegistry
from core.desk import HumanDesk
from core.dialogue import Dialogue
from core.faq import KnowledgeBase
from core.inbox import Inbox
from core.outbox import Dispatcher
from core.proactive import Notifier
from core.ratelimit import Throttle
from core.sla import ServiceLevels
from core.status import StatusService, default_routes
from core.storage.database import Database
from core.verification import Policy


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
    notifier: Notifier
    desk: HumanDesk
    answerer: Answerer


def build(
    settings: Settings, *, channels: tuple[Channel, ...] = (), knowledge: KnowledgeBase | None = None
) -> Services:
    """Open the database (migrating it to head), fit the knowledge base, and connect the core."""
    logs.add_secrets(settings)  # bots/logs.py: secrets read from a .env file are redacted too
    plugins = load_plugins(settings)
    database = Database.from_url(settings.database_url)
    database.upgrade()
    if knowledge is None:
        # fits the matcher (only when no other is given), and re-fits it when the files change
        from knowledge.reload import ReloadingKnowledgeService

        knowledge = ReloadingKnowledgeService.load(settings.knowledge_dir, embeddings=settings.knowledge_embeddings)
    api = ApiChannel()
    registry = ChannelRegistry((api, *channels, *(c for plugin in plugins for c in plugin.channels), *_mail(settings)))
    zone = ZoneInfo(settings.support_timezone)
    # Codes for the demo's records show in the terminal; real ones go by SMS, else by e-mail.
    status = StatusService(
        registry,
        routes=[DemoCodeRoute(), *default_routes(registry)],
        timezone=zone,
        policy=Policy(lookups_per_window=settings.status_lookups_per_hour),
    )
    desk = _desk(settings, plugins, registry)
    inbox = Inbox(database, Dialogue(knowledge), registry, desk=desk, status=status)
    dispatcher = Dispatcher(database, registry)
    report_metrics.bind(database)  # the report's figures on /metrics
    return Services(
        settings=settings,
        database=database,
        knowledge=knowledge,
        channels=registry,
        inbox=inbox,
        dispatcher=dispatcher,
        answerer=Answerer(inbox, dispatcher, Throttle(registry, limit=identity_limit(settings))),
        api=api,
        plugins=plugins,
        notifier=Notifier(registry, templates=settings.whatsapp_status_templates, timezone=zone),
        desk=desk,
    )


def knowledge_watchers(services: Services) -> list[Coroutine[Any, Any, None]]:
    """The loop that re-fits the knowledge base when its files change or on SIGHUP (none for a fixed one)."""
    from knowledge.reload import ReloadingKnowledgeService

    if not isinstance(services.knowledge, ReloadingKnowledgeService):
        return []
    return [services.knowledge.watch()]


def _desk(settings: Settings, plugins: list[ChannelPlugin], registry: ChannelRegistry) -> HumanDesk:
    """The human desk; it takes handoffs when the Slack plugin says it is live (SLACK_AGENT_CHANNEL set)."""
    return HumanDesk(
        live=any(status.name == "desk" and status.live for plugin in plugins for status in plugin.statuses),
        levels=ServiceLevels(settings.hours, settings.response_targets),
        channels=registry,
        agent_reply_template=settings.whatsapp_agent_reply_template,
    )


def _mail(settings: Settings) -> list[Channel]:
    """The e-mail channel for one-time codes, when SMTP_URL is set."""
    if settings.smtp_url is None:
        return []
    return [SmtpChannel(parse_smtp_url(settings.smtp_url.get_secret_value()), sender=settings.smtp_from)]


def channel_report(settings: Settings, plugins: list[ChannelPlugin] | None = None) -> list[ChannelStatus]:
    """Every channel, live or off, with the reason, for the start-up log."""
    api_why = "POST /api/v1/messages" if settings.saypro_api_key else "SAYPRO_API_KEY not set: the API answers 503"
    report = [ChannelStatus("api", True, api_why)]
    for plugin in load_plugins(settings) if plugins is None else plugins:
        report.extend(plugin.statuses)
    mail_why = "SMTP_URL set: one-time codes by e-mail" if settings.smtp_url else "SMTP_URL not set: no codes by e-mail"
    report.append(ChannelStatus("email", settings.smtp_url is not None, mail_why))
    return report
