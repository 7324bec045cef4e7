"""JSON Schemas of the input records (CLI.md) for the OpenAPI document.

They describe the shape for client authors and /docs; the rules themselves (and the words of
each 422) are domain/records.py's, the same the CLI applies.
"""

from __future__ import annotations

from typing import Any

_MONEY: dict[str, Any] = {
    "oneOf": [{"type": "string", "pattern": r"^\d+(\.\d{1,2})?$"}, {"type": "number"}],
    "description": "a decimal string (or number) with at most 2 places, >= 0",
}
_ID: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": 64}
_TIME: dict[str, Any] = {"type": "string", "format": "date-time"}
_PARTY: dict[str, Any] = {
    "type": "object",
    "required": ["id", "name"],
    "properties": {"id": _ID, "name": {"type": "string", "minLength": 1, "maxLength": 200}},
    "additionalProperties": False,
}
_CHARGES: dict[str, Any] = {
    "type": "array",
    "minItems": 1,
    "items": {
        "type": "object",
        "required": ["code", "quantity", "rate"],
        "properties": {
            "code": _ID,
            "quantity": _MONEY,
            "rate": _MONEY,
            "description": {"type": "string"},
        },
        "additionalProperties": False,
    },
}
_CURRENCY: dict[str, Any] = {"type": "string", "pattern": "^[A-Z]{3}$", "example": "USD"}

FLIGHT_ENDED: dict[str, Any] = {
    "type": "object",
    "title": "FlightEnded",
    "required": [
        "flight_id",
        "ended_at",
        "student",
        "instructor",
        "aircraft",
        "hobbs",
        "charges",
        "currency",
    ],
    "properties": {
        "flight_id": _ID,
        "ended_at": _TIME,
        "student": _PARTY,
        "instructor": _PARTY,
        "aircraft": {
            "type": "object",
            "required": ["tail", "type"],
            "properties": {"tail": {"type": "string"}, "type": {"type": "string"}},
            "additionalProperties": False,
        },
        "hobbs": {
            "type": "object",
            "required": ["start", "end"],
            "properties": {"start": _MONEY, "end": _MONEY},
            "additionalProperties": False,
        },
        "charges": _CHARGES,
        "currency": _CURRENCY,
    },
    "additionalProperties": False,
    "example": {
        "flight_id": "F-1001",
        "ended_at": "2026-11-20T17:42:00Z",
        "student": {"id": "S-7", "name": "Ana Ortiz"},
        "instructor": {"id": "I-3", "name": "Sam Lee"},
        "aircraft": {"tail": "N172SP", "type": "C172"},
        "hobbs": {"start": "1234.5", "end": "1235.7"},
        "charges": [
            {"code": "aircraft_rental", "quantity": "1.2", "rate": "165.00"},
            {"code": "instructor_dual", "quantity": "1.2", "rate": "60.00"},
        ],
        "currency": "USD",
    },
}

INVOICE_REQUESTED: dict[str, Any] = {
    "type": "object",
    "title": "InvoiceRequested",
    "required": ["request_id", "requested_at", "student", "charges", "currency"],
    "properties": {
        "request_id": _ID,
        "requested_at": _TIME,
        "student": _PARTY,
        "charges": _CHARGES,
        "currency": _CURRENCY,
        "memo": {"type": "string", "maxLength": 1000},
    },
    "additionalProperties": False,
    "example": {
        "request_id": "R-17",
        "requested_at": "2026-11-20T18:00:00Z",
        "student": {"id": "S-7", "name": "Ana Ortiz"},
        "charges": [{"code": "ground_instruction", "quantity": "1", "rate": "55.00"}],
        "currency": "USD",
    },
}

PAYMENT_RECEIVED: dict[str, Any] = {
    "type": "object",
    "title": "PaymentReceived",
    "required": ["payment_id", "received_at", "student", "amount", "payment_type", "currency"],
    "properties": {
        "payment_id": _ID,
        "received_at": _TIME,
        "student": _PARTY,
        "amount": _MONEY,
        "payment_type": _ID,
        "applies_to": _ID,
        "currency": _CURRENCY,
    },
    "additionalProperties": False,
    "example": {
        "payment_id": "P-88",
        "received_at": "2026-11-20T18:05:00Z",
        "student": {"id": "S-7", "name": "Ana Ortiz"},
        "amount": "270.00",
        "payment_type": "card",
        "applies_to": "F-1001",
        "currency": "USD",
    },
}


