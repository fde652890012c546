"""The agents' desk in Slack (SLACK_AGENT_CHANNEL): parent messages and threads, agents' replies relayed
to users, Claim / Resolve / Back to bot, `/saypro`, and the background loop for timers and posts.

    listeners.py  thread replies, edits, ticket buttons      commands.py  /saypro and announcements
    directory.py  who is an agent (channel members), names    blocks.py    the Block Kit messages
    sender.py     sends the queued desk posts                 loop.py      timers, outcomes, posts
    metrics.py    the report's figures on /metrics

The decisions live in core (core.desk, core.desk_actions, core.sla...); this package is Slack's side.
"""

from __future__ import annotations

from bots.desk.listeners import register

__all__ = ["register"]
