"""The desk's Slack messages in Block Kit: a ticket's parent message, queue lines, the announcement check.

Block Kit: https://api.slack.com/reference/block-kit/blocks. Text the users wrote is escaped
(& < >) so it can never ping anyone or forge a link (https://api.slack.com/reference/surfaces/formatting#escaping).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from core.desk_summary import channel_name
from core.handoff import ACTIVE
from core.ticket_view import TicketSummary

CLAIM, RESOLVE, BACK = "desk_claim", "desk_resolve", "desk_back"
ANNOUNCE_SEND, ANNOUNCE_CANCEL = "desk_announce_send", "desk_announce_cancel"
FIELD_LIMIT, SECTION_LIMIT = 1900, 2900
AUTHORS = {"user": "User", "bot": "Bot", "agent": "Agent", "system": "SayPro"}


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def thread_link(channel: str, ts: str) -> str:
    """A link to a message that Slack resolves to the workspace (no API call needed)."""
    return f"https://slack.com/archives/{channel}/p{ts.replace('.', '')}"


def status_line(summary: TicketSummary, zone: ZoneInfo) -> str:
    if summary.status == "open":
        since = summary.waiting_since or summary.created_at
        held = f" (last with {escape(summary.assignee)})" if summary.assignee else ""
        return f"waiting for a person since {since.astimezone(zone):%a %H:%M}{held}"
    if summary.status == "assigned":
        return f"with *{escape(summary.assignee or 'an agent')}*"
    if summary.status == "resolved":
        rated = f", rated {summary.rating}/5" if summary.rating else ""
        return f"resolved by {escape(summary.closed_by or 'an agent')}{rated}"
    return f"back with the bot (by {escape(summary.closed_by or 'an agent')})"


def parent(
    summary: TicketSummary, *, topic_title: str | None, zone: ZoneInfo, now: datetime, template: bool
) -> tuple[str, list[dict[str, Any]]]:
    """The parent message: its notification text and its blocks."""
    user = f"{escape(summary.user)} on {channel_name(summary.channel)}"
    head = f"*{summary.reference}* · priority *{summary.priority}*"
    if summary.breached:
        head += " · ⚠️ first-response target missed"
    if summary.reopened:
        head += f" · reopened {summary.reopened}×"
    fields = [
        f"*User*\n{user}",
        f"*Why*\n{escape(summary.reason)}",
        f"*Topic*\n{escape(topic_title or summary.topic or 'not known')}",
        f"*Verified*\n{summary.verified}",
        "*Records*\n" + ("\n".join(escape(line) for line in summary.records) or "none looked up"),
    ]
    if summary.window is not None:
        fields.append(
            f"*{channel_name(summary.channel)} window*\n{_window(summary, zone=zone, now=now, template=template)}"
        )
    blocks: list[dict[str, Any]] = [
        _section(f"{head}\n{status_line(summary, zone)}"),
        {"type": "section", "fields": [{"type": "mrkdwn", "text": field[:FIELD_LIMIT]} for field in fields]},
        _section("*Last messages*\n" + _messages(summary)),
    ]
    if summary.status in ACTIVE:
        blocks.append(
            {
                "type": "actions",
                "block_id": "desk_ticket",
                "elements": [
                    _button("Claim", CLAIM, summary.reference, style="primary"),
                    _button("Resolve", RESOLVE, summary.reference),
                    _button("Back to bot", BACK, summary.reference),
                ],
            }
        )
    blocks.append(
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": ("Reply in this thread to answer the user. Start with `//` for a note only agents see."),
                }
            ],
        }
    )
    return (
        f"{summary.reference} ({summary.priority}): {summary.user} on {channel_name(summary.channel)} needs a person",
        blocks,
    )


def _window(summary: TicketSummary, *, zone: ZoneInfo, now: datetime, template: bool) -> str:
    window = summary.window
    assert window is not None
    if window.is_open(now):
        assert window.closes_at is not None
        return f"open until {window.closes_at.astimezone(zone):%a %d %b %H:%M}"
    closed = f"closed since {window.closes_at.astimezone(zone):%a %d %b %H:%M}" if window.closes_at else "closed"
    return f"{closed}: replies go as the approved template" if template else f"{closed}: replies cannot be delivered"


def _messages(summary: TicketSummary) -> str:
    lines = [f"> *{AUTHORS.get(author, author)}:* {escape(text)}" for author, text in summary.last_messages]
    text = "\n".join(lines) or "> (none)"
    return text if len(text) <= SECTION_LIMIT else "…" + text[-SECTION_LIMIT:]


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:SECTION_LIMIT]}}


def _button(label: str, action_id: str, value: str, *, style: str | None = None) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "action_id": action_id,
        "value": value,
        "text": {"type": "plain_text", "text": label},
    }
    if style:
        button["style"] = style
    return button


def announcement_check(
    announcement_id: int, audience: dict[str, int], text: str, *, left_out: int = 0
) -> list[dict[str, Any]]:
    """The confirmation shown before an announcement goes out: who it reaches, and two buttons."""
    total = sum(audience.values())
    where = ", ".join(f"{channel_name(c)} {n}" for c, n in audience.items()) or "nobody"
    body = f"This announcement will reach *{total}* {'person' if total == 1 else 'people'} ({where})"
    if left_out:
        body += (
            f"; {left_out} on WhatsApp outside the 24-hour window will not get it "
            "(no `WHATSAPP_ANNOUNCEMENT_TEMPLATE` is set)"
        )
    body += f":\n> {escape(text)}"
    return [
        _section(body),
        {
            "type": "actions",
            "block_id": "desk_announce",
            "elements": [
                _button(f"Send to {total}", ANNOUNCE_SEND, str(announcement_id), style="primary"),
                _button("Cancel", ANNOUNCE_CANCEL, str(announcement_id)),
            ],
        },
    ]


def queue_line(summary: TicketSummary, *, now: datetime, link: str | None) -> str:
    age = int((now - summary.created_at).total_seconds() // 60)
    held = f"with {escape(summary.assignee)}" if summary.status == "assigned" and summary.assignee else "unassigned"
    where = f" · <{link}|thread>" if link else ""
    return (
        f"*{summary.reference}* · {summary.priority} · {_age(age)} · {channel_name(summary.channel)} · "
        f"{escape(summary.user)} · {held}{where}"
    )


def _age(minutes: int) -> str:
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 48 * 60:
        return f"{minutes // 60} h {minutes % 60} min"
    return f"{minutes // 1440} days"
