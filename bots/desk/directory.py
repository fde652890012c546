"""Who may act on the desk, and what to call them: members of the agents' channel, cached briefly.

Membership comes from conversations.members (https://api.slack.com/methods/conversations.members,
scope channels:read or groups:read), names from users.info (scope users:read). Both are cached
for a minute so a busy desk does not run into Slack's rate limits; if Slack cannot say, the
answer is "not a member": nobody acts on a ticket unchecked.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
from slack_sdk.errors import SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from core.desk_actions import Agent

log = logging.getLogger(__name__)
MEMBERS_TTL = 60.0
NAMES_TTL = 3600.0


class AgentDirectory:
    """Membership of the agents' channel and agents' names, each cached for a while."""

    def __init__(self, channel: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.channel = channel
        self.clock = clock
        self._members: tuple[float, frozenset[str]] | None = None
        self._names: dict[str, tuple[float, str]] = {}

    async def is_member(self, client: AsyncWebClient, user_id: str) -> bool:
        members = await self._current_members(client)
        return user_id in members

    async def agent(self, client: AsyncWebClient, user_id: str, *, profile: Mapping[str, Any] | None = None) -> Agent:
        """The agent with the name their Slack profile gives (the event's, else users.info)."""
        name = _profile_name(profile) if profile else None
        cached = self._names.get(user_id)
        if name is None and cached is not None and self.clock() - cached[0] < NAMES_TTL:
            name = cached[1]
        if name is None:
            name = await self._look_up_name(client, user_id)
        self._names[user_id] = (self.clock(), name)
        return Agent(user_id, name)

    async def _current_members(self, client: AsyncWebClient) -> frozenset[str]:
        if self._members is not None and self.clock() - self._members[0] < MEMBERS_TTL:
            return self._members[1]
        members: set[str] = set()
        cursor: str | None = None
        try:
            while True:
                response = await client.conversations_members(channel=self.channel, limit=200, cursor=cursor)
                members.update(response.get("members") or [])
                cursor = (response.get("response_metadata") or {}).get("next_cursor") or None
                if not cursor:
                    break
        except (SlackClientError, aiohttp.ClientError, TimeoutError) as exc:
            log.error("desk membership unknown: %s", type(exc).__name__, extra={"channel": "slack"})
            return frozenset()
        self._members = (self.clock(), frozenset(members))
        return self._members[1]

    async def _look_up_name(self, client: AsyncWebClient, user_id: str) -> str:
        try:
            response = await client.users_info(user=user_id)
        except (SlackClientError, aiohttp.ClientError, TimeoutError) as exc:
            log.warning("agent name unknown: %s", type(exc).__name__, extra={"channel": "slack"})
            return "SayPro support"
        user = response.get("user") or {}
        return _profile_name(user.get("profile") or {}) or user.get("real_name") or user.get("name") or "SayPro support"


def _profile_name(profile: Mapping[str, Any]) -> str | None:
    for key in ("real_name", "display_name", "first_name"):
        value = profile.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None
