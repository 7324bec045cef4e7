"""QuickBooks' own lists (Items, Customers, Accounts, Terms, PaymentMethods) as the engine
caches them per school and realm, and the checks of a mapping against them (pure, no I/O)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

ITEM = "Item"
CUSTOMER = "Customer"
ACCOUNT = "Account"
TERM = "Term"
PAYMENT_METHOD = "PaymentMethod"
LIST_ENTITIES: tuple[str, ...] = (ITEM, CUSTOMER, ACCOUNT, TERM, PAYMENT_METHOD)

# how an entity is named in plain words ("QuickBooks item 5 (Old rental)")
ENTITY_WORDS: dict[str, str] = {
    ITEM: "item",
    CUSTOMER: "customer",
    ACCOUNT: "account",
    TERM: "term",
    PAYMENT_METHOD: "payment method",
}


@dataclass(frozen=True)
class QboObject:
    """One object of a QuickBooks list, as far as mappings need it."""

    entity: str  # one of LIST_ENTITIES
    id: str
    name: str
    active: bool
    type: str | None = None  # Account: AccountType ("Income", "Bank", ...)
    email: str | None = None  # Customer: primary email, when QuickBooks has one

    def describe(self) -> str:
        """'QuickBooks item 5 (Old rental)'."""
        return f"QuickBooks {ENTITY_WORDS.get(self.entity, self.entity)} {self.id} ({self.name})"


@dataclass(frozen=True)
class QboLists:
    """A school's cached copy of its QuickBooks company's lists (one realm, one fetch)."""

    school: str
    realm: str
    fetched_at: datetime
    objects: Mapping[str, Mapping[str, QboObject]] = field(default_factory=dict)

    def get(self, entity: str, object_id: str) -> QboObject | None:
        """One object by entity and id, or None when QuickBooks has no such object."""
        return self.objects.get(entity, {}).get(object_id)

    def of(self, entity: str, *, include_inactive: bool = True) -> list[QboObject]:
        """The objects of one entity, by name (the pick-list of a settings page)."""
        found = self.objects.get(entity, {}).values()
        return sorted(
            (o for o in found if include_inactive or o.active), key=lambda o: (o.name.lower(), o.id)
        )


class QboListsPort(Protocol):
    """The cached QuickBooks lists of a school (workers/qbo_lists.py QboListService)."""

    def cached(self, school: str) -> QboLists | None:
        """The stored lists of the school's current realm, without calling QuickBooks."""
        ...

    def refresh(self, school: str) -> QboLists:
        """Read every list from QuickBooks (metered reads), store and return them."""
        ...


class ListsUnavailable(RuntimeError):
    """QuickBooks' lists cannot be read now (not connected, or QuickBooks refused)."""


@dataclass(frozen=True)
class ReferenceProblem:
    """A mapping that points at a QuickBooks object that is missing or inactive."""

    entity: str
    id: str
    state: str  # "missing" | "inactive"
    found: QboObject | None = None

    def sentence(self) -> str:
        """'QuickBooks item 5 (Old rental) is inactive' / 'QuickBooks item 999 does not exist'."""
        if self.found is not None:
            return f"{self.found.describe()} is inactive"
        return f"QuickBooks {ENTITY_WORDS.get(self.entity, self.entity)} {self.id} does not exist"


def check_reference(lists: QboLists, entity: str, object_id: str) -> ReferenceProblem | None:
    """Whether an id names an active object of the cached lists; the problem otherwise."""
    found = lists.get(entity, object_id)
    if found is None:
        return ReferenceProblem(entity, object_id, "missing")
    if not found.active:
        return ReferenceProblem(entity, object_id, "inactive", found)
    return None
