"""The support report's figures on /metrics as Prometheus gauges, computed from the database at each scrape.

The figures cover the last seven days, like `saypro-bot report`; open tickets are counted as
they are now. The collector is registered once per process and reads the database of the
services built last (one per process outside tests).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
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


class ReportCollector(Collector):
    """Yields the report's figures as gauges when Prometheus scrapes."""

    def __init__(self) -> None:
        self.database: Database | None = None

    def describe(self) -> list[Metric]:
        return []  # computed at scrape time: nothing to query when the collector is registered

    def collect(self) -> Iterator[Metric]:
        if self.database is None:
            return
        try:
            report = support_report(self.database, days=PERIOD_DAYS)
            open_tickets = self._open_tickets(self.database)
        except SQLAlchemyError as exc:
            log.warning("report metrics unavailable: %s", type(exc).__name__)
            return
        yield from _gauges(report, open_tickets)

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
    volume = GaugeMetricFamily("saypro_report_conversations", f"Conversations with the users {period}", labels=["channel"])
    tickets = GaugeMetricFamily("saypro_report_tickets", f"Tickets opened {period}", labels=["channel"])
    for channel, counts in report["volume"].items():
        volume.add_metric([channel], counts["conversations"])
        tickets.add_metric([channel], counts["tickets"])
    yield volume
    yield tickets
    waiting = GaugeMetricFamily("saypro_desk_open_tickets", "Tickets waiting for or held by a person now", labels=["priority"])
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
        _gauge("saypro_report_bot_containment_ratio", f"Conversations without a person {period}", report["bot_containment"]),
        _gauge("saypro_report_first_contact_resolution_ratio", f"Tickets resolved without a reopen {period}",
               report["first_contact_resolution"]),
        _gauge("saypro_report_sla_breaches", f"Tickets that missed their first-response target {period}", report["sla_breaches"]),
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
    COLLECTOR.database = database
    if id(registry) not in _registered:
        registry.register(COLLECTOR)
        _registered.add(id(registry))
