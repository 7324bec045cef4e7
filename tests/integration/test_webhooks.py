"""Webhooks on SQLite and PostgreSQL: subscribe over the API, deliver from the log, signed as
Standard Webhooks (verified with the `standardwebhooks` package), retried, in order, every
attempt readable, unsafe receivers refused."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from standardwebhooks.webhooks import Webhook

from adapters.persistence import parse_database_url
from adapters.vault import TokenVault
from adapters.webhooks import UnsafeReceiver, WebhookDeliverer, check_receiver
from domain.application import FlightLedger
from domain.ports import FixedClock
from domain.webhooks import OUTBOX_ID
from services.push_pass import SyncEngine
from tests.api_support import api_app, bearer, new_key
from tests.factories import flight
from tests.fakes import FakeAccountingGateway, FakeFinancialEventView, connect, map_everything
from tests.helpers_qbo import new_secret_key
from tests.webhook_receiver import Receiver, webhook_receiver
from workers.bootstrap import open_ledger
from workers.qbo import open_vault


@pytest.fixture
def vault(db_url: str) -> TokenVault:
    """The encrypted vault beside the log (where webhook secrets live)."""
    return open_vault(
        parse_database_url(db_url), {"FLIGHTLEDGER_SECRET_KEY": new_secret_key()}, True
    )


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A loopback receiver."""
    with webhook_receiver() as state:
        yield state


class Clock:
    """Real-looking time the test moves."""

    def __init__(self) -> None:
        self.at = datetime.now(UTC)  # receivers check the signed timestamp against real time

    def __call__(self) -> datetime:
        return self.at


def subscribe(ledger: FlightLedger, db_url: str, vault: TokenVault, url: str) -> tuple[Any, Any]:
    """Subscribe `url` to Action Required over the API; returns (answer json, client app)."""
    app, view = api_app(ledger, db_url, webhook_secrets=vault)
    admin = bearer(new_key(ledger, "alpha", ["billing:admin"]))
    with TestClient(app) as client:
        answer = client.post(
            "/api/v1/webhooks",
            json={"url": url, "events": ["financial_event.action_required"]},
            headers=admin,
        )
        assert answer.status_code == 201, answer.text
    view.close()
    return answer.json(), (app, admin)


def unmapped_flight(ledger: FlightLedger, flight_id: str) -> None:
    """A flight whose charge code fuel_surcharge is not mapped: Action Required after a pass."""
    record = flight(flight_id)
    record["charges"].append({"code": "fuel_surcharge", "quantity": "1", "rate": "10.00"})
    from domain.records import parse_flight_ended

    ledger.record("alpha", parse_flight_ended(record), actor="scheduler")
    SyncEngine(
        ledger,
        FakeFinancialEventView(ledger),
        lambda s: FakeAccountingGateway(),
        rng=random.Random(1),
    ).run_pass("alpha")


def test_action_required_is_delivered_signed_retried_and_readable(
    ledger: FlightLedger, db_url: str, vault: TokenVault, receiver: Receiver
) -> None:
    """The receiver gets financial_event.action_required, verifiable with standardwebhooks;
    a 500 is retried after backoff with the same webhook-id; attempts are listed."""
    connect(ledger, "alpha")
    map_everything(ledger, "alpha")
    created, (app, admin) = subscribe(ledger, db_url, vault, receiver.url)
    assert created["secret"].startswith("whsec_")
    receiver.answers = [500]
    clock = Clock()
    deliverer = WebhookDeliverer(ledger, vault, now=clock)
    unmapped_flight(ledger, "F-1")
    assert deliverer.run_once() == 1
    assert deliverer.run_once() == 0  # not due yet: backoff
    clock.at += timedelta(seconds=6)
    assert deliverer.run_once() == 1
    first, second = receiver.received
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    message = Webhook(created["secret"]).verify(second.body, second.headers)
    assert message["type"] == "financial_event.action_required"
    assert message["data"]["reference"] == "F-1"
    assert message["data"]["reason_code"] == "missing_mapping"
    assert "fuel_surcharge" in message["data"]["fix"] or "fuel_surcharge" in json.dumps(message)
    with pytest.raises(Exception):  # a wrong secret does not verify
        Webhook("whsec_" + "A" * 32).verify(second.body, second.headers)
    with TestClient(app) as client:
        (delivery,) = client.get(
            f"/api/v1/webhooks/{created['id']}/deliveries", headers=admin
        ).json()
        assert delivery["state"] == "delivered"
        assert [a["status_code"] for a in delivery["attempts"]] == [500, 200]
        listed = client.get("/api/v1/webhooks", headers=admin).json()
        assert [w["id"] for w in listed] == [created["id"]] and "secret" not in listed[0]
        other = bearer(new_key(ledger, "beta", ["billing:admin"]))
        assert (
            client.get(f"/api/v1/webhooks/{created['id']}/deliveries", headers=other).status_code
            == 404
        )
        assert client.delete(f"/api/v1/webhooks/{created['id']}", headers=admin).json() == {
            "ok": True
        }
    unmapped_flight(ledger, "F-2")
    assert deliverer.run_once() == 0  # deleted: nothing more is sent
    assert len(receiver.received) == 2


