"""Plain JSON values from domain data (Decimal, datetime, UUID, Enum, tuples): one conversion,
used by the views, the API and the use cases (pure: no I/O)."""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any
from uuid import UUID


def to_jsonable(value: Any) -> Any:
    """Decimals and UUIDs as strings, times as ISO 8601, enums as values, tuples as lists."""
    if isinstance(value, Decimal | UUID):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in value]
    return value


def as_text(value: Any) -> str:
    """A value as a person reads it: scalars plainly, structures as compact JSON."""
    plain = to_jsonable(value)
    if isinstance(plain, dict | list):
        return json.dumps(plain, ensure_ascii=False, separators=(", ", ": "))
    return str(plain)