def _flight_amended() -> dict[str, Any]:
    properties = {
        **FLIGHT_ENDED["properties"],
        "amended_at": _TIME,
        "reason": {"type": "string", "maxLength": 1000},
    }
    example = {
        **FLIGHT_ENDED["example"],
        "hobbs": {"start": "1234.5", "end": "1235.5"},
        "charges": [
            {"code": "aircraft_rental", "quantity": "1.0", "rate": "165.00"},
            {"code": "instructor_dual", "quantity": "1.0", "rate": "60.00"},
        ],
        "amended_at": "2026-11-21T09:00:00Z",
        "reason": "Hobbs end mistyped",
    }
    return {
        "type": "object",
        "title": "FlightAmended",
        "description": "The flight-ended shape plus amended_at (and an optional reason); it "
        "replaces the charges, hobbs and student. In the path route flight_id may be left out.",
        "required": [*FLIGHT_ENDED["required"], "amended_at"],
        "properties": properties,
        "additionalProperties": False,
        "example": example,
    }


FLIGHT_AMENDED: dict[str, Any] = _flight_amended()
# POST /flights/{flight_id}/amendments: the same, flight_id taken from the path when left out
FLIGHT_AMENDMENT: dict[str, Any] = {
    **FLIGHT_AMENDED,
    "title": "FlightAmendment",
    "required": [r for r in FLIGHT_AMENDED["required"] if r != "flight_id"],
}

FLIGHT_CANCELLED: dict[str, Any] = {
    "type": "object",
    "title": "FlightCancelled",
    "required": ["flight_id", "cancelled_at", "reason"],
    "properties": {
        "flight_id": _ID,
        "cancelled_at": _TIME,
        "reason": {"type": "string", "minLength": 1, "maxLength": 1000},
    },
    "additionalProperties": False,
    "example": {
        "flight_id": "F-1001",
        "cancelled_at": "2026-11-21T09:00:00Z",
        "reason": "Flight did not happen (weather)",
    },
}
# POST /flights/{flight_id}/cancellation: flight_id taken from the path when left out
FLIGHT_CANCELLATION: dict[str, Any] = {
    **FLIGHT_CANCELLED,
    "title": "FlightCancellation",
    "required": ["cancelled_at", "reason"],
    "example": {k: v for k, v in FLIGHT_CANCELLED["example"].items() if k != "flight_id"},
}

PAYMENT_REFUNDED: dict[str, Any] = {
    "type": "object",
    "title": "PaymentRefunded",
    "required": ["refund_id", "payment_id", "refunded_at", "amount", "currency"],
    "properties": {
        "refund_id": _ID,
        "payment_id": _ID,
        "refunded_at": _TIME,
        "amount": _MONEY,
        "currency": _CURRENCY,
        "reason": {"type": "string", "maxLength": 1000},
    },
    "additionalProperties": False,
    "example": {
        "refund_id": "RF-5",
        "payment_id": "P-88",
        "refunded_at": "2026-11-22T10:00:00Z",
        "amount": "50.00",
        "currency": "USD",
        "reason": "Lesson cut short",
    },
}

BATCH: dict[str, Any] = {
    "type": "object",
    "title": "RecordBatch",
    "required": ["kind", "records"],
    "properties": {
        "kind": {
            "type": "string",
            "enum": [
                "flight-ended",
                "invoice-requested",
                "payment-received",
                "flight-amended",
                "flight-cancelled",
                "payment-refunded",
            ],
        },
        "records": {"type": "array", "maxItems": 1000, "items": {"type": "object"}},
    },
    "additionalProperties": False,
    "example": {"kind": "flight-ended", "records": [FLIGHT_ENDED["example"]]},
}


def request_body(schema: dict[str, Any]) -> dict[str, Any]:
    """openapi_extra for a route that reads this JSON body itself."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": schema}},
        }
    }
