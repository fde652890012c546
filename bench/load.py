#!/usr/bin/env python3
"""Load benchmark for `saypro-bot run`: signed Telegram and Twilio webhooks in, replies out to a fake provider.

For each database asked for (SQLite, PostgreSQL or both) it starts, on 127.0.0.1 only:

* a fake provider API (this file with `--serve-fake`): Telegram's sendMessage and Twilio's
  Messages.json, answered at once, each reply's recipient and arrival time written to this
  process through a pipe;
* `saypro-bot run` in a new temporary directory with a new database, Telegram, SMS and
  WhatsApp live and pointed at the fake (TELEGRAM_API_BASE_URL, TWILIO_API_BASE_URL);
* a bare FastAPI endpoint that only returns 200 (this file with `--serve-bare`), on uvicorn
  started the way `saypro-bot run` starts it, so the bot's figure is also a ratio;

then runs these phases, each bounded in time and in number of requests:

1. warm-up at a low rate; the run stops if no reply reaches the fake;
2. bare: N clients POST a webhook-sized body to the bare endpoint back to back;
3. capacity: N users, each sending one webhook and waiting for its reply at the fake before
   sending the next: the messages/s one web process answers end to end (replies, not merely
   accepted webhooks, so a growing backlog cannot inflate it);
4. half: an open loop at half that rate, for the latencies of a process that is not overloaded;
5. fixed rate: an open loop at `--rate` messages/s whatever the answers: webhook latency (request
   to response) and end-to-end latency (request sent to the reply's arrival at the fake). A
   failed webhook or a reply that never came counts as slower than every other.

Between phases it waits until no reply has arrived for 2 s, so one phase's backlog does not
leak into the next.

Every message is "hi" from a user who has not written before (a new Telegram chat id or phone
number), so its reply, the greeting and menu, is matched to it by chat id or `To`, and no two
messages share a conversation (the bot answers one conversation's messages in order).

    python bench/load.py --databases sqlite,postgres
    python bench/load.py --database-url postgresql+psycopg://user@127.0.0.1:5432/db --json out.json

`postgres` starts a throwaway cluster with Debian's binaries (/usr/lib/postgresql/*/bin, run
as the `postgres` user when this runs as root) on a free port, and deletes it afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import json
import math
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

HOST = "127.0.0.1"  # every process and every request of this benchmark stays on this address
TELEGRAM_TOKEN = "123456:BENCH-token_for-the-fake"
TELEGRAM_SECRET = "bench-webhook-secret_0123456789"
TWILIO_ACCOUNT_SID = "AC" + "b" * 32
TWILIO_AUTH_TOKEN = "bench-twilio-auth-token"
TWILIO_SMS_NUMBER = "+14155550100"
TWILIO_WHATSAPP_NUMBER = "+14155238886"
# Every phase stops at its time limit or after this many requests, whichever comes first.
MAX_REQUESTS_PER_PHASE = 200_000
TARGETS = {  # issue 7, "Benchmark"
    "capacity_msgs_per_s": 500.0,  # per web process, on PostgreSQL
    "webhook_p99_ms_at_rate": 50.0,  # at 200 messages/s
    "e2e_p99_ms_at_rate": 500.0,  # at 200 messages/s
    "ratio_to_bare": 0.25,
}


# ------------------------------------------------------------------------------------------------
# The fake provider: `python bench/load.py --serve-fake PORT`
# ------------------------------------------------------------------------------------------------


def serve_fake(port: int) -> None:
    """Telegram's sendMessage and Twilio's Messages.json, answered at once; one stdout line per reply.

    The line is `<channel> <recipient> <time.monotonic()>`. CLOCK_MONOTONIC is the same clock in
    every process on Linux, so the benchmark compares it with its own send times.
    """
    from aiohttp import web

    out = sys.stdout.fileno()
    numbers = iter(range(1, 1 << 62))

    async def telegram_send(request: web.Request) -> web.Response:
        arrived = time.monotonic()
        form = parse_qs((await request.read()).decode())
        chat_id = form.get("chat_id", ["0"])[0]
        os.write(out, f"telegram {chat_id} {arrived:.6f}\n".encode())
        result = {
            "message_id": next(numbers),
            "date": int(time.time()),
            "chat": {"id": int(chat_id), "type": "private", "first_name": "Bench"},
        }
        return web.json_response({"ok": True, "result": result})

    async def telegram_ok(_request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "result": True})

    async def twilio_create(request: web.Request) -> web.Response:
        arrived = time.monotonic()
        form = parse_qs((await request.read()).decode())
        to = form.get("To", [""])[0]
        channel = "whatsapp" if to.startswith("whatsapp:") else "sms"
        os.write(out, f"{channel} {to.removeprefix('whatsapp:')} {arrived:.6f}\n".encode())
        sid = f"SM{next(numbers):032x}"
        body = {
            "account_sid": TWILIO_ACCOUNT_SID,
            "api_version": "2010-04-01",
            "sid": sid,
            "status": "queued",
            "to": to,
            "from": form.get("From", [""])[0],
            "body": "",
            "direction": "outbound-api",
            "num_media": "0",
            "num_segments": "1",
            "date_created": None,
            "date_sent": None,
            "date_updated": None,
            "error_code": None,
            "error_message": None,
            "price": None,
            "uri": f"/2010-04-01/Accounts/{TWILIO_ACCOUNT_SID}/Messages/{sid}.json",
        }
        return web.json_response(body, status=201)

    async def healthz(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application(client_max_size=2**20)
    app.router.add_post(f"/bot{TELEGRAM_TOKEN}/sendMessage", telegram_send)
    app.router.add_post(f"/bot{TELEGRAM_TOKEN}/answerCallbackQuery", telegram_ok)
    app.router.add_post(f"/2010-04-01/Accounts/{TWILIO_ACCOUNT_SID}/Messages.json", twilio_create)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host=HOST, port=port, access_log=None, print=None)


# ------------------------------------------------------------------------------------------------
# The bare endpoint: `python bench/load.py --serve-bare PORT`
# ------------------------------------------------------------------------------------------------


def serve_bare(port: int) -> None:
    """One FastAPI route returning an empty 200, on `uvicorn.run(app, host, port, log_config=None)` as the bot.

    `saypro-bot run` configures the root logger at INFO first (bots/logs.py), so uvicorn writes
    an access line per request there; BENCH_BARE_ACCESS_LOG=1 (`--bare-access-log`) does the
    same here, to see what that costs.
    """
    import logging

    import uvicorn
    from fastapi import FastAPI
    from fastapi.responses import Response

    app = FastAPI()

    @app.post("/bare")
    async def bare() -> Response:
        return Response(status_code=200)

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response(status_code=200)

    if os.environ.get("BENCH_BARE_ACCESS_LOG") == "1":
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger().handlers[:] = [handler]
        logging.getLogger().setLevel("INFO")
    uvicorn.run(app, host=HOST, port=port, log_config=None)


# ------------------------------------------------------------------------------------------------
# Processes: ports, a throwaway PostgreSQL cluster, the children of one run
# ------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def postgres_bindir() -> Path:
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parent.parent.name),
    )
    if not found:
        raise SystemExit(
            "bench: no PostgreSQL binaries under /usr/lib/postgresql/*/bin "
            "(apt-get install -y postgresql), or pass --database-url"
        )
    return Path(found[-1]).parent


class TempPostgres:
    """initdb into a temporary directory, start on a free port of 127.0.0.1; `stop` deletes it all."""

    def __init__(self, settings: list[str]) -> None:
        self.bindir = postgres_bindir()
        self.settings = settings
        self.root = Path(tempfile.mkdtemp(prefix="saypro-bench-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.started = False
        self._as_postgres = os.geteuid() == 0  # initdb and postgres refuse to run as root
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        os.chmod(self.root, 0o700)

    def _run(self, *args: str) -> None:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, timeout=120, cwd=self.root, check=False)
        if done.returncode != 0:
            raise SystemExit(f"bench: {args[0]} failed: {done.stderr.decode(errors='replace')[-2000:]}")

    def start(self) -> str:
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        )
        options = [
            "-p",
            str(self.port),
            "-k",
            str(self.root),
            "-c",
            f"listen_addresses={HOST}",
            "-c",
            "max_connections=200",
        ]
        for setting in self.settings:
            options += ["-c", setting]
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.root / "postgres.log"),
            "-w",
            "-t",
            "60",
            "-o",
            " ".join(options),
            "start",
        )
        self.started = True
        self._run(
            "createdb",
            "-h",
            HOST,
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "saypro_bench",
        )
        return f"postgresql+psycopg://postgres@{HOST}:{self.port}/saypro_bench"

    def stop(self) -> None:
        try:
            if self.started:
                self._run(
                    "pg_ctl",
                    "-D",
                    str(self.data),
                    "-m",
                    "fast",
                    "-w",
                    "-t",
                    "60",
                    "stop",
                )
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def stop_process(process: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM one child this run started (by its own handle), SIGKILL after 10 s."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def bot_command(explicit: str | None) -> list[str]:
    if explicit:
        return explicit.split()
    beside = Path(sys.executable).parent / "saypro-bot"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("saypro-bot")
    return [found] if found else [sys.executable, "-m", "bots.cli"]


def bot_environment(
    *, database_url: str, port: int, fake_port: int, knowledge_dir: str | None = None
) -> dict[str, str]:
    """This process's environment less any channel, database or key settings, plus the benchmark's."""
    prefixes = (
        "TELEGRAM_",
        "TWILIO_",
        "SLACK_",
        "X_",
        "SMTP_",
        "SAYPRO_",
        "KNOWLEDGE_",
        "WHATSAPP_",
    )
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(prefixes) and key not in ("DATABASE_URL", "PUBLIC_BASE_URL")
    }
    fake = f"http://{HOST}:{fake_port}"
    env.update(
        {
            "DATABASE_URL": database_url,
            # Twilio signs PUBLIC_BASE_URL + path, and the bot checks the signature against it.
            "PUBLIC_BASE_URL": f"http://{HOST}:{port}",
            "TELEGRAM_BOT_TOKEN": TELEGRAM_TOKEN,
            "TELEGRAM_WEBHOOK_SECRET": TELEGRAM_SECRET,
            "TELEGRAM_API_BASE_URL": f"{fake}/bot",
            "TWILIO_ACCOUNT_SID": TWILIO_ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": TWILIO_AUTH_TOKEN,
            "TWILIO_SMS_NUMBER": TWILIO_SMS_NUMBER,
            "TWILIO_WHATSAPP_NUMBER": TWILIO_WHATSAPP_NUMBER,
            "TWILIO_API_BASE_URL": fake,
            "PTB_TIMEDELTA": "true",
        }
    )
    if knowledge_dir:
        env["KNOWLEDGE_DIR"] = str(Path(knowledge_dir).resolve())
    return env


@dataclass
class Children:
    fake: subprocess.Popen[bytes]
    bot: subprocess.Popen[bytes]
    bare: subprocess.Popen[bytes]
    fake_port: int
    bot_port: int
    bare_port: int

    def stop(self) -> None:
        for process in (self.bot, self.bare, self.fake):
            stop_process(process)


def start_children(database_url: str, args: argparse.Namespace, workdir: Path) -> Children:
    """The fake, the bot and the bare endpoint, each answering /healthz; stopped again on failure."""
    here = str(Path(__file__).resolve())
    fake_port, bot_port, bare_port = free_port(), free_port(), free_port()
    logs = {
        name: open(workdir / f"{name}.log", "ab")  # noqa: SIM115
        for name in ("fake", "bot", "bare")
    }
    started: list[subprocess.Popen[bytes]] = []
    try:
        fake = subprocess.Popen(
            [sys.executable, here, "--serve-fake", str(fake_port)],
            stdout=subprocess.PIPE,
            stderr=logs["fake"],
        )
        started.append(fake)
        # The bot runs in the temporary directory, so a .env file of the checkout is not read.
        bot = subprocess.Popen(
            [
                *bot_command(args.bot_command),
                "run",
                "--host",
                HOST,
                "--port",
                str(bot_port),
            ],
            cwd=workdir,
            stdout=logs["bot"],
            stderr=subprocess.STDOUT,
            env=bot_environment(
                database_url=database_url, port=bot_port, fake_port=fake_port, knowledge_dir=args.knowledge_dir
            ),
        )
        started.append(bot)
        bare = subprocess.Popen(
            [sys.executable, here, "--serve-bare", str(bare_port)],
            cwd=workdir,
            stdout=logs["bare"],
            stderr=subprocess.STDOUT,
            env=dict(os.environ, BENCH_BARE_ACCESS_LOG="1" if args.bare_access_log else "0"),
        )
        started.append(bare)
        wait_http(
            f"http://{HOST}:{fake_port}/healthz",
            30,
            fake,
            "the fake provider",
            workdir / "fake.log",
        )
        wait_http(
            f"http://{HOST}:{bare_port}/healthz",
            30,
            bare,
            "the bare endpoint",
            workdir / "bare.log",
        )
        wait_http(
            f"http://{HOST}:{bot_port}/healthz",
            120,
            bot,
            "saypro-bot run",
            workdir / "bot.log",
        )
    except BaseException:
        for process in started:
            stop_process(process)
        raise
    finally:
        for log in logs.values():
            log.close()
    return Children(fake, bot, bare, fake_port, bot_port, bare_port)


def wait_http(url: str, seconds: float, process: subprocess.Popen[bytes], what: str, log: Path) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise SystemExit(f"bench: {what} exited with {process.returncode} before it answered\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:  # 127.0.0.1 only
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise SystemExit(f"bench: {what} did not answer {url} within {seconds:.0f} s")


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of a process so far, from /proc (Linux); this process's for None."""
    if pid is None:
        return time.process_time()
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


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
# Measuring
# ------------------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(max(1, math.ceil(q / 100 * len(ordered))), len(ordered)) - 1]


