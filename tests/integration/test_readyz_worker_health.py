"""/readyz and the dashboard report a worker whose every pass fails (issue 9), on both backends."""

from __future__ import annotations

from fastapi.testclient import TestClient

from adapters.api.app import ApiConfig, install_api
from adapters.heartbeat import open_heartbeat
from adapters.persistence import parse_database_url
from adapters.views import open_view
from adapters.web.app import create_app
from adapters.web.auth import local_operator
from domain.application import FlightLedger
from domain.ports import FixedClock
from workers.projector import Projector
from workers.selection import checklist, checklist_rows, worker_unhealthy


def test_readyz_is_503_with_the_workers_error_until_a_healthy_beat(
    ledger: FlightLedger, db_url: str, clock: FixedClock
) -> None:
    """A latest heartbeat "unhealthy: <error>" makes /readyz 503 with it; the home page shows it."""
    db = parse_database_url(db_url)
    view = open_view(db_url)
    projector = Projector(ledger, view)
    app = create_app(
        ledger=ledger,
        view=view,
        refresh_view=projector.catch_up,
        session_key=b"k" * 32,
        local_user=local_operator("alpha"),
        checklist=lambda school: checklist_rows(checklist(ledger, view, db, school)),
    )
    install_api(
        app,
        ApiConfig(
            ledger=ledger,
            view=view,
            refresh_view=projector.catch_up,
            worker_unhealthy=lambda: worker_unhealthy(db),
        ),
    )
    beats = open_heartbeat(db)
    try:
        with TestClient(app, follow_redirects=False) as client:
            assert client.get("/readyz").status_code == 200  # no worker yet: not the API's fault
            beats.beat("w1", clock.now(), "unhealthy: OSError: [Errno 28] No space left on device")
            answer = client.get("/readyz")
            assert answer.status_code == 503
            body = answer.json()
            assert body["error"]["code"] == "not_ready"
            assert "No space left on device" in body["error"]["message"]
            assert "unhealthy" in body["error"]["message"]
            home = client.get("/")
            assert home.status_code == 200
            assert "No space left on device" in home.text
            beats.beat("w1", clock.now(), "healthy")
            assert client.get("/readyz").json()["ok"] is True
    finally:
        view.close()