def test_deliveries_of_one_event_wait_for_the_earlier_one(
    ledger: FlightLedger, db_url: str, vault: TokenVault, receiver: Receiver
) -> None:
    """While the first message of an event keeps failing, its next one is not sent."""
    connect(ledger, "alpha")
    map_everything(ledger, "alpha")
    subscribe(ledger, db_url, vault, receiver.url)
    clock = Clock()
    deliverer = WebhookDeliverer(ledger, vault, now=clock)
    receiver.answers = [503]
    unmapped_flight(ledger, "F-1")
    deliverer.run_once()
    event = ledger.find("alpha", "F-1")
    event.request_retry(operator="t", scope="ids:F-1", at=ledger.clock.now())
    ledger.save(event)
    unmapped_flight(ledger, "F-1")  # a second Action Required for the same event
    assert deliverer.run_once() == 0
    clock.at += timedelta(seconds=6)
    assert deliverer.run_once() == 1  # only the first, again
    assert deliverer.run_once() == 1  # then the second
    ids = [r.headers["webhook-id"] for r in receiver.received]
    assert ids[0] == ids[1] != ids[2]


def test_unsafe_receivers_are_refused(ledger: FlightLedger, db_url: str, vault: TokenVault) -> None:
    """http off loopback, private addresses and credentials in the URL are refused (422)."""
    for url in ("http://example.com/x", "https://10.0.0.5/x", "https://u:p@example.com/x"):
        with pytest.raises(UnsafeReceiver):
            check_receiver(url)
    assert check_receiver("https://10.0.0.5/x", allow_private=True)
    assert check_receiver("http://127.0.0.1:9/x")
    app, view = api_app(ledger, db_url, webhook_secrets=vault)
    admin = bearer(new_key(ledger, "alpha", ["billing:admin"]))
    with TestClient(app) as client:
        refused = client.post(
            "/api/v1/webhooks",
            json={"url": "https://192.168.1.20/hook", "events": ["financial_event.synced"]},
            headers=admin,
        )
        assert refused.status_code == 422 and refused.json()["error"]["fields"][0]["field"] == "url"
        bad_type = client.post(
            "/api/v1/webhooks",
            json={"url": "http://127.0.0.1:9/x", "events": ["flight.landed"]},
            headers=admin,
        )
        assert bad_type.status_code == 422
    view.close()


def test_an_idle_deliverer_reads_only_the_logs_last_position(
    ledger: FlightLedger, db_url: str, vault: TokenVault, receiver: Receiver
) -> None:
    """tick() runs a round (the outbox read from the log) only when the log moved or a delivery
    is due: idle ticks read the log's last position and nothing else; a failed delivery's
    retry still goes out once its time comes, and nothing new is missed."""
    connect(ledger, "alpha")
    map_everything(ledger, "alpha")
    subscribe(ledger, db_url, vault, receiver.url)
    clock = Clock()
    deliverer = WebhookDeliverer(ledger, vault, now=clock)
    deliverer.tick()  # the outbox's first save moves the log ...
    deliverer.tick()  # ... which one more round reads (its own events: nothing is saved)
    rounds = deliverer.rounds
    for _ in range(3):
        assert deliverer.tick() == 0
    assert deliverer.rounds == rounds  # idle: no round
    receiver.answers = [500]
    unmapped_flight(ledger, "F-1")
    assert deliverer.tick() == 1  # the log moved: delivered (and answered 500)
    deliverer.tick()  # its own attempt moved the log once more: a round that sends nothing
    rounds = deliverer.rounds
    assert deliverer.tick() == 0 and deliverer.rounds == rounds  # the retry is not due yet
    clock.at += timedelta(seconds=6)
    assert deliverer.tick() == 1  # due: the retry goes out without any new log event
    first, retry = receiver.received
    assert first.headers["webhook-id"] == retry.headers["webhook-id"]


