"""Mappings, invoice defaults and the per-school switches, once for every entry point.

`flightledger mappings set charge|student|payment-type|defaults` and `settings auto-invoice|
auto-customers`, the settings page's forms and `PUT /api/v1/mappings/{kind}/{key}` /
`PUT /api/v1/defaults` call these. Each entry point checks what was typed with
domain.mapping_input (naming its own flag, label or field) and words a refusal its own way;
which QuickBooks object a mapping names, whether QuickBooks' lists accept it and what is
recorded are decided here.

The lists are passed in: an entry point gives the lists it may use (the CLI reads them once
when it has none, a web request only the cached ones) or None when QuickBooks cannot be read,
and then the mapping is recorded unchecked.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from domain.application import FlightLedger
from domain.mapping_check import KeyUse, MappingProblem, usage_problems
from domain.qbo_lists import (
    ACCOUNT,
    CUSTOMER,
    ITEM,
    PAYMENT_METHOD,
    TERM,
    QboLists,
    ReferenceProblem,
    check_reference,
)

CHARGE = "charge"
STUDENT = "student"
PAYMENT_TYPE = "payment_type"
KINDS: tuple[str, ...] = (CHARGE, STUDENT, PAYMENT_TYPE)
KIND_ENTITY = {CHARGE: ITEM, STUDENT: CUSTOMER, PAYMENT_TYPE: ACCOUNT}
# What part of the input names a QuickBooks object (the API's field names; the CLI and the
# settings page map them to their own flags and labels).
QBO_ID = "qbo_id"
PAYMENT_METHOD_ID = "payment_method_id"
TERM_ID = "term"
INCOME_ACCOUNT_ID = "income_account"
SWITCHES = ("auto_invoice", "auto_customers")
STUDENT_ACTIVE_ONLY = "a student mapping cannot be inactive"


@dataclass(frozen=True)
class Reference:
    """A QuickBooks object the input names: its entity, its id and which part names it."""

    entity: str
    qbo_id: str
    part: str


@dataclass(frozen=True)
class MappingChange:
    """One mapping: a charge code, student or payment type (`kind`) to a QuickBooks id."""

    kind: str
    key: str
    qbo_id: str
    payment_method_id: str | None = None
    active: bool = True

    def references(self) -> list[Reference]:
        """The QuickBooks objects this mapping names, in the order they are checked."""
        found = [Reference(KIND_ENTITY[self.kind], self.qbo_id, QBO_ID)]
        if self.kind == PAYMENT_TYPE and self.payment_method_id:
            found.append(Reference(PAYMENT_METHOD, self.payment_method_id, PAYMENT_METHOD_ID))
        return found


class ReferenceRefused(ValueError):
    """QuickBooks' lists do not hold the object, or hold it inactive (and that was not
    allowed): nothing was recorded."""

    def __init__(self, reference: Reference, problem: ReferenceProblem) -> None:
        super().__init__(problem.sentence())
        self.reference = reference
        self.problem = problem

    def sentence(self, field: str) -> str:
        """'<field>: QuickBooks item 999 does not exist' / '<field>: QuickBooks item 5 (Old
        rental) is inactive in QuickBooks: choose an active one' (the settings page's and the
        API's words; the CLI adds how to see and read the lists, or --allow-inactive)."""
        if self.problem.state == "missing":
            return f"{field}: {self.problem.sentence()}"
        return f"{field}: {self.problem.sentence()} in QuickBooks: choose an active one"


class MappingRefused(ValueError):
    """The change cannot be recorded as asked; `part` names what is wrong."""

    def __init__(self, part: str, reason: str) -> None:
        super().__init__(f"{part}: {reason}")
        self.part = part
        self.reason = reason


@dataclass(frozen=True)
class Checked:
    """What the check against QuickBooks' lists found: whether there were lists to check
    with, and the inactive objects accepted because that was allowed."""

    checked: bool
    accepted_inactive: tuple[tuple[Reference, ReferenceProblem], ...] = ()


def check_references(
    lists: QboLists | None, references: Sequence[Reference], *, allow_inactive: bool
) -> Checked:
    """Refuse (ReferenceRefused, the first in order) an id the lists do not hold, or hold as
    inactive unless allowed; without lists nothing is checked."""
    if lists is None:
        return Checked(checked=False)
    accepted: list[tuple[Reference, ReferenceProblem]] = []
    for reference in references:
        problem = check_reference(lists, reference.entity, reference.qbo_id)
        if problem is None:
            continue
        if problem.state == "missing" or not allow_inactive:
            raise ReferenceRefused(reference, problem)
        accepted.append((reference, problem))
    return Checked(checked=True, accepted_inactive=tuple(accepted))


