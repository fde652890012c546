"""The project's one exception tree.

    SayProError
    ├── ConfigurationError        a setting is missing or malformed (names the variable)
    ├── KnowledgeBaseError        an FAQ or facts file is invalid (names the file and line)
    ├── InvalidTransition         a conversation or ticket was asked to make a move it may not
    ├── InboundRejected           an inbound message cannot be accepted (says why, for a 4xx)
    ├── RecordConflict            the platform sent a different record with the same updated_at
    └── ChannelError              a provider refused or failed a send
        ├── TransientChannelError     worth retrying (5xx, timeout, 429 with retry_after)
        └── PermanentChannelError     not worth retrying (bad recipient, blocked, 4xx)

Third-party errors are translated at the boundary with ``raise ... from exc``.
"""

from __future__ import annotations


class SayProError(Exception):
    """Base of every error the project raises on purpose."""


class ConfigurationError(SayProError):
    """A setting is missing or malformed; the message names the variable."""


class KnowledgeBaseError(SayProError):
    """An FAQ or facts file is invalid; the message names the file and, where known, the line."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None) -> None:
        where = path or ""
        if path and line is not None:
            where = f"{path}:{line}"
        super().__init__(f"{where}: {message}" if where else message)
        self.path = path
        self.line = line


class InvalidTransition(SayProError):
    """A state machine was asked for a move that is not allowed from its current state."""


class InboundRejected(SayProError):
    """An inbound message that cannot be accepted; the message is safe to show the sender."""


class RecordConflict(SayProError):
    """A platform record differs from the stored one but claims the same `updated_at` (a 409)."""


class ChannelError(SayProError):
    """A provider refused or failed to deliver a message."""


class TransientChannelError(ChannelError):
    """A failure worth retrying later; `retry_after` is the provider's hint in seconds, if any."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentChannelError(ChannelError):
    """A failure that retrying will not fix; `unreachable` when the user cannot be reached at all
    on this channel (blocked the bot, invalid or unsubscribed number)."""

    def __init__(self, message: str, *, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable
