"""`saypro-bot forget CONTACT` and `saypro-bot purge`, as an operator runs them."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update
from typer.testing import CliRunner

from bots.cli import app
from core.storage.models import ChannelIdentity, Message, utcnow
from tests.core.test_status_fixtures import StatusBot, seed_payout

PHONE = "+27825550142"


@pytest.fixture(autouse=True)
def environment(database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path) -> Iterator[None]:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.chdir(tmp_path)  # no .env from the working tree
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def run(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, list(args), prog_name="saypro-bot")


def test_forget_erases_and_says_what_it_did(database) -> None:  # type: ignore[no-untyped-def]
    seed_payout(database)
    StatusBot(database).say("when is my payout", user=PHONE, channel="sms")
    result = run("forget", "+27 82 555 0142")
    assert result.exit_code == 0, result.output
    assert "Erased 1 channel identities, 2 messages" in result.output
    assert "1 platform records" in result.output and PHONE not in result.output
    with database.sessions() as session:
        assert (
            session.scalar(select(func.count()).select_from(ChannelIdentity).where(ChannelIdentity.user_id == PHONE))
            == 0
        )


def test_forget_dry_run_as_json(database) -> None:  # type: ignore[no-untyped-def]
    StatusBot(database).say("hello", user="5550001")
    result = run("forget", "console:5550001", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["dry_run"] is True and payload["identities"] == 1 and payload["messages"] == 2
    assert run("forget", "console:5550001", "--json").exit_code == 0
    assert json.loads(run("forget", "console:5550001", "--json").output)["identities"] == 0


def test_forget_refuses_what_is_not_a_contact() -> None:
    result = run("forget", "somebody")
    assert result.exit_code == 2 and "not channel:user_id, a phone number or an e-mail" in result.output


def test_forget_says_when_nobody_is_known() -> None:
    result = run("forget", "nobody@example.org")
    assert result.exit_code == 0 and "nothing to erase" in result.output


def test_purge_takes_days_or_refuses_without(database) -> None:  # type: ignore[no-untyped-def]
    StatusBot(database).say("hello", user="old")
    with database.transaction() as session:
        session.execute(update(Message).values(created_at=utcnow() - timedelta(days=400)))
    assert run("purge").exit_code == 2
    result = run("purge", "--days", "365", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["messages"] == 2
    assert "Erased 0 messages older than 365 days" in run("purge", "--days", "365").output


def test_purge_takes_the_retention_setting(database, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    StatusBot(database).say("hello", user="old")
    with database.transaction() as session:
        session.execute(update(Message).values(created_at=utcnow() - timedelta(days=100)))
    monkeypatch.setenv("MESSAGE_RETENTION_DAYS", "120")
    assert json.loads(run("purge", "--json").output) == {
        "days": 120,
        "messages": 0,
        "outbox": 0,
        "verification": 0,
        "other_rows": {},
    }
    monkeypatch.setenv("MESSAGE_RETENTION_DAYS", "90")
    assert json.loads(run("purge", "--json").output)["messages"] == 2
    monkeypatch.setenv("MESSAGE_RETENTION_DAYS", "0")
    result = run("purge")
    assert result.exit_code == 2 and "MESSAGE_RETENTION_DAYS" in result.output
