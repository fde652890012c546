"""Sends the desk's queued posts to the agents' channel: parents, thread lines, parent updates, notices.

A parent goes out with chat.postMessage and its `ts` becomes the ticket's thread; thread lines
carry that `thread_ts` (https://api.slack.com/messaging/managing#threading); a refresh redraws
the parent with chat.update (https://api.slack.com/methods/chat.update). Failures are retried
with backoff, and Slack's refusals give up at once, as in the user outbox.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import aiohttp
from slack_sdk.errors import SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack import translate
from bots.desk import blocks
from bots.settings import Settings
from core import desk_posts
from core.desk_posts import Claimed, PostKind
from core.errors import PermanentChannelError, TransientChannelError
from core.markup import to_slack_mrkdwn
from core.storage.models import Ticket, utcnow
from core.ticket_view import summarise

if TYPE_CHECKING:
    from bots.wiring import Services

log = logging.getLogger(__name__)
TEXT_LIMIT = 3900


class DeskSender:
    """Posts due desk messages through the Slack Web API client it is given."""

    def __init__(self, services: Services, client: AsyncWebClient, settings: Settings) -> None:
        assert settings.slack_agent_channel is not None
        self.services = services
        self.client = client
        self.channel = settings.slack_agent_channel
        self.mention = (
            f"<!subteam^{settings.slack_escalation_usergroup}>" if settings.slack_escalation_usergroup else "<!here>"
        )
        self.template = settings.whatsapp_agent_reply_template is not None

    async def flush(self) -> int:
        """Send every post that is due; how many were attempted."""
        database = self.services.database
        attempted = 0
        for post_id in await asyncio.to_thread(desk_posts.due, database, utcnow()):
            claimed = await asyncio.to_thread(desk_posts.claim, database, post_id, utcnow())
            if claimed is not None:
                attempted += 1
                await self._send(claimed)
        return attempted

    async def _send(self, claimed: Claimed) -> None:
        database = self.services.database
        try:
            ts = await self._post(claimed)
        except PermanentChannelError as error:
            status = await asyncio.to_thread(
                desk_posts.failed, database, claimed, str(error), now=utcnow(), permanent=True
            )
            log.warning(
                "desk post not sent: %s", error, extra={"channel": "slack", "desk_post": claimed.id, "status": status}
            )
            return
        except (SlackClientError, aiohttp.ClientError, TimeoutError) as exc:
            error = translate(exc)
            retry_after = error.retry_after if isinstance(error, TransientChannelError) else None
            status = await asyncio.to_thread(
                desk_posts.failed,
                database,
                claimed,
                f"{type(error).__name__}: {error}",
                now=utcnow(),
                permanent=isinstance(error, PermanentChannelError),
                retry_after=retry_after,
            )
            log.warning(
                "desk post not sent: %s", error, extra={"channel": "slack", "desk_post": claimed.id, "status": status}
            )
            return
        await asyncio.to_thread(desk_posts.sent, database, claimed, ts=ts, channel=self.channel, now=utcnow())

    async def _post(self, claimed: Claimed) -> str | None:
        if claimed.kind == PostKind.PARENT:
            text, view = await asyncio.to_thread(self._parent_view, claimed.ticket_id)
            response = await self.client.chat_postMessage(
                channel=self.channel, text=text, blocks=view, unfurl_links=False
            )
            return _ts(response)
        if claimed.kind == PostKind.REFRESH:
            if claimed.parent_ts is None:
                return None  # the parent is not out yet; it will show the ticket as it is then
            text, view = await asyncio.to_thread(self._parent_view, claimed.ticket_id)
            channel = claimed.parent_channel or self.channel
            await self.client.chat_update(channel=channel, ts=claimed.parent_ts, text=text, blocks=view)
            return claimed.parent_ts
        text = self._text(claimed)
        if claimed.kind == PostKind.THREAD:
            if claimed.parent_ts is None:
                raise PermanentChannelError("the ticket has no parent message to thread under")
            channel = claimed.parent_channel or self.channel
            response = await self.client.chat_postMessage(channel=channel, thread_ts=claimed.parent_ts, text=text)
            return _ts(response)
        response = await self.client.chat_postMessage(channel=self.channel, text=text, unfurl_links=False)
        return _ts(response)

    def _text(self, claimed: Claimed) -> str:
        text = to_slack_mrkdwn(claimed.text)
        if claimed.alert:
            text = f"{self.mention} {text}"  # a mention is Slack markup, added after the escaping
        return text if len(text) <= TEXT_LIMIT else text[: TEXT_LIMIT - 1] + "…"

    def _parent_view(self, ticket_id: int | None) -> tuple[str, list[dict[str, Any]]]:
        assert ticket_id is not None
        desk = self.services.desk
        with self.services.database.sessions() as session:
            ticket = session.get(Ticket, ticket_id)
            assert ticket is not None
            summary = summarise(session, ticket, window_of=desk.window)
        title = self.services.knowledge.answer_for(summary.topic).title if summary.topic else None
        zone = desk.levels.hours.zone
        return blocks.parent(summary, topic_title=title, zone=zone, now=desk.now(), template=self.template)


def _ts(response: Any) -> str | None:
    value = response.get("ts")
    return str(value) if value else None