def ms(value: float | None) -> float | None:
    """Milliseconds; None for no value, and for a percentile that fell on a failure (infinite)."""
    return None if value is None or math.isinf(value) else round(value * 1000, 1)


@dataclass
class PhaseResult:
    name: str
    seconds: float
    sent: int = 0
    ok: int = 0  # webhooks answered 200
    errors: int = 0  # webhooks answered otherwise, or not at all (transport error, timeout)
    answered: int = 0  # messages whose reply reached the fake (within the phase, for capacity)
    missing: int = 0  # messages whose reply never came within the grace period
    throughput: float = 0.0  # per second: messages answered (bot), or 200 answers (bare)
    webhook_p50_ms: float | None = None
    webhook_p99_ms: float | None = None
    webhook_max_ms: float | None = None
    e2e_p50_ms: float | None = None
    e2e_p99_ms: float | None = None
    e2e_max_ms: float | None = None
    e2e_p99_ms_by_channel: dict[str, float | None] = field(default_factory=dict)
    offered_rate: float | None = None
    achieved_rate: float | None = None
    max_send_lag_ms: float | None = None  # how late the open loop sent its latest message
    cpu_cores: dict[str, float | None] = field(default_factory=dict)  # CPU time / wall time while sending
    error_samples: list[str] = field(default_factory=list)


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


