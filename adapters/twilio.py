"""SMS and WhatsApp through Twilio: verify and parse its webhooks, send replies with its REST client."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qs

import requests
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response as TwilioResponse
from twilio.request_validator import RequestValidator
from twilio.rest import Client
from twilio.twiml.messaging_response import MessagingResponse

from core.errors import InboundRejected, PermanentChannelError, TransientChannelError
from core.markup import to_plain
from core.messages import Attachment, Capabilities, InboundMessage, OutboundMessage, Receipt

log = logging.getLogger(__name__)

WHATSAPP_PREFIX = "whatsapp:"
# The webhook's answer: nothing inline, replies leave through the REST API from the outbox.
EMPTY_TWIML = str(MessagingResponse())
SEND_TIMEOUT_SECONDS = 15.0
# Twilio sends at most 10 media per message (https://www.twilio.com/docs/messaging/guides/webhook-request).
MAX_MEDIA = 10

# Plain SMS: three concatenated GSM-7 segments of 153 characters (160 for a single one; 67 per
# segment once any character needs UCS-2): https://www.twilio.com/docs/glossary/what-sms-character-limit.
# to_plain never lengthens text, so the limit needs no headroom for the conversion.
SMS_CAPABILITIES = Capabilities(max_text_length=3 * 153, buttons=False, carrier_opt_out=True)
# WhatsApp: Twilio's 1,600-character body limit (https://www.twilio.com/docs/api/errors/21617), with
# room for emoji that count twice if Twilio counts UTF-16 units; free-form replies only within 24 h
# of the user's last message (https://www.twilio.com/docs/api/errors/63016).
WHATSAPP_CAPABILITIES = Capabilities(max_text_length=1500, buttons=False, reply_window_hours=24)
CAPABILITIES = {"sms": SMS_CAPABILITIES, "whatsapp": WHATSAPP_CAPABILITIES}

# Error codes that mean this recipient cannot be reached from us, whatever we retry:
# 21211 invalid To, 21610 unsubscribed (replied STOP), 21612 To not reachable from our number,
# 21614 not a mobile number, 30005 unknown handset, 30006 landline or unreachable carrier,
# 63003 not a WhatsApp user, 63024 invalid WhatsApp recipient. https://www.twilio.com/docs/api/errors/<code>
UNREACHABLE_CODES = frozenset({21211, 21610, 21612, 21614, 30005, 30006, 63003, 63024})
# A connection that dropped or timed out may succeed on a later attempt; other request errors
# (a malformed TWILIO_API_BASE_URL, say) will not.
_TRANSIENT_REQUEST_ERRORS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)
_PLAIN_BULLET = re.compile(r"^(\s*)• ", re.MULTILINE)


class TwilioHttpClientWithRetryAfter(TwilioHttpClient):
    """Twilio's requests-based HTTP client that remembers, per thread, a 429's Retry-After.

    The SDK's TwilioRestException keeps the status and code but drops the response headers;
    each send runs start to finish in one worker thread, so a thread-local is enough.
    Its request and response logs go to DEBUG, without headers.
    """

    def __init__(self, *, timeout: float = SEND_TIMEOUT_SECONDS) -> None:
        super().__init__(timeout=timeout, logger=logging.getLogger(f"{__name__}.http"))
        self._local = threading.local()

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> TwilioResponse:
        self._local.retry_after = None
        response = super().request(method, url, *args, **kwargs)
        if response.status_code == 429 and response.headers is not None:
            self._local.retry_after = _retry_after_seconds(response.headers.get("Retry-After"))
        return response

    def last_retry_after(self) -> float | None:
        """The Retry-After of this thread's last response, when it was a 429 that had one."""
        return getattr(self._local, "retry_after", None)

    def log_request(self, kwargs: dict[str, Any]) -> None:
        self.logger.debug("twilio request %s %s", kwargs["method"], kwargs["url"])

    def log_response(self, status_code: int, response: Any) -> None:
        self.logger.debug("twilio response %s", status_code)


def build_client(account_sid: str, auth_token: str, *, api_base_url: str | None = None) -> Client:
    """One Twilio REST client for both channels; no network until the first send."""
    client = Client(account_sid, auth_token, http_client=TwilioHttpClientWithRetryAfter())
    if api_base_url:
        # ApiBase hard-codes https://api.twilio.com; edge/region can only rewrite it to another
        # *.twilio.com host, so a local fake needs the domain's base_url itself (channel notes §3).
        client.api.base_url = api_base_url.rstrip("/")
    return client


