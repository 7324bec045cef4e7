"""docs/ops/: the alert rules and the Grafana dashboard use only metrics flightledger exposes."""

from __future__ import annotations

import json
import re
from pathlib import Path

from adapters.metrics import exposition

OPS = Path(__file__).resolve().parents[2] / "docs" / "ops"
API_MD_NAMES = {
    "flightledger_financial_events",
    "flightledger_action_required",
    "flightledger_qbo_requests_total",
    "flightledger_qbo_request_seconds_bucket",
    "flightledger_qbo_throttled_total",
    "flightledger_refresh_token_days_left",
    "flightledger_projector_lag_events",
    "flightledger_flight_to_invoice_seconds_bucket",
    "flightledger_webhook_deliveries_total",
}


def exposed_names() -> set[str]:
    """Every sample name of this process's exposition plus the view gauges."""
    reading = {
        "events": {("s", "pending"): 1},
        "action_required": {("s", "missing_mapping"): 1},
        "days_left": {"s": 30.0},
        "lag": 0,
    }
    body, _ = exposition(lambda: reading)
    names: set[str] = set()
    for line in body.decode().splitlines():
        if line.startswith("# TYPE "):  # labelled series without samples yet still declare
            _, _, name, kind = line.split(" ")
            names.add(f"{name}_bucket" if kind == "histogram" else name)
        elif line and not line.startswith("#"):
            names.add(line.split("{")[0].split(" ")[0])
    return names


def test_every_api_md_metric_is_exposed() -> None:
    """API.md's metric names all appear in the exposition."""
    assert exposed_names() >= API_MD_NAMES


def test_alerts_and_dashboard_use_exposed_metrics() -> None:
    """Each flightledger_* name in alerts.yml and grafana-dashboard.json is exposed."""
    alerts = (OPS / "alerts.yml").read_text(encoding="utf-8")
    dashboard = json.loads((OPS / "grafana-dashboard.json").read_text(encoding="utf-8"))
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = set(re.findall(r"flightledger_[a-z_]+", alerts + " ".join(exprs)))
    assert used and used <= exposed_names()
    for alert in ("FlightledgerActionRequired", "FlightledgerRefreshTokenExpiresSoon"):
        assert alert in alerts
    assert "FlightledgerProjectorLag" in alerts and "< 14" in alerts


def test_alert_rules_are_prometheus_rule_groups_with_the_three_alerts() -> None:
    """alerts.yml parses as a rule file: groups of rules, each alert with an expression and a
    summary; "Action Required appeared", "refresh token within 14 days" and "projector lag"
    are there."""
    import yaml  # type: ignore[import-untyped]

    document = yaml.safe_load((OPS / "alerts.yml").read_text(encoding="utf-8"))
    rules = [rule for group in document["groups"] for rule in group["rules"]]
    assert all({"alert", "expr"} <= set(r) and r["annotations"]["summary"] for r in rules)
    names = {r["alert"]: r["expr"] for r in rules}
    assert "flightledger_action_required" in names["FlightledgerActionRequired"]
    assert "< 14" in names["FlightledgerRefreshTokenExpiresSoon"]
    assert "flightledger_projector_lag_events" in names["FlightledgerProjectorLag"]
