"""Real `saypro-bot run` and `saypro-bot worker` processes on one database, started, killed and restarted.

Each process gets the environment of a fresh machine plus the database URL, the fake
provider's variables and a small knowledge base (the processes' start-up is spent fitting the
matcher; the faults tested here do not depend on how well it answers). Their output goes to a
log file per process, printed when a test fails.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

COMMAND = str(Path(sys.executable).parent / "saypro-bot")
ROOT = Path(__file__).resolve().parents[2]
PUBLIC_BASE_URL = "https://bot.example.org"
# A few entries of the bundled knowledge base, enough to answer the generator's questions.
SMALL_KNOWLEDGE = ("disbursement-timeline", "refund-request", "contact-support", "password-reset")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def small_knowledge(folder: Path) -> Path:
    """A copy of four bundled FAQ entries with the facts and out-of-scope files; fits in about a second."""
    source = ROOT / "knowledge"
    (folder / "faq").mkdir(parents=True, exist_ok=True)
    for name in ("facts.yaml", "out_of_scope.yaml"):
        shutil.copy(source / name, folder / name)
    for entry in SMALL_KNOWLEDGE:
        shutil.copy(source / "faq" / f"{entry}.md", folder / "faq" / f"{entry}.md")
    return folder


@dataclass
class BotProcess:
    """One `saypro-bot` process; `start` again after `kill` or `stop` to restart it."""

    name: str
    args: list[str]
    env: dict[str, str]
    cwd: Path
    port: int | None = None
    popen: subprocess.Popen[bytes] | None = None
    starts: int = 0
    command: list[str] = field(default_factory=lambda: [COMMAND])

    @property
    def log(self) -> Path:
        return self.cwd / f"{self.name}.log"

    @property
    def url(self) -> str:
        assert self.port is not None
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> BotProcess:
        self.starts += 1
        with self.log.open("ab") as log:
            log.write(f"\n===== start {self.starts} =====\n".encode())
            log.flush()
            self.popen = subprocess.Popen(
                [*self.command, *self.args],
                cwd=self.cwd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own group: a kill takes its children too
            )
        return self

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Until a web process answers /healthz with 200, or a worker has logged that it started."""
        deadline = time.monotonic() + timeout
        marker = f"===== start {self.starts} ====="
        while time.monotonic() < deadline:
            assert self.popen is not None
            if self.popen.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.popen.returncode}:\n{self.tail()}")
            if self.port is not None:
                try:
                    if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
            elif "worker started" in self.log.read_text(errors="replace").rsplit(marker, 1)[-1]:
                return
            time.sleep(0.2)
        raise AssertionError(f"{self.name} not ready within {timeout} s:\n{self.tail()}")

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind, as when a machine or a container dies."""
        if self.popen is None:
            return
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)  # uvicorn's worker processes die with it
        except ProcessLookupError:
            pass
        self.popen.wait(timeout=30)

    def stop(self) -> None:
        """A clean stop: SIGTERM for uvicorn (`run`), SIGINT for `worker` (its Ctrl-C path)."""
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM if self.port is not None else signal.SIGINT)
        try:
            self.popen.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def tail(self, lines: int = 40) -> str:
        if not self.log.exists():
            return "(no log)"
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Cluster:
    """Web and worker processes sharing `database_url`; `close()` kills whatever still runs."""

    workdir: Path
    database_url: str
    extra_env: dict[str, str] = field(default_factory=dict)
    processes: list[BotProcess] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")
        env = {name: os.environ[name] for name in keep if name in os.environ}
        env.update(
            {
                "NO_PROXY": "127.0.0.1,localhost",
                "PYTHONUNBUFFERED": "1",
                "PTB_TIMEDELTA": "true",
                "DATABASE_URL": self.database_url,
                "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
                "KNOWLEDGE_DIR": str(small_knowledge(self.workdir / "knowledge")),
            }
        )
        env.update(self.extra_env)
        return env

    def web(self, name: str) -> BotProcess:
        port = free_port()
        return self._add(BotProcess(name, ["run", "--port", str(port)], self.env(), self.workdir, port=port))

    def procfile_web(self, name: str, *, concurrency: int) -> BotProcess:
        """The Procfile's `web` line, run by a shell as a platform runs it, with PORT and WEB_CONCURRENCY."""
        line = next(line for line in (ROOT / "Procfile").read_text().splitlines() if line.startswith("web:"))
        port = free_port()
        env = {
            **self.env(),
            "PORT": str(port),
            "WEB_CONCURRENCY": str(concurrency),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        # exec: the shell becomes uvicorn, so signals reach it and its workers are its children
        return self._add(
            BotProcess(
                name,
                [f"exec {line.removeprefix('web:').strip()}"],
                env,
                self.workdir,
                port=port,
                command=["/bin/sh", "-c"],
            )
        )

    def worker(self, name: str) -> BotProcess:
        return self._add(BotProcess(name, ["worker"], self.env(), self.workdir))

    def start(self, *processes: BotProcess) -> None:
        """Start these (all at once: they migrate and fit in parallel), then wait for each."""
        for process in processes:
            process.start()
        for process in processes:
            process.wait_ready()

    def logs(self) -> str:
        return "\n\n".join(
            f"----- {p.name} (pid {p.popen.pid if p.popen else '-'}) -----\n{p.tail()}" for p in self.processes
        )

    def close(self) -> None:
        for process in self.processes:
            process.kill()

    def _add(self, process: BotProcess) -> BotProcess:
        self.processes.append(process)
        return process


def children(pid: int) -> list[int]:
    """The ids of a process's children (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def connections_to(pid: int, port: int) -> int:
    """How many TCP connections process `pid` has open to 127.0.0.1:`port` (Linux /proc)."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except FileNotFoundError:
        return 0
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            state_established = fields[3] == "01"
            if remote_port == port and state_established and fields[9] in inodes:
                count += 1
    return count