@dataclass(frozen=True)
class DeliveryReport:
    """A status callback: what Twilio says became of a message we sent."""

    channel: str
    message_sid: str
    status: str
    error_code: int | None = None

    @property
    def unreachable(self) -> bool:
        """The message failed because the recipient cannot be reached at all."""
        return self.status in ("failed", "undelivered") and self.error_code in UNREACHABLE_CODES


class TwilioChannel:
    """One Twilio channel ("sms" or "whatsapp"); both share the client and the webhook's checks."""

    def __init__(
        self, name: str, client: Client, *, sender: str, auth_token: str, status_callback: str | None = None
    ) -> None:
        if name not in CAPABILITIES:
            raise ValueError(f"a Twilio channel is 'sms' or 'whatsapp', not {name!r}")
        self.name = name
        self.capabilities = CAPABILITIES[name]
        self.client = client
        self.sender = _with_prefix(sender) if name == "whatsapp" else sender
        self.status_callback = status_callback
        self._validator = RequestValidator(auth_token)

    def verify(self, *, url: str, headers: Mapping[str, str], body: bytes) -> None:
        """Check X-Twilio-Signature: HMAC-SHA1 of the public URL and the sorted form parameters."""
        signature = headers.get("x-twilio-signature")
        if not signature:
            raise InboundRejected("no X-Twilio-Signature header")
        if headers.get("x-twilio-webhooks-signature-settings"):
            # Signed with a Webhooks SharedKey, whose secret this bot is not given; only the Auth
            # Token signature is supported (https://www.twilio.com/docs/usage/webhooks/webhook-shared-keys).
            raise InboundRejected("signed with a webhook SharedKey; sign with the Auth Token instead")
        if not self._validator.validate(url, _form(body), signature):
            raise InboundRejected("X-Twilio-Signature does not match")

    def parse(self, *, headers: Mapping[str, str], body: bytes) -> list[InboundMessage]:
        """The one message of an inbound webhook; WhatsApp when From starts with 'whatsapp:'."""
        form = _form(body)
        sid = form.first("MessageSid") or form.first("SmsMessageSid") or form.first("SmsSid")
        sender = form.first("From")
        if not sid or not sender:
            raise InboundRejected("not a Twilio message: MessageSid and From are required")
        channel, user_id = _split_address(sender)
        return [
            InboundMessage(
                channel=channel,
                user_id=user_id,
                provider_message_id=sid,
                text=_text(form, channel),
                attachments=_attachments(form),
                display_name=form.first("ProfileName") or None,
                raw=form.flat(),
            )
        ]

    def parse_status(self, body: bytes) -> DeliveryReport:
        """A verified status callback's message SID, status and error code."""
        form = _form(body)
        sid, status = form.first("MessageSid") or form.first("SmsSid"), form.first("MessageStatus")
        if not sid or not status:
            raise InboundRejected("not a Twilio status callback: MessageSid and MessageStatus are required")
        whatsapp = any(form.first(field).startswith(WHATSAPP_PREFIX) for field in ("From", "To"))
        code = form.first("ErrorCode")
        return DeliveryReport(
            channel="whatsapp" if whatsapp else "sms",
            message_sid=sid,
            status=status.lower(),
            error_code=int(code) if code.isdigit() else None,
        )

    async def send(self, message: OutboundMessage) -> Receipt:
        """POST Messages.json in a worker thread (the SDK's client is synchronous); the SID is the receipt."""
        params = self._params(message)
        sid = await asyncio.to_thread(self._create, params)
        return Receipt(provider_message_id=sid)

    def _params(self, message: OutboundMessage) -> dict[str, Any]:
        recipient = _with_prefix(message.user_id) if self.name == "whatsapp" else message.user_id
        params: dict[str, Any] = {"to": recipient, "from_": self.sender}
        if message.template is not None:
            # An approved Content template (required for WhatsApp outside the 24-hour window):
            # content_sid and JSON variables, no Body (https://www.twilio.com/docs/content/send-templates-created-with-the-content-template-builder).
            params["content_sid"] = message.template.content_id
            if message.template.variables:
                params["content_variables"] = json.dumps(dict(message.template.variables))
        else:
            params["body"] = self._body(message.text)
        if self.name == "sms":
            # Let Twilio swap look-alike Unicode (curly quotes, dashes) for GSM-7, so a part stays
            # within three 153-character segments (https://www.twilio.com/docs/messaging/services/smart-encoding).
            params["smart_encoded"] = True
        if self.status_callback:
            params["status_callback"] = self.status_callback
        return params

    def _body(self, markdown: str) -> str:
        text = to_plain(markdown)
        # "•" is not in the GSM-7 alphabet: one would make the whole SMS UCS-2 (67 per segment).
        return _PLAIN_BULLET.sub(r"\1- ", text) if self.name == "sms" else text

    def _create(self, params: dict[str, Any]) -> str:
        try:
            created = self.client.messages.create(**params)
        except (TwilioRestException, TwilioServiceException) as exc:
            raise _translate(exc, retry_after=self._retry_after()) from exc
        except _TRANSIENT_REQUEST_ERRORS as exc:
            raise TransientChannelError(f"Twilio unreachable: {type(exc).__name__}") from exc
        except requests.RequestException as exc:
            raise PermanentChannelError(f"Twilio request failed: {type(exc).__name__}") from exc
        except ValueError as exc:
            # A 2xx whose body is not JSON: the message may well exist, so do not send it twice.
            raise PermanentChannelError("Twilio accepted the request but its answer was unreadable") from exc
        if not created.sid:
            raise PermanentChannelError("Twilio accepted the request but returned no message SID")
        return str(created.sid)

    def _retry_after(self) -> float | None:
        http_client = self.client.http_client
        if isinstance(http_client, TwilioHttpClientWithRetryAfter):
            return http_client.last_retry_after()
        return None


