"""Corrections of what QuickBooks already holds, and refunds (issue 13).

SyncEngine.run_pass hands this module the due events that PushRun must not send as fresh
creates: flights amended or cancelled after their invoice reached QuickBooks, and refunds.

- Sent and unpaid: the invoice is updated in place (sparse update with its SyncToken; a stale
  object, saved in QuickBooks since our read, is re-read and sent once more) or voided when the
  flight is cancelled.
- Sent and (partly) paid: never edited. A reduction or a cancellation becomes a CreditMemo for
  the difference (DocNumber ``FL-F-1001-C1``), an increase a supplementary invoice (``-A1``).
- A refund becomes a RefundReceipt from the deposit account of the payment's type.

Every correction is recorded as CorrectionStarted (action, request id, DocNumber) before the
call. QuickBooks is read before every correction: the invoice by id (a metered read, only for
corrections), or the correction document by DocNumber when one may already exist, so a
correction interrupted by a crash is found instead of sent twice. A document deleted or edited
by hand in QuickBooks stops the correction with ``changed_in_quickbooks`` saying what differs.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import structlog

from domain.financial_event import CorrectionAction, FinancialEvent, NotFound, Status
from domain.ids import correction_request_id, financial_event_id, suffixed_doc_number
from domain.ids import doc_number as derive_doc_number
from domain.ports import (
    CorrectionGateway,
    CreditDraft,
    InvoiceChange,
    InvoiceDraft,
    InvoiceLine,
    OutcomeKind,
    PushOutcome,
    QboInvoice,
    ReasonCode,
)
from domain.preflight import invoice_draft
from domain.records import RecordKind, charges_from_data
from domain.sync import may_have_landed
from services.push_run import PushRun, pushing, qbo_message

log = structlog.get_logger(__name__)

REFUND_KIND = RecordKind.PAYMENT_REFUNDED.value
_ZERO = Decimal("0.00")


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
    """The corrections part of one pass (shares PushRun's recording of failures)."""

    def run(self, events: Sequence[FinancialEvent]) -> None:
        """Bring QuickBooks in line for each event, in order, until auth or throttling stops."""
        gateway = self.gateway
        if not isinstance(gateway, CorrectionGateway):
            message = "This QuickBooks connection cannot apply corrections"
            self.engine.require_all(events, ReasonCode.VALIDATION, message, self.report)
            return
        self.corrector: CorrectionGateway = gateway
        for event in events:
            if self.halted:
                break
            self.touched[event.id] = event
            with pushing(event.id):  # each call adds its requestid
                if event.kind == REFUND_KIND:
                    self._refund(event)
                else:
                    self._correct(event)
        if self.stopped is not None:
            self._stop_rest(events)

    # --- refunds --------------------------------------------------------------------------------

    def _refund(self, event: FinancialEvent) -> None:
        payment = self.ledger.financial_event(
            financial_event_id(
                self.school, RecordKind.PAYMENT_RECEIVED.value, str(event.data["payment_id"])
            )
        )
        if payment.status != Status.SYNCED:
            return  # waits for its payment to reach QuickBooks
        doc = event.doc_number or derive_doc_number(event.kind, event.reference)
        careful = may_have_landed(event)
        if careful:
            self.report.calls += 1
            lookup = self.corrector.find_document("RefundReceipt", doc)
            if lookup.failure is not None:
                self._lookup_failed(event, lookup.failure)
                return
            if lookup.found is not None:
                self._synced(event, lookup.found.qbo_id, doc)
                return
        item = self._refund_item(payment)
        if item is None:
            event.require_action(
                reason_code=ReasonCode.MISSING_MAPPING,
                message="Missing mapping: a charge code mapped to an item for the refund line",
                missing=["charge:*"],
                actor=self.engine.actor,
                at=self.now(),
            )
            self.report.count(Status.ACTION_REQUIRED)
            self.engine.save_each_on_conflict([event])
            return
        if not self._start([event], batched=False):
            return
        mapping = self.mappings.payment_types[str(event.data["payment_type"])]
        refunded_at = event.data["refunded_at"]
        assert isinstance(refunded_at, datetime)
        reason = event.data.get("reason") or "refund"
        draft = CreditDraft(
            event_id=event.id,
            request_id=event.request_id or str(event.id),
            doc_number=doc,
            customer_id=self.mappings.students[event.student_id],
            txn_date=refunded_at.date(),
            lines=(
                _one_line(item, f"Refund of payment {payment.reference}: {reason}", event.amount),
            ),
            total=event.amount,
            currency=event.currency,
            private_note=f"flightledger refund {event.reference} of payment {payment.reference}",
            deposit_account_id=mapping.deposit_account_id,
            payment_method_id=mapping.payment_method_id,
        )
        with pushing(event.id, draft.request_id):
            self.report.calls += 1
            outcome = self.corrector.push_refund_receipt(draft)
            if outcome.kind == OutcomeKind.SYNCED:
                self._synced(event, outcome.qbo_id or "", doc)
                return
            self._record(event, outcome, draft=None, careful=careful)
        self.engine.save_each_on_conflict([event])

    def _synced(self, event: FinancialEvent, qbo_id: str, doc: str) -> None:
        event.mark_synced(qbo_id=qbo_id, doc_number=doc, actor=self.engine.actor, at=self.now())
        self.retries.unschedule(event.id)
        self.report.count(Status.SYNCED)
        self.engine.save_each_on_conflict([event])

    def _refund_item(self, payment: FinancialEvent) -> str | None:
        """The Item of the refund line: the first charge of the flight paid, else any mapped."""
        applies_to = payment.data.get("applies_to")
        if applies_to:
            try:
                invoice = self.ledger.find(self.school, str(applies_to))
            except NotFound:
                invoice = None
            if invoice is not None and "charges" in invoice.data:
                for charge in charges_from_data(invoice.data["charges"]):
                    if charge.code in self.mappings.charges:
                        return self.mappings.charges[charge.code]
        mapped = sorted(self.mappings.charges.items())
        return mapped[0][1] if mapped else None

    # --- amended or cancelled flights ---------------------------------------------------------

    def _correct(self, event: FinancialEvent) -> None:
        assert event.qbo_id is not None
        self.report.calls += 1
        read = self.corrector.read_invoice(event.id, event.qbo_id)
        if read.failure is not None:
            self._lookup_failed(event, read.failure)
            return
        invoice = read.found
        if invoice is None:
            self._changed(event, f"it was deleted in QuickBooks (id {event.qbo_id})")
            return
        inflight = event.correction
        current = inflight is not None and inflight["key"] == event.target_key
        if current and inflight is not None and self._landed(event, inflight, invoice):
            return
        differs = self._differs(event, invoice)
        if differs is not None:
            self._changed(event, differs)
            return
        self._apply(event, invoice)

    def _landed(self, event: FinancialEvent, inflight: dict[str, Any], invoice: QboInvoice) -> bool:
        """An earlier attempt of this correction reached QuickBooks: record it, True."""
        action = CorrectionAction(inflight["action"])
        amount = Decimal(inflight["amount"])
        doc = str(inflight["doc_number"])
        qbo_id: str | None = None
        if (action == CorrectionAction.VOID and invoice.voided) or (
            action == CorrectionAction.UPDATE
            and not invoice.voided
            and invoice.total == amount
            and amount != event.invoice_amount
        ):
            qbo_id = invoice.qbo_id
        elif action in (CorrectionAction.CREDIT_MEMO, CorrectionAction.SUPPLEMENT):
            entity = "CreditMemo" if action == CorrectionAction.CREDIT_MEMO else "Invoice"
            self.report.calls += 1
            lookup = self.corrector.find_document(entity, doc)
            if lookup.failure is not None:
                self._lookup_failed(event, lookup.failure)
                return True
            if lookup.found is not None:
                qbo_id = lookup.found.qbo_id
        if qbo_id is None:
            return False
        log.info("correction_found", action=action.value, doc=doc)
        self._applied(event, action, qbo_id, doc, amount)
        return True

    def _differs(self, event: FinancialEvent, invoice: QboInvoice) -> str | None:
        """What QuickBooks holds that the log did not put there, or None."""
        if invoice.voided and not event.voided:
            return "it was voided by hand in QuickBooks"
        expected = _ZERO if event.voided else (event.invoice_amount or _ZERO)
        if invoice.total != expected:
            return f"its total in QuickBooks is {invoice.total}, the log says {expected}"
        return None

    def _apply(self, event: FinancialEvent, invoice: QboInvoice) -> None:
        """Decide, record CorrectionStarted, send, record the outcome."""
        assert event.qbo_id is not None and event.qbo_amount is not None
        base_doc = event.doc_number or invoice.doc_number
        paid = invoice.balance < invoice.total or event.credits > 0 or event.supplements > 0
        target = _ZERO if event.cancelled else event.amount
        if not paid:
            action = CorrectionAction.VOID if event.cancelled else CorrectionAction.UPDATE
            doc, amount = base_doc, target
        else:
            delta = target - event.qbo_amount
            if delta < 0:
                action, amount = CorrectionAction.CREDIT_MEMO, -delta
                doc = suffixed_doc_number(base_doc, f"-C{event.credits + 1}")
            elif delta > 0:
                action, amount = CorrectionAction.SUPPLEMENT, delta
                doc = suffixed_doc_number(base_doc, f"-A{event.supplements + 1}")
            else:
                self._applied(event, CorrectionAction.NONE, event.qbo_id, base_doc, _ZERO)
                return
        request = correction_request_id(event.id, event.target_key, action.value)
        event.start_correction(
            action=action,
            request_id=request,
            doc_number=doc,
            amount=amount,
            actor=self.engine.actor,
            at=self.now(),
        )
        if not self.engine.save_each_on_conflict([event]):
            return
        with pushing(event.id, request):
            self._send_correction(event, action, invoice, request, doc, amount)

    def _send_correction(
        self,
        event: FinancialEvent,
        action: CorrectionAction,
        invoice: QboInvoice,
        request: str,
        doc: str,
        amount: Decimal,
    ) -> None:
        """Send the started correction and record what QuickBooks answered."""
        assert event.qbo_id is not None
        self.report.calls += 1
        outcome, stale = self._send(event, action, invoice, request, doc, amount)
        if outcome.kind == OutcomeKind.SYNCED:
            qbo_id = event.qbo_id if action in _IN_PLACE else (outcome.qbo_id or "")
            self._applied(event, action, qbo_id, doc, amount, stale=stale)
            return
        if outcome.object_gone and action in _IN_PLACE:  # deleted between the read and the call
            self._changed(event, f"it was deleted in QuickBooks (id {event.qbo_id})")
            return
        self._record(event, outcome, draft=None, careful=False)
        self.engine.save_each_on_conflict([event])

    def _send(
        self,
        event: FinancialEvent,
        action: CorrectionAction,
        invoice: QboInvoice,
        request: str,
        doc: str,
        amount: Decimal,
    ) -> tuple[PushOutcome, PushOutcome | None]:
        """The call's outcome, and QuickBooks' first answer when that was a stale object (the
        invoice saved in QuickBooks since our read) and the invoice was re-read and sent again."""
        corrector = self.corrector
        if action in _IN_PLACE:
            outcome = self._in_place(event, action, invoice, request)
            if not outcome.stale_object:
                return outcome, None
            self.report.calls += 1  # saved in QuickBooks since our read: re-read, retry once
            again = corrector.read_invoice(event.id, invoice.qbo_id)
            if again.found is None or self._differs(event, again.found) is not None:
                return outcome, None
            self.report.calls += 1
            return self._in_place(event, action, again.found, f"{request}-r"), outcome
        old = event.qbo_amount or _ZERO
        new = _ZERO if event.cancelled else event.amount
        why = event.correction_reason or ("cancelled" if event.cancelled else "amended")
        description = (
            f"{'Credit' if action == CorrectionAction.CREDIT_MEMO else 'Supplement'} for "
            f"{event.reference} ({why}): {old} -> {new}"
        )
        draft = invoice_draft(event, self.mappings)
        customer = (
            draft.customer_id if action == CorrectionAction.SUPPLEMENT else invoice.customer_id
        )
        line = _one_line(draft.lines[0].item_id, description, amount)
        note = f"flightledger correction {event.target_key} of {event.reference} ({event.id})"
        today = self.now().date()
        if action == CorrectionAction.CREDIT_MEMO:
            memo = corrector.push_credit_memo(
                CreditDraft(
                    event_id=event.id,
                    request_id=request,
                    doc_number=doc,
                    customer_id=customer,
                    txn_date=today,
                    lines=(line,),
                    total=amount,
                    currency=event.currency,
                    private_note=note,
                )
            )
            return memo, None
        supplement = self.gateway.push_invoice(
            InvoiceDraft(
                event_id=event.id,
                request_id=request,
                doc_number=doc,
                customer_id=customer,
                txn_date=today,
                lines=(line,),
                total=amount,
                currency=event.currency,
                term_id=draft.term_id,
                customer_memo=draft.customer_memo,
                private_note=note,
            )
        )
        return supplement, None

    def _in_place(
        self, event: FinancialEvent, action: CorrectionAction, invoice: QboInvoice, request: str
    ) -> PushOutcome:
        if action == CorrectionAction.VOID:
            return self.corrector.void_invoice(
                event.id, invoice.qbo_id, invoice.sync_token, request
            )
        draft = invoice_draft(event, self.mappings)
        return self.corrector.update_invoice(
            InvoiceChange(
                event_id=event.id,
                request_id=request,
                qbo_id=invoice.qbo_id,
                sync_token=invoice.sync_token,
                customer_id=draft.customer_id,
                lines=draft.lines,
                total=draft.total,
                private_note=f"{draft.private_note} v{event.revision}",
            )
        )

    def _applied(
        self,
        event: FinancialEvent,
        action: CorrectionAction,
        qbo_id: str,
        doc: str,
        amount: Decimal,
        *,
        stale: PushOutcome | None = None,
    ) -> None:
        before = event.qbo_amount or _ZERO
        after = {
            CorrectionAction.UPDATE: amount,
            CorrectionAction.VOID: _ZERO,
            CorrectionAction.CREDIT_MEMO: before - amount,
            CorrectionAction.SUPPLEMENT: before + amount,
            CorrectionAction.NONE: before,
        }[action]
        what = event.target_key
        note = {
            CorrectionAction.UPDATE: (
                f"Invoice {doc} updated in place to {what}: {before} -> {after}"
            ),
            CorrectionAction.VOID: f"Invoice {doc} voided in QuickBooks (flight cancelled)",
            CorrectionAction.CREDIT_MEMO: (
                f"Paid invoice kept; credit memo {doc} for {amount} ({what}): {before} -> {after}"
            ),
            CorrectionAction.SUPPLEMENT: (
                f"Paid invoice kept; supplementary invoice {doc} for {amount} ({what}): "
                f"{before} -> {after}"
            ),
            CorrectionAction.NONE: (
                f"Paid invoice kept; {what} does not change the amount ({after})"
            ),
        }[action]
        if stale is not None:
            note += (
                f" (QuickBooks first answered: {qbo_message(stale)}. Invoice {doc} had been saved "
                "in QuickBooks meanwhile, same total; re-read and sent once more)"
            )
        event.apply_correction(
            action=action,
            qbo_id=qbo_id,
            doc_number=doc,
            amount=amount,
            qbo_amount=after,
            note=note,
            actor=self.engine.actor,
            at=self.now(),
        )
        self.retries.unschedule(event.id)
        self.report.count(Status.SYNCED)
        self.engine.save_each_on_conflict([event])
        log.info("correction_applied", action=action.value, doc=doc)

    def _changed(self, event: FinancialEvent, what: str) -> None:
        doc = event.doc_number or event.qbo_id
        change = "cancellation" if event.cancelled else f"amendment ({event.target_key})"
        event.require_action(
            reason_code=ReasonCode.CHANGED_IN_QUICKBOOKS,
            message=(
                f"Invoice {doc} was changed in QuickBooks by hand: {what}. The {change} was not "
                f"applied; put the invoice back as the log says, then Retry Failed, or Dismiss"
            ),
            missing=[],
            actor=self.engine.actor,
            at=self.now(),
        )
        self.retries.unschedule(event.id)
        self.report.count(Status.ACTION_REQUIRED)
        self.engine.save_each_on_conflict([event])


_IN_PLACE = frozenset({CorrectionAction.UPDATE, CorrectionAction.VOID})


def _one_line(item_id: str, description: str, amount: Decimal) -> InvoiceLine:
    return InvoiceLine(
        item_id=item_id,
        description=description,
        quantity=Decimal("1"),
        unit_price=amount,
        amount=amount,
    )