@dataclass
class DatabaseRun:
    database: str
    database_url: str
    phases: dict[str, PhaseResult] = field(default_factory=dict)
    replies_total: int = 0
    recipients_answered_twice: int = 0
    load_before: float | None = None
    load_after: float | None = None

    def figure(self, phase: str, name: str) -> Any:
        found = self.phases.get(phase)
        return getattr(found, name) if found else None

    @property
    def ratio(self) -> float | None:
        bot, bare = (
            self.figure("capacity", "throughput"),
            self.figure("bare", "throughput"),
        )
        return round(bot / bare, 3) if bot is not None and bare else None


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


# ------------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------------


def fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        value = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.1f}" if abs(value) >= 1 else f"{value:.2f}"
    return f"{value}{unit}"


def pair(run: DatabaseRun, phase: str, first: str, second: str, *, over: str) -> str:
    """ "a / b ms"; a percentile that fell on a failed or unanswered message shows as `over`."""
    if not run.figure(phase, "sent"):
        return "–"
    a, b = run.figure(phase, first), run.figure(phase, second)
    if a is not None and b is not None:
        return f"{fmt(a)} / {fmt(b)} ms"
    return " / ".join(f"{fmt(value)} ms" if value is not None else over for value in (a, b))


def rows(runs: list[DatabaseRun], args: argparse.Namespace) -> list[list[str]]:
    """The table's rows: a label, then one cell per database."""
    rate = f"{args.rate:g}/s"
    late = f"> {args.grace:g} s"  # a percentile on a reply that never came
    failed = "failed"  # a percentile on a webhook that failed or timed out
    return [
        [
            f"sustained messages/s, 1 web process ({args.clients} users, closed loop)",
            *(fmt(run.figure("capacity", "throughput")) for run in runs),
        ],
        [
            "bare FastAPI endpoint, requests/s",
            *(fmt(run.figure("bare", "throughput")) for run in runs),
        ],
        ["bot / bare", *(fmt(run.ratio) for run in runs)],
        [
            f"webhook latency p50 / p99 at {rate}",
            *(pair(run, "rate", "webhook_p50_ms", "webhook_p99_ms", over=failed) for run in runs),
        ],
        [
            f"end-to-end latency p50 / p99 at {rate}",
            *(pair(run, "rate", "e2e_p50_ms", "e2e_p99_ms", over=late) for run in runs),
        ],
        [
            f"at {rate}: webhooks failed, replies missing",
            *(
                f"{fmt(run.figure('rate', 'errors'))}, {fmt(run.figure('rate', 'missing'))} of {fmt(run.figure('rate', 'sent'))}"
                for run in runs
            ),
        ],
        [
            "half the sustained rate, messages/s",
            *(fmt(run.figure("half", "offered_rate")) for run in runs),
        ],
        [
            "webhook latency p50 / p99 at half",
            *(pair(run, "half", "webhook_p50_ms", "webhook_p99_ms", over=failed) for run in runs),
        ],
        [
            "end-to-end latency p50 / p99 at half",
            *(pair(run, "half", "e2e_p50_ms", "e2e_p99_ms", over=late) for run in runs),
        ],
        [
            "webhook latency p50 / p99 at capacity",
            *(pair(run, "capacity", "webhook_p50_ms", "webhook_p99_ms", over=failed) for run in runs),
        ],
        [
            "end-to-end latency p50 / p99 at capacity",
            *(pair(run, "capacity", "e2e_p50_ms", "e2e_p99_ms", over=late) for run in runs),
        ],
        [
            "CPU cores at capacity: bot / fake provider / load generator",
            *(
                " / ".join(
                    fmt((run.figure("capacity", "cpu_cores") or {}).get(name))
                    for name in ("bot", "fake", "load generator")
                )
                for run in runs
            ),
        ],
        [
            "CPU cores in the bare phase: bare endpoint / load generator",
            *(
                " / ".join(
                    fmt((run.figure("bare", "cpu_cores") or {}).get(name)) for name in ("bare", "load generator")
                )
                for run in runs
            ),
        ],
        [
            f"load generator's latest send behind schedule at {rate}",
            *(fmt(run.figure("rate", "max_send_lag_ms"), " ms") for run in runs),
        ],
        [
            "replies: total, recipients answered twice",
            *(f"{run.replies_total}, {run.recipients_answered_twice}" for run in runs),
        ],
        [
            "machine load average (1 min) before / after",
            *(f"{fmt(run.load_before)} / {fmt(run.load_after)}" for run in runs),
        ],
    ]


