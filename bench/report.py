"""Figures and the report: nearest-rank percentiles, a phase's and a database run's results, the
table (rich and Markdown), the verdicts against issue 7's targets, and the environment measured."""

from __future__ import annotations

import argparse
import math
import os
import platform
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import TARGETS

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

    @property
    def intake_ratio(self) -> float | None:
        """The web process's stored webhooks/s (workers paused) over the bare endpoint's requests/s."""
        stored, bare = self.figure("intake", "throughput"), self.figure("bare", "throughput")
        return round(stored / bare, 3) if stored is not None and bare else None


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
    processes = (
        f"1 web process + {args.workers} worker{'s' if args.workers > 1 else ''}" if args.workers else "1 web process"
    )
    cpu = (
        ("bot", "workers", "database", "fake", "load generator")
        if args.workers
        else ("bot", "database", "fake", "load generator")
    )
    return [
        [
            f"sustained messages/s, {processes} ({args.clients} users, closed loop)",
            *(fmt(run.figure("capacity", "throughput")) for run in runs),
        ],
        [
            "bare FastAPI endpoint, requests/s",
            *(fmt(run.figure("bare", "throughput")) for run in runs),
        ],
        ["bot / bare", *(fmt(run.ratio) for run in runs)],
        *(
            [
                [
                    f"webhooks stored/s, the web process alone (workers paused; {args.clients} clients)",
                    *(fmt(run.figure("intake", "throughput")) for run in runs),
                ],
                ["stored / bare", *(fmt(run.intake_ratio) for run in runs)],
                [
                    "webhook latency p50 / p99, the web process alone",
                    *(pair(run, "intake", "webhook_p50_ms", "webhook_p99_ms", over=failed) for run in runs),
                ],
            ]
            if args.workers
            else []
        ),
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
            f"CPU cores at capacity: bot{' / workers' if args.workers else ''} / PostgreSQL server / fake provider / load generator",
            *(" / ".join(fmt((run.figure("capacity", "cpu_cores") or {}).get(name)) for name in cpu) for run in runs),
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
        stored = run.figure("intake", "throughput")
        if run.database == "postgres":
            target = TARGETS["capacity_msgs_per_s"]
            checks.append(
                (
                    f">= {target:g} messages/s per web process, answered end to end",
                    capacity,
                    None if capacity is None else capacity >= target,
                )
            )
            if args.workers:
                checks.append(
                    (
                        f">= {target:g} messages/s per web process, stored by it alone (answered by workers)",
                        stored,
                        None if stored is None else stored >= target,
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
                f">= {TARGETS['ratio_to_bare']:g} of the bare endpoint's throughput, answered end to end",
                ratio,
                None if ratio is None else ratio >= TARGETS["ratio_to_bare"],
            )
        )
        if args.workers:
            checks.append(
                (
                    f">= {TARGETS['ratio_to_bare']:g} of the bare endpoint's throughput, stored by the web process alone",
                    run.intake_ratio,
                    None if run.intake_ratio is None else run.intake_ratio >= TARGETS["ratio_to_bare"],
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
