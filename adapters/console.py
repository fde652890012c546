"""The terminal as a channel: `saypro-bot chat` prints the bot's replies with rich."""

from __future__ import annotations

from rich.console import Console
from rich.markdown import Markdown
from rich.panel import Panel

from core.messages import Capabilities, OutboundMessage, Receipt


class ConsoleChannel:
    """Shows replies in the terminal; quick replies arrive already as a numbered list."""

    name = "console"
    capabilities = Capabilities(buttons=False)

    def __init__(self, console: Console) -> None:
        self.console = console

    async def send(self, message: OutboundMessage) -> Receipt:
        self.console.print(Panel(Markdown(message.text), title="SayPro", title_align="left", border_style="cyan"))
        return Receipt(provider_message_id=None, detail="printed")
