"""Fault 2: `kill -9` of a worker in the middle of a send. Every reply still arrives, none twice,
as far as the provider's own behaviour allows (see the last test, and docs/operations.md); also
with ANSWERS_BY_WORKERS, where the worker killed was answering the messages too.

The fake provider holds each send for a while; the test kills a worker while it has sends open.
A send cut off before the provider accepted it is dropped by the provider (the connection
closed under it), and the row, still leased to the dead worker, is sent again by the other
worker once the lease runs out (RetryPolicy.lease_seconds, 30 s): exactly once. A send the
provider had already accepted when the worker died cannot be known to the bot: the row is sent
again, and the provider has it twice. That window is the time between the provider's accepting
and the row's `sent` being committed; the second test widens it on purpose and measures it.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest

from bots.settings import load_settings
from bots.wiring import build
from core.messages import InboundMessage
from core.storage.database import Database
from tests.fakes.knowledge import FakeKnowledge
from tests.faults.cluster import PUBLIC_BASE_URL, Cluster, connections_to
from tests.faults.conftest import size
from tests.faults.ledger import check_delivered_once, wait_until_settled
from tests.faults.provider import FaultyProvider, twilio_env

# How long the provider holds each send: long enough that the kill surely lands while the
# victim's sends are open, short enough that the survivor's held sends end within the lease wait.
SLOW = 4.0
LEASE_WAIT = 120  # the lease (30 s), the survivor's next rounds, and a slow machine


def queue_replies(database_url: str, provider: FaultyProvider, users: int, *, answer: bool = True) -> None:
    """Answer one SMS from each of `users` people in this process, leaving the replies unsent in the
    outbox; without `answer`, only store the messages, as a web process does with ANSWERS_BY_WORKERS."""
    env = {key.lower(): value for key, value in twilio_env(provider).items()}
    services = build(
        load_settings(database_url=database_url, public_base_url=PUBLIC_BASE_URL, **env), knowledge=FakeKnowledge()
    )
    try:
        for number in range(users):
            message = InboundMessage(
                channel="sms",
                user_id=f"+2783000{number:04d}",
                provider_message_id=f"SMkill{number:028d}",
                text="when is my payout?",
            )
            if answer:
                services.inbox.handle(message)
            else:
                services.inbox.receive(message)
    finally:
        services.database.dispose()


def kill_mid_send(cluster: Cluster, provider: FaultyProvider) -> tuple[int, int]:
    """Start two workers, kill -9 the first while it has sends open; (sends it had open, accepted so far)."""
    victim, survivor = cluster.worker("worker-1"), cluster.worker("worker-2")
    cluster.start(victim, survivor)
    port = int(provider.url.rsplit(":", 1)[1])
    deadline = time.monotonic() + 60
    while connections_to(victim.pid, port) == 0:
        assert time.monotonic() < deadline, "the worker never started a send"
        time.sleep(0.005)
    # Well inside the provider's SLOW seconds, even if the worker began sending before this loop
    # began watching: every request it has open is still held (or lingering), none answered.
    time.sleep(0.2)
    open_sends = connections_to(victim.pid, port)
    victim.kill()
    return open_sends, len(provider.delivered)


@pytest.mark.parametrize("users", [size("FAULT_KILL_USERS", 40)])
def test_a_worker_killed_before_the_provider_accepts_loses_and_doubles_nothing(
    cluster: Cluster, provider: FaultyProvider, shared_database: Database, own_database_url: str, users: int
) -> None:
    queue_replies(own_database_url, provider, users)
    provider.hold = SLOW  # a slow provider: each send is open for seconds before it is accepted

    open_sends, _ = kill_mid_send(cluster, provider)
    provider.hold = 0.0  # quick again for what follows (the sends held already stay held)
    ledger = wait_until_settled(shared_database, users, timeout=LEASE_WAIT)

    print(f"kill: {open_sends} sends open, {len(provider.abandoned)} cut off, {len(provider.delivered)} accepted")
    assert open_sends >= 1
    assert len(provider.abandoned) >= 1  # the kill did land mid-send: those requests were cut off
    check_delivered_once(ledger, provider)  # ...and were sent again after the lease, once
    assert len(provider.delivered) == len(ledger.rows) == users


@pytest.mark.parametrize("users", [size("FAULT_KILL_USERS", 40)])
def test_a_worker_killed_while_answering_for_the_web_loses_and_doubles_nothing(
    cluster: Cluster, provider: FaultyProvider, shared_database: Database, own_database_url: str, users: int
) -> None:
    """ANSWERS_BY_WORKERS: the messages wait unanswered, both workers answer them, and the one killed
    had replies leased and sends open. Its answers were committed with their replies leased, and
    are sent again by the other worker after the lease; what it held unanswered is answered there."""
    queue_replies(own_database_url, provider, users, answer=False)
    provider.hold = SLOW
    cluster.extra_env["ANSWERS_BY_WORKERS"] = "true"

    open_sends, _ = kill_mid_send(cluster, provider)
    provider.hold = 0.0
    ledger = wait_until_settled(shared_database, users, timeout=LEASE_WAIT)

    print(f"kill: {open_sends} sends open, {len(provider.abandoned)} cut off, {len(provider.delivered)} accepted")
    assert open_sends >= 1 and len(provider.abandoned) >= 1
    check_delivered_once(ledger, provider)
    # every message answered once: the same reply (in the same number of parts) for each user
    parts = Counter(row.user_id for row in ledger.rows)
    assert len(parts) == users and len(set(parts.values())) == 1, parts
    assert len(provider.delivered) == len(ledger.rows)


@pytest.mark.only_on(
    "postgresql",
    reason="the same claim and lease code as the test above, which runs on SQLite too; the "
    "at-least-once window is measured once, on PostgreSQL, to keep the run short",
)
@pytest.mark.parametrize("users", [size("FAULT_KILL_USERS", 40)])
def test_a_worker_killed_after_the_provider_accepted_sends_those_again_and_only_those(
    cluster: Cluster, provider: FaultyProvider, shared_database: Database, own_database_url: str, users: int
) -> None:
    queue_replies(own_database_url, provider, users)
    provider.linger = SLOW  # the provider accepts at once, then takes seconds to answer

    open_sends, _ = kill_mid_send(cluster, provider)
    provider.linger = 0.0
    ledger = wait_until_settled(shared_database, users, timeout=LEASE_WAIT)

    # At-least-once: each message the provider accepted while its sender died is accepted again
    # from the re-sent row, and nothing else is; every row still ends up sent exactly once.
    doubled = check_delivered_once(ledger, provider, allowed_duplicates=open_sends)
    print(f"kill: {open_sends} sends open, {len(doubled)} accepted twice, {len(provider.delivered)} accepted")
    assert 1 <= len(doubled) <= open_sends
    assert len(provider.delivered) == users + len(doubled)
