"""Shared fixtures: no network but loopback, a migrated database per test, the bundled knowledge base."""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.storage.database import Database

for _proxy in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
    os.environ.pop(_proxy, None)
os.environ["NO_PROXY"] = "127.0.0.1,localhost"
# python-telegram-bot 22 warns (an error under filterwarnings=error) when it builds RetryAfter
# with a plain number; this opts into its timedelta form, which the adapter reads either way.
os.environ.setdefault("PTB_TIMEDELTA", "true")

_real_connect = socket.socket.connect


def _loopback_only(self: socket.socket, address: object) -> object:
    if isinstance(address, tuple) and self.family in (socket.AF_INET, socket.AF_INET6):
        host = str(address[0])
        if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
            raise RuntimeError(f"a test tried to reach {host}: tests may only use 127.0.0.1")
    return _real_connect(self, address)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any test that reaches anything but this machine."""
    monkeypatch.setattr(socket.socket, "connect", _loopback_only)


@pytest.fixture()
def database_url(tmp_path: Path) -> str:
    """A fresh SQLite database file for one test."""
    return f"sqlite:///{tmp_path / 'test.db'}"


@pytest.fixture()
def database(database_url: str) -> Iterator[Database]:
    db = Database.from_url(database_url)
    db.upgrade()
    yield db
    db.dispose()


@pytest.fixture(scope="session")
def knowledge():  # type: ignore[no-untyped-def]
    """The bundled knowledge base, fitted once for the whole run."""
    from knowledge.service import KnowledgeService

    return KnowledgeService.load(None)


@pytest.fixture()
def bot(database: Database, knowledge):  # type: ignore[no-untyped-def]
    """A conversation with the bot on a recording channel, read like a script (see tests/fakes/bot.py)."""
    from tests.fakes.bot import ScriptedBot

    return ScriptedBot(database, knowledge)


@pytest.fixture()
def fake_bot(database: Database):  # type: ignore[no-untyped-def]
    """A scripted conversation over a small, predictable knowledge base (tests/fakes/knowledge.py)."""
    from tests.fakes.bot import ScriptedBot
    from tests.fakes.knowledge import FakeKnowledge

    return ScriptedBot(database, FakeKnowledge())
