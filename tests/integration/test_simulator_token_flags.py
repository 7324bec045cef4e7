"""`flightledger simulator` flags make every badge state of article 000 reachable, no patching."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from adapters.authorization_url import NO_URL_MESSAGE
from adapters.quickbooks.oauth import UntrustedAuthorizationUrl
from domain.ports import FixedClock
from tests.helpers_qbo import SCHOOL, sim_env
from workers.bootstrap import open_ledger
from workers.qbo import ConnectionService, open_vault, qbo_settings_from_env


@contextmanager
def simulator(*flags: str) -> Iterator[str]:
    """`flightledger simulator --port 0 FLAGS` as a subprocess; yields the URL it prints."""
    process = subprocess.Popen(
        [sys.executable, "-m", "workers.cli", "simulator", "--port", "0", *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), f"simulator printed {url!r}"
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def _service(sqlite_url: str, url: str, clock: FixedClock) -> ConnectionService:
    env = sim_env(url, timeout="2")
    vault = open_vault(sqlite_url, env, create_key=False)
    return ConnectionService(
        open_ledger(sqlite_url, clock=clock), vault, qbo_settings_from_env(env)
    )


@pytest.mark.parametrize(
    ("flags", "pill", "badge"),
    [
        (("--refresh-token-seconds", "3600"), "0d left", "Reconnect soon"),
        (("--refresh-token-seconds", str(30 * 86400 + 600)), "30d left", "30d left"),
        (("--no-refresh-expiry",), "Connected", "Token unknown"),
    ],
)
def test_token_lifetime_flags_reach_the_badge(
    sqlite_url: str, clock: FixedClock, flags: tuple[str, ...], pill: str, badge: str
) -> None:
    """Connecting to a simulator started with these flags shows this pill and badge."""
    with simulator(*flags) as url:
        service = _service(sqlite_url, url, clock)
        try:
            assert service.connect_simulator(SCHOOL, "ana").ok
            status = service.status(SCHOOL)
        finally:
            service.ledger.close()
    assert (status["pill"], status["badge"]) == (pill, badge)


def test_no_authorization_endpoint_flag(sqlite_url: str, clock: FixedClock) -> None:
    """--no-authorization-endpoint: Connect says 'No authorization URL received from QuickBooks'."""
    with simulator("--no-authorization-endpoint") as url:
        service = _service(sqlite_url, url, clock)
        try:
            with pytest.raises(UntrustedAuthorizationUrl) as refused:
                service.connect(SCHOOL)
        finally:
            service.ledger.close()
    assert str(refused.value) == NO_URL_MESSAGE