def _translate(
    exc: TwilioRestException | TwilioServiceException, *, retry_after: float | None
) -> TransientChannelError | PermanentChannelError:
    """Twilio's HTTP status and error code as the core's transient or permanent failure."""
    status, code = int(exc.status), _code(exc.code)
    described = f"Twilio answered {status}" + (f" (error {code})" if code else "")
    if status == 429:
        return TransientChannelError(described, retry_after=retry_after)
    if status >= 500:
        return TransientChannelError(described)
    return PermanentChannelError(described, unreachable=code in UNREACHABLE_CODES)


def _code(value: object) -> int | None:
    if isinstance(value, int):
        return value
    return int(value) if isinstance(value, str) and value.isdigit() else None


def _retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds: a number of seconds, or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


class _Form(dict[str, list[str]]):
    """A form body with every value of each name, as RequestValidator's `getlist` expects."""

    def getlist(self, name: str) -> list[str]:
        return self.get(name, [])

    def first(self, name: str) -> str:
        values = self.get(name)
        return values[0] if values else ""

    def flat(self) -> dict[str, object]:
        return {name: values[0] if len(values) == 1 else list(values) for name, values in self.items()}


def _form(body: bytes) -> _Form:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InboundRejected("the body is not UTF-8 form data") from exc
    # Blank values are signed too (a media-only message has Body=""), so keep them.
    return _Form(parse_qs(text, keep_blank_values=True))


def _split_address(address: str) -> tuple[str, str]:
    """('whatsapp', '+27...') for 'whatsapp:+27...', else ('sms', the number as given)."""
    if address.startswith(WHATSAPP_PREFIX):
        return "whatsapp", address.removeprefix(WHATSAPP_PREFIX)
    return "sms", address


def _with_prefix(number: str) -> str:
    return WHATSAPP_PREFIX + number.removeprefix(WHATSAPP_PREFIX)


def _text(form: _Form, channel: str) -> str:
    opt_out = form.first("OptOutType").upper()
    if channel == "sms" and opt_out in ("STOP", "START"):
        # With Advanced Opt-Out, Twilio has already matched the keyword (its list is longer than
        # ours, e.g. REVOKE) and answered the user; say what it did, so the core records it silently.
        # https://www.twilio.com/docs/messaging/tutorials/advanced-opt-out#opt-out-type
        return opt_out
    return form.first("Body")


def _attachments(form: _Form) -> tuple[Attachment, ...]:
    count = form.first("NumMedia")
    # isascii: str.isdigit() also accepts '²' and other digits int() refuses.
    number = min(int(count), MAX_MEDIA) if count.isascii() and count.isdigit() else 0
    media = [(form.first(f"MediaUrl{i}"), form.first(f"MediaContentType{i}") or None) for i in range(number)]
    return tuple(Attachment(url=url, content_type=kind) for url, kind in media if url)
