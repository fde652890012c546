"""`saypro-bot chat`: a conversation with the bot in the terminal, through the same core as any channel."""

from __future__ import annotations

import asyncio
import uuid

from rich.console import Console

from adapters.console import ConsoleChannel
from bots.wiring import Services
from core.channels import ChannelRegistry
from core.messages import InboundMessage
from core.outbox import Dispatcher

QUIT = {"/quit", "/exit"}


def chat(services: Services, *, user_id: str, console: Console | None = None) -> None:
    """Read lines until end of input or /quit; each goes through the inbox and the outbox."""
    console = console or Console()
    channel = ConsoleChannel(console)
    services.channels.add(channel)
    dispatcher = Dispatcher(services.database, ChannelRegistry([channel]))
    console.print(
        f"[bold cyan]SayPro support[/] - you are [bold]{user_id}[/] on the console channel. "
        "Ask a question, type [bold]menu[/], or [bold]/quit[/] to leave."
    )
    while True:
        try:
            line = console.input("[bold green]You ›[/] ")
        except (EOFError, KeyboardInterrupt):
            console.print()
            break
        if line.strip().lower() in QUIT:
            break
        message = InboundMessage(channel="console", user_id=user_id, provider_message_id=uuid.uuid4().hex, text=line)
        _accepted, item_ids = services.inbox.handle(message)
        asyncio.run(dispatcher.dispatch(item_ids))
    console.print("[dim]Conversation saved. Goodbye.[/]")
