"""`saypro-bot report` on a terminal: the support figures as rich tables."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def print_report(figures: dict[str, Any], *, days: int, console: Console | None = None) -> None:
    console = console or Console()
    volume = Table(title=f"Volume, last {days} days")
    for column in ("channel", "conversations", "messages in", "messages out"):
        volume.add_column(column)
    for channel, counts in figures["volume"].items():
        volume.add_row(channel, str(counts["conversations"]), str(counts["messages_in"]), str(counts["messages_out"]))
    console.print(volume)
    containment = figures["bot_containment"]
    console.print(f"Bot containment: {'n/a' if containment is None else f'{containment:.1%}'} of {figures['conversations']} conversations")
    console.print("Tickets: " + (", ".join(f"{status} {count}" for status, count in figures["tickets"].items()) or "none"))
    delivery = Table(title="Replies by outcome")
    for column in ("channel", "sent", "pending", "withheld", "dead"):
        delivery.add_column(column)
    for channel, counts in figures["delivery"].items():
        delivery.add_row(channel, *(str(counts.get(status, 0)) for status in ("sent", "pending", "withheld", "dead")))
    console.print(delivery)
