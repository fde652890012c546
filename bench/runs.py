"""One database's whole run: start the fake provider, the bot and the bare endpoint, run the
phases in order, and stop everything."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

from bench.cluster import Children, start_children
from bench.common import HOST
from bench.postgres import TempPostgres
from bench.report import DatabaseRun, PhaseResult, fmt
from bench.traffic import Driver, Replies
from bench.webhooks import MessageMaker


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
            database_pid=postgres.pid if postgres is not None else None,
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
    profiled = [("", children.bot.pid)] + [(f"-worker-{n}", w.pid) for n, w in enumerate(children.workers, start=1)]
    profilers = [
        start_profiler(args.profile, label + suffix, pid, args.capacity_seconds, wall=args.profile_wall)
        for suffix, pid in (profiled if args.profile else [])
    ]
    capacity = await driver.closed_bot(clients=args.clients, seconds=args.capacity_seconds, reply_timeout=args.grace)
    run.phases["capacity"] = capacity
    print(
        f"[{label}] capacity: {capacity.throughput} messages/s answered (webhook p99 {fmt(capacity.webhook_p99_ms)} ms, "
        f"end-to-end p99 {fmt(capacity.e2e_p99_ms)} ms)",
        flush=True,
    )
    for profiler in profilers:
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

    if children.workers:
        # The web process alone, as beside workers on cores of their own: the workers are paused
        # (on two cores they would take the core this figure is about), after the backlog is gone.
        waited = await driver.settle(quiet=args.quiet, limit=args.drain)
        print(f"[{label}] quiet after {waited:.1f} s", flush=True)
        children.pause_workers()
        try:
            intake = await driver.closed_intake(clients=args.clients, seconds=args.intake_seconds)
        finally:
            children.resume_workers()
        run.phases["intake"] = intake
        print(
            f"[{label}] intake: {intake.throughput} webhooks/s stored by the web process alone "
            f"(webhook p99 {fmt(intake.webhook_p99_ms)} ms, {intake.errors} failed)",
            flush=True,
        )


def progress(phase: PhaseResult) -> str:
    return (
        f"webhook p99 {fmt(phase.webhook_p99_ms)} ms, end-to-end p99 {fmt(phase.e2e_p99_ms)} ms, "
        f"{phase.errors} failed, {phase.missing} unanswered of {phase.sent}"
    )


def start_profiler(
    directory: str, label: str, pid: int, seconds: float, *, wall: bool
) -> subprocess.Popen[bytes] | None:
    """py-spy on a process of the bot for the capacity phase, every thread, speedscope format: the samples of the
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
