"""The support figures in a few lines of Markdown: `/saypro stats` and the weekly summary for the agents."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from core import desk_posts
from core.desk_posts import PostKind
from core.desk_summary import channel_name
from core.reporting import figures
from core.storage.desk import DeskTimer

WEEK = timedelta(days=7)


def summary_text(report: dict[str, Any], *, title: str) -> str:
    """The figures as Markdown bullets, headed by `title`."""
    volume = report["volume"]
    by_channel = ", ".join(f"{channel_name(c)} {v['conversations']}" for c, v in volume.items() if v["conversations"])
    tickets = sum(v["tickets"] for v in volume.values())
    ticket_channels = ", ".join(f"{channel_name(c)} {v['tickets']}" for c, v in volume.items() if v["tickets"])
    csat = report["csat"]
    lines = [
        f"**{title}**",
        f"- Conversations: {report['conversations']}" + (f" ({by_channel})" if by_channel else ""),
        f"- Tickets: {tickets}" + (f" ({ticket_channels})" if ticket_channels else ""),
        f"- Bot containment: {_percent(report['bot_containment'])}",
        f"- First response: {_times(report['first_response_seconds'])}",
        f"- Resolution: {_times(report['resolution_seconds'])}",
        f"- First-contact resolution: {_percent(report['first_contact_resolution'])} of {report['tickets_resolved']} resolved",
        f"- SLA breaches: {report['sla_breaches']}",
        (
            f"- CSAT: {_percent(csat['satisfied'])} rated 4 or 5, "
            f"mean {csat['mean'] if csat['mean'] is not None else 'n/a'} ({csat['responses']} ratings)"
        ),
    ]
    if report["top_faq_topics"]:
        lines.append(
            "- Top FAQ topics: " + ", ".join(f"{t['topic']} ({t['count']})" for t in report["top_faq_topics"][:5])
        )
    if report["top_unanswered"]:
        lines.append(
            "- Not answered by the bot: "
            + "; ".join(f"“{q['question']}” ({q['count']})" for q in report["top_unanswered"][:5])
        )
    return "\n".join(lines)


def weekly_report(session: Session, timer: DeskTimer, now: datetime, *, zone: ZoneInfo) -> None:
    """The weekly timer's work: the last seven days' figures, posted to the agents' channel."""
    until = timer.due_at
    report = figures(session, since=until - WEEK, until=until)
    first, last = (until - WEEK).astimezone(zone), until.astimezone(zone)
    title = f"Support figures for the week {first:%a %d %b %H:%M} to {last:%a %d %b %Y %H:%M}"
    desk_posts.post(session, PostKind.CHANNEL, summary_text(report, title=title), dedupe_key=timer.key)


def _percent(share: float | None) -> str:
    return "n/a" if share is None else f"{share:.1%}"


def _times(spread: dict[str, Any]) -> str:
    if not spread["n"]:
        return "n/a"
    return f"median {_duration(spread['median'])}, 90% within {_duration(spread['p90'])} ({spread['n']} tickets)"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
