"""Fault injection, idempotent replay after uncertain outcomes, controls and many realms."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from qbo_simulator import QboSimulator, SimulatorConfig
from qbo_simulator.company import Company

pytestmark = pytest.mark.timeout(60)
LINE = {"Amount": 50, "DetailType": "SalesItemLineDetail",
        "SalesItemLineDetail": {"ItemRef": {"value": "2"}}}  # fmt: skip


@pytest.fixture
def sim() -> Iterator[QboSimulator]:
    with QboSimulator(SimulatorConfig(fault_seed=7)) as simulator:
        yield simulator


def _create(
    sim: QboSimulator, tokens: dict[str, Any], request_id: str, timeout: float = 5, **body: Any
) -> requests.Response:
    payload = {"CustomerRef": {"value": "3"}, "Line": [LINE], **body}
    return requests.post(
        f"{sim.url}/v3/company/{tokens['realm']}/invoice",
        params={"requestid": request_id, "minorversion": "75"},
        json=payload,
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
        timeout=timeout,
    )


def test_timeout_after_commit_then_replay_returns_the_original(sim: QboSimulator) -> None:
    """A create that timed out after it was performed is returned, not repeated, on replay."""
    tokens = sim.connect()
    sim.set_faults(timeout_rate=1.0, timeout_seconds=1.0, fault_after_commit=True)
    with pytest.raises(requests.exceptions.ReadTimeout):
        _create(sim, tokens, "evt-9", timeout=0.3)
    assert len(sim.invoices()) == 1
    sim.set_faults(timeout_rate=0.0)
    replay = _create(sim, tokens, "evt-9")
    assert replay.status_code == 200
    assert replay.json()["Invoice"]["Id"] == sim.invoices()[0]["id"]
    assert len(sim.invoices()) == 1


def test_timeout_before_commit_performs_nothing(sim: QboSimulator) -> None:
    """A timeout injected without commit leaves no invoice; the retry creates it once."""
    tokens = sim.connect()
    sim.set_faults(timeout_rate=1.0, timeout_seconds=0.5, fault_after_commit=False)
    with pytest.raises(requests.exceptions.ReadTimeout):
        _create(sim, tokens, "evt-10", timeout=0.2)
    assert sim.invoices() == []
    sim.set_faults(timeout_rate=0.0)
    assert _create(sim, tokens, "evt-10").status_code == 200
    assert len(sim.invoices()) == 1


@pytest.mark.parametrize(("drop", "invoices"), [(1.0, 0), (0.0, 1)])
def test_client_gone_during_latency(sim: QboSimulator, drop: float, invoices: int) -> None:
    """A create whose client hung up is dropped (drop_if_client_gone=1) or still performed."""
    tokens = sim.connect()
    sim.set_faults(latency_seconds=0.6, drop_if_client_gone=drop)
    with pytest.raises(requests.exceptions.ReadTimeout):  # the client gives up and closes
        _create(sim, tokens, f"evt-gone-{drop}", timeout=0.2)
    deadline = time.monotonic() + 10  # until the simulator has decided, however slow the host
    while time.monotonic() < deadline and not (
        sim.invoices() or _realm_stats(sim, tokens)["dropped"]
    ):
        time.sleep(0.05)
    assert len(sim.invoices()) == invoices
    assert _realm_stats(sim, tokens)["dropped"] == 1 - invoices


def _realm_stats(sim: QboSimulator, tokens: dict[str, Any]) -> dict[str, Any]:
    realms: dict[str, dict[str, Any]] = sim.stats_snapshot()["realms"]
    return realms.get(tokens["realm"], {"requests": 0, "dropped": 0})


def test_connection_reset(sim: QboSimulator) -> None:
    """reset_rate=1 closes the connection with a reset; without commit nothing is created."""
    tokens = sim.connect()
    sim.set_faults(reset_rate=1.0, fault_after_commit=0.0)
    with pytest.raises(requests.exceptions.ConnectionError):
        _create(sim, tokens, "evt-11")
    assert sim.invoices() == []


def test_fault_rate_html_errors_are_seeded() -> None:
    """The same fault_seed yields the same sequence of 500/503 HTML answers."""
    sequences = []
    for _ in range(2):
        with QboSimulator(SimulatorConfig(fault_rate=0.5, fault_seed=42)) as sim:
            tokens = sim.connect()
            codes = [_create(sim, tokens, f"r{n}").status_code for n in range(20)]
            sequences.append(codes)
    assert sequences[0] == sequences[1]
    assert {500, 503} & set(sequences[0])
    assert 200 in sequences[0]


def test_error_after_commit_with_force_error(sim: QboSimulator) -> None:
    """A forced 10000 SystemFault with commit=true still stores the invoice."""
    tokens = sim.connect()
    sim.set_faults(force_error={"preset": "system_10000", "commit": True})
    failed = _create(sim, tokens, "evt-12")
    assert failed.status_code == 500
    assert failed.json()["Fault"]["type"] == "SystemFault"
    assert len(sim.invoices()) == 1
    assert _create(sim, tokens, "evt-12").json()["Invoice"]["Id"] == sim.invoices()[0]["id"]


def test_failed_answers_are_not_replayed(sim: QboSimulator) -> None:
    """A requestid whose first answer was a validation fault may succeed once data is fixed."""
    tokens = sim.connect()
    sim.set_active("Customer", "3", False)
    assert _create(sim, tokens, "evt-13").json()["Fault"]["Error"][0]["code"] == "610"
    requests.post(f"{sim.url}/_sim/entity", json={"entity": "Customer", "id": "3",
                  "active": True}, timeout=5)  # fmt: skip
    assert _create(sim, tokens, "evt-13").status_code == 200


def test_deleted_customer_is_2500(sim: QboSimulator) -> None:
    """A deleted customer answers 2500 with element CustomerRef."""
    tokens = sim.connect()
    requests.post(f"{sim.url}/_sim/entity", json={"entity": "Customer", "id": "3",
                  "deleted": True}, timeout=5)  # fmt: skip
    error = _create(sim, tokens, "evt-14").json()["Fault"]["Error"][0]
    assert (error["code"], error["element"]) == ("2500", "CustomerRef")


def test_reset_and_stats_over_http(sim: QboSimulator) -> None:
    """POST /_sim/reset empties invoices and faults and keeps tokens; stats count requests."""
    tokens = sim.connect()
    _create(sim, tokens, "evt-15")
    stats = requests.get(f"{sim.url}/_sim/stats", timeout=5).json()
    assert stats["realms"][tokens["realm"]]["requests"] == 1
    requests.post(f"{sim.url}/_sim/faults", json={"fault_rate": 1.0}, timeout=5)
    assert requests.post(f"{sim.url}/_sim/reset", timeout=5).json() == {"ok": True}
    assert requests.get(f"{sim.url}/_sim/invoices", timeout=5).json() == []
    assert requests.get(f"{sim.url}/_sim/faults", timeout=5).json()["fault_rate"] == 0.0
    assert _create(sim, tokens, "evt-15").status_code == 200


def test_unknown_fault_setting_is_400(sim: QboSimulator) -> None:
    """POST /_sim/faults refuses unknown names."""
    answer = requests.post(f"{sim.url}/_sim/faults", json={"nope": 1}, timeout=5)
    assert answer.status_code == 400


def test_twenty_schools_get_twenty_realms() -> None:
    """With one_realm_per_connection, 20 connections get 20 realms with their own data."""
    with QboSimulator(SimulatorConfig(one_realm_per_connection=True)) as sim:
        connections = [sim.connect() for _ in range(20)]
        realms = {c["realm"] for c in connections}
        assert len(realms) == 20
        for n, tokens in enumerate(connections):
            assert _create(sim, tokens, "same-id", DocNumber="FL-1").status_code == 200, n
        assert len(sim.invoices()) == 20
        assert {i["realm"] for i in sim.invoices()} == realms
        assert len(sim.invoices(connections[5]["realm"])) == 1


def _caught_signals(pid: int) -> set[signal.Signals]:
    """The signals the process has handlers for (Linux /proc SigCgt); all on other systems."""
    status = Path(f"/proc/{pid}/status")
    if not status.exists():
        return set(signal.Signals)
    mask = next(
        int(line.split()[1], 16)
        for line in status.read_text().splitlines()
        if line.startswith("SigCgt:")
    )
    return {sig for sig in signal.Signals if mask >> (sig - 1) & 1}


@pytest.mark.parametrize(
    ("stop_signal", "sigint_ignored"),
    [(signal.SIGINT, False), (signal.SIGINT, True), (signal.SIGTERM, False)],
    ids=["ctrl-c", "ctrl-c-started-ignoring-it", "sigterm"],
)
def test_cli_prints_its_url_and_stops_on_ctrl_c(
    stop_signal: signal.Signals, sigint_ignored: bool
) -> None:
    """`flightledger simulator --port 0` prints its base URL, serves, and exits 0 on SIGINT
    (also when its parent started it with SIGINT ignored, as a script's background job is)
    and on SIGTERM."""
    script = Path(sys.executable).parent / "flightledger"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "workers.cli"]

    def ignore_sigint() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    process = subprocess.Popen(
        [*command, "simulator", "--port", "0", "--company", "Blue Sky Aviation"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        preexec_fn=ignore_sigint if sigint_ignored else None,  # noqa: PLW1509 (no threads here)
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        # Once the URL is out a signal must stop it: its handlers are in before the print
        # (CI once sent SIGINT while a started-ignoring-it simulator still ignored it).
        assert _caught_signals(process.pid) >= {signal.SIGINT, signal.SIGTERM}
        doc = requests.get(f"{url}/.well-known/openid_configuration", timeout=5).json()
        assert doc["token_endpoint"] == f"{url}/oauth2/v1/tokens/bearer"
        process.send_signal(stop_signal)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)


def test_a_repeat_sent_while_the_first_is_performed_is_replayed_not_performed(
    sim: QboSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two POSTs with one requestid at the same moment (a client that gave up and retried
    while QuickBooks still worked on the first), each create taking 0.3 s inside the company:
    one invoice, the same answer to both, the second a replay."""
    slow_create = Company.create

    def create(self: Company, entity: str, data: Any, request_id: str | None) -> Any:
        time.sleep(0.3)  # QuickBooks still working on it when the repeat arrives
        return slow_create(self, entity, data, request_id)

    monkeypatch.setattr(Company, "create", create)
    tokens = sim.connect()
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: _create(sim, tokens, "evt-both"), range(2)))
    assert [a.status_code for a in answers] == [200, 200]
    assert answers[0].json()["Invoice"]["Id"] == answers[1].json()["Invoice"]["Id"]
    assert len(sim.invoices()) == 1
    assert sim.stats_snapshot()["realms"][tokens["realm"]]["replays"] == 1
