"""Assemble a running worker (view, projector, engine, ownership, heartbeat) from configuration."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from adapters.heartbeat import open_heartbeat
from adapters.realm_locks import open_realm_locks
from adapters.views import open_view
from domain.application import FlightLedger
from domain.ports import AccountingGateway
from workers.bootstrap import Config
from workers.projector import Projector
from workers.sync_worker import SyncEngine
from workers.worker_loop import WorkerLoop


def gateway_factory(ledger: FlightLedger, config: Config) -> Callable[[str], AccountingGateway]:
    """One cached QuickBooks gateway per school; the vault is opened on first use."""
    cache: dict[str, AccountingGateway] = {}
    opened: dict[str, Any] = {}

    def gateway(school: str) -> AccountingGateway:
        if school not in cache:
            from workers.qbo import gateway_for, open_vault, qbo_settings_from_env

            if "vault" not in opened:
                vault = open_vault(config.database, config.env, create_key=False)
                opened["vault"] = vault
                opened["settings"] = qbo_settings_from_env(config.env, vault)
            cache[school] = gateway_for(ledger, opened["vault"], opened["settings"], school)
        return cache[school]

    return gateway


@dataclass
class WorkerRuntime:
    """A worker's parts, and what to close when it is done."""

    projector: Projector
    engine: SyncEngine
    loop: WorkerLoop
    closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        """Close the view, locks and heartbeat connections."""
        while self.closers:
            self.closers.pop()()


def build_worker(ledger: FlightLedger, config: Config) -> WorkerRuntime:
    """The worker the `worker` command and the demo run: real view, QBO gateways, locks."""
    db = config.database
    view = open_view(db)
    locks = open_realm_locks(db)
    heartbeat = open_heartbeat(db)
    projector = Projector(ledger, view)
    engine = SyncEngine(ledger, view, gateway_factory(ledger, config))
    loop = WorkerLoop(
        engine,
        view,
        locks,
        catch_up=projector.catch_up,
        heartbeat=heartbeat,
        listen=lambda: view.listen(projector.channel),
    )
    closers: list[Callable[[], None]] = [view.close, locks.close]
    close_heartbeat = getattr(heartbeat, "close", None)
    if callable(close_heartbeat):
        closers.append(close_heartbeat)
    return WorkerRuntime(projector=projector, engine=engine, loop=loop, closers=closers)