def set_mapping(
    ledger: FlightLedger,
    school: str,
    change: MappingChange,
    *,
    operator: str,
    lists: QboLists | None,
    allow_inactive: bool = False,
) -> Checked:
    """Check the mapping's QuickBooks objects against the lists, then record it (kept with its
    operator). Raises ReferenceRefused, or MappingRefused for an inactive student mapping."""
    if change.kind not in KINDS:
        raise MappingRefused("kind", f"unknown kind {change.kind!r}; one of {', '.join(KINDS)}")
    checked = check_references(lists, change.references(), allow_inactive=allow_inactive)
    if change.kind == CHARGE:
        ledger.map_charge(
            school, change.key, change.qbo_id, active=change.active, operator=operator
        )
    elif change.kind == STUDENT:
        if not change.active:
            raise MappingRefused("active", STUDENT_ACTIVE_ONLY)
        ledger.map_student(school, change.key, change.qbo_id, operator=operator)
    else:
        ledger.map_payment_type(
            school,
            change.key,
            change.qbo_id,
            payment_method_id=change.payment_method_id,
            active=change.active,
            operator=operator,
        )
    return checked


def defaults_references(term_id: str | None, income_account_id: str | None) -> list[Reference]:
    """The QuickBooks objects a change of the invoice defaults names."""
    found = [Reference(TERM, term_id, TERM_ID)] if term_id is not None else []
    if income_account_id is not None:
        found.append(Reference(ACCOUNT, income_account_id, INCOME_ACCOUNT_ID))
    return found


class NothingToSet(ValueError):
    """A change of the invoice defaults that names none of them."""


def set_defaults(
    ledger: FlightLedger,
    school: str,
    *,
    operator: str,
    term_id: str | None = None,
    memo: str | None = None,
    income_account_id: str | None = None,
    lists: QboLists | None,
    allow_inactive: bool = False,
) -> Checked:
    """Set the invoice defaults given (the others are kept), their QuickBooks objects checked
    against the lists. Raises NothingToSet when none is given, ReferenceRefused."""
    if term_id is None and memo is None and income_account_id is None:
        raise NothingToSet("give at least one of the term, the memo, the income account")
    checked = check_references(
        lists, defaults_references(term_id, income_account_id), allow_inactive=allow_inactive
    )
    ledger.set_defaults(
        school, operator=operator, term_id=term_id, memo=memo, income_account_id=income_account_id
    )
    return checked


class InvalidSwitch(ValueError):
    """A switch is set 'on' or 'off', nothing else."""

    def __init__(self, state: str) -> None:
        super().__init__(f"state: must be 'on' or 'off', not {state!r}")


def set_switch(
    ledger: FlightLedger, school: str, switch: str, state: str, *, operator: str
) -> bool:
    """Turn `auto_invoice` or `auto_customers` 'on' or 'off' (InvalidSwitch otherwise);
    returns the new value."""
    if state not in ("on", "off"):
        raise InvalidSwitch(state)
    enabled = state == "on"
    if switch == "auto_invoice":
        ledger.set_auto_invoice(school, enabled, operator=operator)
    elif switch == "auto_customers":
        ledger.set_auto_customers(school, enabled, operator=operator)
    else:
        raise ValueError(f"unknown switch {switch!r}; one of {', '.join(SWITCHES)}")
    return enabled


class UsageRows(Protocol):
    """The part of the financial-event view the mapping check reads (its usage counters)."""

    def usage(self, school: str) -> Iterable[KeyUse]:
        """How many unsent events use each mapping key, with a few examples."""
        ...


def mapping_problems(
    ledger: FlightLedger, view: UsageRows, school: str, lists: QboLists | None
) -> list[MappingProblem]:
    """The mapping keys unsent events use that are unmapped, or mapped to an inactive or
    missing QuickBooks object (judged by `lists` when given): `mappings check`, the setup
    checklist and the settings page's "Needs a mapping". Read from the view's usage counters
    (no event is loaded from the log); with auto-customers on, an unmapped student is the
    worker's to map, not a problem."""
    return usage_problems(
        view.usage(school),
        ledger.mappings(school),
        lists,
        auto_customers=ledger.settings(school).auto_customers,
    )
