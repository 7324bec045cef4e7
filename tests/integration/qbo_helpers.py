"""Helpers for tests against the QBO simulator: a connected ConnectionService and drafts."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from adapters.quickbooks.gateway import QuickBooksGateway
from adapters.vault import KEY_ENV, TokenVault
from domain.application import FlightLedger
from domain.ports import FixedClock, InvoiceDraft, InvoiceLine, PaymentDraft
from qbo_simulator import QboSimulator
from workers.bootstrap import open_ledger
from workers.qbo import ConnectionService, gateway_for, open_vault, qbo_settings_from_env

SCHOOL = "sunrise"
TEST_KEY = base64.urlsafe_b64encode(bytes(range(32))).decode()


def sim_env(sim: QboSimulator, minute_seconds: str = "0.6") -> dict[str, str]:
    """FLIGHTLEDGER_* variables pointing at a running simulator."""
    return {
        "FLIGHTLEDGER_QBO_ENVIRONMENT": "simulator",
        "FLIGHTLEDGER_QBO_SIMULATOR_URL": sim.url,
        "FLIGHTLEDGER_QBO_MINUTE_SECONDS": minute_seconds,
        "FLIGHTLEDGER_QBO_TIMEOUT": "1",
        KEY_ENV: TEST_KEY,
    }


@dataclass
class Rig:
    """A ledger, vault and connection service wired to a simulator."""

    ledger: FlightLedger
    vault: TokenVault
    service: ConnectionService
    clock: FixedClock

    def gateway(self, max_attempts: int = 3) -> QuickBooksGateway:
        """A fresh gateway for the school."""
        gw = gateway_for(
            self.ledger, self.vault, self.service.settings, SCHOOL, oauth=self.service.oauth
        )
        gw.session.max_attempts = max_attempts
        return gw


def make_rig(
    db_url: str,
    sim: QboSimulator,
    clock: FixedClock,
    *,
    connect: bool = True,
    extra_env: dict[str, str] | None = None,
) -> Rig:
    """Open everything and (by default) connect the school through the simulator's OAuth."""
    env = {**sim_env(sim), **(extra_env or {})}
    ledger = open_ledger(db_url, clock=clock)
    vault = open_vault(db_url, env, create_key=False)
    service = ConnectionService(ledger, vault, qbo_settings_from_env(env, vault))
    if connect:
        check = service.connect_simulator(SCHOOL, "ana")
        assert check.ok, check.message
    return Rig(ledger, vault, service, clock)


def draft(n: int, customer: str = "1", item: str = "1", total: str = "198.00") -> InvoiceDraft:
    """An invoice draft with its own event id and DocNumber FL-<n>."""
    event_id = uuid.uuid5(uuid.NAMESPACE_URL, f"flight-{n}")
    amount = Decimal(total)
    return InvoiceDraft(
        event_id=event_id,
        request_id=str(event_id),
        doc_number=f"FL-{n}",
        customer_id=customer,
        txn_date=date(2026, 11, 20),
        lines=(InvoiceLine(item, "Aircraft rental", Decimal("1"), amount, amount),),
        total=amount,
        term_id="1",
        customer_memo="Thank you",
    )


def payment_draft(invoice_id: str) -> PaymentDraft:
    """A payment draft linked to an invoice."""
    event_id = uuid.uuid5(uuid.NAMESPACE_URL, f"payment-{invoice_id}")
    return PaymentDraft(
        event_id=event_id,
        request_id=str(event_id),
        customer_id="1",
        txn_date=date(2026, 11, 20),
        amount=Decimal("198.00"),
        deposit_account_id="35",
        payment_method_id="2",
        linked_invoice_id=invoice_id,
    )
