"""bench/load.py and its modules: figures computed as documented, and an end-to-end run with tiny numbers."""

from __future__ import annotations

import fcntl
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import cluster, load, report

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "load.py"


def test_percentiles_are_nearest_rank_and_a_failure_is_slower_than_any_answer() -> None:
    values = [float(n) for n in range(1, 101)]
    assert report.percentile(values, 50) == 50.0
    assert report.percentile(values, 99) == 99.0
    assert report.percentile([], 99) is None
    failed = [0.01] * 98 + [math.inf, math.inf]
    assert report.ms(report.percentile(failed, 50)) == 10.0
    assert report.ms(report.percentile(failed, 99)) is None  # shown as "failed", never as a fast figure


def test_verdicts_say_which_target_is_missed() -> None:
    args = load.parse_args(["--databases", "postgres"])
    run = report.DatabaseRun("postgres", "postgresql+psycopg://postgres@127.0.0.1:1/x")
    run.phases["bare"] = report.PhaseResult("bare", 1.0, throughput=1000.0)
    run.phases["capacity"] = report.PhaseResult("capacity", 1.0, throughput=600.0)
    run.phases["rate"] = report.PhaseResult("rate", 1.0, sent=10, webhook_p99_ms=None, e2e_p99_ms=120.0)
    lines = report.verdicts([run], args)
    assert "postgres: >= 500 messages/s per web process, answered end to end: met (600)" in lines
    assert "postgres: webhook p99 <= 50 ms at 200/s: NOT met (a failed webhook)" in lines
    assert "postgres: end-to-end p99 <= 500 ms at 200/s: met (120)" in lines
    assert "postgres: >= 0.25 of the bare endpoint's throughput, answered end to end: met (0.60)" in lines
    assert not any("stored" in line for line in lines)  # no intake phase without workers
    assert "| bot / bare " in report.markdown([run], args)

    with_workers = load.parse_args(["--databases", "postgres", "--workers", "1"])
    run.phases["intake"] = report.PhaseResult("intake", 1.0, throughput=200.0)
    lines = report.verdicts([run], with_workers)
    assert (
        "postgres: >= 500 messages/s per web process, stored by it alone (answered by workers): NOT met (200)" in lines
    )
    assert (
        "postgres: >= 0.25 of the bare endpoint's throughput, stored by the web process alone: NOT met (0.20)" in lines
    )
    assert "| stored / bare " in report.markdown([run], with_workers)


@pytest.mark.parametrize("workers", [0, 1])
def test_the_benchmark_runs_end_to_end_with_tiny_numbers(tmp_path: Path, own_database_url: str, workers: int) -> None:
    out = tmp_path / "bench.json"
    tiny = [
        "--warmup-rate",
        "5",
        "--warmup-seconds",
        "1",
        "--bare-seconds",
        "0.5",
        "--bare-clients",
        "2",
        "--capacity-seconds",
        "1",
        "--clients",
        "2",
        "--no-half-rate",
        "--rate",
        "5",
        "--rate-seconds",
        "1",
        "--grace",
        "10",
        "--quiet",
        "0.3",
        "--max-seconds",
        "150",
        "--workers",
        str(workers),
        "--intake-seconds",
        "0.5",
    ]
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--database-url",
            own_database_url,
            *tiny,
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "sustained messages/s" in done.stdout
    (run,) = json.loads(out.read_text())["runs"]
    phases = run["phases"]
    assert phases["warmup"]["answered"] == phases["warmup"]["sent"] == 5
    assert phases["bare"]["throughput"] > 0
    assert phases["capacity"]["answered"] >= 1
    assert (
        phases["rate"]["sent"],
        phases["rate"]["errors"],
        phases["rate"]["missing"],
    ) == (5, 0, 0)
    assert phases["rate"]["e2e_p99_ms"] is not None
    assert run["recipients_answered_twice"] == 0
    assert run["replies_total"] >= 5 + 5 + phases["capacity"]["answered"]
    cores = phases["capacity"]["cpu_cores"]
    if workers:
        assert "1 web process + 1 worker" in done.stdout and cores["workers"] > 0  # the worker answered
        assert phases["intake"]["throughput"] > 0 and phases["intake"]["errors"] == 0
    else:
        assert "1 web process (" in done.stdout and cores["workers"] is None


def test_a_paused_worker_is_not_left_holding_sqlites_write_lock(tmp_path: Path) -> None:
    lock = tmp_path / "bench.db-writer"
    holder = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)  # as a worker inside a transaction
    fcntl.flock(holder, fcntl.LOCK_EX)
    assert not cluster._lock_free(lock)
    fcntl.flock(holder, fcntl.LOCK_UN)
    assert cluster._lock_free(lock) and cluster._lock_free(lock)  # looking lets go again
    os.close(holder)


@pytest.mark.parametrize(
    "argv", [["--mix", "fax"], ["--rate", "0"], ["--clients", "0"], ["--workers", "-1"], ["--intake-seconds", "10"]]
)
def test_bad_options_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        load.parse_args(argv)
    assert stopped.value.code == 2


def test_a_servers_cpu_counts_its_children() -> None:
    burner = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass\nprint(flush=True)\ntime.sleep(30)"
    before = cluster.tree_cpu_seconds(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", burner], stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline() == b"\n"  # it has burnt its 0.3 s
        after = cluster.tree_cpu_seconds(os.getpid())
    finally:
        child.kill()
        child.communicate()
    # /proc counts whole clock ticks, sampled, so 0.3 s of process_time can read as 0.29; a tree that
    # left the child out would have grown by this process's few ticks of fork and wait alone
    assert before is not None and after is not None and after - before >= 0.2
    assert cluster.tree_cpu_seconds(2**22 + 1) is None  # past pid_max: no such process
