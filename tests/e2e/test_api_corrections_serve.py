"""The scheduling system amends a synced flight over real HTTP; a running worker updates QBO."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from qbo_simulator import QboSimulator
from tests.e2e.test_api_serve import free_port, sim, spawn_serve, stop, wait_for
from tests.factories import amendment, flight
from tests.helpers_qbo import Cli, cli_env, connect_via_cli, map_via_cli, spawn_worker

pytestmark = pytest.mark.timeout(180)
SCHOOL = "sunrise"
__all__ = ["sim"]  # the simulator fixture, shared with test_api_serve


def test_amendment_posted_to_serve_reaches_quickbooks_through_a_running_worker(
    db_url: str, sim: QboSimulator, tmp_path: Path
) -> None:
    """POST flight, synced; POST its amendment; the worker left running updates the invoice."""
    cli = Cli(cli_env(sim, db_url, SCHOOL))
    connect_via_cli(cli)
    map_via_cli(cli, {"aircraft_rental": "1", "instructor_dual": "2"}, {"S-1": "1"})
    key = cli.ok(
        "keys", "create", "--name", "scheduler", "--permissions", "records:write,billing:view"
    )
    auth = {"Authorization": f"Bearer {key['key']}"}
    web = free_port()
    serve = spawn_serve(cli.env, web, tmp_path / "serve.log")
    worker = spawn_worker(cli.env, log_path=tmp_path / "worker.log")
    base = f"http://127.0.0.1:{web}"

    def row() -> dict[str, object]:
        answer: dict[str, object] = requests.get(
            f"{base}/api/v1/events/F-1", headers=auth, timeout=5
        ).json()
        return answer

    try:
        wait_for("serve", lambda: requests.get(f"{base}/healthz", timeout=2).ok, serve)
        posted = requests.post(
            f"{base}/api/v1/flights", json=flight("F-1", "S-1"), headers=auth, timeout=10
        )
        assert posted.status_code == 201, posted.text
        wait_for("F-1 to sync", lambda: row().get("status") == "synced", serve, worker)
        amended = requests.post(
            f"{base}/api/v1/flights/F-1/amendments",
            json=amendment("F-1", "1.0", "S-1"),
            headers=auth,
            timeout=10,
        )
        assert amended.status_code == 201, amended.text
        wait_for(
            "the amendment to reach QuickBooks",
            lambda: row().get("corrections_pending") == [] and row().get("qbo_amount") == "225.00",
            serve,
            worker,
        )
        invoices = sim.invoices()
        assert [(i["doc_number"], i["total"]) for i in invoices] == [("FL-F-1", "225.00")]
        assert invoices[0]["sync_token"] == "1"  # updated in place once
        again = requests.post(
            f"{base}/api/v1/flights/F-1/amendments",
            json=amendment("F-1", "1.0", "S-1"),
            headers=auth,
            timeout=10,
        )
        assert (again.status_code, again.json()["duplicate"]) == (200, True)
    finally:
        stop(worker)
        stop(serve)
