"""Builds the services a process needs from the settings: database, knowledge base, channels, inbox."""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo

from adapters.api import ApiChannel
from adapters.email import SmtpChannel, parse_smtp_url
from bots.demo import DemoCodeRoute
from bots.plugins import ChannelPlugin, ChannelStatus, load_plugins, missing
from bots.settings import Settings
from core.channels import Channel, ChannelRegistry
from core.dialogue import Dialogue
from core.faq import KnowledgeBase
from core.inbox import Inbox
from core.outbox import Dispatcher
from core.proactive import Notifier
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
    registry = ChannelRegistry((api, *channels, *(c for plugin in plugins for c in plugin.channels), *_mail(settings)))
    zone = ZoneInfo(settings.support_timezone)
    # Codes for the demo's records show in the terminal; real ones go by SMS, else by e-mail.
    status = StatusService(
        registry, routes=[DemoCodeRoute(), *default_routes(registry)], timezone=zone,
        policy=Policy(lookups_per_window=settings.status_lookups_per_hour),
    )
    inbox = Inbox(database, Dialogue(knowledge), registry, status=status)
    return Services(
        settings=settings,
        database=database,
        knowledge=knowledge,
        channels=registry,
        inbox=inbox,
        dispatcher=Dispatcher(database, registry),
        api=api,
        plugins=plugins,
        notifier=Notifier(registry, templates=settings.whatsapp_status_templates, timezone=zone),
    )


def _mail(settings: Settings) -> list[Channel]:
    """The e-mail channel for one-time codes, when SMTP_URL is set."""
    if settings.smtp_url is None:
        return []
    return [SmtpChannel(parse_smtp_url(settings.smtp_url.get_secret_value()), sender=settings.smtp_from)]


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
    mail_why = "SMTP_URL set: one-time codes by e-mail" if settings.smtp_url else "SMTP_URL not set: no codes by e-mail"
    report.append(ChannelStatus("email", settings.smtp_url is not None, mail_why))
    known = {status.name for status in report}
    for name, variables in _PLANNED:
        if name in known:
            continue
        absent = missing(settings, *variables)
        why = f"{', '.join(absent)} not set" if absent else "credentials set, but this version has no adapter for it yet"
        report.append(ChannelStatus(name, False, why))
    return report
