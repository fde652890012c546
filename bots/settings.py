"""Typed settings from the environment (and an optional .env file), checked once at start."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from adapters.email import parse_smtp_url
from core.errors import ConfigurationError
from core.hours import SupportHours
from core.proactive import TEMPLATE_KEY
from core.sla import DEFAULT_TARGETS
from core.timers import WeeklyTime

_CONTENT_SID = re.compile(r"HX[0-9a-fA-F]{32}")
# Slack ids: a channel C… (public) or G… (private), a user group S… (https://api.slack.com/changelog/2016-08-11-user-id-format-changes).
_CHANNEL_ID = re.compile(r"[CG][A-Z0-9]{2,}")
_USERGROUP_ID = re.compile(r"S[A-Z0-9]{2,}")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|hr|d)?\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600, "d": 86400}


class Settings(BaseSettings):
    """Every variable on the interface page; names are the environment variables, upper-cased."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    database_url: str = "sqlite:///./saypro.db"
    public_base_url: str = "http://127.0.0.1:8000"
    saypro_api_key: SecretStr | None = None
    support_timezone: str = "Africa/Johannesburg"
    support_hours: str = "mon-fri 08:00-17:00"
    knowledge_dir: Path | None = None
    knowledge_embeddings: str | None = None
    smtp_url: SecretStr | None = None
    smtp_from: str = "SayPro support <no-reply@saypro.online>"
    # {"disbursement.sent": "HX...", ...}: the approved WhatsApp template (Twilio Content SID) for
    # each status change, used for proactive updates outside WhatsApp's 24-hour window.
    whatsapp_status_templates: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    status_lookups_per_hour: int = Field(default=10, ge=1)
    # Rate limits (core.ratelimit, bots.intake): messages answered per channel identity and window;
    # refused webhook requests (forged, oversized) per source address and minute before it gets 429;
    # platform API calls per source address and minute (0: no limit).
    rate_limit_messages: int = Field(default=15, ge=1)
    rate_limit_window_seconds: int = Field(default=60, ge=1)
    source_refusals_per_minute: int = Field(default=30, ge=1)
    platform_api_calls_per_minute: int = Field(default=600, ge=0)
    # The web processes store messages and leave their answers to the `worker` processes
    # (bots.worker.answer_waiting), which then use cores the web processes' interpreters cannot.
    answers_by_workers: bool = False
    # Messages older than this many days are erased (core.privacy); unset: kept.
    message_retention_days: int | None = Field(default=None, ge=1)

    telegram_bot_token: SecretStr | None = None
    telegram_webhook_secret: SecretStr | None = None
    telegram_api_base_url: str | None = None
    # Set by `saypro-bot run --telegram-polling`: getUpdates instead of the webhook, for local use.
    telegram_polling: bool = False
    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_agent_channel: str | None = None
    slack_api_base_url: str | None = None
    # The on-duty group mentioned when a ticket misses its first-response target (S0123ABCD).
    slack_escalation_usergroup: str | None = None
    # Channel -> first-response target, merged over the policy's: {"sms": "4h", "x": "3h", "telegram": "2m"}.
    first_response_targets: Annotated[dict[str, float], NoDecode] = Field(default_factory=dict)
    # Approved WhatsApp templates (Twilio Content SIDs) for outside the 24-hour window: an agent's
    # reply ({{1}} the agent's first name, {{2}} the text) and an announcement ({{1}} the text).
    whatsapp_agent_reply_template: str | None = None
    whatsapp_announcement_template: str | None = None
    # When the weekly summary goes to the agents' channel, in SUPPORT_TIMEZONE.
    weekly_report_time: str = "mon 08:00"
    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_sms_number: str | None = None
    twilio_whatsapp_number: str | None = None
    twilio_api_base_url: str | None = None
    x_consumer_key: SecretStr | None = None
    x_consumer_secret: SecretStr | None = None
    x_access_token: SecretStr | None = None
    x_access_token_secret: SecretStr | None = None
    x_bot_user_id: str | None = None
    x_api_base_url: str | None = None
    x_poll_seconds: float = Field(default=15.0, gt=0)

    @field_validator("*", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        try:
            backend = make_url(value).get_backend_name()
        except ArgumentError as exc:
            raise ValueError("not a SQLAlchemy database URL, e.g. sqlite:///./saypro.db") from exc
        if backend not in ("sqlite", "postgresql"):
            raise ValueError(f"{backend} is not supported; use sqlite or postgresql")
        return value

    @field_validator("public_base_url")
    @classmethod
    def _public_base_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http(s) URL such as https://bot.example.org")
        return value.rstrip("/")

    @field_validator("smtp_url")
    @classmethod
    def _smtp_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            try:
                parse_smtp_url(value.get_secret_value())
            except ConfigurationError as exc:
                raise ValueError(str(exc).removeprefix("SMTP_URL: ")) from None
        return value

    @field_validator("whatsapp_status_templates", mode="before")
    @classmethod
    def _templates(cls, value: object) -> object:
        value = _json_object(value, '{"disbursement.sent": "HX..."}')
        for key, sid in value.items():
            if not TEMPLATE_KEY.fullmatch(str(key)):
                raise ValueError(
                    f"{key!r} is not a status change such as disbursement.sent or registration.submission.accepted"
                )
            if not isinstance(sid, str) or not _CONTENT_SID.fullmatch(sid):
                raise ValueError(f"{key}: {sid!r} is not a Twilio Content SID (HX and 32 hex digits)")
        return value

    @field_validator("slack_agent_channel")
    @classmethod
    def _agent_channel(cls, value: str | None) -> str | None:
        if value is not None and not _CHANNEL_ID.fullmatch(value):
            raise ValueError(
                "must be the channel's id, such as C0123ABCDEF (channel details, at the bottom), not its name"
            )
        return value

    @field_validator("slack_escalation_usergroup")
    @classmethod
    def _usergroup(cls, value: str | None) -> str | None:
        if value is not None and not _USERGROUP_ID.fullmatch(value):
            raise ValueError("must be a Slack user group id such as S0123ABCDEF")
        return value

    @field_validator("whatsapp_agent_reply_template", "whatsapp_announcement_template")
    @classmethod
    def _template_sid(cls, value: str | None) -> str | None:
        if value is not None and not _CONTENT_SID.fullmatch(value):
            raise ValueError(f"{value!r} is not a Twilio Content SID (HX and 32 hex digits)")
        return value

    @field_validator("first_response_targets", mode="before")
    @classmethod
    def _targets(cls, value: object) -> object:
        value = _json_object(value, '{"sms": "4h", "telegram": "2m"}')
        return {str(channel): _seconds(target, channel) for channel, target in value.items()}

    @field_validator("weekly_report_time")
    @classmethod
    def _weekly(cls, value: str) -> str:
        WeeklyTime.parse(value)
        return value

    @field_validator("support_timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown timezone {value!r}, e.g. Africa/Johannesburg") from exc
        return value

    @model_validator(mode="after")
    def _hours(self) -> Settings:
        try:
            SupportHours.parse(self.support_hours, ZoneInfo(self.support_timezone))
        except ValueError as exc:
            raise ValueError(f"support_hours: {exc}") from exc
        return self

    @property
    def hours(self) -> SupportHours:
        return SupportHours.parse(self.support_hours, ZoneInfo(self.support_timezone))

    @property
    def response_targets(self) -> dict[str, timedelta]:
        """First-response targets by channel: the policy's, with FIRST_RESPONSE_TARGETS over them."""
        return {**DEFAULT_TARGETS, **{c: timedelta(seconds=s) for c, s in self.first_response_targets.items()}}


def _json_object(value: object, example: str) -> dict[object, object]:
    """A variable holding a JSON object (or the dict itself, when set in code), else a ValueError."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"must be a JSON object such as {example}") from exc
    if not isinstance(value, dict):
        raise ValueError(f"must be a JSON object such as {example}")  # noqa: TRY004 (pydantic reports ValueError)
    return value


def _seconds(target: object, channel: str) -> float:
    """A target as seconds: a number of minutes, or "90s", "2m", "3h", "1d"."""
    if isinstance(target, (int, float)) and not isinstance(target, bool) and target > 0:
        return float(target) * 60
    match = _DURATION.match(str(target))
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(f"{channel}: {target!r} is not a duration such as 90s, 2m, 3h or a number of minutes")
    return float(match.group(1)) * _UNIT_SECONDS[(match.group(2) or "m").lower()]


def load_settings(**overrides: object) -> Settings:
    """The settings, or ConfigurationError with one line naming the variable that is wrong."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        error = exc.errors()[0]
        name = ".".join(str(part) for part in error["loc"]) or _named_in(error["msg"])
        message = error["msg"].removeprefix("Value error, ").removeprefix("support_hours: ")
        raise ConfigurationError(f"{name.upper()}: {message}") from None


def _named_in(message: str) -> str:
    return "support_hours" if "support_hours:" in message else "settings"
