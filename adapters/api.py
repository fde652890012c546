"""The platform's own HTTP API as a channel: replies come back in the response body."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict, Field

from core.messages import Capabilities, InboundMessage, OutboundMessage, Receipt

MAX_TEXT = 20_000


class ApiMessageIn(BaseModel):
    """`POST /api/v1/messages` body: who writes and what; `id` makes a retried request idempotent."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    user: str = Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")
    text: str = Field(default="", max_length=MAX_TEXT)
    id: str | None = Field(default=None, min_length=1, max_length=200)


class ApiReply(BaseModel):
    text: str
    options: list[str]


class ApiMessagesOut(BaseModel):
    conversation: int
    replies: list[ApiReply]
    duplicate: bool = False


class ApiChannel:
    """Replies are read from the outbox by the route and returned in its response."""

    name = "api"
    capabilities = Capabilities(buttons=True, max_buttons=25)

    def parse(self, body: ApiMessageIn) -> InboundMessage:
        return InboundMessage(
            channel=self.name,
            user_id=body.user,
            provider_message_id=body.id or uuid.uuid4().hex,
            text=body.text,
        )

    async def send(self, message: OutboundMessage) -> Receipt:
        return Receipt(provider_message_id=None, detail="returned in the HTTP response")
