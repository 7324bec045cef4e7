"""Builders of valid input records for tests."""

from __future__ import annotations

import json
from typing import Any


def flight(flight_id: str = "F-1001", student: str = "S-7", **overrides: Any) -> dict[str, Any]:
    """A valid flight-ended record (as a dict)."""
    record: dict[str, Any] = {
        "flight_id": flight_id,
        "ended_at": "2026-11-20T17:42:00Z",
        "student": {"id": student, "name": f"Student {student}"},
        "instructor": {"id": "I-3", "name": "Sam Lee"},
        "aircraft": {"tail": "N172SP", "type": "C172"},
        "hobbs": {"start": "1234.5", "end": "1235.7"},
        "charges": [
            {"code": "aircraft_rental", "quantity": "1.2", "rate": "165.00"},
            {"code": "instructor_dual", "quantity": "1.2", "rate": "60.00"},
        ],
        "currency": "USD",
    }
    record.update(overrides)
    return record


def invoice_request(request_id: str = "R-1", student: str = "S-7") -> dict[str, Any]:
    """A valid invoice-requested record."""
    return {
        "request_id": request_id,
        "requested_at": "2026-11-20T12:00:00Z",
        "student": {"id": student, "name": f"Student {student}"},
        "charges": [{"code": "ground_instruction", "quantity": "2", "rate": "55.00"}],
        "currency": "USD",
        "memo": "Ground school",
    }


def payment(payment_id: str = "P-1", student: str = "S-7", **overrides: Any) -> dict[str, Any]:
    """A valid payment-received record."""
    record: dict[str, Any] = {
        "payment_id": payment_id,
        "received_at": "2026-11-20T18:00:00Z",
        "student": {"id": student, "name": f"Student {student}"},
        "amount": "270.00",
        "payment_type": "card",
        "currency": "USD",
    }
    record.update(overrides)
    return record


def jsonl(records: list[dict[str, Any]]) -> str:
    """Records as JSON lines."""
    return "".join(json.dumps(r) + "\n" for r in records)


def amendment(
    flight_id: str = "F-1001", hours: str = "1.0", student: str = "S-7", **overrides: Any
) -> dict[str, Any]:
    """A valid flight-amended record: the flight with other hours, amended later."""
    record = flight(flight_id, student)
    record["charges"] = [
        {"code": "aircraft_rental", "quantity": hours, "rate": "165.00"},
        {"code": "instructor_dual", "quantity": hours, "rate": "60.00"},
    ]
    record["amended_at"] = "2026-11-21T09:00:00Z"
    record["reason"] = "Hobbs mistyped"
    record.update(overrides)
    return record


def cancellation(flight_id: str = "F-1001", reason: str = "Weather") -> dict[str, Any]:
    """A valid flight-cancelled record."""
    return {"flight_id": flight_id, "cancelled_at": "2026-11-21T09:00:00Z", "reason": reason}


def refund(
    refund_id: str = "RF-1", payment_id: str = "P-1", amount: str = "50.00"
) -> dict[str, Any]:
    """A valid payment-refunded record."""
    return {
        "refund_id": refund_id,
        "payment_id": payment_id,
        "refunded_at": "2026-11-22T10:00:00Z",
        "amount": amount,
        "currency": "USD",
        "reason": "Lesson cut short",
    }


def fullwidth(text: str) -> str:
    """The same text in fullwidth forms (what NFKC folds back to ASCII)."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)
