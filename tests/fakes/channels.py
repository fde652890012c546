"""Channels for tests that record what the bot sends, and can fail on cue."""

from __future__ import annotations

from collections.abc import Iterable

from core.errors import ChannelError
from core.messages import Capabilities, OutboundMessage, Receipt


class RecordingChannel:
    """Keeps every message it is asked to send; raises the queued errors first, one per send."""

    def __init__(
        self, name: str = "console", *, capabilities: Capabilities | None = None, failures: Iterable[ChannelError] = ()
    ) -> None:
        self.name = name
        self.capabilities = capabilities or Capabilities(buttons=False)
        self.sent: list[OutboundMessage] = []
        self.failures = list(failures)
        self.attempts = 0

    async def send(self, message: OutboundMessage) -> Receipt:
        self.attempts += 1
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(message)
        return Receipt(provider_message_id=f"{self.name}-{len(self.sent)}")
