"""Invoice and payment validation in one simulated company (no HTTP)."""

from __future__ import annotations

from typing import Any

import pytest

from qbo_simulator.company import BusinessFault, Company


def _invoice(**overrides: Any) -> dict[str, Any]:
    line = {"Amount": "", "DetailType": "SalesItemLineDetail",
            "SalesItemLineDetail": {"ItemRef": {"value": "1"}, "Qty": "1.2",
                                    "UnitPrice": "165.00"}}  # fmt: skip
    return {"CustomerRef": {"name": "", "type": "", "value": "1"}, "Line": [line],
            "TotalAmt": "", "DueDate": "", "Deposit": 0, **overrides}  # fmt: skip


def _fault(company: Company, entity: str, data: dict[str, Any]) -> BusinessFault:
    with pytest.raises(BusinessFault) as failed:
        company.create(entity, data, None)
    return failed.value


def test_amount_computed_from_qty_and_price_and_terms_set_due_date() -> None:
    """A line without Amount gets Qty x UnitPrice; Net 30 puts DueDate 30 days after TxnDate."""
    company = Company("r", "S", "US")
    saved = company.create("Invoice", _invoice(SalesTermRef={"value": "3"},
                           TxnDate="2026-11-20"), "rid")  # fmt: skip
    assert saved["TotalAmt"] == 198.0
    assert saved["DueDate"] == "2026-12-20"
    assert saved["SalesTermRef"] == {"value": "3", "name": "Net 30"}
    assert company.invoice_log[0]["total"] == "198.00"


def test_unknown_term_and_inactive_customer() -> None:
    """An unknown term is 2500 on SalesTermRef; customer 21 (inactive) is 610."""
    company = Company("r", "S", "US")
    assert _fault(company, "Invoice", _invoice(SalesTermRef={"value": "2"})).element == (
        "SalesTermRef"
    )
    assert _fault(company, "Invoice", _invoice(CustomerRef={"value": "21"})).code == "610"


def test_no_lines_and_long_doc_number() -> None:
    """No sales line is 6000; a DocNumber over 21 characters is refused."""
    company = Company("r", "S", "US")
    assert _fault(company, "Invoice", _invoice(Line=[])).code == "6000"
    assert _fault(company, "Invoice", _invoice(DocNumber="X" * 22)).element == "DocNumber"


def test_duplicate_check_can_be_off() -> None:
    """With the duplicate-number preference off the same DocNumber is accepted twice."""
    company = Company("r", "S", "US", dup_check=False)
    company.create("Invoice", _invoice(DocNumber="FL-1"), None)
    company.create("Invoice", _invoice(DocNumber="FL-1"), None)
    assert len(company.invoice_log) == 2


def test_payment_rules() -> None:
    """Payments need TotalAmt, may not apply more than received, nor to another's invoice."""
    company = Company("r", "S", "US")
    invoice = company.create("Invoice", _invoice(), None)
    base = {"CustomerRef": {"value": "1"}, "DepositToAccountRef": {"value": "36"},
            "PaymentMethodRef": {"value": "2"}}  # fmt: skip
    line = {"Amount": 100, "LinkedTxn": [{"TxnId": invoice["Id"], "TxnType": "Invoice"}]}
    assert _fault(company, "Payment", base).code == "6000"
    assert _fault(company, "Payment", {**base, "TotalAmt": 50, "Line": [line]}).code == "6000"
    other = {**base, "CustomerRef": {"value": "2"}, "TotalAmt": 100, "Line": [line]}
    assert _fault(company, "Payment", other).code == "6000"
    saved = company.create("Payment", {**base, "TotalAmt": 120, "Line": [line]}, "p")
    assert saved["UnappliedAmt"] == 20.0
    assert saved["PaymentMethodRef"] == {"value": "2", "name": "Card"}
    assert company.get("Invoice", invoice["Id"])["Balance"] == 98.0  # type: ignore[index]
