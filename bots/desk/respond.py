"""What desk listeners do after deciding: an ephemeral word to the agent, and the sending left for later."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import aiohttp
from slack_sdk.errors import SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from bots.desk.sender import DeskSender
from bots.settings import Settings

if TYPE_CHECKING:
    from bots.wiring import Services

log = logging.getLogger(__name__)
NOT_A_MEMBER = "Only members of the agents' channel can act on the desk."


async def settle(services: Services, client: AsyncWebClient, settings: Settings, item_ids: list[int]) -> None:
    """After Slack's request is answered: send the user's message, then the thread's lines.

    Anything this misses (the process stops) the background loops send: the rows are stored.
    """
    if item_ids:
        await services.dispatcher.dispatch(item_ids)
    await DeskSender(services, client, settings).flush()


async def ephemeral(client: AsyncWebClient, *, channel: str, user: str, text: str) -> None:
    """A message only `user` sees (https://api.slack.com/methods/chat.postEphemeral)."""
    try:
        await client.chat_postEphemeral(channel=channel, user=user, text=text)
    except (SlackClientError, aiohttp.ClientError, TimeoutError) as exc:
        log.warning("desk: ephemeral message not sent: %s", type(exc).__name__, extra={"channel": "slack"})