def test_serve_s_deliverer_is_woken_by_notify_on_postgres(
    pg_url: str, clock: FixedClock, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the fallback round an hour away, a new Action Required still reaches the receiver:
    the LISTEN connection's NOTIFY wakes the deliverer thread (PostgreSQL)."""
    import time

    import adapters.webhooks as webhooks
    from adapters.views import open_view

    monkeypatch.setattr(webhooks, "FALLBACK_SECONDS", 3600.0)
    ledger = open_ledger(pg_url, clock=clock)
    view = open_view(pg_url)
    store = open_vault(
        parse_database_url(pg_url), {"FLIGHTLEDGER_SECRET_KEY": new_secret_key()}, True
    )
    deliverer = WebhookDeliverer(
        ledger, store, listen=lambda: view.listen(str(getattr(ledger.recorder, "channel_name", "")))
    )
    try:
        connect(ledger, "alpha")
        map_everything(ledger, "alpha")
        subscribe(ledger, pg_url, store, receiver.url)
        deliverer.start(interval=3600.0)  # a poll would come too late as well
        deadline = time.monotonic() + 30
        while deliverer.rounds == 0 and time.monotonic() < deadline:
            time.sleep(0.05)  # the first round has run: it now waits for a NOTIFY
        time.sleep(0.5)
        unmapped_flight(ledger, "F-1")
        deadline = time.monotonic() + 60
        while not receiver.received and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(receiver.received) == 1
        assert json.loads(receiver.received[0].body)["data"]["reference"] == "F-1"
    finally:
        deliverer.stop()
        view.close()
        ledger.close()


def test_what_happened_before_a_subscription_is_not_delivered_to_it(
    ledger: FlightLedger, db_url: str, vault: TokenVault, receiver: Receiver, clock: FixedClock
) -> None:
    """A page of the log that calls for no delivery moves the cursor in memory only; a new
    deliverer (a restart) rereads it, and still sends a later subscription nothing from before
    it was made, only what came after."""
    connect(ledger, "alpha")
    map_everything(ledger, "alpha")
    first = WebhookDeliverer(ledger, vault)
    first.run_once()  # the outbox exists, its cursor saved
    saved: int = ledger.repository.get(OUTBOX_ID).version
    unmapped_flight(ledger, "F-1")  # nobody subscribed yet
    assert first.run_once() == 0
    assert ledger.repository.get(OUTBOX_ID).version == saved  # the cursor moved in memory
    clock.advance(60)
    subscribe(ledger, db_url, vault, receiver.url)
    restarted = WebhookDeliverer(ledger, vault)
    assert restarted.run_once() == 0  # F-1's Action Required came before the subscription
    clock.advance(1)
    unmapped_flight(ledger, "F-2")
    assert restarted.run_once() == 1
    (got,) = receiver.received
    assert json.loads(got.body)["data"]["reference"] == "F-2"


def test_with_no_subscription_nothing_is_decoded_and_a_later_one_is_still_served(
    ledger: FlightLedger, db_url: str, vault: TokenVault, receiver: Receiver, clock: FixedClock
) -> None:
    """While no school subscribes, the log's Action Required events are not even read whole;
    a subscription made while the same deliverer runs (no restart) gets what comes after it,
    nothing from before; once it is deleted nothing is read whole again."""
    connect(ledger, "alpha")
    map_everything(ledger, "alpha")
    deliverer = WebhookDeliverer(ledger, vault)
    deliverer.run_once()
    unmapped_flight(ledger, "F-1")  # nobody subscribed
    assert deliverer.run_once() == 0
    assert deliverer.decoded == 0
    clock.advance(60)
    created, (app, admin) = subscribe(ledger, db_url, vault, receiver.url)
    clock.advance(1)
    unmapped_flight(ledger, "F-2")
    assert deliverer.run_once() == 1
    (got,) = receiver.received
    assert json.loads(got.body)["data"]["reference"] == "F-2"
    decoded = deliverer.decoded
    assert decoded >= 1
    with TestClient(app) as client:
        assert client.delete(f"/api/v1/webhooks/{created['id']}", headers=admin).status_code == 200
    deliverer.run_once()  # reads the deletion
    unmapped_flight(ledger, "F-3")
    assert deliverer.run_once() == 0
    assert deliverer.decoded == decoded and len(receiver.received) == 1
