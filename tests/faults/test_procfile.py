"""The Procfile's `web`: uvicorn with WEB_CONCURRENCY worker processes from the app factory
(bots/asgi.py), each with its own services, beside a `worker`; messages are answered once."""

from __future__ import annotations

import asyncio

import pytest

from core.storage.database import Database
from tests.faults.cluster import PUBLIC_BASE_URL, Cluster, children
from tests.faults.ledger import (
    check_delivered_once,
    check_stored_once,
    wait_until_settled,
)
from tests.faults.load import Load
from tests.faults.provider import FaultyProvider

pytestmark = pytest.mark.only_on(
    "postgresql",
    reason="the several-process deployment is tested on PostgreSQL; SQLite's several processes "
    "are tested in test_load, test_kill and test_restart",
)


def test_the_procfile_web_runs_several_workers_that_share_the_work(
    cluster: Cluster, provider: FaultyProvider, shared_database: Database
) -> None:
    web = cluster.procfile_web("procfile-web", concurrency=2)
    cluster.start(web, cluster.worker("worker"))
    assert len(children(web.pid)) >= 2  # uvicorn's two worker processes (its process manager above them)

    load = Load(webs=[web.url, web.url], users=40, messages=120, public_base_url=PUBLIC_BASE_URL)
    outcome = asyncio.run(load.run())
    assert outcome.failed == []
    ledger = wait_until_settled(shared_database, 120, timeout=120)
    check_stored_once(ledger, outcome.messages)
    check_delivered_once(ledger, provider)
