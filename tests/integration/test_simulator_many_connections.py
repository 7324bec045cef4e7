"""The simulator with many connections open: every socket past file descriptor 1023 still works.

500 schools and two workers keep about a thousand keep-alive connections to the simulator (one
HTTP session per realm per worker). Its check whether a client hung up used select(), which
raises ValueError for a descriptor above FD_SETSIZE (1024): every request on such a connection
was answered HTTP 500 "simulator failure" (the 500-school bench: ~3,900 creates refused, 242
realms' circuit breakers open).
"""

from __future__ import annotations

import os
import resource
import socket
import time
from collections.abc import Iterator

import pytest
import requests

from qbo_simulator import QboSimulator, SimulatorConfig

pytestmark = pytest.mark.timeout(60)
FD_SETSIZE = 1024


@pytest.fixture
def high_descriptors() -> Iterator[None]:
    """Descriptors 0..FD_SETSIZE+ taken in this process, so the next sockets get higher ones."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = FD_SETSIZE + 200
    if soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            pytest.fail(f"RLIMIT_NOFILE hard limit {hard} is below {wanted}: cannot test")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    taken: list[int] = []
    try:
        while True:
            fd = os.open(os.devnull, os.O_RDONLY)
            taken.append(fd)
            if fd > FD_SETSIZE + 10:
                break
        yield
    finally:
        for fd in taken:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_requests_on_descriptors_above_fd_setsize_are_answered(high_descriptors: None) -> None:
    with QboSimulator(SimulatorConfig()) as sim:
        sim.set_faults(latency_seconds=0.05, drop_if_client_gone=1.0)
        tokens = sim.connect()
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        url = f"{sim.api_base}/company/{tokens['realm']}/companyinfo/{tokens['realm']}"
        with requests.Session() as session:
            answer = session.get(url, headers=headers, timeout=10)
        assert answer.status_code == 200, answer.text
        assert answer.json()["CompanyInfo"]["CompanyName"] == sim.config.company_name


def test_a_client_gone_on_a_high_descriptor_is_still_seen(high_descriptors: None) -> None:
    """drop_if_client_gone keeps working past FD_SETSIZE: the hung-up create is dropped."""
    with QboSimulator(SimulatorConfig()) as sim:
        sim.set_faults(latency_seconds=0.5, drop_if_client_gone=1.0)
        tokens = sim.connect()
        body = (
            b'{"CustomerRef": {"value": "1"}, "Line": [{"Amount": 10, "DetailType": '
            b'"SalesItemLineDetail", "SalesItemLineDetail": {"ItemRef": {"value": "1"}}}]}'
        )
        request = (
            f"POST /v3/company/{tokens['realm']}/invoice HTTP/1.1\r\n"
            f"Host: 127.0.0.1\r\nAuthorization: Bearer {tokens['access_token']}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        with socket.create_connection(("127.0.0.1", sim.port), timeout=5) as client:
            assert client.fileno() > FD_SETSIZE
            client.sendall(request)
        # the simulator's side of that connection is above FD_SETSIZE too; wait for its answer
        deadline = 50
        while deadline and not sim.stats_snapshot()["realms"].get(tokens["realm"], {}).get(
            "dropped"
        ):
            deadline -= 1
            time.sleep(0.05)
        assert sim.stats_snapshot()["realms"][tokens["realm"]]["dropped"] == 1
        assert sim.invoices() == []
