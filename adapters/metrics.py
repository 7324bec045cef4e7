"""Prometheus metrics (API.md names), with prometheus-client.

Counters and histograms count in the process that did the work (a worker's QuickBooks calls, a
server's requests); each process exposes its own (`serve` at /metrics, `worker --metrics-port`).
Gauges are read from the view and the log at scrape time (`ViewCollector`), so they are right
however many workers share the database.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import REGISTRY, Collector

QBO_REQUESTS = Counter(
    "flightledger_qbo_requests", "QuickBooks API requests by outcome", ["outcome"]
)
QBO_REQUEST_SECONDS = Histogram(
    "flightledger_qbo_request_seconds",
    "Duration of QuickBooks API requests",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
QBO_THROTTLED = Counter("flightledger_qbo_throttled", "QuickBooks answers that said slow down")
FLIGHT_TO_INVOICE_SECONDS = Histogram(
    "flightledger_flight_to_invoice_seconds",
    "From a flight (or invoice request) recorded to its invoice in QuickBooks",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
)
WEBHOOK_DELIVERIES = Counter(
    "flightledger_webhook_deliveries", "Webhook delivery attempts by outcome", ["outcome"]
)
HTTP_REQUESTS = Counter(
    "flightledger_http_requests", "API requests by route and status", ["route", "status"]
)
HTTP_REQUEST_SECONDS = Histogram(
    "flightledger_http_request_seconds",
    "Duration of API requests",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)


def qbo_request(outcome: str, seconds: float, *, throttled: bool = False) -> None:
    """Count one QuickBooks request."""
    QBO_REQUESTS.labels(outcome=outcome).inc()
    QBO_REQUEST_SECONDS.observe(seconds)
    if throttled:
        QBO_THROTTLED.inc()


def invoice_synced(recorded_at: datetime, now: datetime) -> None:
    """Observe the flight-to-invoice latency of one synced invoice."""
    FLIGHT_TO_INVOICE_SECONDS.observe(max(0.0, (now - recorded_at).total_seconds()))


class ViewCollector(Collector):
    """Gauges read at scrape time: events per status, Action Required per reason, refresh-token
    days left per school, projector lag. `read` returns the values (from the view and the log)."""

    def __init__(self, read: Callable[[], dict[str, Any]]) -> None:
        self.read = read

    def describe(self) -> Iterable[Metric]:
        """No samples at registration (reading needs the database)."""
        return []

    def collect(self) -> Iterator[Metric]:
        """One reading of the view and the log."""
        events = GaugeMetricFamily(
            "flightledger_financial_events",
            "Financial events by status",
            labels=["school", "status"],
        )
        action = GaugeMetricFamily(
            "flightledger_action_required",
            "Action Required events by reason code",
            labels=["school", "reason_code"],
        )
        days = GaugeMetricFamily(
            "flightledger_refresh_token_days_left",
            "Days until the QuickBooks refresh token expires",
            labels=["school"],
        )
        lag = GaugeMetricFamily(
            "flightledger_projector_lag_events", "Log events not yet in the view"
        )
        try:
            reading = self.read()
        except Exception:  # a scrape never fails because the database blinked
            reading = {}
        for (school, status), n in sorted(reading.get("events", {}).items()):
            events.add_metric([school, status], n)
        for (school, reason), n in sorted(reading.get("action_required", {}).items()):
            action.add_metric([school, reason], n)
        for school, left in sorted(reading.get("days_left", {}).items()):
            days.add_metric([school], left)
        if "lag" in reading:
            lag.add_metric([], reading["lag"])
        yield from (events, action, days, lag)


def view_reading(ledger: Any, view: Any) -> Callable[[], dict[str, Any]]:
    """The gauge values from the view (counts, reasons) and the log (connections, head)."""

    def read() -> dict[str, Any]:
        now = ledger.clock.now()
        events: dict[tuple[str, str], int] = {}
        action: dict[tuple[str, str], int] = {}
        days: dict[str, float] = {}
        for school in view.schools():
            for status, n in view.counts(school).items():
                events[(school, str(status))] = n
            for reason, n in view.reason_counts(school).items():
                action[(school, reason)] = n
            expiry = ledger.connection(school).effective_refresh_expiry()
            if expiry is not None:
                days[school] = round((expiry - now).total_seconds() / 86400, 2)
        head = int(ledger.recorder.max_notification_id() or 0)
        lag = max(0, head - view.max_tracking_id())
        return {"events": events, "action_required": action, "days_left": days, "lag": lag}

    return read


def exposition(read: Callable[[], dict[str, Any]] | None = None) -> tuple[bytes, str]:
    """The process's counters and histograms, plus the view gauges when `read` is given."""
    body = generate_latest(REGISTRY)
    if read is not None:
        gauges = CollectorRegistry(auto_describe=False)
        gauges.register(ViewCollector(read))
        body += generate_latest(gauges)
    return body, CONTENT_TYPE_LATEST


def serve_metrics(
    port: int, read: Callable[[], dict[str, Any]] | None = None, host: str = "127.0.0.1"
) -> Any:
    """Expose this process's metrics (and the view gauges) on host:port in a daemon thread:
    a worker's --metrics-port. Returns the server (call shutdown() to stop it)."""
    from prometheus_client import start_http_server

    if read is not None:
        REGISTRY.register(ViewCollector(read))
    server, _thread = start_http_server(port, addr=host)
    return server
