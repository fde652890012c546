"""The narrow interface every channel adapter implements, and the registry the core sends through."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from core.messages import Capabilities, InboundMessage, OutboundMessage, Receipt


class Channel(Protocol):
    """Sends the core's outbound messages through one provider's SDK."""

    name: str
    capabilities: Capabilities

    async def send(self, message: OutboundMessage) -> Receipt:
        """Deliver one message (already rendered to fit `capabilities`); raise ChannelError on failure."""
        ...


class WebhookChannel(Channel, Protocol):
    """A channel whose provider calls us: verify the request, then parse it into messages."""

    def verify(self, *, url: str, headers: Mapping[str, str], body: bytes) -> None:
        """Raise InboundRejected unless the request is signed by the provider."""
        ...

    def parse(self, *, headers: Mapping[str, str], body: bytes) -> list[InboundMessage]:
        """The user messages in a verified request (possibly none, for receipts and pings)."""
        ...


class ChannelRegistry:
    """The live channels by name."""

    def __init__(self, channels: Iterable[Channel] = ()) -> None:
        self._channels: dict[str, Channel] = {}
        for channel in channels:
            self.add(channel)

    def add(self, channel: Channel) -> None:
        self._channels[channel.name] = channel

    def get(self, name: str) -> Channel | None:
        return self._channels.get(name)

    def names(self) -> list[str]:
        return sorted(self._channels)
