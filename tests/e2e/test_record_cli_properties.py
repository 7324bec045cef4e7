"""Property tests of validation through the `record` command (in-process CLI on SQLite).

End to end (the command's parsing, the ledger, the log); kept quick by running the CLI in this
process, 20 examples a test, one temporary SQLite file per test (tests/e2e/record_cli.py).
"""

from __future__ import annotations

import json
import unicodedata
import uuid
from collections.abc import Callable
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tests.e2e.record_cli import SETTINGS, db, invoke, log_size
from tests.factories import flight, invoice_request, payment

__all__ = ["db"]  # the fixture, used by name below
Mutation = tuple[dict[str, Any], str]  # (record, the field the refusal must name)


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def apply(record: dict[str, Any]) -> None:
        target = record
        *parents, last = path.replace("[0]", ".0").split(".")
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]  # type: ignore[index]
        target[last] = value

    return apply


REQUIRED = ["flight_id", "ended_at", "student", "instructor", "aircraft", "hobbs", "charges"]
bad_ids = st.one_of(
    st.just(""),
    st.text(min_size=65, max_size=80).filter(lambda s: s.isprintable() and s.strip() == s),
    st.text(min_size=1, max_size=10).map(lambda s: s + "\x07"),
    st.integers(),
    st.lists(st.integers(), max_size=2),
)
bad_places = st.decimals(min_value=0, max_value=1000, places=3).filter(
    lambda d: d.as_tuple().exponent == -3 and d != d.quantize(1)
)


@st.composite
def malformed(draw: st.DrawFn) -> Mutation:
    """A valid flight with one mutation, and the field the refusal must name."""
    record = flight(f"F-{draw(st.uuids()).hex[:12]}")
    choice = draw(st.integers(min_value=0, max_value=10))
    if choice == 0:
        field = draw(st.sampled_from(REQUIRED))
        del record[field]
        return record, field
    if choice == 1:
        name = draw(st.text(st.characters(categories=["Ll"]), min_size=1, max_size=12))
        if name in record:
            name += "_x"
        record[name] = draw(st.one_of(st.integers(), st.text(max_size=5)))
        return record, name
    if choice == 2:
        field = draw(st.sampled_from(["flight_id", "student.id", "aircraft.tail"]))
        _set(field, draw(bad_ids))(record)
        return record, field
    if choice == 3:
        part = draw(st.sampled_from(["quantity", "rate"]))
        _set(f"charges[0].{part}", str(draw(bad_places)))(record)
        return record, f"charges[0].{part}"
    if choice == 4:
        part = draw(st.sampled_from(["quantity", "rate"]))
        value = draw(
            st.decimals(max_value="-0.01", places=2, allow_nan=False, allow_infinity=False)
        )
        _set(f"charges[0].{part}", str(value))(record)
        return record, f"charges[0].{part}"
    if choice == 5:
        record["charges"] = [
            {"code": f"c{i}", "quantity": "0", "rate": str(draw(st.integers(0, 500)))}
            for i in range(draw(st.integers(1, 3)))
        ]
        return record, "charges"
    if choice == 6:
        start = draw(st.integers(1, 100_000))
        end = draw(st.integers(0, start - 1))
        record["hobbs"] = {"start": f"{start / 10:.1f}", "end": f"{end / 10:.1f}"}
        return record, "hobbs.end"
    if choice == 7:
        record["ended_at"] = draw(
            st.one_of(
                st.datetimes().map(lambda d: d.isoformat()),  # naive: no time zone
                st.text(max_size=12).filter(lambda s: not s[:4].isdigit()),
                st.integers(),
            )
        )
        return record, "ended_at"
    if choice == 8:
        record["currency"] = draw(
            st.one_of(
                st.text(max_size=6).filter(lambda s: not (len(s) == 3 and s.isupper())),
                st.integers(),
            )
        )
        return record, "currency"
    if choice == 9:
        field = draw(st.sampled_from(["flight_id", "hobbs", "charges", "student", "currency"]))
        wrong = draw(st.sampled_from([True, None, 1.5, ["x"], {"a": 1}]))
        record[field] = wrong
        return record, field
    record["charges"][0]["rate"] = draw(st.sampled_from(["NaN", "Infinity", "1e999", "12,50"]))
    return record, "charges[0].rate"


