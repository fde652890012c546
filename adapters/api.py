"""The platform's own HTTP API as a channel: replies come back in the response body."""

from __future__ import annotations

import re
import uuid

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.messages import Capabilities, InboundMessage, OutboundMessage, Receipt

MAX_TEXT = 20_000
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")


class ApiMessageIn(BaseModel):
    """`POST /api/v1/messages` body: who writes and what; `id` makes a retried request idempotent."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    user: str = Field(min_length=1, max_length=200)
    text: str = Field(default="", max_length=MAX_TEXT)
    id: str | None = Field(default=None, min_length=1, max_length=200)

    @field_validator("user", "id")
    @classmethod
    def _printable(cls, value: str | None) -> str | None:
        # Ids are compared, never cleaned up: control characters and lone surrogates are refused (422).
        if value is not None and _UNPRINTABLE.search(value):
            raise ValueError("must be printable text, without control characters")
        return value


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
