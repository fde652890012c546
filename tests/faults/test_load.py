"""Fault 1: two web processes and two workers on one database, signed webhooks from many users, a
fifth of them delivered twice at once to both web processes: every message stored once, answered
once at the provider, in each user's order: with the web processes answering, and with
ANSWERS_BY_WORKERS, where the web processes only store and the two workers answer.

Sizes: FAULT_LOAD_MESSAGES from FAULT_LOAD_USERS users (2,000 from 500 on PostgreSQL, as the
issue asks); on SQLite, where the four processes share one file and one writer,
FAULT_LOAD_SQLITE_MESSAGES from FAULT_LOAD_SQLITE_USERS (400 from 100) keep the run short.
"""

from __future__ import annotations

import asyncio

import pytest

from core.storage.database import Database
from tests.faults.cluster import PUBLIC_BASE_URL, Cluster
from tests.faults.conftest import size
from tests.faults.ledger import (
    check_answered_in_order,
    check_delivered_once,
    check_stored_once,
    wait_until_settled,
)
from tests.faults.load import Load
from tests.faults.provider import FaultyProvider


@pytest.mark.parametrize("answered_by", ["web", "workers"])
def test_two_webs_and_two_workers_answer_every_message_once_in_order(
    cluster: Cluster, provider: FaultyProvider, shared_database: Database, answered_by: str
) -> None:
    if shared_database.is_sqlite:
        messages, users = size("FAULT_LOAD_SQLITE_MESSAGES", 400), size("FAULT_LOAD_SQLITE_USERS", 100)
    else:
        messages, users = size("FAULT_LOAD_MESSAGES", 2000), size("FAULT_LOAD_USERS", 500)
    if answered_by == "workers":
        cluster.extra_env["ANSWERS_BY_WORKERS"] = "true"
    webs = [cluster.web("web-1"), cluster.web("web-2")]
    cluster.start(*webs, cluster.worker("worker-1"), cluster.worker("worker-2"))

    load = Load(webs=[web.url for web in webs], users=users, messages=messages, public_base_url=PUBLIC_BASE_URL)
    outcome = asyncio.run(load.run())
    print(f"load: {outcome.summary()}")
    assert outcome.failed == []
    assert len(outcome.messages) == messages
    assert outcome.statuses[200] >= messages * 1.1  # the duplicates were delivered too

    ledger = wait_until_settled(shared_database, messages, timeout=300)
    check_stored_once(ledger, outcome.messages)
    check_answered_in_order(ledger)
    check_delivered_once(ledger, provider)
    assert len(provider.delivered) == len(ledger.rows) >= messages
