"""Assemble a running worker (view, projector, engine, ownership, heartbeat) from configuration."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from adapters import metrics
from adapters.heartbeat import open_heartbeat
from adapters.persistence import PooledConnections
from adapters.qbo_lists import QboListStore
from adapters.realm_locks import open_realm_locks
from adapters.views import open_view
from domain.application import FlightLedger
from domain.ports import AccountingGateway, Closeable
from services.new_customers import CachedCustomers
from services.push_pass import SyncEngine
from workers.bootstrap import Config
from workers.projector import Projector
from workers.worker_loop import WorkerLoop

if TYPE_CHECKING:
    from adapters.quickbooks.settings import QboSettings
    from adapters.vault import TokenVault


def gateway_factory(
    ledger: FlightLedger, config: Config, stopping: Callable[[], bool] | None = None
) -> Callable[[str], AccountingGateway]:
    """The school's QuickBooks gateway, rebuilt when the vault's realm changed.

    A long-running worker must follow what other processes write (a reconnect to another
    company, a client secret stored by `connection connect`): the settings and the token set
    are read again on every call; only the HTTP session of an unchanged realm is reused.
    """
    cache: dict[str, tuple[str, QboSettings, AccountingGateway]] = {}
    opened: dict[str, TokenVault] = {}

    def gateway(school: str) -> AccountingGateway:
        from workers.qbo import gateway_for, open_vault, qbo_settings_from_env

        if "vault" not in opened:
            opened["vault"] = open_vault(config.database, config.env, create_key=False)
        vault = opened["vault"]
        settings = qbo_settings_from_env(config.env, vault)
        tokens = vault.get_tokens(school)
        realm = tokens.realm if tokens else ""
        cached = cache.get(school)
        if cached is not None and cached[0] == realm and cached[1] == settings:
            return cached[2]
        if cached is not None:
            _close(cached[2])
        made = gateway_for(ledger, vault, settings, school, stopping=stopping)
        cache[school] = (realm, settings, made)
        return made

    return gateway


# Pooled connections of the log and of the view for the pass threads (plus 2 for the loop and
# the projector): a pass holds one only while it reads or writes, most of its time it waits on
# QuickBooks, so many threads share a few; four workers stay under PostgreSQL's default 100.
PASS_CONNECTIONS = 4
AGGREGATE_CACHE_SIZE = 20_000  # aggregates the worker keeps between passes


def _cache_aggregates(ledger: FlightLedger) -> None:
    """Keep aggregates between passes, fast-forwarded from the log on every read (one query
    for the events after the cached version, a copy handed out): a pass no longer replays a
    school's whole mapping history (hundreds of events) to read its mappings."""
    from eventsourcing.application import LRUCache

    repository = ledger.repository
    if repository.cache is None:
        repository.cache = LRUCache(maxsize=AGGREGATE_CACHE_SIZE)
        repository.fastforward = True
        repository.deepcopy_from_cache = True


def _widen_pool(store: object, size: int) -> None:
    """Let a PostgreSQL store's connection pool hold `size` connections (SQLite: no pool)."""
    if isinstance(store, PooledConnections):
        store.widen_pool(size)


def _close(gateway: AccountingGateway) -> None:
    if isinstance(gateway, Closeable):  # QuickBooksGateway keeps an HTTP session; fakes don't
        gateway.close()


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

    def stopping() -> bool:  # the loop replaces engine.should_stop while it runs: look it up
        return engine.should_stop()

    engine = SyncEngine(
        ledger, view, gateway_factory(ledger, config, stopping=stopping), metrics=metrics
    )
    cached = CachedCustomers(ledger, QboListStore(db))
    engine.known_customers, engine.cached_lists = cached, cached.lists
    _cache_aggregates(ledger)
    passes_at_once = locks.parallel_passes
    for store in (ledger.recorder, view):  # pass threads take turns on pooled connections
        _widen_pool(store, min(passes_at_once, PASS_CONNECTIONS) + 2)
    loop = WorkerLoop(
        engine,
        view,
        locks,
        passes_at_once=passes_at_once,
        catch_up=projector.catch_up,
        heartbeat=heartbeat,
        listen=lambda: view.listen(projector.channel),
    )
    closers: list[Callable[[], None]] = [view.close, locks.close]
    closers.append(heartbeat.close)
    return WorkerRuntime(projector=projector, engine=engine, loop=loop, closers=closers)