def markdown(runs: list[DatabaseRun], args: argparse.Namespace) -> str:
    """The table in Markdown, as the README shows it."""
    header = ["", *(run.database for run in runs)]
    body = rows(runs, args)
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    lines = [
        "| " + " | ".join(cell.ljust(widths[i]) for i, cell in enumerate(header)) + " |",
        "|" + "|".join("-" * (width + 2) for width in widths) + "|",
    ]
    lines += ["| " + " | ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) + " |" for row in body]
    return "\n".join(lines)


def print_table(runs: list[DatabaseRun], args: argparse.Namespace) -> None:
    """The table on the terminal (rich)."""
    from rich.console import Console
    from rich.table import Table

    shown = Table(title="saypro-bot run under load", title_justify="left")
    shown.add_column("")
    for run in runs:
        shown.add_column(run.database, justify="right")
    for row in rows(runs, args):
        shown.add_row(*row)
    Console(width=None if sys.stdout.isatty() else 160).print(shown)  # piped: no wrapping at 80 columns


def verdicts(runs: list[DatabaseRun], args: argparse.Namespace) -> list[str]:
    lines = []
    for run in runs:
        checks: list[tuple[str, Any, bool | None]] = []
        capacity, ratio = run.figure("capacity", "throughput"), run.ratio
        if run.database == "postgres":
            target = TARGETS["capacity_msgs_per_s"]
            checks.append(
                (
                    f">= {target:g} messages/s per web process",
                    capacity,
                    None if capacity is None else capacity >= target,
                )
            )
        if args.rate == 200:
            webhook, e2e = (
                run.figure("rate", "webhook_p99_ms"),
                run.figure("rate", "e2e_p99_ms"),
            )
            sent = run.figure("rate", "sent")
            checks.append(
                (
                    f"webhook p99 <= {TARGETS['webhook_p99_ms_at_rate']:g} ms at 200/s",
                    webhook,
                    webhook is not None and webhook <= TARGETS["webhook_p99_ms_at_rate"] if sent else None,
                )
            )
            checks.append(
                (
                    f"end-to-end p99 <= {TARGETS['e2e_p99_ms_at_rate']:g} ms at 200/s",
                    e2e,
                    e2e is not None and e2e <= TARGETS["e2e_p99_ms_at_rate"] if sent else None,
                )
            )
        checks.append(
            (
                f">= {TARGETS['ratio_to_bare']:g} of the bare endpoint's throughput",
                ratio,
                None if ratio is None else ratio >= TARGETS["ratio_to_bare"],
            )
        )
        for what, value, met in checks:
            verdict = "n/a" if met is None else "met" if met else "NOT met"
            shown = fmt(value)
            if value is None and met is False:
                shown = "a failed webhook" if "webhook" in what else f"a reply later than {args.grace:g} s, or none"
            lines.append(f"{run.database}: {what}: {verdict} ({shown})")
    return lines


def environment() -> dict[str, Any]:
    import importlib.util

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
                cwd=Path(__file__).resolve().parent,
            )
        except OSError:
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    status = git("status", "--porcelain")
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "uvicorn_loop": "uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        "uvicorn_http": "httptools" if importlib.util.find_spec("httptools") else "h11",
        "commit": git("rev-parse", "--short", "HEAD"),
        "uncommitted_files": None if status is None else len(status.splitlines()),
    }


