"""Logging set-up: one line per event, with the ids passed in `extra`, and nothing personal or secret.

Every handler on the root logger gets a `Redactor`, which rewrites each record before it is
written: phone numbers (E.164 and South African national), e-mail addresses, bearer and basic
credentials, passwords in URLs, Slack and Telegram tokens, one-time codes where a code is
spoken of, and the exact values of the settings' secrets. Ids (message, conversation, update
ids, Twilio SIDs) are left alone so lines can still be followed.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterable
from typing import IO
from urllib.parse import unquote, urlsplit

# Record attributes that are not `extra` fields; uvicorn's color_message repeats the message with
# terminal colours.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "color_message"}
_REDACTED = "[redacted]"
# Passwords in URLs first (smtp://user:pass@host), before the e-mail rule sees "pass@host".
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]*:)[^@\s/]+@")
_AUTHORIZATION = re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=-]{6,}")
# Slack: xoxb-, xoxp-, xoxa-, xoxr-, xoxs-, xoxe- tokens and xapp- app tokens.
_SLACK_TOKEN = re.compile(r"\bx(?:ox[a-z]|app)-[A-Za-z0-9-]{8,}")
# Telegram: <bot id>:<35 characters>, also inside a Bot API URL (/bot123456:AA.../sendMessage).
_TELEGRAM_TOKEN = re.compile(r"(?<!\d)\d{5,12}:[A-Za-z0-9_-]{20,}")
_EMAIL = re.compile(r"[A-Za-z0-9._%+'-]+@((?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,})")
# E.164 with optional spaces or dashes (+27 82 555 0142), then South African national numbers
# (082 555 0142, 0825550142); the last two digits stay, enough to tell two people apart.
_PHONE_E164 = re.compile(r"(?<![\w+])\+[1-9](?:[ -]?\d){6,14}(?![\d])")
_PHONE_NATIONAL = re.compile(r"(?<![\w+])0[1-9](?:[ -]?\d){8}(?![\d])")
# A 6-digit one-time code where one is spoken of ("code 123456", "code is 123 456", "OTP: 123456");
# provider error codes (Twilio's are 5 digits) stay.
_CODE = re.compile(r"(?i)\b(code|otp|pin|passcode)(\W{1,3}(?:is\W{1,3})?)\d(?:[ -]?\d){5}(?!\d)")
# Extra fields whose values are never logged, whatever they hold.
_SECRET_FIELDS = re.compile(
    r"(?i)^(?:text|body|code|token|secret|password|signature|authorization|.*_(?:token|secret|password|signature))$"
)


class Redactor(logging.Filter):
    """Rewrites a record's message, arguments, extras and traceback without what must not be logged."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets: list[str] = []
        self.add_secrets(secrets)

    def add_secrets(self, values: Iterable[str | None]) -> None:
        """Exact values never to log (tokens, keys, a URL's password): the longest first, so none leaves a tail."""
        kept = set(self.secrets)
        for value in values:
            if not value:
                continue
            kept.add(value)
            try:
                password = urlsplit(value).password
            except ValueError:
                password = None
            if password:
                kept.update({password, unquote(password)})
        self.secrets = sorted((value for value in kept if len(value) >= 6), key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, _REDACTED)
        text = _URL_PASSWORD.sub(rf"\1{_REDACTED}@", text)
        text = _AUTHORIZATION.sub(rf"\1\2{_REDACTED}", text)
        text = _SLACK_TOKEN.sub("[slack-token]", text)
        text = _TELEGRAM_TOKEN.sub("[telegram-token]", text)
        text = _EMAIL.sub(r"[email]@\1", text)
        text = _PHONE_E164.sub(_masked_phone, text)
        text = _PHONE_NATIONAL.sub(_masked_phone, text)
        return _CODE.sub(r"\1\2[code]", text)

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_redacted", False):
            return True  # already done by the filter of another handler
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = str(record.msg)
        record.msg, record.args = self.redact(message), None
        for key, value in list(vars(record).items()):
            if key not in _STANDARD and not key.startswith("_"):
                setattr(record, key, self._field(key, value))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        record._redacted = True
        return True

    def _field(self, key: str, value: object) -> object:
        if value is None or isinstance(value, (bool, int, float)):
            return value  # ids, counts, flags
        if _SECRET_FIELDS.match(key):
            return _REDACTED
        text = value if isinstance(value, str) else str(value)
        redacted = self.redact(text)
        return value if redacted == text else redacted


def _masked_phone(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return f"[phone …{digits[-2:]}]"


class ContextFormatter(logging.Formatter):
    """Appends the record's `extra` fields (channel, conversation_id, ...) as key=value."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = {key: value for key, value in vars(record).items() if key not in _STANDARD and not key.startswith("_")}
        if extras:
            line += " " + " ".join(f"{key}={value}" for key, value in sorted(extras.items()))
        return line


# One filter for the process, so secrets named later (add_secrets) reach every handler.
REDACTOR = Redactor()
# Environment variables whose values are secrets (the settings' SecretStr fields, and the
# platform API key), read at configure() so they are redacted before the settings load.
SECRET_VARIABLES = (
    "SAYPRO_API_KEY",
    "SMTP_URL",
    "TELEGRAM_BOT_TOKEN",
    "TELEGRAM_WEBHOOK_SECRET",
    "SLACK_BOT_TOKEN",
    "SLACK_SIGNING_SECRET",
    "TWILIO_AUTH_TOKEN",
    "X_CONSUMER_KEY",
    "X_CONSUMER_SECRET",
    "X_ACCESS_TOKEN",
    "X_ACCESS_TOKEN_SECRET",
)


def configure(level: str = "INFO", *, stream: IO[str] | None = None) -> None:
    """Log lines to `stream` (stderr), redacted; other handlers already on the root logger are kept
    (a test's capture, say) and get the redaction too."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(ContextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler._saypro = True  # type: ignore[attr-defined]
    root = logging.getLogger()
    root.handlers[:] = [existing for existing in root.handlers if not getattr(existing, "_saypro", False)]
    root.addHandler(handler)
    root.setLevel(level)
    REDACTOR.add_secrets(os.environ.get(name) for name in SECRET_VARIABLES)
    protect_handlers()


def protect_handlers() -> None:
    """Put the redaction filter on every handler of the root logger that lacks it."""
    for handler in logging.getLogger().handlers:
        if REDACTOR not in handler.filters:
            handler.addFilter(REDACTOR)


def add_secrets(settings: object) -> None:
    """Redact the values of every secret in `settings` (its SecretStr fields), e.g. from a .env file."""
    values = []
    for name in type(settings).model_fields if hasattr(type(settings), "model_fields") else ():
        value = getattr(settings, name, None)
        if hasattr(value, "get_secret_value"):
            values.append(value.get_secret_value())
    REDACTOR.add_secrets(values)
