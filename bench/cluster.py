"""The benchmark's processes: free ports and the children of one run (the fake provider,
`saypro-bot run`, the bare endpoint and the workers), their environment, start, health check,
pause, stop and CPU time. The throwaway PostgreSQL cluster is in bench/postgres.py."""

from __future__ import annotations

import argparse
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import make_url

from bench.common import (
    HOST,
    TELEGRAM_SECRET,
    TELEGRAM_TOKEN,
    TWILIO_ACCOUNT_SID,
    TWILIO_AUTH_TOKEN,
    TWILIO_SMS_NUMBER,
    TWILIO_WHATSAPP_NUMBER,
)
from core.storage.database import writer_lock_path

# The entry point, which also serves the fake provider (--serve-fake) and the bare endpoint (--serve-bare).
LOAD_SCRIPT = Path(__file__).resolve().with_name("load.py")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


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
    *, database_url: str, port: int, fake_port: int, knowledge_dir: str | None = None, answers_by_workers: bool = False
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
    if answers_by_workers:
        env["ANSWERS_BY_WORKERS"] = "true"
    if knowledge_dir:
        env["KNOWLEDGE_DIR"] = str(Path(knowledge_dir).resolve())
    return env


# pause_workers: how often it stops the workers again, at most, to catch none holding SQLite's lock.
PAUSE_TRIES = 500


@dataclass
class Children:
    fake: subprocess.Popen[bytes]
    bot: subprocess.Popen[bytes]
    bare: subprocess.Popen[bytes]
    fake_port: int
    bot_port: int
    bare_port: int
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    writer_lock: Path | None = None  # SQLite's `<database>-writer` file, which pause_workers checks

    def pause_workers(self) -> None:
        """Stop the workers (SIGSTOP) until `resume_workers`.

        On SQLite, `writer_lock` is the database's `-writer` file (core/storage/database.py): a
        worker stopped inside a transaction would keep the one write lock, and every store of the
        phase would wait for it until its request timed out. A worker caught holding it is let go
        on for a moment and stopped again.
        """
        for _ in range(PAUSE_TRIES):
            for worker in self.workers:
                worker.send_signal(signal.SIGSTOP)
            for worker in self.workers:
                _wait_stopped(worker.pid)
            if self.writer_lock is None or _lock_free(self.writer_lock):
                return
            self.resume_workers()
            time.sleep(0.002)
        raise RuntimeError(f"a paused worker kept holding {self.writer_lock} in {PAUSE_TRIES} tries")

    def resume_workers(self) -> None:
        for worker in self.workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        self.resume_workers()  # a stopped process would not act on SIGTERM
        for process in (self.bot, *self.workers, self.bare, self.fake):
            stop_process(process)


def _wait_stopped(pid: int, timeout: float = 2.0) -> None:
    """Until the process's state is "stopped" (T): a signal is delivered, not acted on, at once."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        fields = _stat(Path(f"/proc/{pid}/stat"))
        if fields is None or fields[0] in ("T", "t"):
            return  # stopped; or gone, or no /proc: nothing to wait for
        time.sleep(0.001)


def _lock_free(path: Path) -> bool:
    """Whether no process holds the flock(2) on `path` (taken and let go again at once)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    finally:
        os.close(fd)


def start_children(database_url: str, args: argparse.Namespace, workdir: Path) -> Children:
    """The fake, the bot and the bare endpoint, each answering /healthz; stopped again on failure."""
    here = str(LOAD_SCRIPT)
    fake_port, bot_port, bare_port = free_port(), free_port(), free_port()
    names = ["fake", "bot", "bare", *(f"worker-{n}" for n in range(1, args.workers + 1))]
    logs = {name: open(workdir / f"{name}.log", "ab") for name in names}  # noqa: SIM115
    env = bot_environment(
        database_url=database_url,
        port=bot_port,
        fake_port=fake_port,
        knowledge_dir=args.knowledge_dir,
        answers_by_workers=args.workers > 0,
    )
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
            env=env,
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
        # after `run` is up, so that its migrations are done; each worker logs when it has started
        workers = []
        for name in names[3:]:
            worker = subprocess.Popen(
                [*bot_command(args.bot_command), "worker"],
                cwd=workdir,
                stdout=logs[name],
                stderr=subprocess.STDOUT,
                env=env,
            )
            started.append(worker)
            workers.append(worker)
        for name, worker in zip(names[3:], workers):
            wait_logged("worker started", 120, worker, f"saypro-bot worker ({name})", workdir / f"{name}.log")
    except BaseException:
        for process in started:
            stop_process(process)
        raise
    finally:
        for log in logs.values():
            log.close()
    url = make_url(database_url)
    writer_lock = writer_lock_path(url.database) if url.get_backend_name() == "sqlite" else None
    return Children(
        fake, bot, bare, fake_port, bot_port, bare_port, workers, Path(writer_lock) if writer_lock else None
    )


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


def wait_logged(line: str, seconds: float, process: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace") if log.exists() else ""
        if line in text:
            return
        if process.poll() is not None:
            raise SystemExit(f"bench: {what} exited with {process.returncode} before it started\n{text[-3000:]}")
        time.sleep(0.2)
    raise SystemExit(f"bench: {what} did not start within {seconds:.0f} s")


def tree_cpu_seconds(pid: int) -> float | None:
    """CPU seconds of a process and its children, living or exited (a PostgreSQL server and its
    backends): each one's own time and that of its children it has waited for."""
    total, found = 0, False
    for stat in Path("/proc").glob("[0-9]*/stat"):
        fields = _stat(stat)
        if fields is None:
            continue  # gone meanwhile
        if int(stat.parent.name) == pid or int(fields[1]) == pid:
            found = found or int(stat.parent.name) == pid
            total += sum(int(value) for value in fields[11:15])  # utime, stime, cutime, cstime
    return total / os.sysconf("SC_CLK_TCK") if found else None


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of a process so far, from /proc (Linux); this process's for None."""
    if pid is None:
        return time.process_time()
    fields = _stat(Path(f"/proc/{pid}/stat"))
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK") if fields is not None else None


def _stat(path: Path) -> list[str] | None:
    """A /proc/<pid>/stat's fields after the command name, from the state on (proc(5) numbers them
    from 3); None when the process is gone or there is no /proc."""
    try:
        fields = path.read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields if len(fields) > 12 else None
