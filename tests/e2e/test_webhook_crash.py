"""The webhook end to end: a local receiver gets financial_event.action_required for an
unmapped charge code, verifies it with `standardwebhooks`, and still gets it after the serving
process was SIGKILLed between the event and the delivery."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import pytest
import requests
from standardwebhooks.webhooks import Webhook

from qbo_simulator import QboSimulator
from tests.e2e.test_api_serve import free_port, sim, spawn_serve, stop, wait_for
from tests.factories import flight
from tests.helpers_qbo import Cli, cli_env, connect_via_cli, map_via_cli
from tests.webhook_receiver import webhook_receiver

pytestmark = pytest.mark.timeout(180)
SCHOOL = "sunrise"
assert sim  # the simulator fixture, shared with test_api_serve


def test_action_required_webhook_survives_a_sigkill_of_serve(
    db_url: str, sim: QboSimulator, tmp_path: Path
) -> None:
    """Delivery due when serve is SIGKILLed is made by the next serve; signature verifies."""
    cli = Cli(cli_env(sim, db_url, SCHOOL))
    connect_via_cli(cli)
    map_via_cli(cli, {"aircraft_rental": "1", "instructor_dual": "2"}, {"S-1": "1"})
    key = cli.ok("keys", "create", "--name", "ops", "--permissions", "billing:admin,records:write")
    auth = {"Authorization": f"Bearer {key['key']}"}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with webhook_receiver() as receiver:
        receiver.hold = threading.Event()  # the first delivery is held open ...
        serve = spawn_serve(cli.env, port, tmp_path / "serve.log")
        try:
            wait_for("serve", lambda: requests.get(f"{base}/healthz", timeout=2).ok, serve)
            created = requests.post(
                f"{base}/api/v1/webhooks",
                json={"url": receiver.url, "events": ["financial_event.action_required"]},
                headers=auth,
                timeout=10,
            )
            assert created.status_code == 201, created.text
            hook = created.json()
            record = flight("F-1", "S-1")
            record["charges"].append({"code": "fuel_surcharge", "quantity": "1", "rate": "9.50"})
            posted = requests.post(f"{base}/api/v1/flights", json=record, headers=auth, timeout=10)
            assert posted.status_code == 201, posted.text
            cli.ok("worker", "--until-idle")  # Action Required: fuel_surcharge is unmapped
            wait_for("the delivery to reach the receiver", lambda: receiver.arrived >= 1, serve)
            serve.send_signal(signal.SIGKILL)  # ... and serve dies before it hears the answer
            serve.wait(timeout=10)
        finally:
            stop(serve)
        receiver.hold.set()
        receiver.hold = None
        restarted = spawn_serve(cli.env, port, tmp_path / "serve2.log")
        try:
            wait_for(
                "the delivery after the restart", lambda: len(receiver.received) >= 2, restarted
            )
            last = receiver.received[-1]
            message = Webhook(hook["secret"]).verify(last.body, last.headers)
            assert message["type"] == "financial_event.action_required"
            assert (message["data"]["reference"], message["data"]["reason_code"]) == (
                "F-1",
                "missing_mapping",
            )
            assert last.headers["webhook-id"] == receiver.received[0].headers["webhook-id"]

            def delivered() -> bool:
                rows = requests.get(
                    f"{base}/api/v1/webhooks/{hook['id']}/deliveries", headers=auth, timeout=5
                ).json()
                return bool(rows and rows[0]["state"] == "delivered")

            wait_for("the delivery recorded as delivered", delivered, restarted)
        finally:
            stop(restarted)