@SETTINGS
@given(mutation=malformed())
def test_any_malformed_record_exits_2_naming_the_field(db: str, mutation: Mutation) -> None:
    """Any malformed record: exit 2, a rejection naming its line, field and reason, nothing
    appended."""
    record, field = mutation
    before = log_size(db)
    code, out = invoke(db, "flight-ended", "-", stdin=json.dumps(record) + "\n")
    assert code == 2
    assert out["recorded"] == 0
    assert len(out["rejected"]) == 1
    rejected = out["rejected"][0]
    assert rejected["line"] == 1
    assert rejected["field"] == field or rejected["field"].startswith(field.split(".")[0])
    assert rejected["reason"]
    assert log_size(db) == before


money = st.decimals(min_value="0.01", max_value="2499.99", places=2)  # 4 x 10 x rate < MAX_TOTAL
hours = st.decimals(min_value="0.01", max_value="100", places=2)
party_id = st.text(st.characters(categories=["L", "N", "P", "S"]), min_size=1, max_size=64).filter(
    lambda s: (n := unicodedata.normalize("NFKC", s)) == n.strip() and 1 <= len(n) <= 64
)


@st.composite
def valid(draw: st.DrawFn) -> dict[str, Any]:
    """A valid flight-ended record with varied ids, names, charges and times."""
    start = draw(st.decimals(min_value=0, max_value="90000", places=1))
    charges = [
        {"code": draw(party_id), "quantity": str(draw(hours)), "rate": str(draw(money))}
        for _ in range(draw(st.integers(1, 4)))
    ]
    charges[0]["quantity"] = str(draw(st.integers(1, 10)))  # a positive total, whatever the rest
    ended = draw(st.datetimes(timezones=st.timezones())).isoformat()
    return flight(
        f"{unicodedata.normalize('NFKC', draw(party_id))[:30]}-{uuid.uuid4().hex}",
        student=draw(party_id),
        ended_at=ended,
        hobbs={"start": str(start), "end": str(start + draw(money))},
        charges=charges,
    )


@SETTINGS
@given(record=valid())
def test_any_valid_record_is_recorded_exactly_once(db: str, record: dict[str, Any]) -> None:
    """Any valid record is recorded once; sending it again is a duplicate that appends nothing."""
    before = log_size(db)
    line = json.dumps(record) + "\n"
    assert invoke(db, "flight-ended", "-", stdin=line) == (
        0,
        {"recorded": 1, "duplicates": 0, "rejected": []},
    )
    assert log_size(db) == before + 1
    assert invoke(db, "flight-ended", "-", stdin=line) == (
        0,
        {"recorded": 0, "duplicates": 1, "rejected": []},
    )
    assert log_size(db) == before + 1


# --- invoice-requested and payment-received: the same two properties -------------------------

OTHER_KINDS: dict[str, dict[str, Any]] = {
    "invoice-requested": {
        "make": invoice_request,
        "id": "request_id",
        "time": "requested_at",
        "required": ["request_id", "requested_at", "student", "charges", "currency"],
        "ids": ["request_id", "student.id", "charges[0].code"],
    },
    "payment-received": {
        "make": payment,
        "id": "payment_id",
        "time": "received_at",
        "required": [
            "payment_id",
            "received_at",
            "student",
            "amount",
            "payment_type",
            "currency",
        ],
        "ids": ["payment_id", "student.id", "payment_type"],
    },
}