# ------------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--databases",
        default="sqlite,postgres",
        help="comma-separated: sqlite (a file in a temporary directory), postgres (a throwaway cluster)",
    )
    parser.add_argument(
        "--database-url",
        help="this database instead (best a new one); labelled by its scheme",
    )
    parser.add_argument("--rate", type=float, default=200.0, help="messages/s of the fixed-rate phase")
    parser.add_argument("--rate-seconds", type=float, default=15.0)
    parser.add_argument(
        "--clients",
        type=int,
        default=64,
        help="users of the capacity phase's closed loop",
    )
    parser.add_argument("--capacity-seconds", type=float, default=15.0)
    parser.add_argument("--bare-clients", type=int, default=64)
    parser.add_argument("--bare-seconds", type=float, default=10.0)
    parser.add_argument("--warmup-rate", type=float, default=20.0)
    parser.add_argument("--warmup-seconds", type=float, default=4.0)
    parser.add_argument(
        "--no-half-rate",
        dest="half_rate",
        action="store_false",
        help="skip the phase at half the sustained messages/s (before the fixed-rate one)",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=15.0,
        help="seconds a reply may take before it counts as missing",
    )
    parser.add_argument(
        "--drain",
        type=float,
        default=30.0,
        help="at most this long for a phase's backlog to clear",
    )
    parser.add_argument(
        "--quiet",
        type=float,
        default=2.0,
        help="seconds without a reply at the fake that mean a phase's backlog has cleared",
    )
    parser.add_argument("--request-timeout", type=float, default=30.0)
    parser.add_argument(
        "--mix",
        default="telegram,sms,telegram,whatsapp",
        help="channels of successive messages, repeated: telegram, sms, whatsapp",
    )
    parser.add_argument(
        "--pg-setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting of the throwaway cluster, e.g. synchronous_commit=off (repeatable)",
    )
    parser.add_argument(
        "--bare-access-log",
        action="store_true",
        help="the bare endpoint logs each request at INFO, as saypro-bot run's uvicorn does",
    )
    parser.add_argument(
        "--bot-command",
        help="the command before 'run' (default: saypro-bot beside this Python)",
    )
    parser.add_argument(
        "--knowledge-dir",
        help="the bot's KNOWLEDGE_DIR (default: the knowledge base bundled with the checkout)",
    )
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="py-spy record the bot during the capacity phase into DIR",
    )
    parser.add_argument(
        "--profile-wall",
        action="store_true",
        help="profile every thread's waiting too (py-spy --idle), not only the GIL holder",
    )
    parser.add_argument(
        "--json",
        metavar="FILE",
        help="also write everything as JSON ('-': standard output)",
    )
    parser.add_argument(
        "--markdown",
        action="store_true",
        help="print the table as Markdown (for the README) too",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the temporary directories (logs, SQLite file)",
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=1200.0,
        help="stop the whole run after this long",
    )
    args = parser.parse_args(argv)
    args.mix = [name.strip() for name in args.mix.split(",") if name.strip()]
    if not args.mix or set(args.mix) - {"telegram", "sms", "whatsapp"}:
        parser.error("--mix takes telegram, sms and whatsapp")
    if not all(
        0 < s <= 300
        for s in (
            args.rate_seconds,
            args.capacity_seconds,
            args.bare_seconds,
            args.warmup_seconds,
            args.quiet,
        )
    ):
        parser.error("a phase lasts more than 0 and at most 300 seconds")
    if not 0 < args.rate <= 5000 or not 0 < args.warmup_rate <= 5000:
        parser.error("a rate is more than 0 and at most 5000 messages/s")
    if not (1 <= args.clients <= 1000 and 1 <= args.bare_clients <= 1000):
        parser.error("clients: 1 to 1000")
    return args


