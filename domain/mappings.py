"""The Mappings aggregate: how a school's codes map to QuickBooks objects."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from eventsourcing.domain import Aggregate


@dataclass(frozen=True)
class PaymentTypeMapping:
    """Where payments of one type are deposited."""

    deposit_account_id: str
    active: bool
    payment_method_id: str | None = None


class Mappings(Aggregate):
    """Charge codes -> Items, students -> Customers, payment types -> accounts, defaults."""

    class Started(Aggregate.Created):
        """The school's mappings exist (empty)."""

        school: str

        def apply(self, aggregate: Any) -> None:
            """Empty mappings."""
            agg: Mappings = aggregate
            agg.school = self.school
            agg.charges = {}
            agg.inactive_charges = set()
            agg.students = {}
            agg.customer_creates = {}
            agg.payment_types = {}
            agg.term_id = None
            agg.memo = None
            agg.income_account_id = None

    class ChargeCodeMapped(Aggregate.Event):
        """A charge code maps to a QBO Item (inactive ones are kept but not used)."""

        code: str
        item_id: str
        active: bool
        operator: str

        def apply(self, aggregate: Any) -> None:
            """Remember the item."""
            agg: Mappings = aggregate
            agg.charges[self.code] = self.item_id
            if self.active:
                agg.inactive_charges.discard(self.code)
            else:
                agg.inactive_charges.add(self.code)

    class StudentMapped(Aggregate.Event):
        """A student maps to a QBO Customer."""

        student_id: str
        customer_id: str
        operator: str

        def apply(self, aggregate: Any) -> None:
            """Remember the customer."""
            agg: Mappings = aggregate
            agg.students[self.student_id] = self.customer_id

    class StudentAutoMapped(StudentMapped):
        """Auto-customers mapped a new student: to a matched or a newly created Customer."""

        how: str  # "matched" | "created"
        display_name: str
        request_id: str | None  # the create's requestid, when a create was started

        def apply(self, aggregate: Any) -> None:
            """Remember the customer; any create for the student is settled."""
            agg: Mappings = aggregate
            agg.students[self.student_id] = self.customer_id
            agg.customer_creates.pop(self.student_id, None)

    class CustomerCreateStarted(Aggregate.Event):
        """A Customer create for a student is about to be sent (its requestid recorded first)."""

        student_id: str
        request_id: str
        display_name: str
        email: str | None
        operator: str

        def apply(self, aggregate: Any) -> None:
            """Until a mapping is recorded the create's outcome is uncertain."""
            agg: Mappings = aggregate
            agg.customer_creates[self.student_id] = self.request_id

    class PaymentTypeMapped(Aggregate.Event):
        """A payment type maps to a deposit account (kept when inactive)."""

        name: str
        deposit_account_id: str
        payment_method_id: str | None
        active: bool
        operator: str

        def apply(self, aggregate: Any) -> None:
            """Remember the account."""
            agg: Mappings = aggregate
            agg.payment_types[self.name] = PaymentTypeMapping(
                deposit_account_id=self.deposit_account_id,
                active=self.active,
                payment_method_id=self.payment_method_id,
            )

    class DefaultsSet(Aggregate.Event):
        """Invoice defaults: term, memo, income account (None keeps the old value)."""

        term_id: str | None
        memo: str | None
        income_account_id: str | None
        operator: str

        def apply(self, aggregate: Any) -> None:
            """Remember the defaults."""
            agg: Mappings = aggregate
            if self.term_id is not None:
                agg.term_id = self.term_id
            if self.memo is not None:
                agg.memo = self.memo
            if self.income_account_id is not None:
                agg.income_account_id = self.income_account_id

    school: str
    charges: dict[str, str]
    inactive_charges: set[str]
    students: dict[str, str]
    customer_creates: dict[str, str]  # student -> requestid of a create not yet settled
    payment_types: dict[str, PaymentTypeMapping]
    term_id: str | None
    memo: str | None
    income_account_id: str | None

    def __init__(self) -> None:
        """State is set by the creation event's apply()."""

    def map_charge(
        self, code: str, item_id: str, *, active: bool, operator: str, at: datetime
    ) -> None:
        """Map a charge code to an Item."""
        self.trigger_event(
            self.ChargeCodeMapped,
            code=code,
            item_id=item_id,
            active=active,
            operator=operator,
            timestamp=at,
        )

    def map_student(
        self, student_id: str, customer_id: str, *, operator: str, at: datetime
    ) -> None:
        """Map a student to a Customer."""
        self.trigger_event(
            self.StudentMapped,
            student_id=student_id,
            customer_id=customer_id,
            operator=operator,
            timestamp=at,
        )

    def auto_map_student(
        self,
        student_id: str,
        customer_id: str,
        *,
        how: str,
        display_name: str,
        operator: str,
        at: datetime,
    ) -> None:
        """Record the customer auto-customers matched or created for a student."""
        self.trigger_event(
            self.StudentAutoMapped,
            student_id=student_id,
            customer_id=customer_id,
            how=how,
            display_name=display_name,
            request_id=self.customer_creates.get(student_id),
            operator=operator,
            timestamp=at,
        )

    def start_customer_create(
        self,
        student_id: str,
        *,
        request_id: str,
        display_name: str,
        email: str | None,
        operator: str,
        at: datetime,
    ) -> None:
        """Record that a Customer create is about to be sent (once per student)."""
        if self.customer_creates.get(student_id) == request_id:
            return
        self.trigger_event(
            self.CustomerCreateStarted,
            student_id=student_id,
            request_id=request_id,
            display_name=display_name,
            email=email,
            operator=operator,
            timestamp=at,
        )

    def map_payment_type(
        self,
        name: str,
        deposit_account_id: str,
        *,
        payment_method_id: str | None,
        active: bool,
        operator: str,
        at: datetime,
    ) -> None:
        """Map a payment type to a deposit account."""
        self.trigger_event(
            self.PaymentTypeMapped,
            name=name,
            deposit_account_id=deposit_account_id,
            payment_method_id=payment_method_id,
            active=active,
            operator=operator,
            timestamp=at,
        )

    def set_defaults(
        self,
        *,
        term_id: str | None,
        memo: str | None,
        income_account_id: str | None,
        operator: str,
        at: datetime,
    ) -> None:
        """Set invoice defaults."""
        self.trigger_event(
            self.DefaultsSet,
            term_id=term_id,
            memo=memo,
            income_account_id=income_account_id,
            operator=operator,
            timestamp=at,
        )

    @property
    def defaults_complete(self) -> bool:
        """Term, memo and income account are all set."""
        return None not in (self.term_id, self.memo, self.income_account_id)

    def missing_defaults(self) -> list[str]:
        """Which defaults are still unset, as keys."""
        names = {"term": self.term_id, "memo": self.memo, "income_account": self.income_account_id}
        return [f"default:{k}" for k, v in names.items() if v is None]


def mapping_rows(mappings: Mappings, *, include_inactive: bool = False) -> list[dict[str, Any]]:
    """The mappings as `mappings list` shows them: `[{"kind", "key", "qbo_id", "active"}]`."""
    rows: list[dict[str, Any]] = []
    for code, item in sorted(mappings.charges.items()):
        active = code not in mappings.inactive_charges
        if active or include_inactive:
            rows.append({"kind": "charge", "key": code, "qbo_id": item, "active": active})
    for student, customer in sorted(mappings.students.items()):
        rows.append({"kind": "student", "key": student, "qbo_id": customer, "active": True})
    for name, mapping in sorted(mappings.payment_types.items()):
        if mapping.active or include_inactive:
            rows.append(
                {
                    "kind": "payment_type",
                    "key": name,
                    "qbo_id": mapping.deposit_account_id,
                    "active": mapping.active,
                }
            )
    for key, value in (
        ("term", mappings.term_id),
        ("memo", mappings.memo),
        ("income_account", mappings.income_account_id),
    ):
        if value is not None:
            rows.append({"kind": "default", "key": key, "qbo_id": value, "active": True})
    return rows
