"""The client side of the load: the requests, the fake provider's replies matched to them, and the
phases' loops (fixed rate, closed loop, the bare endpoint)."""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Callable

from bench.cluster import Children, cpu_seconds, tree_cpu_seconds
from bench.common import HOST, MAX_REQUESTS_PER_PHASE
from bench.report import PhaseResult, ms, percentile
from bench.webhooks import MessageMaker, Outgoing

# ------------------------------------------------------------------------------------------------
# The client: requests, replies and the phases' loops
# ------------------------------------------------------------------------------------------------


class Replies:
    """The fake's lines: the first reply's arrival per recipient, a count per recipient, and waiters."""

    def __init__(self) -> None:
        self.first: dict[tuple[str, str], float] = {}
        self.per_recipient: Counter[tuple[str, str]] = Counter()
        self.count = 0
        self.waiting: dict[tuple[str, str], asyncio.Future[float]] = {}

    async def read(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            try:
                channel, recipient, stamp = line.decode().split()
                key, when = (channel, recipient), float(stamp)
            except ValueError:
                continue
            self.count += 1
            self.per_recipient[key] += 1
            if key in self.first:
                continue
            self.first[key] = when
            waiter = self.waiting.pop(key, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(when)

    def expect(self, key: tuple[str, str]) -> asyncio.Future[float]:
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        if key in self.first:
            future.set_result(self.first[key])
        else:
            self.waiting[key] = future
        return future

    def forget(self, key: tuple[str, str]) -> None:
        self.waiting.pop(key, None)


class Driver:
    """The client side: one aiohttp session, every request to 127.0.0.1."""

    def __init__(
        self,
        children: Children,
        replies: Replies,
        maker: MessageMaker,
        *,
        connections: int,
        timeout: float,
        database_pid: int | None = None,
    ) -> None:
        import aiohttp

        self.aiohttp = aiohttp
        self.bot = f"http://{HOST}:{children.bot_port}"
        self.bare = f"http://{HOST}:{children.bare_port}/bare"
        self.pids: dict[str, int | None | tuple[int, ...]] = {
            "bot": children.bot.pid,
            "workers": tuple(worker.pid for worker in children.workers),
            "fake": children.fake.pid,
            "bare": children.bare.pid,
            "load generator": None,
        }
        self.database_pid = database_pid  # the throwaway PostgreSQL server's, counted with its backends
        self.replies = replies
        self.maker = maker
        self.session = aiohttp.ClientSession(
            # Idle connections are dropped before uvicorn's keep-alive timeout (5 s) closes them:
            # otherwise a request sent on a connection the server is closing fails with
            # "Server disconnected" after a quiet drain, and counts against the bot.
            connector=aiohttp.TCPConnector(limit=connections, limit_per_host=connections, keepalive_timeout=2.0),
            timeout=aiohttp.ClientTimeout(total=timeout),
            skip_auto_headers=("User-Agent",),
        )
        sample = maker.next()
        self.bare_body, self.bare_headers = sample.body, sample.headers

    async def close(self) -> None:
        await self.session.close()

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
        try:
            async with self.session.post(url, data=body, headers=headers) as response:
                text = await response.read()
                return response.status, "" if response.status == 200 else text[:200].decode(errors="replace")
        except (TimeoutError, self.aiohttp.ClientError) as exc:
            return 0, f"{type(exc).__name__}: {exc}"[:200]

    async def closed_bare(self, *, clients: int, seconds: float) -> PhaseResult:
        """`clients` loops POSTing to the bare endpoint back to back until the time is up."""
        result = PhaseResult("bare endpoint, closed loop", seconds)
        return await self._back_to_back(
            result, clients, seconds, lambda: (self.bare, self.bare_body, self.bare_headers)
        )

    async def closed_intake(self, *, clients: int, seconds: float) -> PhaseResult:
        """`clients` loops POSTing signed webhooks to the bot back to back, not waiting for replies:
        the messages/s the web process stores (with ANSWERS_BY_WORKERS, all it does with them)."""
        result = PhaseResult(f"intake, {clients} clients in a closed loop, workers paused", seconds)

        def webhook() -> tuple[str, bytes, dict[str, str]]:
            message = self.maker.next()
            return self.bot + message.path, message.body, message.headers

        return await self._back_to_back(result, clients, seconds, webhook)

    async def _back_to_back(
        self,
        result: PhaseResult,
        clients: int,
        seconds: float,
        request: Callable[[], tuple[str, bytes, dict[str, str]]],
    ) -> PhaseResult:
        """`clients` loops POSTing `request()` (url, body, headers) back to back until the time is up."""
        latencies: list[float] = []
        start, cpu = time.monotonic(), self._cpu()
        end = start + seconds

        async def client() -> None:
            while time.monotonic() < end and result.sent < MAX_REQUESTS_PER_PHASE:
                url, body, headers = request()
                sent = time.monotonic()
                status, error = await self.post(url, body, headers)
                result.sent += 1
                if status == 200:
                    result.ok += 1
                    latencies.append(time.monotonic() - sent)
                else:
                    self._error(result, status, error)
                    await asyncio.sleep(0.01)

        await asyncio.gather(*(client() for _ in range(clients)))
        elapsed = time.monotonic() - start
        result.cpu_cores = self._cores(cpu, elapsed)
        result.throughput = round(result.ok / elapsed, 1)
        self._latencies(result, latencies, [])
        return result

    async def closed_bot(self, *, clients: int, seconds: float, reply_timeout: float) -> PhaseResult:
        """`clients` users, each sending one webhook and waiting for its reply at the fake, then the next.

        The throughput counts replies that arrived within the window: what one process sustains
        end to end. (A reply not back within `reply_timeout` s is counted missing.)
        """
        result = PhaseResult(f"capacity, {clients} users in a closed loop", seconds)
        webhook: list[float] = []
        e2e: list[tuple[str, float]] = []
        start, cpu = time.monotonic(), self._cpu()
        end = start + seconds

        async def client() -> None:
            while time.monotonic() < end and result.sent < MAX_REQUESTS_PER_PHASE:
                message = self.maker.next()
                reply = self.replies.expect(message.key)
                sent = time.monotonic()
                result.sent += 1
                status, error = await self.post(self.bot + message.path, message.body, message.headers)
                if status != 200:
                    self.replies.forget(message.key)
                    self._error(result, status, error)
                    await asyncio.sleep(0.05)
                    continue
                result.ok += 1
                webhook.append(time.monotonic() - sent)
                try:
                    arrived = await asyncio.wait_for(reply, timeout=reply_timeout)
                except TimeoutError:
                    self.replies.forget(message.key)
                    result.missing += 1
                    continue
                if arrived <= end:
                    e2e.append((message.channel, arrived - sent))

        await asyncio.gather(*(client() for _ in range(clients)))
        result.cpu_cores = self._cores(cpu, seconds)
        result.answered = len(e2e)
        result.throughput = round(len(e2e) / seconds, 1)
        self._latencies(result, webhook, e2e)
        return result

    async def open_loop(self, *, name: str, rate: float, seconds: float, grace: float) -> PhaseResult:
        """`rate` messages/s for `seconds` whatever the answers, then up to `grace` s for the last replies."""
        result = PhaseResult(name, seconds, offered_rate=rate)
        total = min(max(1, int(rate * seconds)), MAX_REQUESTS_PER_PHASE)
        sends: list[tuple[Outgoing, float]] = []
        webhook: list[float] = []
        tasks: set[asyncio.Task[None]] = set()
        max_lag = 0.0

        async def one(message: Outgoing, sent: float) -> None:
            status, error = await self.post(self.bot + message.path, message.body, message.headers)
            if status == 200:
                result.ok += 1
                webhook.append(time.monotonic() - sent)
            else:
                webhook.append(math.inf)  # a failed webhook is slower than any answered one
                self._error(result, status, error)

        start, cpu = time.monotonic() + 0.05, self._cpu()
        for index in range(total):
            message = self.maker.next()
            due = start + index / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            now = time.monotonic()
            max_lag = max(max_lag, now - due)
            result.sent += 1
            sends.append((message, now))
            task = asyncio.create_task(one(message, now))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        sending = time.monotonic() - start
        result.cpu_cores = self._cores(cpu, sending)
        result.achieved_rate = round(result.sent / sending, 1) if sending > 0 else None
        result.max_send_lag_ms = ms(max_lag)
        if tasks:
            await asyncio.wait(list(tasks))  # each ends within the request timeout
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(m.key not in self.replies.first for m, _ in sends):
            await asyncio.sleep(0.1)
        e2e = [(m.channel, self.replies.first.get(m.key, math.inf) - sent) for m, sent in sends]
        result.missing = sum(1 for _, latency in e2e if math.isinf(latency))
        result.answered = len(e2e) - result.missing
        result.throughput = round(result.answered / seconds, 1)
        self._latencies(result, webhook, e2e)
        return result

    async def settle(self, *, quiet: float = 2.0, limit: float = 60.0) -> float:
        """Wait until no reply has reached the fake for `quiet` s, at most `limit` s: the backlog is gone."""
        start = time.monotonic()
        last, changed = self.replies.count, start
        while time.monotonic() - start < limit:
            await asyncio.sleep(0.25)
            if self.replies.count != last:
                last, changed = self.replies.count, time.monotonic()
            elif time.monotonic() - changed >= quiet:
                break
        return time.monotonic() - start

    def _cpu(self) -> dict[str, float | None]:
        cpu = {name: _cpu_of(pid) for name, pid in self.pids.items()}
        cpu["database"] = tree_cpu_seconds(self.database_pid) if self.database_pid is not None else None
        return cpu

    def _cores(self, before: dict[str, float | None], seconds: float) -> dict[str, float | None]:
        after = self._cpu()
        return {
            name: round((after[name] - start) / seconds, 2)  # type: ignore[operator]
            if start is not None and after[name] is not None and seconds > 0
            else None
            for name, start in before.items()
        }

    @staticmethod
    def _latencies(result: PhaseResult, webhook: list[float], e2e: list[tuple[str, float]]) -> None:
        result.webhook_p50_ms, result.webhook_p99_ms = (
            ms(percentile(webhook, 50)),
            ms(percentile(webhook, 99)),
        )
        result.webhook_max_ms = ms(max(webhook)) if webhook else None
        both = [latency for _, latency in e2e]
        result.e2e_p50_ms, result.e2e_p99_ms = (
            ms(percentile(both, 50)),
            ms(percentile(both, 99)),
        )
        result.e2e_max_ms = ms(max(both)) if both else None
        for channel in sorted({channel for channel, _ in e2e}):
            result.e2e_p99_ms_by_channel[channel] = ms(percentile([v for c, v in e2e if c == channel], 99))

    @staticmethod
    def _error(result: PhaseResult, status: int, error: str) -> None:
        result.errors += 1
        if len(result.error_samples) < 5:
            result.error_samples.append(f"{status} {error}".strip())


def _cpu_of(pid: int | None | tuple[int, ...]) -> float | None:
    """CPU seconds of a process, or of several together (None for none, or if one is gone)."""
    if not isinstance(pid, tuple):
        return cpu_seconds(pid)
    seconds = [cpu_seconds(one) for one in pid]
    return sum(seconds) if seconds and None not in seconds else None  # type: ignore[arg-type]
