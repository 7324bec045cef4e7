"""Auto-customers: which new students need a QuickBooks customer, and which one is theirs (pure).

A student with no customer mapping is matched to an ACTIVE QuickBooks customer with the same
display name (and the same email when the record carries one), or a customer is created for
them. Two or more candidates -> a person decides (`ambiguous_customer`). The worker
(services/new_customers.py) does the calls and records the outcome; the rules live here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from domain.financial_event import FinancialEvent
from domain.mappings import Mappings
from domain.ports import PushOutcome

MATCHED = "matched"
CREATED = "created"


@dataclass(frozen=True)
class CustomerCandidate:
    """A QuickBooks customer as the matching needs it."""

    id: str
    display_name: str
    email: str | None = None
    active: bool = True

    def describe(self) -> str:
        """In words, e.g. customer 7 'Zoe Park' (zoe@example.com)."""
        email = f" ({self.email})" if self.email else ""
        return f"customer {self.id} '{self.display_name}'{email}"


@dataclass(frozen=True)
class CustomerDraft:
    """A Customer to create for a student; request_id is derived from school + student."""

    student_id: str
    display_name: str
    email: str | None
    request_id: str


@dataclass(frozen=True)
class CustomerLookup:
    """Customers QuickBooks holds under a display name, or the failure."""

    candidates: tuple[CustomerCandidate, ...] = ()
    failure: PushOutcome | None = None


@dataclass(frozen=True)
class CustomerCreated:
    """A Customer create: the customer, or the failure (duplicate_name: QBO's Duplicate Name
    Exists)."""

    customer: CustomerCandidate | None = None
    failure: PushOutcome | None = None
    duplicate_name: bool = False


@runtime_checkable
class CustomerDirectory(Protocol):
    """The accounting system's customers (the QuickBooks gateway implements it)."""

    def find_customers(self, display_name: str) -> CustomerLookup:
        """Customers with this display name (one metered read)."""
        ...

    def create_customer(self, draft: CustomerDraft) -> CustomerCreated:
        """Create one customer with draft.request_id (a replay returns the original)."""
        ...


class KnownCustomers(Protocol):
    """The customers a cached copy of the QuickBooks lists holds (no metered read)."""

    def customers(self, school: str) -> Sequence[CustomerCandidate] | None:
        """The cached customers of the school's realm; None when nothing is cached."""
        ...

    def remember(self, school: str, customer: CustomerCandidate) -> None:
        """Add (or update) one customer in the cache, if the school has one."""
        ...


@dataclass(frozen=True)
class NewStudent:
    """A student the waiting events reference who has no customer mapping yet."""

    id: str
    name: str
    email: str | None


@dataclass(frozen=True)
class Match:
    """This customer is the student's."""

    customer: CustomerCandidate


@dataclass(frozen=True)
class Create:
    """No customer is the student's: create one."""


@dataclass(frozen=True)
class Ambiguous:
    """A person must choose (message names every candidate with id and name)."""

    candidates: tuple[CustomerCandidate, ...]
    message: str


Decision = Match | Create | Ambiguous


def normalize_name(name: str) -> str:
    """Names compare without case and with runs of spaces as one."""
    return " ".join(name.split()).casefold()


def _same_email(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and a.strip().casefold() == b.strip().casefold()


def new_students(events: Iterable[FinancialEvent], mappings: Mappings) -> dict[str, NewStudent]:
    """Unmapped students of these events, in first-seen order (name and email of the first
    event that names them; an email from a later event fills a gap)."""
    found: dict[str, NewStudent] = {}
    for event in events:
        if event.student_id in mappings.students:
            continue
        student = event.data.get("student") or {}
        email = student.get("email") if isinstance(student, dict) else None
        known = found.get(event.student_id)
        if known is None:
            found[event.student_id] = NewStudent(
                event.student_id, event.student_name, str(email) if email else None
            )
        elif known.email is None and email:
            found[event.student_id] = NewStudent(known.id, known.name, str(email))
    return found


def decide(student: NewStudent, candidates: Iterable[CustomerCandidate]) -> Decision:
    """Match, create, or ask a person, from the customers QuickBooks holds under the name."""
    key = normalize_name(student.name)
    named = [c for c in candidates if c.active and normalize_name(c.display_name) == key]
    named.sort(key=lambda c: (len(c.id), c.id))
    if student.email is not None and named:
        same = [c for c in named if _same_email(c.email, student.email)]
        unknown = [c for c in named if not c.email]
        chosen = same or unknown
        if not chosen:
            others = ", ".join(c.describe() for c in named)
            return Ambiguous(
                tuple(named),
                f"QuickBooks already has a customer named '{student.name}' with another email "
                f"({others}; the record says {student.email}): map student {student.id} to the "
                "right customer",
            )
        named = chosen
    if not named:
        return Create()
    if len(named) == 1:
        return Match(named[0])
    listed = ", ".join(c.describe() for c in named)
    return Ambiguous(
        tuple(named),
        f"{len(named)} QuickBooks customers match new student {student.id} '{student.name}': "
        f"{listed}. Map the student to one of them",
    )


def name_taken(student: NewStudent, qbo_message: str) -> Ambiguous:
    """QBO refused the create (Duplicate Name Exists) and no active customer has the name."""
    return Ambiguous(
        (),
        f"QuickBooks refused to create a customer named '{student.name}' for new student "
        f"{student.id}: {qbo_message}. No active QuickBooks customer has this name (an inactive "
        "customer, a vendor or an employee may hold it): map the student to a customer",
    )
