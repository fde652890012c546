"""`saypro-bot report` on a terminal: the support figures as rich tables."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def print_report(figures: dict[str, Any], *, days: int, console: Console | None = None) -> None:
    console = console or Console()
    volume = Table(title=f"Volume, last {days} days")
    for column in ("channel", "conversations", "tickets", "messages in", "messages out"):
        volume.add_column(column)
    for channel, counts in figures["volume"].items():
        volume.add_row(
            channel,
            str(counts["conversations"]),
            str(counts["tickets"]),
            str(counts["messages_in"]),
            str(counts["messages_out"]),
        )
    console.print(volume)
    containment = figures["bot_containment"]
    console.print(f"Bot containment: {_percent(containment)} of {figures['conversations']} conversations")
    console.print(
        "Tickets: " + (", ".join(f"{status} {count}" for status, count in figures["tickets"].items()) or "none")
    )
    console.print(_times(figures))
    csat = figures["csat"]
    console.print(
        f"First-contact resolution: {_percent(figures['first_contact_resolution'])} of {figures['tickets_resolved']} resolved; "
        f"SLA breaches: {figures['sla_breaches']}; CSAT: {_percent(csat['satisfied'])} 4 or 5, "
        f"mean {csat['mean'] if csat['mean'] is not None else 'n/a'} ({csat['responses']} ratings)"
    )
    for title, key, label in (
        ("Top FAQ topics", "top_faq_topics", "topic"),
        ("Not answered by the bot", "top_unanswered", "question"),
    ):
        if figures[key]:
            table = Table(title=title)
            table.add_column(label)
            table.add_column("times")
            for row in figures[key]:
                table.add_row(str(row[label]), str(row["count"]))
            console.print(table)
    delivery = Table(title="Replies by outcome")
    for column in ("channel", "sent", "pending", "withheld", "dead"):
        delivery.add_column(column)
    for channel, counts in figures["delivery"].items():
        delivery.add_row(channel, *(str(counts.get(status, 0)) for status in ("sent", "pending", "withheld", "dead")))
    console.print(delivery)


def _percent(share: float | None) -> str:
    return "n/a" if share is None else f"{share:.1%}"


def _seconds(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.0f} s" if value < 120 else f"{value / 60:.1f} min" if value < 7200 else f"{value / 3600:.1f} h"


def _times(figures: dict[str, Any]) -> str:
    first, done = figures["first_response_seconds"], figures["resolution_seconds"]
    return (
        f"First response: median {_seconds(first['median'])}, p90 {_seconds(first['p90'])} ({first['n']} tickets); "
        f"resolution: median {_seconds(done['median'])}, p90 {_seconds(done['p90'])} ({done['n']} tickets)"
    )
