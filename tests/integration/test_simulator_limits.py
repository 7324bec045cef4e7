"""QBO's per-realm limits as the simulator enforces them over HTTP."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import requests

from qbo_simulator import QboSimulator, SimulatorConfig

pytestmark = pytest.mark.timeout(60)


def _start(**kw: object) -> QboSimulator:
    return QboSimulator(SimulatorConfig(**kw)).start()  # type: ignore[arg-type]


@pytest.fixture
def slow_clock_sim() -> Iterator[QboSimulator]:
    # One QBO "minute" = 600 s, so one "second" = 10 s: every burst below fits in one window.
    sim = _start(minute_seconds=600.0)
    yield sim
    sim.stop()


def _session(sim: QboSimulator, realm: str | None = None) -> tuple[requests.Session, str]:
    tokens = sim.connect(realm)
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {tokens['access_token']}"
    session.headers["Accept"] = "application/json"
    return session, f"{sim.url}/v3/company/{tokens['realm']}"


def _codes(answers: list[requests.Response]) -> list[int]:
    return [a.status_code for a in answers]


def test_more_than_10_per_second_are_throttled_with_3001(slow_clock_sim: QboSimulator) -> None:
    """Within one scaled second the 11th and later requests get 429 code 3001."""
    session, base = _session(slow_clock_sim)
    answers = [session.get(f"{base}/item/1", timeout=5) for _ in range(15)]
    assert _codes(answers) == [200] * 10 + [429] * 5
    error = answers[-1].json()["Fault"]["Error"][0]
    assert error["code"] == "3001"
    assert error["Message"] == "message=ThrottleExceeded; errorCode=003001; statusCode=429"
    stats = slow_clock_sim.stats_snapshot()["realms"]["9130350000000001"]
    assert (stats["requests"], stats["throttled"]) == (10, 5)


def test_throttled_creates_are_not_performed(slow_clock_sim: QboSimulator) -> None:
    """Creates refused with 429 create no invoice."""
    session, base = _session(slow_clock_sim)
    line = {"Amount": 10, "DetailType": "SalesItemLineDetail",
            "SalesItemLineDetail": {"ItemRef": {"value": "1"}}}  # fmt: skip
    body = {"CustomerRef": {"value": "1"}, "Line": [line]}
    codes = [session.post(f"{base}/invoice", json=body, timeout=5).status_code for _ in range(12)]
    assert codes.count(429) == 2
    assert len(slow_clock_sim.invoices()) == 10


def test_more_than_500_per_minute_are_throttled() -> None:
    """Over 500 requests in one scaled minute the rest get 429 even under the per-second limit."""
    sim = _start(minute_seconds=600.0, requests_per_second=10_000)
    try:
        session, base = _session(sim)
        codes = _codes([session.get(f"{base}/term/1", timeout=5) for _ in range(505)])
        assert codes.count(200) == 500
        assert codes[500:] == [429] * 5
        assert sim.stats_snapshot()["realms"][sim.config.realm]["throttled_by"] == {"per_minute": 5}
    finally:
        sim.stop()


def test_eleven_concurrent_requests_give_one_429() -> None:
    """With 11 requests in flight at once exactly one is throttled for concurrency."""
    sim = _start(minute_seconds=600.0, requests_per_second=10_000)
    try:
        sim.set_faults(latency_seconds=0.6)
        tokens = sim.connect()
        url = f"{sim.url}/v3/company/{tokens['realm']}/item/1"
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        barrier = threading.Barrier(11)
        codes: list[int] = []
        lock = threading.Lock()

        def call() -> None:
            barrier.wait(timeout=5)
            status = requests.get(url, headers=headers, timeout=10).status_code
            with lock:
                codes.append(status)

        threads = [threading.Thread(target=call) for _ in range(11)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=15)
        assert sorted(codes) == [200] * 10 + [429]
        assert sim.stats_snapshot()["realms"][sim.config.realm]["throttled_by"] == {"concurrent": 1}
    finally:
        sim.stop()


def test_more_than_40_batches_per_minute_are_throttled() -> None:
    """The 41st batch request within a scaled minute gets 429 3001."""
    sim = _start(minute_seconds=600.0, requests_per_second=10_000)
    try:
        session, base = _session(sim)
        batch = {"BatchItemRequest": [{"bId": "q", "Query": "SELECT * FROM Term"}]}
        answers = [session.post(f"{base}/batch", json=batch, timeout=5) for _ in range(41)]
        assert _codes(answers) == [200] * 40 + [429]
        assert answers[0].json()["BatchItemResponse"][0]["QueryResponse"]["Term"]
        assert session.get(f"{base}/term/1", timeout=5).status_code == 200
    finally:
        sim.stop()


def test_limits_are_per_realm(slow_clock_sim: QboSimulator) -> None:
    """A throttled realm does not throttle another realm."""
    other = slow_clock_sim.add_company()
    first, first_base = _session(slow_clock_sim)
    second, second_base = _session(slow_clock_sim, other)
    assert _codes([first.get(f"{first_base}/item/1", timeout=5) for _ in range(11)])[-1] == 429
    assert second.get(f"{second_base}/item/1", timeout=5).status_code == 200


def test_xml_throttle_switch_answers_xml(slow_clock_sim: QboSimulator) -> None:
    """With xml_throttle on, a real 429 comes back as XML."""
    slow_clock_sim.set_faults(xml_throttle=True)
    session, base = _session(slow_clock_sim)
    answers = [session.get(f"{base}/item/1", timeout=5) for _ in range(11)]
    assert answers[-1].status_code == 429
    assert answers[-1].headers["Content-Type"].startswith("application/xml")
    assert '<Error code="3001">' in answers[-1].text


def test_a_short_minute_readmits_after_the_window() -> None:
    """With minute_seconds=1.2 the per-minute window reopens after 1.2 real seconds."""
    sim = _start(minute_seconds=1.2, requests_per_minute=3, requests_per_second=10_000)
    try:
        session, base = _session(sim)
        assert _codes([session.get(f"{base}/item/1", timeout=5) for _ in range(4)])[-1] == 429
        threading.Event().wait(1.3)
        assert session.get(f"{base}/item/1", timeout=5).status_code == 200
    finally:
        sim.stop()
