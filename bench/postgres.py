"""The benchmark's throwaway PostgreSQL cluster: Debian's binaries, initdb into a temporary
directory, a free port of 127.0.0.1, and everything deleted again at the end."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from bench.cluster import free_port
from bench.common import HOST


def find_bindir() -> Path | None:
    """Where initdb and pg_ctl are, or None when this machine has no PostgreSQL server: in
    POSTGRES_BINDIR (.ci/run says where it found them), pg_config's, initdb's on PATH, or the
    newest of Debian's /usr/lib/postgresql/<version>/bin."""
    candidates = [os.environ.get("POSTGRES_BINDIR", "")]
    if pg_config := shutil.which("pg_config"):
        result = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        candidates.append(result.stdout.strip())
    if initdb := shutil.which("initdb"):
        candidates.append(str(Path(initdb).resolve().parent))
    debian = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += sorted(debian, key=lambda d: int(Path(d).parent.name) if Path(d).parent.name.isdigit() else -1)[::-1]
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    return None


def postgres_bindir() -> Path:
    found = find_bindir()
    if found is None:
        raise SystemExit(
            "bench: no PostgreSQL binaries under /usr/lib/postgresql/*/bin "
            "(apt-get install -y postgresql), or pass --database-url"
        )
    return found


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

    @property
    def pid(self) -> int | None:
        """The server's process id (postmaster.pid's first line), while it runs."""
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            return None

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
