"""The seed data every simulated company starts with (CLI.md, "The simulator's addresses")."""

from __future__ import annotations

from typing import Any

STUDENT_NAMES = (
    "Ana Ortiz", "Ben Carter", "Chloe Nguyen", "David Kim", "Elena Petrova",
    "Farid Haddad", "Grace Liu", "Hugo Martin", "Isla Brown", "Jonas Weber",
    "Keiko Tanaka", "Liam O'Brien", "Maya Singh", "Noah Fischer", "Olivia Rossi",
    "Pedro Alvarez", "Quinn Murphy", "Rosa Jimenez", "Samir Patel", "Tara Walsh",
)  # fmt: skip
INACTIVE_CUSTOMER = "Victor Old"
CREATED = "2024-01-02T09:00:00-08:00"


def _meta() -> dict[str, str]:
    return {"CreateTime": CREATED, "LastUpdatedTime": CREATED}


def _base(entity_id: str, active: bool = True) -> dict[str, Any]:
    return {
        "Id": entity_id,
        "SyncToken": "0",
        "Active": active,
        "domain": "QBO",
        "sparse": False,
        "MetaData": _meta(),
    }


def seed_entities() -> dict[str, dict[str, dict[str, Any]]]:
    """Fresh copies of the seed lists, keyed by entity name then Id."""
    accounts = {
        "79": {
            "Name": "Flight income",
            "AccountType": "Income",
            "AccountSubType": "ServiceFeeIncome",
        },
        "35": {"Name": "Checking", "AccountType": "Bank", "AccountSubType": "Checking"},
        "36": {
            "Name": "Undeposited Funds",
            "AccountType": "Other Current Asset",
            "AccountSubType": "UndepositedFunds",
        },
    }
    items = {
        "1": ("Aircraft rental", True),
        "2": ("Instructor dual", True),
        "3": ("Fuel surcharge", True),
        "4": ("Ground instruction", True),
        "5": ("Old rental", False),
    }
    entities: dict[str, dict[str, dict[str, Any]]] = {
        "Account": {},
        "Item": {},
        "Customer": {},
        "Term": {},
        "PaymentMethod": {},
        "Invoice": {},
        "Payment": {},
        "CreditMemo": {},
        "RefundReceipt": {},
    }
    for account_id, fields in accounts.items():
        record = _base(account_id) | fields
        record["FullyQualifiedName"] = fields["Name"]
        record["Classification"] = "Revenue" if fields["AccountType"] == "Income" else "Asset"
        record["CurrentBalance"] = 0
        entities["Account"][account_id] = record
    for item_id, (name, active) in items.items():
        entities["Item"][item_id] = _base(item_id, active) | {
            "Name": name,
            "FullyQualifiedName": name,
            "Type": "Service",
            "UnitPrice": 0,
            "Taxable": False,
            "IncomeAccountRef": {"value": "79", "name": "Flight income"},
        }
    names = [*STUDENT_NAMES, INACTIVE_CUSTOMER]
    for index, name in enumerate(names, start=1):
        given, _, family = name.partition(" ")
        entities["Customer"][str(index)] = _base(str(index), index <= 20) | {
            "DisplayName": name,
            "FullyQualifiedName": name,
            "PrintOnCheckName": name,
            "GivenName": given,
            "FamilyName": family,
            "Balance": 0,
            "BalanceWithJobs": 0,
            "Job": False,
            "Taxable": False,
            "CurrencyRef": {"value": "USD", "name": "United States Dollar"},
        }
    for term_id, name, days in (("1", "Net 15", 15), ("3", "Net 30", 30)):
        entities["Term"][term_id] = _base(term_id) | {
            "Name": name,
            "Type": "STANDARD",
            "DueDays": days,
        }
    for method_id, name, kind in (("1", "Cash", "NON_CREDIT_CARD"), ("2", "Card", "CREDIT_CARD")):
        entities["PaymentMethod"][method_id] = _base(method_id) | {"Name": name, "Type": kind}
    return entities


def display_name(entity: str, record: dict[str, Any]) -> str:
    """The name QBO puts into a reference to this record."""
    return str(record.get("DisplayName") or record.get("Name") or record.get("DocNumber") or "")
