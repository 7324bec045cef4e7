"""The simulator's query-language parser and evaluator."""

from __future__ import annotations

from decimal import Decimal

import pytest

from qbo_simulator.query import QueryError, parse_query, run_query

RECORDS = [
    {"Id": "1", "DocNumber": "FL-1001", "CustomerRef": {"value": "3"}, "TotalAmt": 10.0},
    {"Id": "2", "DocNumber": "FL-1002", "CustomerRef": {"value": "4"}, "TotalAmt": 25.5},
    {"Id": "3", "DocNumber": "O'Hare", "CustomerRef": {"value": "3"}, "TotalAmt": 7.0},
]


def test_parses_where_and_paging() -> None:
    """WHERE with AND, STARTPOSITION and MAXRESULTS are parsed (keywords case-insensitive)."""
    query = parse_query(
        "select * from invoice where DocNumber = 'FL-1001' and TotalAmt > 5 "
        "STARTPOSITION 2 MAXRESULTS 10"
    )
    assert query.entity == "Invoice"
    assert [(c.field, c.op, c.values) for c in query.conditions] == [
        ("DocNumber", "=", ("FL-1001",)),
        ("TotalAmt", ">", (Decimal(5),)),
    ]
    assert (query.start_position, query.max_results) == (2, 10)


def test_equality_on_refs_and_escaped_quotes() -> None:
    """A ref compares by its value; \\' in a literal is a quote."""
    assert (
        run_query(parse_query("SELECT * FROM Invoice WHERE CustomerRef = '3'"), RECORDS)[
            "maxResults"
        ]
        == 2
    )
    found = run_query(parse_query("SELECT * FROM Invoice WHERE DocNumber = 'O\\'Hare'"), RECORDS)
    assert [r["Id"] for r in found["Invoice"]] == ["3"]


def test_count_and_empty_result() -> None:
    """COUNT(*) answers totalCount; no match answers an empty QueryResponse."""
    assert run_query(parse_query("select count(*) from Invoice"), RECORDS) == {"totalCount": 3}
    assert run_query(parse_query("SELECT * FROM Invoice WHERE DocNumber = 'x'"), RECORDS) == {}


def test_in_like_and_order() -> None:
    """IN, LIKE and ORDER BY DESC select and sort records."""
    query = parse_query(
        "SELECT * FROM Invoice WHERE Id IN ('1', '2') AND DocNumber LIKE 'FL-%' "
        "ORDER BY DocNumber DESC"
    )
    assert [r["Id"] for r in run_query(query, RECORDS)["Invoice"]] == ["2", "1"]


def test_paging_slices() -> None:
    """STARTPOSITION is 1-based and MAXRESULTS caps the page."""
    page = run_query(parse_query("SELECT * FROM Invoice STARTPOSITION 2 MAXRESULTS 1"), RECORDS)
    assert [r["Id"] for r in page["Invoice"]] == ["2"]


def test_list_entities_hide_inactive_unless_asked() -> None:
    """Customer queries return active records unless Active is in the WHERE clause."""
    customers = [{"Id": "1", "Active": True}, {"Id": "2", "Active": False}]
    assert len(run_query(parse_query("SELECT * FROM Customer"), customers)["Customer"]) == 1
    both = parse_query("SELECT * FROM Customer WHERE Active IN (true, false)")
    assert len(run_query(both, customers)["Customer"]) == 2


@pytest.mark.parametrize(
    "text",
    ["SELECT * FROM Vendorz", "DELETE FROM Invoice", "SELECT * FROM Invoice WHERE",
     "SELECT * FROM Invoice MAXRESULTS 5000"],
)  # fmt: skip
def test_rejects_bad_statements(text: str) -> None:
    """Unknown entities, other verbs, dangling WHERE and oversize pages are QueryErrors."""
    with pytest.raises(QueryError):
        parse_query(text)
