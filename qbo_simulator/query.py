"""A parser and evaluator for the subset of QBO's query language the engine uses.

``SELECT * | COUNT(*) | fields FROM Entity [WHERE cond [AND cond]...]
[ORDER BY|ORDERBY field [ASC|DESC]] [STARTPOSITION n] [MAXRESULTS n]`` where a condition is
``Field op value`` (op one of = != < > <= >= LIKE) or ``Field IN (v, ...)``; values are quoted
strings (with ``\\'`` escapes), numbers, or true/false. Keywords are case-insensitive.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

QUERYABLE = (
    "Invoice", "Payment", "CreditMemo", "RefundReceipt",
    "Customer", "Item", "Account", "Term", "PaymentMethod",
)  # fmt: skip
LIST_ENTITIES = ("Customer", "Item", "Account", "Term", "PaymentMethod")
MAX_RESULTS_LIMIT = 1000
DEFAULT_MAX_RESULTS = 100

Scalar = str | Decimal | bool


class QueryError(ValueError):
    """The statement is not valid; the message follows QBO's QueryParserError detail."""


@dataclass(frozen=True)
class Condition:
    """One ``Field op value`` comparison (``values`` has several entries only for IN)."""

    field: str
    op: str
    values: tuple[Scalar, ...]


@dataclass(frozen=True)
class Query:
    """A parsed SELECT statement."""

    entity: str
    count: bool
    conditions: tuple[Condition, ...]
    order_by: str | None
    descending: bool
    start_position: int
    max_results: int


_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^'\\]|\\.)*')|(?P<num>-?\d+(?:\.\d+)?)|(?P<op><=|>=|!=|<>|=|<|>)"
    r"|(?P<punct>[(),*])|(?P<word>[A-Za-z_][A-Za-z0-9_.]*))"
)


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = text.strip().rstrip(";")
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            if text[pos:].strip() == "":
                break
            raise QueryError(f'QueryParserError: Encountered " {text[pos : pos + 10]!r}"')
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        pos = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.pos = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise QueryError("QueryParserError: Encountered <EOF> unexpectedly")
        self.pos += 1
        return token

    def keyword(self, *words: str) -> bool:
        token = self.peek()
        if token is not None and token[0] == "word" and token[1].upper() in words:
            self.pos += 1
            return True
        return False

    def expect_keyword(self, word: str) -> None:
        if not self.keyword(word):
            found = self.peek()
            raise QueryError(
                f"QueryParserError: Expected {word}, found {found[1] if found else 'EOF'}"
            )

    def expect(self, kind: str, value: str | None = None) -> str:
        token = self.take()
        if token[0] != kind or (value is not None and token[1].upper() != value):
            raise QueryError(f'QueryParserError: Encountered " {token[1]} "')
        return token[1]

    def value(self) -> Scalar:
        kind, text = self.take()
        if kind == "str":
            return re.sub(r"\\(.)", r"\1", text[1:-1])
        if kind == "num":
            return Decimal(text)
        if kind == "word" and text.lower() in ("true", "false"):
            return text.lower() == "true"
        raise QueryError(f'QueryParserError: Encountered " {text} "')

    def integer(self) -> int:
        return int(self.expect("num"))


