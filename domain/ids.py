"""Deterministic identities: aggregate ids, QBO request ids and DocNumbers."""

from __future__ import annotations

import hashlib
import re
from uuid import UUID, uuid5

NAMESPACE = UUID("6f1c1c9e-6f0b-4e53-9d4a-2f1f3b0c7a11")
DOC_NUMBER_MAX = 21
SCHOOL_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def check_school(school: str) -> str:
    """Return the school slug, or raise ValueError naming the rule."""
    if not SCHOOL_PATTERN.match(school):
        msg = "school: must be 1-63 lowercase letters, digits, '-' or '_'"
        raise ValueError(msg)
    return school


def financial_event_id(school: str, kind: str, source_id: str) -> UUID:
    """The id of a financial event: uuid5 of (school, kind, source id)."""
    return uuid5(NAMESPACE, f"financial-event:{school}:{kind}:{source_id}")


def connection_id(school: str) -> UUID:
    """The id of a school's QBO connection aggregate."""
    return uuid5(NAMESPACE, f"connection:{school}")


def mappings_id(school: str) -> UUID:
    """The id of a school's mappings aggregate."""
    return uuid5(NAMESPACE, f"mappings:{school}")


def settings_id(school: str) -> UUID:
    """The id of a school's settings aggregate."""
    return uuid5(NAMESPACE, f"settings:{school}")


def api_keys_id(school: str) -> UUID:
    """The id of a school's API keys aggregate."""
    return uuid5(NAMESPACE, f"api-keys:{school}")


def webhooks_id(school: str) -> UUID:
    """The id of a school's webhook subscriptions aggregate."""
    return uuid5(NAMESPACE, f"webhooks:{school}")


def request_id(event_id: UUID, generation: int = 0) -> str:
    """The QBO requestid for pushes of a financial event (at most 41 characters).

    QuickBooks answers a repeated requestid with its first answer, a fault included, so the id
    is stable across automatic and uncertain retries (a replay can never create twice) and
    changes only with the event's retry generation: after a definite refusal an operator's
    Retry Failed starts generation n, sent as "<event id>-r<n>".
    """
    return str(event_id) if generation == 0 else f"{event_id}-r{generation}"


def customer_request_id(school: str, student_id: str) -> str:
    """The QBO requestid of the Customer create for one student: stable across crashes (36)."""
    return str(uuid5(NAMESPACE, f"customer-create:{school}:{student_id}"))


_PREFIX = {
    "flight-ended": "FL-",
    "invoice-requested": "IR-",
    "payment-received": "PM-",
    "payment-refunded": "RF-",
}


def correction_request_id(event_id: UUID, key: str, action: str) -> str:
    """The QBO requestid of one correction (version key + action) of an event (36 chars)."""
    return str(uuid5(event_id, f"correction:{key}:{action}"))


def suffixed_doc_number(base: str, suffix: str) -> str:
    """A correction document's DocNumber: the invoice's plus "-C1"/"-A1" (at most 21)."""
    return base[: DOC_NUMBER_MAX - len(suffix)] + suffix


def doc_number(kind: str, source_id: str) -> str:
    """A human-visible DocNumber derived from the source id (at most 21 characters)."""
    prefix = _PREFIX.get(kind, "")
    candidate = f"{prefix}{source_id}"
    if len(candidate) <= DOC_NUMBER_MAX and candidate.isascii() and " " not in candidate:
        return candidate
    digest = hashlib.sha256(source_id.encode()).hexdigest()[: DOC_NUMBER_MAX - len(prefix)]
    return f"{prefix}{digest}"
