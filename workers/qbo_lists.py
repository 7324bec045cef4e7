"""QboListService: the per-realm cache of a school's QuickBooks lists, read through the gateway.

`cached(school)` never calls QuickBooks; `refresh(school)` reads Items, Customers, Accounts,
Terms and PaymentMethods (metered reads, 1000 a page) and stores them with their fetch time;
`lists(school)` is the cache, fetched once when there is none yet. The CLI (`mappings
refresh`, `mappings set`), Retry Failed and the dashboard call it (domain.qbo_lists.QboListsPort).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import structlog

from adapters.qbo_lists import QboListStore, lists_from_objects
from domain.application import FlightLedger
from domain.ports import PushOutcome
from domain.preflight import NOT_CONNECTED_MESSAGE, check_connection
from domain.qbo_lists import ListsUnavailable, QboLists
from workers.context import CliContext
from workers.qbo import ConnectionService, connection_service

log = structlog.get_logger(__name__)


class QboListService:
    """The cached QuickBooks lists of each school (domain.qbo_lists.QboListsPort)."""

    def __init__(
        self, ledger: FlightLedger, connections: ConnectionService | None, store: QboListStore
    ) -> None:
        self.ledger = ledger
        self.connections = connections
        self.store = store
        self.reads = 0  # list fetches made by this service (each is one read per entity page)

    def cached(self, school: str) -> QboLists | None:
        """The stored lists of the school's current realm, without calling QuickBooks."""
        realm = self.ledger.connection(school).realm
        if not realm:
            return None
        return self.store.get(school, realm)

    def refresh(self, school: str) -> QboLists:
        """Read every list from QuickBooks, store it and return it (raises ListsUnavailable)."""
        connection = self.ledger.connection(school)
        blocked = check_connection(connection, self.ledger.clock.now())
        if blocked is not None or not connection.realm:
            message = blocked.message if blocked is not None else NOT_CONNECTED_MESSAGE
            raise ListsUnavailable(message)
        if self.connections is None:
            raise ListsUnavailable("QuickBooks is not configured here (FLIGHTLEDGER_QBO_*)")
        gateway = self.connections.gateway(school)
        try:
            found = gateway.read_lists()
        finally:
            gateway.close()
        self.reads += 1
        if isinstance(found, PushOutcome):
            raise ListsUnavailable(f"QuickBooks did not return its lists: {found.message}")
        lists = lists_from_objects(school, connection.realm, self.ledger.clock.now(), found)
        self.store.put(lists)
        log.info(
            "qbo_lists_refreshed",
            school=school,
            realm=connection.realm,
            objects=sum(len(v) for v in lists.objects.values()),
        )
        return lists

    def lists(self, school: str, *, max_age: float | None = None) -> QboLists:
        """The cached lists, read from QuickBooks when there are none (or older than max_age s)."""
        lists = self.cached(school)
        if lists is not None and (
            max_age is None
            or self.ledger.clock.now() - lists.fetched_at <= timedelta(seconds=max_age)
        ):
            return lists
        return self.refresh(school)


_UNSET: Any = object()


def list_service(cli: CliContext, connections: ConnectionService | None = _UNSET) -> QboListService:
    """The list service of the CLI's database (QuickBooks unavailable when not configured)."""
    from adapters.quickbooks.settings import QboSettingsError
    from adapters.vault import VaultError

    if connections is _UNSET:
        try:
            connections = connection_service(cli.ledger(), cli.config.database, cli.config.env)
        except (QboSettingsError, VaultError) as exc:
            log.info("qbo_lists_disabled", reason=str(exc))
            connections = None
    return QboListService(cli.ledger(), connections, QboListStore(cli.config.database))


class LazyListService:
    """The CLI's list service, opened on first use (a press that needs no lists opens no vault
    and reads no QuickBooks settings): domain.qbo_lists.QboListsPort."""

    def __init__(self, cli: CliContext) -> None:
        self._cli = cli
        self._service: QboListService | None = None

    def _open(self) -> QboListService:
        if self._service is None:
            self._service = list_service(self._cli)
        return self._service

    def cached(self, school: str) -> QboLists | None:
        """The stored lists of the school's current realm, without calling QuickBooks."""
        return self._open().cached(school)

    def refresh(self, school: str) -> QboLists:
        """Read every list from QuickBooks, store and return them (ListsUnavailable)."""
        return self._open().refresh(school)