def parse_query(text: str) -> Query:
    """Parse one statement or raise QueryError."""
    p = _Parser(text)
    p.expect_keyword("SELECT")
    count = False
    if p.keyword("COUNT"):
        p.expect("punct", "(")
        p.expect("punct", "*")
        p.expect("punct", ")")
        count = True
    else:
        while not p.keyword("FROM"):
            p.take()
        p.pos -= 1
    p.expect_keyword("FROM")
    entity_word = p.expect("word")
    entity = next((e for e in QUERYABLE if e.lower() == entity_word.lower()), None)
    if entity is None:
        raise QueryError(f"QueryValidationError: Invalid context declaration : {entity_word}")
    conditions: list[Condition] = []
    if p.keyword("WHERE"):
        conditions.append(_condition(p))
        while p.keyword("AND"):
            conditions.append(_condition(p))
    order_by: str | None = None
    descending = False
    if p.keyword("ORDERBY") or (p.keyword("ORDER") and p.keyword("BY")):
        order_by = p.expect("word")
        if p.keyword("DESC"):
            descending = True
        else:
            p.keyword("ASC")
    start, maximum = 1, DEFAULT_MAX_RESULTS
    while p.peek() is not None:
        if p.keyword("STARTPOSITION"):
            start = max(1, p.integer())
        elif p.keyword("MAXRESULTS"):
            maximum = p.integer()
            if maximum > MAX_RESULTS_LIMIT or maximum < 1:
                raise QueryError(f"QueryValidationError: MAXRESULTS must be 1-{MAX_RESULTS_LIMIT}")
        else:
            raise QueryError(f'QueryParserError: Encountered " {p.take()[1]} "')
    return Query(entity, count, tuple(conditions), order_by, descending, start, maximum)


def _condition(p: _Parser) -> Condition:
    field = p.expect("word")
    if p.keyword("IN"):
        p.expect("punct", "(")
        values = [p.value()]
        while p.peek() == ("punct", ","):
            p.take()
            values.append(p.value())
        p.expect("punct", ")")
        return Condition(field, "IN", tuple(values))
    if p.keyword("LIKE"):
        return Condition(field, "LIKE", (p.value(),))
    op = p.expect("op")
    return Condition(field, "!=" if op == "<>" else op, (p.value(),))


def _field_value(record: dict[str, Any], field: str) -> Any:
    value: Any = record
    for part in field.split("."):
        if not isinstance(value, dict):
            return None
        value = next((v for k, v in value.items() if k.lower() == part.lower()), None)
    if isinstance(value, dict) and "value" in value:
        return value["value"]
    return value


def _coerce(actual: Any, wanted: Scalar) -> tuple[Any, Any]:
    if isinstance(wanted, bool) or isinstance(actual, bool):
        return bool(actual), wanted
    if isinstance(wanted, Decimal) or isinstance(actual, int | float):
        try:
            return Decimal(str(actual)), Decimal(str(wanted))
        except InvalidOperation:
            return str(actual), str(wanted)
    return ("" if actual is None else str(actual)), str(wanted)


def matches(record: dict[str, Any], condition: Condition) -> bool:
    """Whether one record satisfies one condition (string comparisons are case-sensitive)."""
    actual = _field_value(record, condition.field)
    if condition.op == "IN":
        return any(_equal(actual, v) for v in condition.values)
    wanted = condition.values[0]
    if condition.op == "LIKE":
        pattern = re.escape(str(wanted)).replace("%", ".*")
        return re.fullmatch(pattern, "" if actual is None else str(actual), re.I) is not None
    if condition.op == "=":
        return _equal(actual, wanted)
    if condition.op == "!=":
        return not _equal(actual, wanted)
    left, right = _coerce(actual, wanted)
    try:
        return bool(
            {"<": left < right, ">": left > right, "<=": left <= right, ">=": left >= right}[
                condition.op
            ]
        )
    except TypeError:
        return False


def _equal(actual: Any, wanted: Scalar) -> bool:
    left, right = _coerce(actual, wanted)
    return bool(left == right)


def run_query(query: Query, records: list[dict[str, Any]]) -> dict[str, Any]:
    """Evaluate a parsed query over the records of its entity; returns the QueryResponse body."""
    selected = [r for r in records if all(matches(r, c) for c in query.conditions)]
    if query.entity in LIST_ENTITIES and not any(
        c.field.lower() == "active" for c in query.conditions
    ):
        selected = [r for r in selected if r.get("Active", True)]
    if query.count:
        return {"totalCount": len(selected)}
    if query.order_by is not None:
        key = query.order_by
        selected.sort(key=lambda r: str(_field_value(r, key) or ""), reverse=query.descending)
    page = selected[query.start_position - 1 : query.start_position - 1 + query.max_results]
    if not page:
        return {}
    return {query.entity: page, "startPosition": query.start_position, "maxResults": len(page)}
