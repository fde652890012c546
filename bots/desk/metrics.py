"""The support report's figures on /metrics as Prometheus gauges, computed from the database.

The figures cover the last seven days, like `saypro-bot report`; open tickets are counted as
they are now, at every scrape. The seven-day report reads every conversation and ticket of the
week, so each process computes it at most once per `REPORT_MAX_AGE` and serves that copy to the
scrapes in between (with several workers and a scrape every 15 s it would otherwise run the
whole report several times a minute). The collector is registered once per process and reads
the database of the services built last (one per process outside tests).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from core.handoff import ACTIVE
from core.reporting import support_report
from core.storage.database import Database
from core.storage.models import Ticket

log = logging.getLogger(__name__)
PERIOD_DAYS = 7
REPORT_MAX_AGE = 60.0  # seconds a process serves the same seven-day report before computing it again


class ReportCollector(Collector):
    """Yields the report's figures as gauges when Prometheus scrapes."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.database: Database | None = None
        self.clock = clock
        self._report: tuple[float, dict[str, Any]] | None = None  # (when computed, the report)

    def bind(self, database: Database) -> None:
        """Read `database` from now on (a report of another database is dropped)."""
        if database is not self.database:
            self.database, self._report = database, None

    def describe(self) -> list[Metric]:
        return []  # computed at scrape time: nothing to query when the collector is registered

    def collect(self) -> Iterator[Metric]:
        if self.database is None:
            return
        try:
            report = self._recent_report(self.database)
            open_tickets = self._open_tickets(self.database)
        except SQLAlchemyError as exc:
            log.warning("report metrics unavailable: %s", type(exc).__name__)
            return
        yield from _gauges(report, open_tickets)

    def _recent_report(self, database: Database) -> dict[str, Any]:
        now = self.clock()
        if self._report is None or now - self._report[0] >= REPORT_MAX_AGE:
            self._report = (now, support_report(database, days=PERIOD_DAYS))
        return self._report[1]

    @staticmethod
    def _open_tickets(database: Database) -> dict[str, int]:
        query = select(Ticket.priority, func.count()).where(Ticket.status.in_(ACTIVE)).group_by(Ticket.priority)
        with database.sessions() as session:
            return {priority: count for priority, count in session.execute(query)}


def _gauge(name: str, doc: str, value: float | None, **labels: str) -> GaugeMetricFamily | None:
    if value is None:
        return None
    gauge = GaugeMetricFamily(name, doc, labels=list(labels))
    gauge.add_metric(list(labels.values()), value)
    return gauge


def _gauges(report: dict[str, Any], open_tickets: dict[str, int]) -> Iterator[Metric]:
    period = f"over the last {PERIOD_DAYS} days"
    volume = GaugeMetricFamily(
        "saypro_report_conversations", f"Conversations with the users {period}", labels=["channel"]
    )
    tickets = GaugeMetricFamily("saypro_report_tickets", f"Tickets opened {period}", labels=["channel"])
    for channel, counts in report["volume"].items():
        volume.add_metric([channel], counts["conversations"])
        tickets.add_metric([channel], counts["tickets"])
    yield volume
    yield tickets
    waiting = GaugeMetricFamily(
        "saypro_desk_open_tickets", "Tickets waiting for or held by a person now", labels=["priority"]
    )
    for priority, count in sorted(open_tickets.items()):
        waiting.add_metric([priority], count)
    yield waiting
    for name, key, doc in (
        ("saypro_report_first_response_seconds", "first_response_seconds", "First agent reply after the handoff"),
        ("saypro_report_resolution_seconds", "resolution_seconds", "Handoff to resolution"),
    ):
        times = GaugeMetricFamily(name, f"{doc} {period}, by quantile", labels=["quantile"])
        for quantile, field in (("0.5", "median"), ("0.9", "p90")):
            if report[key][field] is not None:
                times.add_metric([quantile], report[key][field])
        yield times
    csat = report["csat"]
    for gauge in (
        _gauge(
            "saypro_report_bot_containment_ratio", f"Conversations without a person {period}", report["bot_containment"]
        ),
        _gauge(
            "saypro_report_first_contact_resolution_ratio",
            f"Tickets resolved without a reopen {period}",
            report["first_contact_resolution"],
        ),
        _gauge(
            "saypro_report_sla_breaches",
            f"Tickets that missed their first-response target {period}",
            report["sla_breaches"],
        ),
        _gauge("saypro_report_csat_satisfied_ratio", f"Share of ratings that are 4 or 5 {period}", csat["satisfied"]),
        _gauge("saypro_report_csat_mean", f"Mean rating (1 to 5) {period}", csat["mean"]),
        _gauge("saypro_report_csat_responses", f"Ratings given {period}", csat["responses"]),
    ):
        if gauge is not None:
            yield gauge


COLLECTOR = ReportCollector()
_registered: set[int] = set()


def bind(database: Database, registry: CollectorRegistry = REGISTRY) -> None:
    """Serve `database`'s figures on /metrics (registering the collector the first time)."""
    COLLECTOR.bind(database)
    if id(registry) not in _registered:
        registry.register(COLLECTOR)
        _registered.add(id(registry))
