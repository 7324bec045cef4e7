"""`worker` run inside another program leaves that program's signal handling as it was."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from qbo_simulator import QboSimulator, SimulatorConfig
from tests.helpers_qbo import Cli, cli_env

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def sim() -> Iterator[QboSimulator]:
    """A simulator in this process (the worker's QuickBooks settings point at it)."""
    with QboSimulator(SimulatorConfig()) as simulator:
        yield simulator


def test_worker_restores_the_signal_handlers_it_replaced(
    sqlite_url: str, sim: QboSimulator
) -> None:
    """After `worker --until-idle` in process, SIGTERM and SIGINT reach their old handlers."""
    received: list[int] = []

    def mine(sig: int, _frame: object) -> None:
        received.append(sig)

    before = {sig: signal.signal(sig, mine) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        summary = Cli(cli_env(sim, sqlite_url)).ok("worker", "--until-idle", "--max-seconds", "30")
        assert summary["synced"] == 0
        assert signal.getsignal(signal.SIGTERM) is mine
        assert signal.getsignal(signal.SIGINT) is mine
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
