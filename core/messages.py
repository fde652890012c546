"""Channel-independent inbound and outbound messages, and what a channel can show."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime

from core.errors import InboundRejected

# C0 controls other than tab and newline, DEL, and lone surrogates: PostgreSQL refuses NUL in
# text, terminals misbehave on the rest, and none of them carries meaning in a chat message.
_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f\ud800-\udfff]")
# The widest id and display name the tables hold (String(200)).
MAX_ID_LENGTH = 200


def clean_text(text: str) -> str:
    """Text as the bot stores and reads it: NFC, no control characters, no surrounding blanks."""
    return unicodedata.normalize("NFC", _UNPRINTABLE.sub("", text)).strip()


@dataclass(frozen=True)
class Attachment:
    """A file the user sent: where to fetch it and what kind it is."""

    url: str
    content_type: str | None = None
    name: str | None = None


def _clean_attachment(attachment: Attachment) -> Attachment:
    """The attachment with text fields a database can store (no NUL, no lone surrogates)."""
    url = _UNPRINTABLE.sub("", attachment.url)
    kind = _UNPRINTABLE.sub("", attachment.content_type) if attachment.content_type else None
    name = _UNPRINTABLE.sub("", attachment.name) if attachment.name else None
    if (url, kind, name) == (attachment.url, attachment.content_type, attachment.name):
        return attachment
    return Attachment(url=url, content_type=kind or None, name=name or None)


@dataclass(frozen=True)
class InboundMessage:
    """One message from a user, as every channel delivers it to the core.

    (`channel`, `provider_message_id`) identifies it: a provider's retry carries the same pair
    and is handled once. `raw` keeps the provider's payload for debugging only.
    """

    channel: str
    user_id: str
    provider_message_id: str
    text: str
    sent_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    attachments: tuple[Attachment, ...] = ()
    display_name: str | None = None
    raw: dict[str, object] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "text", clean_text(self.text))
        if not self.channel or not self.user_id or not self.provider_message_id:
            raise ValueError("channel, user_id and provider_message_id are required")
        for name in ("user_id", "provider_message_id"):
            value = getattr(self, name)
            if len(value) > MAX_ID_LENGTH or _UNPRINTABLE.search(value):
                # Ids are compared, not read: a changed id could match another sender's.
                raise InboundRejected(f"the message's {name} is not a usable id")
        name = clean_text(self.display_name)[:MAX_ID_LENGTH] if self.display_name else None
        object.__setattr__(self, "display_name", name or None)
        object.__setattr__(self, "attachments", tuple(_clean_attachment(item) for item in self.attachments))


@dataclass(frozen=True)
class Option:
    """A quick reply: `label` is shown, `value` comes back when the user picks it."""

    label: str
    value: str


@dataclass(frozen=True)
class Template:
    """A provider-approved message template (WhatsApp outside its 24-hour window): its id and values.

    `content_id` is the provider's template id (Twilio's Content SID); `variables` fill its
    placeholders in order, as {"1": ..., "2": ...}. The message's `text` stays the readable record.
    """

    content_id: str
    variables: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class OutboundMessage:
    """One reply to a user: Markdown text and optional quick replies, or a template where required."""

    channel: str
    user_id: str
    text: str
    options: tuple[Option, ...] = ()
    conversation_id: int | None = None
    template: Template | None = None


@dataclass(frozen=True)
class Capabilities:
    """What a channel can show, which drives the renderer.

    `max_text_length` None means no limit; `buttons` False means options become a numbered list;
    `carrier_opt_out` means the provider itself answers STOP/START (Twilio on SMS long codes), so
    the bot records the opt-out and stays silent.
    """

    max_text_length: int | None = None
    buttons: bool = False
    max_buttons: int = 0
    threads: bool = False
    media: bool = False
    reply_window_hours: int | None = None
    carrier_opt_out: bool = False


@dataclass(frozen=True)
class Receipt:
    """What a channel says after sending: the provider's id for the message it created."""

    provider_message_id: str | None
    detail: str | None = None
