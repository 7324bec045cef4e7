"""The hostile-input rules (issue 9) checked on the record parser alone (no CLI, no database).

Through the `record` command: tests/e2e/test_record_cli_hostile.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.records import MAX_TOTAL, RecordError, RecordKind, parse_flight_ended, parse_line
from tests.factories import flight, fullwidth

SETTINGS = settings(max_examples=20, deadline=None)


@SETTINGS
@given(
    value=st.decimals(min_value="0.01", max_value="999.99", places=2),
    left=st.sampled_from(["", " ", "  ", "\t"]),
    right=st.sampled_from(["", " ", "\t "]),
)
def test_decimal_strings_are_trimmed_and_minus_zero_is_zero(
    value: Any, left: str, right: str
) -> None:
    """' 165.00 ' reads as 165.00; '-0' and '-0.00' read as 0.00 (never '-0.00')."""
    record = flight("F-TRIM")
    record["charges"] = [
        {"code": "a", "quantity": f"{left}1{right}", "rate": f"{left}{value}{right}"},
        {"code": "b", "quantity": "-0", "rate": "-0.00"},
    ]
    parsed = parse_flight_ended(json.loads(json.dumps(record)))
    assert parsed.charges[0].rate == value
    assert str(parsed.charges[1].quantity) == "0.00" and str(parsed.charges[1].rate) == "0.00"


@pytest.mark.parametrize("text", ["1e2", "1_000", "١٦٥", "0x10", "+-1", "1.", ".5"])
def test_decimal_strings_are_plain_ascii_digits(text: str) -> None:
    """Exponents, underscores, non-ASCII digits and half-numbers are not decimal strings."""
    record = flight("F-DIGITS")
    record["charges"][0]["rate"] = text
    with pytest.raises(RecordError) as refused:
        parse_line(RecordKind.FLIGHT_ENDED, json.dumps(record))
    assert refused.value.field == "charges[0].rate"


def test_totals_are_bounded_not_only_each_number() -> None:
    """250 charges of 99,999,999.99 x 99,999,999.99 are refused; so is a total over MAX_TOTAL."""
    record = flight("F-BIG")
    big = "99999999.99"
    record["charges"] = [{"code": f"c{i}", "quantity": big, "rate": big} for i in range(250)]
    with pytest.raises(RecordError) as refused:
        parse_line(RecordKind.FLIGHT_ENDED, json.dumps(record))
    assert refused.value.field == "charges[0].quantity"
    record["charges"] = [
        {"code": f"c{i}", "quantity": "10", "rate": "90000.00"} for i in range(2)
    ]  # each 900,000.00 is allowed; together 1,800,000.00 is not
    with pytest.raises(RecordError) as total:
        parse_line(RecordKind.FLIGHT_ENDED, json.dumps(record))
    assert total.value.field == "charges" and str(MAX_TOTAL) in total.value.reason
    record["charges"] = [{"code": "c", "quantity": "10", "rate": str(MAX_TOTAL / 10)}]
    assert parse_line(RecordKind.FLIGHT_ENDED, json.dumps(record)).total == MAX_TOTAL


def test_mapping_keys_are_normalised_like_record_ids() -> None:
    """A charge code typed in fullwidth forms maps the ASCII code the records carry."""
    from domain.mapping_input import mapping_key

    typed = fullwidth("aircraft_rental")
    assert mapping_key(typed, "CODE") == "aircraft_rental"
    record = flight("F-MAP")
    record["charges"][0]["code"] = typed
    parsed = parse_flight_ended(json.loads(json.dumps(record)))
    assert parsed.charges[0].code == mapping_key("aircraft_rental", "CODE")