@st.composite
def malformed_other(draw: st.DrawFn) -> tuple[str, dict[str, Any], str]:
    """(kind, a valid record of that kind with one mutation, the field the refusal must name)."""
    kind = draw(st.sampled_from(sorted(OTHER_KINDS)))
    spec = OTHER_KINDS[kind]
    record: dict[str, Any] = spec["make"](f"X-{draw(st.uuids()).hex[:12]}")
    choice = draw(st.integers(min_value=0, max_value=6))
    if choice == 0:
        field = draw(st.sampled_from(spec["required"]))
        del record[field]
        return kind, record, field
    if choice == 1:
        name = draw(st.text(st.characters(categories=["Ll"]), min_size=1, max_size=12))
        if name in record or name in ("memo", "applies_to"):
            name += "_x"
        record[name] = draw(st.one_of(st.integers(), st.text(max_size=5)))
        return kind, record, name
    if choice == 2:
        field = draw(st.sampled_from(spec["ids"]))
        _set(field, draw(bad_ids))(record)
        return kind, record, field
    if choice == 3:
        naive_or_junk = st.one_of(
            st.datetimes().map(lambda d: d.isoformat()),
            st.text(max_size=12).filter(lambda s: not s[:4].isdigit()),
            st.integers(),
        )
        record[spec["time"]] = draw(naive_or_junk)
        return kind, record, spec["time"]
    if choice == 4:
        record["currency"] = draw(
            st.text(max_size=6).filter(lambda s: not (len(s) == 3 and s.isupper()))
        )
        return kind, record, "currency"
    if kind == "payment-received":
        bad_amount = st.one_of(
            st.decimals(max_value="0", places=2, allow_nan=False, allow_infinity=False).map(str),
            bad_places.map(str),
            st.sampled_from(["NaN", "Infinity", "12,50", "", True]),
        )
        record["amount"] = draw(bad_amount)
        return kind, record, "amount"
    part = draw(st.sampled_from(["quantity", "rate"]))
    _set(f"charges[0].{part}", str(draw(bad_places)))(record)
    return kind, record, f"charges[0].{part}"


@SETTINGS
@given(case=malformed_other())
def test_any_malformed_request_or_payment_exits_2_naming_the_field(
    db: str, case: tuple[str, dict[str, Any], str]
) -> None:
    """Invoice requests and payments too: exit 2, the field named, nothing appended."""
    kind, record, field = case
    before = log_size(db)
    code, out = invoke(db, kind, "-", stdin=json.dumps(record) + "\n")
    assert code == 2
    assert (out["recorded"], len(out["rejected"])) == (0, 1)
    rejected = out["rejected"][0]
    assert rejected["line"] == 1 and rejected["reason"]
    assert rejected["field"] == field or rejected["field"].startswith(field.split(".")[0])
    assert log_size(db) == before


@st.composite
def valid_other(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """(kind, a valid invoice-requested or payment-received record with varied values)."""
    kind = draw(st.sampled_from(sorted(OTHER_KINDS)))
    ref = f"{unicodedata.normalize('NFKC', draw(party_id))[:30]}-{uuid.uuid4().hex}"
    record: dict[str, Any] = OTHER_KINDS[kind]["make"](ref)
    record["student"] = {"id": draw(party_id), "name": draw(party_id)}
    record[OTHER_KINDS[kind]["time"]] = draw(st.datetimes(timezones=st.timezones())).isoformat()
    if kind == "payment-received":
        record["amount"] = str(draw(money))
        if draw(st.booleans()):
            record["applies_to"] = draw(party_id)
    else:
        record["charges"] = [
            {"code": draw(party_id), "quantity": str(draw(st.integers(1, 10))), "rate": str(m)}
            for m in draw(st.lists(money, min_size=1, max_size=3))
        ]
        if draw(st.booleans()):
            del record["memo"]
    return kind, record


@SETTINGS
@given(case=valid_other())
def test_any_valid_request_or_payment_is_recorded_exactly_once(
    db: str, case: tuple[str, dict[str, Any]]
) -> None:
    """Any valid invoice request or payment is recorded once; again, it is a duplicate."""
    kind, record = case
    before = log_size(db)
    line = json.dumps(record) + "\n"
    assert invoke(db, kind, "-", stdin=line) == (
        0,
        {"recorded": 1, "duplicates": 0, "rejected": []},
    )
    assert invoke(db, kind, "-", stdin=line) == (
        0,
        {"recorded": 0, "duplicates": 1, "rejected": []},
    )
    assert log_size(db) == before + 1
