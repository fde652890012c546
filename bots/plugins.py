"""Channel plugins: what each provider adds to a process (channels to send through, web routes, pollers).

Each provider module in `bots/` exposes ``plugin(settings) -> ChannelPlugin``; a channel is live
when its credentials are set, and the plugin says why when it is off.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fastapi import APIRouter

from bots.settings import Settings
from core.channels import Channel

if TYPE_CHECKING:
    from bots.wiring import Services

# The provider modules, each with a `plugin(settings)` function.
PLUGIN_MODULES: tuple[str, ...] = (
    "bots.channels.telegram",
    "bots.channels.twilio",
    "bots.channels.x_dm",
    "bots.channels.slack",
)


@dataclass(frozen=True)
class ChannelStatus:
    """Whether a channel is live in this process, and why not when it is off."""

    name: str
    live: bool
    why: str


@dataclass
class ChannelPlugin:
    """What one provider contributes: its statuses, live channels, web routes and background pollers."""

    statuses: list[ChannelStatus]
    channels: list[Channel] = field(default_factory=list)
    router: APIRouter | None = None
    pollers: list[Callable[[Services], Awaitable[None]]] = field(default_factory=list)
    # `saypro-bot webhooks register`: sets the provider's webhook (or says what to set), one line each.
    register_webhooks: Callable[[Settings], Awaitable[list[str]]] | None = None
    # Awaited when the web app or worker stops, in its own event loop (SDK HTTP clients).
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)


def load_plugins(settings: Settings) -> list[ChannelPlugin]:
    return [importlib.import_module(name).plugin(settings) for name in PLUGIN_MODULES]


def missing(settings: Settings, *variables: str) -> list[str]:
    """The variables among `variables` that are not set, upper-cased for the log."""
    return [variable.upper() for variable in variables if not getattr(settings, variable)]
