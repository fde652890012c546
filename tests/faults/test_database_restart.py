"""Fault 4: PostgreSQL restarted during load. While it is away the webhooks answer 503 (so the
provider retries them later), and once it is back the bot recovers by itself: nothing lost,
nothing answered twice.

The server is the test's own (tests/faults/pgcluster.py), stopped with `pg_ctl -m fast` (every
connection cut, as in a restart) for FAULT_RESTART_DOWN_SECONDS (3), in the middle of
FAULT_RESTART_MESSAGES (300) messages from FAULT_RESTART_USERS (100) users.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.postgres import find_bindir
from core.storage.database import Database
from tests.faults.cluster import PUBLIC_BASE_URL, Cluster
from tests.faults.conftest import size
from tests.faults.ledger import (
    Ledger,
    check_answered_in_order,
    check_delivered_once,
    check_stored_once,
    wait_until_settled,
)
from tests.faults.load import Load, Outcome
from tests.faults.pgcluster import LocalPostgres
from tests.faults.provider import FaultyProvider, twilio_env

pytestmark = pytest.mark.only_on(
    "postgresql", reason="restarts a database server; SQLite has none (it is a file in the bot's own process)"
)


@pytest.fixture()
def server() -> Iterator[LocalPostgres]:
    bindir = find_bindir()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) on this machine; .ci/run installs them")
    local = LocalPostgres(bindir)
    yield local
    local.close()


@pytest.fixture()
def restart_cluster(
    request: pytest.FixtureRequest, tmp_path: Path, server: LocalPostgres, provider: FaultyProvider
) -> Iterator[Cluster]:
    workdir = tmp_path / "bot"
    workdir.mkdir()
    processes = Cluster(workdir, server.url, extra_env=twilio_env(provider))
    yield processes
    processes.close()
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        print(processes.logs())


def test_webhooks_answer_503_while_postgres_is_away_and_the_bot_recovers_by_itself(
    restart_cluster: Cluster, server: LocalPostgres, provider: FaultyProvider
) -> None:
    messages, users = size("FAULT_RESTART_MESSAGES", 300), size("FAULT_RESTART_USERS", 100)
    down = float(size("FAULT_RESTART_DOWN_SECONDS", 3))
    webs = [restart_cluster.web("web-1"), restart_cluster.web("web-2")]
    restart_cluster.start(*webs, restart_cluster.worker("worker-1"))

    load = Load(
        webs=[web.url for web in webs],
        users=users,
        messages=messages,
        public_base_url=PUBLIC_BASE_URL,
        concurrency=20,
        retry_for=120,
    )
    outcomes: list[Outcome] = []
    generator = threading.Thread(target=lambda: outcomes.append(asyncio.run(load.run())))
    generator.start()
    database = Database.from_url(server.url)
    try:
        _wait_for_stored(database, messages // 4)
        server.stop("fast")
        time.sleep(0.5)
        probe = httpx.post(
            webs[0].url + "/webhooks/twilio",
            content=load.request(load.plan()[0][0])[1],
            headers=load.request(load.plan()[0][0])[2],
            timeout=10,
        )
        health = httpx.get(webs[1].url + "/healthz", timeout=10)
        time.sleep(max(down - 0.5, 0))
        server.start()
        back = time.monotonic()
        recovered = _first_success(webs[0].url, timeout=30)
        generator.join(timeout=300)
        assert not generator.is_alive(), "the generator did not finish"
        ledger = wait_until_settled(database, messages, timeout=120)
        settled_after = time.monotonic() - back
    finally:
        database.dispose()

    outcome = outcomes[0]
    print(
        f"restart: {outcome.summary()}, healthy again after {recovered:.1f} s, all answered {settled_after:.1f} s after the restart"
    )
    assert (probe.status_code, health.status_code) == (503, 503)
    assert outcome.statuses[503] + outcome.statuses[0] > 0  # the generator met the outage and retried
    assert outcome.failed == []
    assert recovered < 10  # "within seconds": the pools reconnect on their own (core.storage.database)
    check_stored_once(ledger, outcome.messages)
    check_answered_in_order(ledger)
    check_delivered_once(ledger, provider)
    apologies = _apologies(server.url)
    assert apologies == 0, f"{apologies} messages got the 'something went wrong' apology instead of their answer"


def _wait_for_stored(database: Database, count: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while len(Ledger.read(database).inbound) < count:
        assert time.monotonic() < deadline, f"fewer than {count} messages stored in {timeout} s"
        time.sleep(0.1)


def _first_success(web: str, *, timeout: float) -> float:
    """Seconds until /healthz answers 200 again."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if httpx.get(web + "/healthz", timeout=2).status_code == 200:
                return time.monotonic() - started
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"/healthz not 200 within {timeout} s of the database's return")


def _apologies(url: str) -> int:
    from sqlalchemy import select

    from core.storage.models import Message

    database = Database.from_url(url)
    try:
        with database.sessions() as session:
            details = session.scalars(select(Message.details).where(Message.direction == "in"))
            return sum(1 for detail in details if (detail or {}).get("error") == "dialogue failed")
    finally:
        database.dispose()
