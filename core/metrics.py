"""Prometheus counters for what the core does, served by the web app at /metrics."""

from __future__ import annotations

from prometheus_client import Counter

MESSAGES_RECEIVED = Counter("saypro_messages_received_total", "Inbound messages stored", ["channel"])
DUPLICATES = Counter("saypro_inbound_duplicates_total", "Inbound deliveries already stored", ["channel"])
FAQ_DECISIONS = Counter("saypro_faq_decisions_total", "Matcher verdicts on user questions", ["decision"])
REPLIES_SENT = Counter("saypro_replies_sent_total", "Outbox rows delivered to a channel", ["channel"])
SEND_FAILURES = Counter("saypro_send_failures_total", "Failed sends by outcome", ["channel", "outcome"])
TICKETS_OPENED = Counter("saypro_tickets_opened_total", "Tickets opened for a person", ["priority"])
