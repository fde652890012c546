"""python-telegram-bot's HTTP requests over aiohttp, through PTB's own interface for them (`BaseRequest`).

PTB sends with httpx by default. Under a burst of replies the worker spent about a third of its
time sending Telegram's half of the messages, most of it in httpx and httpcore; the same
sendMessage through aiohttp costs a quarter of the CPU (an in-process loop of 2,000 sends to the
benchmark's fake provider, 16 at a time: 0.37 to 0.46 ms against 1.7 to 1.9 ms each). aiohttp is a dependency already (slack_sdk's and tweepy's async
clients). PTB documents this interface for other HTTP libraries:
https://docs.python-telegram-bot.org/en/stable/telegram.request.baserequest.html
"""

from __future__ import annotations

import asyncio

import aiohttp
from telegram._utils.defaultvalue import DefaultValue
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData


class AiohttpRequest(BaseRequest):
    """Bot API requests on one aiohttp session of at most `connections` kept-alive connections.

    Timeouts as PTB's HTTPXRequest takes them, `timeout` seconds each by default: `connect` for a
    connection, `pool` more for waiting for a free one, `read` between bytes of the answer (PTB
    lengthens it for getUpdates' long poll), and `write` towards a bound on the whole request
    (aiohttp has no write timeout of its own). A timeout is PTB's TimedOut, any other failure its
    NetworkError, named by the exception's class alone: aiohttp's message may quote the URL, and
    the URL holds the bot token.
    """

    def __init__(self, *, connections: int, timeout: float) -> None:
        self._connections = connections
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def read_timeout(self) -> float | None:
        return self._timeout

    async def initialize(self) -> None:
        self._current()

    async def shutdown(self) -> None:
        session, self._session = self._session, None
        if session is None or session.closed:
            return
        if self._loop is asyncio.get_running_loop():
            await session.close()
        else:  # made in an event loop since closed, with its connections
            session.detach()

    def _current(self) -> aiohttp.ClientSession:
        """The session, made in the running event loop: aiohttp's connections belong to one loop."""
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            if self._session is not None and not self._session.closed:
                self._session.detach()  # its loop has ended: nothing left to close in it
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._connections),
                trust_env=True,  # HTTPS_PROXY and friends, as httpx honours them
            )
            self._loop = loop
        return self._session

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: float | None | DefaultValue[None] = BaseRequest.DEFAULT_NONE,
        write_timeout: float | None | DefaultValue[None] = BaseRequest.DEFAULT_NONE,
        connect_timeout: float | None | DefaultValue[None] = BaseRequest.DEFAULT_NONE,
        pool_timeout: float | None | DefaultValue[None] = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        if request_data is not None and request_data.contains_files:
            raise NetworkError("this bot uploads no files to Telegram")
        read, write, connect, pool = (
            self._timeout if isinstance(value, DefaultValue) else value
            for value in (read_timeout, write_timeout, connect_timeout, pool_timeout)
        )
        parts = (connect, pool, write, read)
        timeout = aiohttp.ClientTimeout(
            total=sum(parts) if None not in parts else None,  # type: ignore[arg-type]
            connect=connect + pool if connect is not None and pool is not None else None,
            sock_connect=connect,
            sock_read=read,
        )
        session = self._current()
        try:
            async with session.request(
                method,
                url,
                data=request_data.json_parameters if request_data is not None else None,
                headers={"User-Agent": self.USER_AGENT},
                timeout=timeout,
            ) as response:
                return response.status, await response.read()
        except TimeoutError as exc:  # aiohttp's own timeouts are TimeoutErrors too
            raise TimedOut from exc
        except aiohttp.ClientError as exc:
            raise NetworkError(f"aiohttp.{type(exc).__name__}") from exc
