"""The load itself: signed Telegram and Twilio webhooks from new users, the client that sends them
and reads the fake provider's replies, the phases, and one database's whole run (start everything,
run the phases, stop everything)."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

from bench.cluster import Children, TempPostgres, cpu_seconds, start_children
from bench.common import (
    HOST,
    MAX_REQUESTS_PER_PHASE,
    TELEGRAM_SECRET,
    TWILIO_ACCOUNT_SID,
    TWILIO_AUTH_TOKEN,
    TWILIO_SMS_NUMBER,
    TWILIO_WHATSAPP_NUMBER,
)
from bench.report import DatabaseRun, PhaseResult, fmt, ms, percentile

# ------------------------------------------------------------------------------------------------
# Messages: "hi" from a new user each time, signed as the provider signs it
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outgoing:
    channel: str  # telegram, sms or whatsapp
    recipient: str  # whom the reply goes to: the chat id, or the E.164 number
    path: str
    body: bytes
    headers: dict[str, str]

    @property
    def key(self) -> tuple[str, str]:
        return self.channel, self.recipient


class MessageMaker:
    """New users, update ids and MessageSids per run (a random block), so a reused database sees no repeat."""

    def __init__(self, *, mix: list[str], bot_port: int, text: str = "hi") -> None:
        from twilio.request_validator import RequestValidator

        self.mix = mix
        self.text = text
        self.public = f"http://{HOST}:{bot_port}"  # PUBLIC_BASE_URL of the bot
        self.validator = RequestValidator(TWILIO_AUTH_TOKEN)
        block = int.from_bytes(os.urandom(3), "big")
        self.telegram_base = 6_000_000_000 + block * 10_000  # a private chat's id is its user's: positive
        self.phone_base = 27_600_000_000 + block * 1_000  # +27 6x xxx xxxx
        self.count = 0

    def next(self) -> Outgoing:
        index = self.count
        self.count += 1
        channel = self.mix[index % len(self.mix)]
        if channel == "telegram":
            return self._telegram(index)
        return self._twilio(index, whatsapp=channel == "whatsapp")

    def _telegram(self, index: int) -> Outgoing:
        chat = self.telegram_base + index
        update = {
            "update_id": chat % 2_000_000_000,
            "message": {
                "message_id": 1 + index,
                "from": {
                    "id": chat,
                    "is_bot": False,
                    "first_name": "Bench",
                    "language_code": "en",
                },
                "chat": {"id": chat, "first_name": "Bench", "type": "private"},
                "date": int(time.time()),
                "text": self.text,
            },
        }
        headers = {
            "Content-Type": "application/json",
            "X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET,
        }
        return Outgoing(
            "telegram",
            str(chat),
            "/webhooks/telegram",
            json.dumps(update).encode(),
            headers,
        )

    def _twilio(self, index: int, *, whatsapp: bool) -> Outgoing:
        number = f"+{self.phone_base + index}"
        sid = "SM" + uuid.uuid4().hex
        params = {
            "ToCountry": "US",
            "SmsMessageSid": sid,
            "NumMedia": "0",
            "SmsSid": sid,
            "SmsStatus": "received",
            "Body": self.text,
            "FromCountry": "ZA",
            "NumSegments": "1",
            "MessageSid": sid,
            "AccountSid": TWILIO_ACCOUNT_SID,
            "ApiVersion": "2010-04-01",
            "To": f"whatsapp:{TWILIO_WHATSAPP_NUMBER}" if whatsapp else TWILIO_SMS_NUMBER,
            "From": f"whatsapp:{number}" if whatsapp else number,
        }
        if whatsapp:
            params["ProfileName"] = "Bench"
        path = "/webhooks/twilio"
        signature = self.validator.compute_signature(self.public + path, params)
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature,
        }
        return Outgoing(
            "whatsapp" if whatsapp else "sms",
            number,
            path,
            urlencode(params).encode(),
            headers,
        )


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
    ) -> None:
        import aiohttp

        self.aiohttp = aiohttp
        self.bot = f"http://{HOST}:{children.bot_port}"
        self.bare = f"http://{HOST}:{children.bare_port}/bare"
        self.pids = {
            "bot": children.bot.pid,
            "fake": children.fake.pid,
            "bare": children.bare.pid,
            "load generator": None,
        }
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
        latencies: list[float] = []
        start, cpu = time.monotonic(), self._cpu()
        end = start + seconds

        async def client() -> None:
            while time.monotonic() < end and result.sent < MAX_REQUESTS_PER_PHASE:
                sent = time.monotonic()
                status, error = await self.post(self.bare, self.bare_body, self.bare_headers)
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
        return {name: cpu_seconds(pid) for name, pid in self.pids.items()}

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


# ------------------------------------------------------------------------------------------------
# One database: start everything, run the phases, stop everything
# ------------------------------------------------------------------------------------------------


def redacted(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


async def run_database(label: str, database_url: str | None, args: argparse.Namespace, workdir: Path) -> DatabaseRun:
    postgres = None
    if database_url is None:
        if label == "sqlite":
            database_url = f"sqlite:///{workdir / 'bench.db'}"
        else:
            postgres = TempPostgres(args.pg_setting)
            print(
                f"[{label}] a throwaway PostgreSQL cluster ({postgres.bindir}) on {HOST}:{postgres.port}",
                flush=True,
            )
            database_url = await asyncio.to_thread(postgres.start)
    run = DatabaseRun(label, redacted(database_url), load_before=round(os.getloadavg()[0], 2))
    children = None
    try:
        children = await asyncio.to_thread(start_children, database_url, args, workdir)
        print(
            f"[{label}] saypro-bot run (pid {children.bot.pid}) on {HOST}:{children.bot_port}, {run.database_url}",
            flush=True,
        )
        replies = Replies()
        stream = asyncio.StreamReader(limit=2**20)
        await asyncio.get_running_loop().connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(stream), children.fake.stdout
        )
        reader = asyncio.create_task(replies.read(stream))
        maker = MessageMaker(mix=args.mix, bot_port=children.bot_port)
        connections = max(args.clients, args.bare_clients) + 256
        driver = Driver(
            children,
            replies,
            maker,
            connections=connections,
            timeout=args.request_timeout,
        )
        try:
            await phases(run, driver, args, label, children, workdir)
        finally:
            await driver.close()
        run.replies_total = replies.count
        run.recipients_answered_twice = sum(1 for count in replies.per_recipient.values() if count > 1)
        run.load_after = round(os.getloadavg()[0], 2)
        reader.cancel()
        return run
    finally:
        if children is not None:
            await asyncio.to_thread(children.stop)
        if postgres is not None:
            await asyncio.to_thread(postgres.stop)


async def phases(
    run: DatabaseRun,
    driver: Driver,
    args: argparse.Namespace,
    label: str,
    children: Children,
    workdir: Path,
) -> None:
    warm = await driver.open_loop(name="warm-up", rate=args.warmup_rate, seconds=args.warmup_seconds, grace=15)
    run.phases["warmup"] = warm
    print(
        f"[{label}] warm-up: {warm.ok}/{warm.sent} accepted, {warm.answered} answered",
        flush=True,
    )
    if warm.answered == 0:
        tail = (workdir / "bot.log").read_text(errors="replace")[-3000:]
        raise SystemExit(
            f"bench: no reply reached the fake provider in the warm-up "
            f"({warm.error_samples or 'the webhooks were accepted'}); the bot's log ends:\n{tail}"
        )

    await driver.settle(quiet=args.quiet)  # the warm-up's replies, so that the bare endpoint has the machine to itself
    bare = await driver.closed_bare(clients=args.bare_clients, seconds=args.bare_seconds)
    run.phases["bare"] = bare
    print(f"[{label}] bare endpoint: {bare.throughput} requests/s", flush=True)

    await driver.settle(quiet=args.quiet)
    profiler = (
        start_profiler(
            args.profile,
            label,
            children.bot.pid,
            args.capacity_seconds,
            wall=args.profile_wall,
        )
        if args.profile
        else None
    )
    capacity = await driver.closed_bot(clients=args.clients, seconds=args.capacity_seconds, reply_timeout=args.grace)
    run.phases["capacity"] = capacity
    print(
        f"[{label}] capacity: {capacity.throughput} messages/s answered (webhook p99 {fmt(capacity.webhook_p99_ms)} ms, "
        f"end-to-end p99 {fmt(capacity.e2e_p99_ms)} ms)",
        flush=True,
    )
    if profiler is not None:
        await asyncio.to_thread(profiler.wait, 60)

    if args.half_rate and capacity.throughput >= 2:
        # Latency when the process is not overloaded: half the rate it has just sustained.
        waited = await driver.settle(quiet=args.quiet, limit=args.drain)
        print(f"[{label}] quiet after {waited:.1f} s", flush=True)
        half = round(capacity.throughput / 2, 1)
        run.phases["half"] = await driver.open_loop(
            name=f"fixed rate {half:g}/s (half the sustained)",
            rate=half,
            seconds=args.rate_seconds,
            grace=args.grace,
        )
        print(f"[{label}] {half:g}/s: {progress(run.phases['half'])}", flush=True)

    # Last, as it may leave a backlog that outlasts any reasonable wait.
    waited = await driver.settle(quiet=args.quiet, limit=args.drain)
    print(f"[{label}] quiet after {waited:.1f} s", flush=True)
    rate = await driver.open_loop(
        name=f"fixed rate {args.rate:g}/s",
        rate=args.rate,
        seconds=args.rate_seconds,
        grace=args.grace,
    )
    run.phases["rate"] = rate
    print(f"[{label}] {args.rate:g}/s: {progress(rate)}", flush=True)


def progress(phase: PhaseResult) -> str:
    return (
        f"webhook p99 {fmt(phase.webhook_p99_ms)} ms, end-to-end p99 {fmt(phase.e2e_p99_ms)} ms, "
        f"{phase.errors} failed, {phase.missing} unanswered of {phase.sent}"
    )


def start_profiler(
    directory: str, label: str, pid: int, seconds: float, *, wall: bool
) -> subprocess.Popen[bytes] | None:
    """py-spy on the bot for the capacity phase, every thread, speedscope format: the samples of the
    thread holding the GIL (where the CPU goes), or with `wall` every sample, waiting included."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        print(
            "bench: --profile needs py-spy (pip install py-spy); not profiling",
            flush=True,
        )
        return None
    Path(directory).mkdir(parents=True, exist_ok=True)
    out = Path(directory) / f"capacity-{label}.speedscope.json"
    print(f"[{label}] py-spy records the capacity phase into {out}", flush=True)
    return subprocess.Popen(
        [
            spy,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, int(seconds))),
            "--rate",
            "100",
            "--nonblocking",
            "--idle" if wall else "--gil",
            "--threads",
            "--format",
            "speedscope",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
