"""Fixtures for the fault tests: a database of the test's own, the faulty provider, and real processes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.storage.database import Database
from tests.conftest import migrated
from tests.faults.cluster import Cluster
from tests.faults.provider import FaultyProvider, twilio_env


def size(name: str, default: int) -> int:
    """A test's size, overridable from the environment (FAULT_* variables, see docs/operations.md)."""
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture()
def provider() -> Iterator[FaultyProvider]:
    fake = FaultyProvider()
    yield fake
    fake.close()


@pytest.fixture()
def shared_database(own_database_url: str) -> Iterator[Database]:
    """The test's own database (migrated), as the test process sees it beside the bot's processes."""
    with migrated(own_database_url) as database:
        yield database


@pytest.fixture()
def cluster(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    own_database_url: str,
    shared_database: Database,
    provider: FaultyProvider,
) -> Iterator[Cluster]:
    """Processes on the test's database with every channel pointed at the fake; their logs shown on failure."""
    workdir = tmp_path / "bot"
    workdir.mkdir()
    processes = Cluster(workdir, own_database_url, extra_env=twilio_env(provider))
    yield processes
    processes.close()
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        print(processes.logs())
