"""Which mappings in use are missing, or point at QuickBooks objects that are inactive or gone
(pure): `mappings check`, the checklist and the dashboard read it from the view's counters."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from domain.mappings import Mappings
from domain.qbo_lists import ACCOUNT, CUSTOMER, ITEM, QboLists, check_reference
from domain.reasons import split_key


@dataclass(frozen=True)
class MappingProblem:
    """A mapping key that unsent events reference but is missing or inactive."""

    key: str
    state: str  # "missing" | "inactive" | "not_in_quickbooks"
    used_by: list[str]
    count: int
    detail: str = ""  # plain words: "Charge code x is mapped to QuickBooks item 5 (...), ..."


KIND_WORDS = {"charge": "Charge code", "student": "Student", "payment_type": "Payment type"}
KIND_ENTITIES = {"charge": ITEM, "student": CUSTOMER, "payment_type": ACCOUNT}


class KeyUse(Protocol):
    """A mapping key in use (projections.view.KeyUsage)."""

    @property
    def key(self) -> str: ...
    @property
    def unsent(self) -> int: ...
    @property
    def examples(self) -> tuple[str, ...]: ...


def keys_used(student_id: Any, data: Mapping[str, Any]) -> tuple[str, ...]:
    """The mapping keys an event with this student and record data needs, in order."""
    keys: list[str] = [f"student:{student_id}"]
    charges = data.get("charges")
    if type(charges) is list:
        for charge in charges:
            code = charge.get("code") if type(charge) is dict else None
            if type(code) is str and f"charge:{code}" not in keys:
                keys.append(f"charge:{code}")
    payment_type = data.get("payment_type")
    if type(payment_type) is str:
        keys.append(f"payment_type:{payment_type}")
    return tuple(keys)


def mapped_id(mappings: Mappings, key: str) -> str | None:
    """The QuickBooks id a key is mapped to (payment types: the deposit account), or None."""
    kind, name = split_key(key)
    if kind == "charge":
        return mappings.charges.get(name)
    if kind == "student":
        return mappings.students.get(name)
    if kind == "payment_type":
        mapping = mappings.payment_types.get(name)
        return mapping.deposit_account_id if mapping else None
    return None


def reference_sentence(key: str, lists: QboLists, qbo_id: str) -> tuple[str, str] | None:
    """(state, plain words) when the key's QuickBooks object is inactive or gone, else None.

    'Charge code old_rental is mapped to QuickBooks item 5 (Old rental), which is inactive'.
    """
    kind, name = split_key(key)
    entity = KIND_ENTITIES.get(kind)
    if entity is None:
        return None
    problem = check_reference(lists, entity, qbo_id)
    if problem is None:
        return None
    word = KIND_WORDS[kind]
    if problem.found is not None:
        return (
            "inactive",
            f"{word} {name} is mapped to {problem.found.describe()}, which is inactive",
        )
    what = problem.sentence().removesuffix(" does not exist")
    return "not_in_quickbooks", f"{word} {name} is mapped to {what}, which does not exist"


def usage_problems(
    usage: Iterable[KeyUse],
    mappings: Mappings,
    lists: QboLists | None,
    *,
    auto_customers: bool = False,
) -> list[MappingProblem]:
    """Keys used by unsent events that are unmapped, or mapped to an inactive/missing object
    (judged by the cached QuickBooks lists when there are any). With auto_customers an
    unmapped student is the worker's to map, not a problem."""
    problems: list[MappingProblem] = []
    for use in usage:
        if use.unsent <= 0:
            continue
        qbo_id = mapped_id(mappings, use.key)
        examples = list(use.examples)
        if qbo_id is None and auto_customers and use.key.startswith("student:"):
            continue
        if qbo_id is None:
            problems.append(MappingProblem(use.key, "missing", examples, use.unsent))
            continue
        found = reference_sentence(use.key, lists, qbo_id) if lists is not None else None
        if found is not None:
            state, detail = found
            problems.append(MappingProblem(use.key, state, examples, use.unsent, detail))
    return sorted(problems, key=lambda p: (p.key, p.state))
