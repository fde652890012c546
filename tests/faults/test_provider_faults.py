"""Fault 3: the provider answers 500, then times out, then 429 with Retry-After, then recovers: every
reply arrives once. A provider that stays down leaves dead letters, which `saypro-bot outbox retry`
sends once it is back.

In one process, with the real Twilio SDK against the faulty fake: the dispatcher's behaviour does
not depend on how many processes run it (test_load and test_kill cover that). The "time-out" is
a provider that never answers and never accepts; a provider that accepts and then times out is
the at-least-once case measured in test_kill.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from bots.outbox_cli import outbox_app
from bots.settings import load_settings
from bots.wiring import Services, build
from core.messages import InboundMessage
from core.outbox import RetryPolicy
from tests.fakes.knowledge import FakeKnowledge
from tests.faults.cluster import PUBLIC_BASE_URL
from tests.faults.ledger import Ledger, check_delivered_once, wait_until_settled
from tests.faults.provider import Fault, FaultyProvider, twilio_env

USERS = 6


@pytest.fixture()
def services(database_url: str, provider: FaultyProvider) -> Iterator[Services]:
    env = {key.lower(): value for key, value in twilio_env(provider).items()}
    built = build(
        load_settings(database_url=database_url, public_base_url=PUBLIC_BASE_URL, **env), knowledge=FakeKnowledge()
    )
    built.dispatcher.policy = RetryPolicy(max_attempts=4, base_delay=0.05, max_delay=0.2)
    sms = built.channels.get("sms")
    sms.client.http_client.timeout = 1.0  # type: ignore[union-attr]  # the SDK's 15 s, shortened for the test
    provider.stall = 2.5
    for number in range(USERS):
        built.inbox.handle(
            InboundMessage(
                channel="sms",
                user_id=f"+2784000{number:04d}",
                provider_message_id=f"SMfault{number:027d}",
                text="payout?",
            )
        )
    yield built
    built.database.dispose()


async def dispatch_until_quiet(services: Services, *, seconds: float) -> None:
    """The background loop's work, for `seconds` or until no row is pending."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await services.dispatcher.dispatch_due()
        if Ledger.read(services.database).settled():
            return
        await asyncio.sleep(0.05)


def test_500_then_a_time_out_then_429_then_recovery_delivers_every_reply_once(
    services: Services, provider: FaultyProvider
) -> None:
    provider.faults = [Fault(500), Fault(stall=True), Fault(429, retry_after="1")]
    started = time.monotonic()
    asyncio.run(dispatch_until_quiet(services, seconds=60))

    ledger = wait_until_settled(services.database, USERS, timeout=1)
    check_delivered_once(ledger, provider)
    assert len(provider.delivered) == USERS
    assert provider.attempts == USERS + 3  # each fault cost one more try, no more
    with services.database.sessions() as session:
        from sqlalchemy import select

        from core.storage.models import OutboxItem

        rows = list(session.scalars(select(OutboxItem)))
    errors = sorted(row.last_error or "" for row in rows if row.attempts > 1)
    assert any("500" in error for error in errors)
    assert any("unreachable" in error for error in errors)  # the time-out
    assert any("429" in error for error in errors)
    assert time.monotonic() - started >= 1.0  # Retry-After: 1 was waited out


@pytest.fixture()
def cli_env(database_url: str, provider: FaultyProvider, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setattr("bots.logs.configure", lambda *args, **kwargs: None)  # keep pytest's log capture
    return {"DATABASE_URL": database_url, "PUBLIC_BASE_URL": PUBLIC_BASE_URL, **twilio_env(provider)}


def test_a_provider_that_stays_down_leaves_dead_letters_that_outbox_retry_sends_later(
    services: Services, provider: FaultyProvider, cli_env: dict[str, str]
) -> None:
    provider.faults = [Fault(500) for _ in range(USERS * 4)]  # every try of every row fails
    asyncio.run(dispatch_until_quiet(services, seconds=60))
    assert {row.status for row in Ledger.read(services.database).rows} == {"dead"}
    assert provider.delivered == []

    runner = CliRunner()
    listed = runner.invoke(outbox_app, ["list", "--json"], env=cli_env)
    assert listed.exit_code == 0, listed.output
    dead = json.loads(listed.output)["dead"]
    assert len(dead) == USERS and all(row["attempts"] == 4 and "500" in row["last_error"] for row in dead)
    assert all(row["user"].startswith("…") and len(row["user"]) == 5 for row in dead)  # no full numbers

    provider.faults = []  # the provider is back
    first = dead[0]["id"]
    retried = runner.invoke(outbox_app, ["retry", str(first), "--send"], env=cli_env)
    assert retried.exit_code == 0, retried.output
    assert "1 replies queued again" in retried.output and "1 sent, 0 still waiting" in retried.output

    everything = runner.invoke(outbox_app, ["retry"], env=cli_env)  # the rest, left to the dispatcher
    assert everything.exit_code == 0 and f"{USERS - 1} replies queued again" in everything.output
    asyncio.run(dispatch_until_quiet(services, seconds=30))

    ledger = wait_until_settled(services.database, USERS, timeout=1)
    check_delivered_once(ledger, provider)
    assert len(provider.delivered) == USERS
    assert runner.invoke(outbox_app, ["retry"], env=cli_env).output.startswith("0 replies queued again")
