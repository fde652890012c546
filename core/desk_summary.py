"""How the desk names things for agents: users, channels, reply windows, and numbers shown masked.

Nothing the desk shows carries a full account or phone number: long runs of digits keep their
last four.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from core.storage.models import ChannelIdentity

# Eight or more digits, with spaces or dashes between them: account, card and phone numbers.
_LONG_NUMBER = re.compile(r"(?<![\w])\+?\d(?:[ -]?\d){7,}(?![\w])")
CHANNEL_NAMES = {
    "telegram": "Telegram",
    "whatsapp": "WhatsApp",
    "sms": "SMS",
    "x": "X",
    "slack": "Slack",
    "api": "web/API",
    "console": "terminal",
    "email": "e-mail",
}


def mask_numbers(text: str) -> str:
    """Long numbers shown by their last four digits only: ``••••1234``."""

    def keep_four(match: re.Match[str]) -> str:
        digits = re.sub(r"\D", "", match.group(0))
        return "••••" + digits[-4:]

    return _LONG_NUMBER.sub(keep_four, text)


def channel_name(channel: str) -> str:
    return CHANNEL_NAMES.get(channel, channel)


def user_name(identity: ChannelIdentity) -> str:
    """The user's name as they gave it, else their channel id with long numbers masked."""
    name = identity.display_name or identity.contact.display_name
    return name or mask_numbers(identity.user_id.removeprefix("whatsapp:"))


@dataclass(frozen=True)
class Window:
    """A channel's reply window (WhatsApp: 24 hours from the user's last message)."""

    hours: int
    closes_at: datetime | None  # None: the user never wrote, so it never opened

    def is_open(self, now: datetime) -> bool:
        return self.closes_at is not None and now < self.closes_at


def window_for(identity: ChannelIdentity, hours: int | None) -> Window | None:
    if hours is None:
        return None
    last = identity.last_seen_at
    return Window(hours, last + timedelta(hours=hours) if last else None)
