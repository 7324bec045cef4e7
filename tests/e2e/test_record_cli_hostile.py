"""Property tests of the hostile-input rules (issue 9) through the in-process `record` command.

The rules checked on the parser alone are in tests/unit/test_records_hostile.py.
"""

from __future__ import annotations

import json
import string
import uuid
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tests.e2e.record_cli import SETTINGS, db, invoke, log_size
from tests.factories import flight, fullwidth

__all__ = ["db"]  # the fixture, used by name below

ASCII_ID = st.text(string.ascii_letters + string.digits + "-_.", min_size=1, max_size=20)
FORBIDDEN = st.one_of(
    st.characters(categories=["Cc", "Cf", "Zl", "Zp"]),
    st.sampled_from(["\u202e", "\u202a", "\u2066", "\u2069", "\u200e", "\u200f", "\u061c"]),
)


def one(db: str, record: dict[str, Any] | str, kind: str = "flight-ended") -> dict[str, Any]:
    """Record one line through the CLI; the JSON summary (asserting exit 0 or 2)."""
    line = record if isinstance(record, str) else json.dumps(record)
    code, out = invoke(db, kind, "-", stdin=line + "\n")
    assert code == (2 if out["rejected"] else 0)
    return out


@SETTINGS
@given(ident=ASCII_ID)
def test_fullwidth_and_ascii_ids_are_one_flight(db: str, ident: str) -> None:
    """An id and its fullwidth form are one identity (NFKC): the second is a duplicate."""
    before = log_size(db)
    ident = f"W{ident}-{uuid.uuid4().hex[:8]}"  # the log is shared by every example
    assert one(db, flight(fullwidth(ident)))["recorded"] == 1
    assert one(db, flight(ident)) == {"recorded": 0, "duplicates": 1, "rejected": []}
    assert log_size(db) == before + 1


@SETTINGS
@given(
    field=st.sampled_from(["flight_id", "student.id", "aircraft.tail", "student.name"]),
    bad=FORBIDDEN,
    at=st.integers(0, 5),
)
def test_control_format_and_bidi_characters_are_refused(
    db: str, field: str, bad: str, at: int
) -> None:
    """Any control, format or bidi character in an id or name refuses the line naming the field."""
    record = flight("F-BIDI")
    parent, _, leaf = field.rpartition(".")
    target = record[parent] if parent else record
    target[leaf] = target[leaf][:at] + bad + target[leaf][at:]
    before = log_size(db)
    out = one(db, record)
    assert out["recorded"] == 0 and out["rejected"][0]["field"] == field
    assert log_size(db) == before


@SETTINGS
@given(key=st.sampled_from(["flight_id", "currency", "student", "charges"]))
def test_a_key_given_twice_in_one_object_is_refused(db: str, key: str) -> None:
    """A duplicate key refuses the line naming that key; nothing is appended."""
    text = json.dumps(flight("F-TWICE"))
    line = text[:-1] + f", {json.dumps(key)}: " + json.dumps(flight("F-OTHER")[key]) + "}"
    before = log_size(db)
    out = one(db, line)
    assert out["rejected"] == [
        {"line": 1, "field": key, "reason": "appears more than once in one object"}
    ]
    assert log_size(db) == before


@SETTINGS
@given(
    depth=st.integers(1_100, 20_000),
    field=st.sampled_from(["flight_id", "charges", "hobbs"]),
    bracket=st.sampled_from("[{"),
)
def test_nesting_thousands_deep_is_a_rejection(
    db: str, depth: int, field: str, bracket: str
) -> None:
    """A value nested thousands deep is a rejection of that line, never a crash."""
    opening = '{"a":' if bracket == "{" else "["
    closing = "}" if bracket == "{" else "]"
    record = flight("F-DEEP")
    record[field] = "__DEEP__"
    value = opening * depth + "1" + closing * depth
    line = json.dumps(record).replace('"__DEEP__"', value)
    ok = json.dumps(flight(f"F-OK-{uuid.uuid4().hex}"))
    before = log_size(db)
    code, out = invoke(db, "flight-ended", "-", stdin=line + "\n" + ok + "\n")
    assert code == 2
    assert out["recorded"] == 1 and out["rejected"][0]["line"] == 1
    assert out["rejected"][0]["field"].startswith(("record", field))  # too deep, or not a string
    assert log_size(db) == before + 1


@SETTINGS
@given(
    digits=st.integers(5_000, 50_000),
    field=st.sampled_from(["charges[0].quantity", "charges[0].rate", "hobbs.end", "flight_id"]),
)
def test_integers_of_thousands_of_digits_are_refused_naming_the_field(
    db: str, digits: int, field: str
) -> None:
    """An integer of thousands of digits is refused naming its field, not a ValueError."""
    record = flight("F-HUGE")
    marker = "__HUGE__"
    if field == "flight_id":
        record["flight_id"] = marker
    elif field == "hobbs.end":
        record["hobbs"]["end"] = marker
    else:
        record["charges"][0][field.rsplit(".", 1)[1]] = marker
    line = json.dumps(record).replace(f'"{marker}"', "9" * digits)
    out = one(db, line)
    assert out["recorded"] == 0 and out["rejected"][0]["field"] == field


@SETTINGS
@given(
    bad_line=st.integers(1, 40),
    offset=st.integers(0, 60),
    garbage=st.sampled_from([b"\xff", b"\xc3\x28", b"\xe2\x82", b"\xed\xa0\x80"]),
)
def test_invalid_utf8_is_a_rejection_of_that_line_at_that_byte(
    db: str, bad_line: int, offset: int, garbage: bytes
) -> None:
    """Invalid UTF-8 rejects only its line, naming field 'line' and the byte within the line."""
    run = uuid.uuid4().hex[:8]
    lines = [json.dumps(flight(f"F-U{run}-{n}")).encode() for n in range(1, 41)]
    raw = lines[bad_line - 1]
    lines[bad_line - 1] = raw[:offset] + garbage + raw[offset:]
    before = log_size(db)
    out = invoke_bytes(db, b"\n".join(lines) + b"\n")
    assert out["recorded"] == 39
    assert len(out["rejected"]) == 1
    rejected = out["rejected"][0]
    assert (rejected["line"], rejected["field"]) == (bad_line, "line")
    assert f"at byte {offset + 1} of the line" in rejected["reason"]
    assert log_size(db) == before + 39


def invoke_bytes(db: str, data: bytes) -> dict[str, Any]:
    """Run `record flight-ended -` with raw bytes on stdin; the JSON summary."""
    return invoke(db, "flight-ended", "-", stdin=data)[1]


def test_a_bom_opening_the_input_is_skipped_elsewhere_refused(db: str) -> None:
    """A UTF-8 BOM before line 1 is skipped; one opening a later line rejects that line."""
    first = json.dumps(flight("F-BOM1")).encode()
    second = json.dumps(flight("F-BOM2")).encode()
    out = invoke_bytes(db, b"\xef\xbb\xbf" + first + b"\n\xef\xbb\xbf" + second + b"\n")
    assert out["recorded"] == 1
    assert [(r["line"], r["field"]) for r in out["rejected"]] == [(2, "record")]