async def main_async(args: argparse.Namespace) -> list[DatabaseRun]:
    if args.database_url:
        plan: list[tuple[str, str | None]] = [
            (
                "postgres" if args.database_url.startswith("postgres") else "sqlite",
                args.database_url,
            )
        ]
    else:
        plan = [(name.strip(), None) for name in args.databases.split(",") if name.strip()]
        unknown = {name for name, _ in plan} - {"sqlite", "postgres"}
        if unknown:
            raise SystemExit(f"bench: unknown database {', '.join(sorted(unknown))}: sqlite or postgres")
    runs = []
    for label, url in plan:
        workdir = Path(tempfile.mkdtemp(prefix=f"saypro-bench-{label}-"))
        try:
            runs.append(await run_database(label, url, args, workdir))
        finally:
            if args.keep:
                print(f"[{label}] kept {workdir}", flush=True)
            else:
                shutil.rmtree(workdir, ignore_errors=True)
    return runs


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--serve-fake"]:
        serve_fake(int(argv[1]))
        return 0
    if argv[:1] == ["--serve-bare"]:
        serve_bare(int(argv[1]))
        return 0
    args = parse_args(argv)
    env = environment()
    print(
        f"bench: {env['cpus']} CPUs, Python {env['python']}, uvicorn on {env['uvicorn_loop']} + {env['uvicorn_http']}, "
        f"commit {env['commit']} (+{env['uncommitted_files']} changed files); "
        f"load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    try:
        runs = asyncio.run(asyncio.wait_for(main_async(args), timeout=args.max_seconds))
    except TimeoutError:
        print(f"bench: stopped after --max-seconds {args.max_seconds:g}", file=sys.stderr)
        return 3
    print()
    print(f"python bench/load.py {' '.join(argv)}".rstrip())
    print()
    print_table(runs, args)
    if args.markdown:
        print()
        print(markdown(runs, args))
    print()
    for line in verdicts(runs, args):
        print(line)
    if args.json:
        payload = {
            "environment": env,
            "arguments": {key: value for key, value in vars(args).items() if key != "json"},
            "targets": TARGETS,
            "runs": [
                {
                    **{k: v for k, v in asdict(run).items() if k != "phases"},
                    "ratio": run.ratio,
                    "phases": {name: asdict(phase) for name, phase in run.phases.items()},
                }
                for run in runs
            ],
        }
        text = json.dumps(payload, indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
