"""The Settings aggregate: per-school switches."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from eventsourcing.domain import Aggregate

AUTO_INVOICE_DEFAULT = True
AUTO_CUSTOMERS_DEFAULT = False  # creating customers in someone's QuickBooks is opted into


class Settings(Aggregate):
    """A school's settings: auto-invoice on/off, auto-customers on/off."""

    class Started(Aggregate.Created):
        """Settings exist with defaults."""

        school: str

        def apply(self, aggregate: Any) -> None:
            """Defaults."""
            agg: Settings = aggregate
            agg.school = self.school
            agg.auto_invoice = AUTO_INVOICE_DEFAULT
            agg.auto_customers = AUTO_CUSTOMERS_DEFAULT

    class AutoInvoiceSet(Aggregate.Event):
        """Auto-invoice switched on or off."""

        enabled: bool
        operator: str

        def apply(self, aggregate: Any) -> None:
            """Remember the switch."""
            agg: Settings = aggregate
            agg.auto_invoice = self.enabled

    class AutoCustomersSet(Aggregate.Event):
        """Auto-customers (match or create a QuickBooks customer for a new student) on or off."""

        enabled: bool
        operator: str

        def apply(self, aggregate: Any) -> None:
            """Remember the switch."""
            agg: Settings = aggregate
            agg.auto_customers = self.enabled

    school: str
    auto_invoice: bool
    auto_customers: bool

    def __init__(self) -> None:
        """State is set by the creation event's apply()."""

    def set_auto_invoice(self, enabled: bool, *, operator: str, at: datetime) -> None:
        """Switch auto-invoice."""
        self.trigger_event(self.AutoInvoiceSet, enabled=enabled, operator=operator, timestamp=at)

    def set_auto_customers(self, enabled: bool, *, operator: str, at: datetime) -> None:
        """Switch auto-customers."""
        self.trigger_event(self.AutoCustomersSet, enabled=enabled, operator=operator, timestamp=at)
