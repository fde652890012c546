"""The figures, exact on a seeded history: `support_report`, `saypro-bot report --json`, and /metrics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from bots.desk.metrics import REPORT_MAX_AGE, ReportCollector
from bots.settings import load_settings
from bots.web import create_app
from bots.wiring import build
from core.report_text import summary_text
from core.reporting import spread, support_report
from core.storage.database import Database
from core.storage.models import utcnow
from tests.desk.history import EXPECTED, seed
from tests.fakes.knowledge import FakeKnowledge

UNTIL = datetime(2026, 3, 8, tzinfo=UTC)
COMMAND = str(Path(sys.executable).parent / "saypro-bot")


def test_the_report_is_exact_on_a_seeded_history(database: Database) -> None:
    seed(database, until=UNTIL)
    report = support_report(database, days=7, now=UNTIL)
    for key, value in EXPECTED.items():
        assert report[key] == value, key
    assert report["since"] == "2026-03-01T00:00:00+00:00" and report["until"] == "2026-03-08T00:00:00+00:00"


def test_the_summary_text_says_the_same_figures(database: Database) -> None:
    seed(database, until=UNTIL)
    text = summary_text(support_report(database, days=7, now=UNTIL), title="Week")
    assert "- Conversations: 4 (SMS 1, Telegram 2, WhatsApp 1)" in text
    assert "- Bot containment: 25.0%" in text and "- SLA breaches: 1" in text
    assert "- First response: median 1.5 min, 90% within 5.0 min (3 tickets)" in text
    assert "- CSAT: 66.7% rated 4 or 5, mean 3.67 (3 ratings)" in text
    assert "“is my cat a campaign” (2)" in text


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], {"n": 0, "median": None, "p90": None}),
        ([5.0], {"n": 1, "median": 5.0, "p90": 5.0}),
        ([4.0, 1.0, 3.0, 2.0], {"n": 4, "median": 2.5, "p90": 4.0}),
        ([float(n) for n in range(1, 21)], {"n": 20, "median": 10.5, "p90": 18.0}),
    ],
)
def test_median_and_p90_by_nearest_rank(values: list[float], expected: dict[str, object]) -> None:
    assert spread(values) == expected


def test_report_json_gives_the_same_figures_to_scripts(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'saypro.db'}"
    database = Database.from_url(url)
    database.upgrade()
    seed(database, until=utcnow() + timedelta(minutes=1))
    database.dispose()
    env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG") if name in os.environ}
    result = subprocess.run(
        [COMMAND, "report", "--json"],
        cwd=tmp_path,
        env={**env, "DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    for key, value in EXPECTED.items():
        assert figures[key] == value, key
    table = subprocess.run(
        [COMMAND, "report"],
        cwd=tmp_path,
        env={**env, "DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "Bot containment: 25.0% of 4 conversations" in table.stdout and "SLA breaches: 1" in table.stdout


async def test_the_figures_are_prometheus_metrics(database_url: str) -> None:
    services = build(load_settings(database_url=database_url), knowledge=FakeKnowledge())
    try:
        seed(services.database, until=utcnow() + timedelta(minutes=1))
        transport = httpx.ASGITransport(app=create_app(services, background=False))
        async with httpx.AsyncClient(transport=transport, base_url="http://bot") as client:
            text = (await client.get("/metrics")).text
    finally:
        services.database.dispose()
    assert 'saypro_report_conversations{channel="telegram"} 2.0' in text
    assert "saypro_report_bot_containment_ratio 0.25" in text
    assert 'saypro_report_first_response_seconds{quantile="0.9"} 300.0' in text
    assert "saypro_report_csat_mean 3.67" in text and "saypro_report_sla_breaches 1.0" in text
    assert 'saypro_desk_open_tickets{priority="normal"} 1.0' in text


def test_a_process_computes_the_weekly_report_once_a_minute_and_open_tickets_at_every_scrape(
    database: Database,
) -> None:
    now = [1_000.0]
    collector = ReportCollector(clock=lambda: now[0])
    collector.bind(database)

    def scrape() -> dict[str, list[tuple[dict[str, str], float]]]:
        return {m.name: [(s.labels, s.value) for s in m.samples] for m in collector.collect()}

    assert scrape()["saypro_report_conversations"] == []  # nothing yet
    seed(database, until=utcnow() + timedelta(minutes=1))
    now[0] += REPORT_MAX_AGE - 1
    cached = scrape()
    assert cached["saypro_report_conversations"] == []  # the report computed a moment ago
    assert cached["saypro_desk_open_tickets"] == [({"priority": "normal"}, 1.0)]  # live
    now[0] += 1
    assert ({"channel": "telegram"}, 2.0) in scrape()["saypro_report_conversations"]
