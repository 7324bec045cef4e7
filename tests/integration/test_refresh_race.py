"""Two processes refreshing one realm at once (SQLite file or PostgreSQL): one refresh only."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from domain.connection import ConnectionState
from domain.ports import FixedClock, OutcomeKind
from qbo_simulator import QboSimulator, SimulatorConfig
from tests.helpers_qbo import SCHOOL, draft, make_rig

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def sim() -> Iterator[QboSimulator]:
    """A simulator that rotates the refresh token on every refresh (the old one dies)."""
    with QboSimulator(SimulatorConfig(minute_seconds=0.6)) as simulator:
        yield simulator


def test_concurrent_refresh_is_serialised_across_vaults(db_url: str, sim: QboSimulator) -> None:
    """Two processes' gateways (separate vaults) hit a 401 together: both push, token lives."""
    clock = FixedClock(datetime.now(UTC))
    first = make_rig(db_url, sim, clock)
    second = make_rig(db_url, sim, clock, connect=False)  # another process: its own vault
    gateways = [first.gateway(), second.gateway()]
    rounds = 5  # a lost race shows up in most rounds; five make a missing lock all but certain
    outcomes: list[OutcomeKind] = []
    for round_number in range(rounds):
        sim.set_faults(expire_access_tokens_now=True)
        start = threading.Barrier(2)

        def push(
            index: int, round_number: int = round_number, start: threading.Barrier = start
        ) -> None:
            start.wait()
            draft_number = 2 * round_number + index + 1
            outcomes.append(gateways[index].push_invoice(draft(draft_number)).kind)

        threads = [threading.Thread(target=push, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)

    assert outcomes == [OutcomeKind.SYNCED] * 2 * rounds
    assert first.ledger.connection(SCHOOL).state == ConnectionState.CONNECTED
    history = [e.type for e in first.ledger.history(SCHOOL, "connection")]
    assert "RefreshTokenExpired" not in history
    assert history.count("TokensRefreshed") == rounds, "the second saw fresh tokens in the vault"
    assert sorted(i["doc_number"] for i in sim.invoices()) == sorted(
        f"FL-{n}" for n in range(1, 2 * rounds + 1)
    )
    for rig in (first, second):
        rig.ledger.close()
