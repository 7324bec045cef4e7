"""One simulated QBO company (realm): its lists, transactions, validation and requestid store."""

from __future__ import annotations

import copy
import threading
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from qbo_simulator.envelopes import Response
from qbo_simulator.query import parse_query, run_query
from qbo_simulator.seed import CREATED, display_name, seed_entities

JsonDict = dict[str, Any]
BUSINESS_MESSAGE = "A business validation error has occurred while processing your request"
INACTIVE_DETAIL = (
    "Something you're trying to use has been made inactive. Check the fields with accounts, "
    "customers, items, vendors or employees."
)
READABLE = ("Invoice", "Payment", "Customer", "Item", "Account", "Term", "PaymentMethod")
MAX_DOC_NUMBER = 21
MAX_DISPLAY_NAME = 500
DUPLICATE_NAME_MESSAGE = "Duplicate Name Exists Error"


class BusinessFault(Exception):
    """A validation failure answered as a 400 application fault."""

    def __init__(self, code: str, message: str, detail: str, element: str = "") -> None:
        super().__init__(f"{code} {message}: {detail}")
        self.code = code
        self.message = message
        self.detail = detail
        self.element = element

    def error(self) -> JsonDict:
        """The Fault.Error entry."""
        return {
            "Message": self.message,
            "Detail": self.detail,
            "code": self.code,
            "element": self.element,
        }


def business(detail: str, element: str = "") -> BusinessFault:
    """Code 6000 with QBO's generic message."""
    return BusinessFault("6000", BUSINESS_MESSAGE, f"Business Validation Error: {detail}", element)


def _money(value: Any, element: str) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise business(f"Invalid number {value!r}.", element) from None
    if not amount.is_finite():
        raise business(f"Invalid number {value!r}.", element)
    return amount


def _num(amount: Decimal) -> float:
    return float(amount.quantize(Decimal("0.01")))


def _stamp() -> str:
    return datetime.now(UTC).astimezone().isoformat(timespec="seconds")


class Company:
    """Thread-safe state of one realm."""

    def __init__(self, realm: str, name: str, country: str, *, dup_check: bool = True) -> None:
        self.realm = realm
        self.name = name
        self.country = country
        self.dup_check = dup_check
        self._lock = threading.RLock()
        self._request_locks: dict[str, threading.Lock] = {}  # one per requestid seen
        self.reset()

    def reset(self) -> None:
        """Back to the seed lists; no transactions, no remembered request ids."""
        with self._lock:
            self.entities = seed_entities()
            self.deleted: set[tuple[str, str]] = set()
            self.counters = {
                "Invoice": 0,
                "Payment": 0,
                "CreditMemo": 0,
                "RefundReceipt": 0,
                "Customer": max(int(k) for k in self.entities["Customer"]),
            }
            self.voided: set[str] = set()
            self.credit_log: list[JsonDict] = []
            self.refund_log: list[JsonDict] = []
            self.doc_counter = 1000
            self.custom_txn_numbers = True  # SalesFormsPrefs.CustomTxnNumbers
            self.replies: dict[str, Response] = {}
            self.invoice_log: list[JsonDict] = []
            self.payment_log: list[JsonDict] = []
            self.customer_log: list[JsonDict] = []

    # ----- requestid store
    def request_lock(self, request_id: str) -> threading.Lock:
        """The lock that performs requests with this id one at a time: a repeat that arrives
        while the first is still being performed waits for its answer, then gets it replayed
        (checking and remembering apart, both would create)."""
        with self._lock:
            return self._request_locks.setdefault(request_id, threading.Lock())

    def recall(self, request_id: str) -> Response | None:
        """The original response to a request id, if one was recorded."""
        with self._lock:
            stored = self.replies.get(request_id)
            return None if stored is None else copy.deepcopy(stored)

    def remember(self, request_id: str, response: Response) -> None:
        """Record the response to a request id (the first one wins)."""
        with self._lock:
            self.replies.setdefault(request_id, copy.deepcopy(response))

    # ----- reads
    def get(self, entity: str, entity_id: str) -> JsonDict | None:
        """A copy of one record, or None when absent or deleted."""
        with self._lock:
            record = self.entities.get(entity, {}).get(entity_id)
            if record is None or (entity, entity_id) in self.deleted:
                return None
            return copy.deepcopy(record)

    def query(self, text: str) -> JsonDict:
        """Run a query statement; raises QueryError."""
        parsed = parse_query(text)
        with self._lock:
            records = [
                copy.deepcopy(r)
                for key, r in self.entities[parsed.entity].items()
                if (parsed.entity, key) not in self.deleted
            ]
        return run_query(parsed, records)

    def preferences(self) -> JsonDict:
        """The company's Preferences (only what flightledger reads, plus a few neighbours)."""
        with self._lock:
            return {
                "SalesFormsPrefs": {
                    "CustomTxnNumbers": self.custom_txn_numbers,
                    "AllowDeposit": True,
                    "AllowDiscount": True,
                    "DefaultTerms": {"value": "3"},
                },
                "CurrencyPrefs": {"MultiCurrencyEnabled": False},
                "Id": "1",
                "SyncToken": "0",
            }

    def company_info(self) -> JsonDict:
        """The CompanyInfo object."""
        return {
            "CompanyName": self.name,
            "LegalName": self.name,
            "Country": self.country,
            "CompanyAddr": {"Id": "1", "City": "Springfield", "Country": self.country},
            "SupportedLanguages": "en",
            "FiscalYearStartMonth": "January",
            "CompanyStartDate": "2024-01-02",
            "Id": "1",
            "SyncToken": "0",
            "domain": "QBO",
            "sparse": False,
            "MetaData": {"CreateTime": CREATED, "LastUpdatedTime": CREATED},
        }

    # ----- admin
    def set_active(self, entity: str, entity_id: str, active: bool) -> bool:
        """Activate or deactivate a list record; False when it does not exist."""
        with self._lock:
            record = self.entities.get(entity, {}).get(entity_id)
            if record is None:
                return False
            record["Active"] = active
            return True

    def delete(self, entity: str, entity_id: str) -> None:
        """Mark a record deleted (references to it then fail with 2500)."""
        with self._lock:
            self.deleted.add((entity, entity_id))

    # ----- validation helpers
    def _ref(self, entity: str, ref: Any, element: str, *, required: bool) -> JsonDict | None:
        value = ref.get("value") if isinstance(ref, dict) else ref
        if value is None or str(value).strip() == "":
            if required:
                raise business(f"Required parameter {element} is missing in the request", element)
            return None
        key = str(value)
        record = self.entities[entity].get(key)
        if record is None or (entity, key) in self.deleted:
            raise BusinessFault(
                "2500",
                "Invalid Reference Id",
                f"Invalid Reference Id : {entity} assigned to this transaction has been deleted. "
                f"Before you can modify this transaction, you must restore {entity} {key} "
                "(deleted).",
                element,
            )
        if not record.get("Active", True):
            raise BusinessFault("610", "Object Not Found", INACTIVE_DETAIL, element)
        return record

    def _next_doc_number(self) -> str:
        used = {str(r.get("DocNumber")) for r in self.entities["Invoice"].values()}
        while True:
            self.doc_counter += 1
            if str(self.doc_counter) not in used:
                return str(self.doc_counter)

    # ----- creates
    def create(self, entity: str, data: Any, request_id: str | None) -> JsonDict:
        """Validate and store a new Invoice or Payment; raises BusinessFault."""
        if not isinstance(data, dict):
            raise business("Request has invalid or unsupported property")
        with self._lock:
            if entity == "Invoice":
                return self._create_invoice(data, request_id)
            if entity == "Payment":
                return self._create_payment(data, request_id)
            if entity in ("CreditMemo", "RefundReceipt"):
                return self._create_credit(entity, data, request_id)
            if entity == "Customer":
                return self._create_customer(data, request_id)
        raise BusinessFault(
            "500", "Unsupported Operation", f"Operation create on {entity} is not supported"
        )

    def _create_invoice(self, data: JsonDict, request_id: str | None) -> JsonDict:
        customer = self._ref("Customer", data.get("CustomerRef"), "CustomerRef", required=True)
        assert customer is not None
        lines, total = self._sales_lines(data)
        return self._store_invoice(data, request_id, customer, lines, total)

    def _sales_lines(self, data: JsonDict) -> tuple[list[JsonDict], Decimal]:
        """Validated sales lines of a transaction and their total."""
        raw_lines = [line for line in data.get("Line") or [] if isinstance(line, dict)]
        sales = [line for line in raw_lines if line.get("DetailType") == "SalesItemLineDetail"]
        if not sales:
            raise business("You must fill out at least one split line.", "Line")
        lines: list[JsonDict] = []
        total = Decimal(0)
        for number, line in enumerate(sales, start=1):
            detail = line.get("SalesItemLineDetail") or {}
            element = "Line.SalesItemLineDetail.ItemRef"
            item = self._ref("Item", detail.get("ItemRef"), element, required=True)
            assert item is not None
            qty = _money(detail.get("Qty"), "Line.SalesItemLineDetail.Qty")
            price = _money(detail.get("UnitPrice"), "Line.SalesItemLineDetail.UnitPrice")
            amount = _money(line.get("Amount"), "Line.Amount")
            if amount is None:
                amount = (qty or Decimal(0)) * (price or Decimal(0))
            for value, name in ((amount, "Amount"), (qty, "Qty"), (price, "UnitPrice")):
                if value is not None and value < 0:
                    raise business(
                        f"Line {number}: {name} cannot be negative ({value}).", f"Line.{name}"
                    )
            total += amount
            out_detail: JsonDict = {
                "ItemRef": {"value": item["Id"], "name": item["Name"]},
                "ItemAccountRef": dict(item["IncomeAccountRef"]),
                "TaxCodeRef": {"value": "NON"},
            }
            if qty:
                out_detail["Qty"] = float(qty)
            if price:
                out_detail["UnitPrice"] = float(price)
            out_line: JsonDict = {
                "Id": str(number),
                "LineNum": number,
                "Amount": _num(amount),
                "DetailType": "SalesItemLineDetail",
                "SalesItemLineDetail": out_detail,
            }
            if line.get("Description"):
                out_line["Description"] = line["Description"]
            lines.append(out_line)
        if total <= 0:
            raise business("Transaction amount must be positive.", "TotalAmt")
        return lines, total

    def _store_invoice(
        self,
        data: JsonDict,
        request_id: str | None,
        customer: JsonDict,
        lines: list[JsonDict],
        total: Decimal,
    ) -> JsonDict:
        term = self._ref("Term", data.get("SalesTermRef"), "SalesTermRef", required=False)
        doc = data.get("DocNumber")
        if doc is None or str(doc) == "" or not self.custom_txn_numbers:
            doc = self._next_doc_number()  # custom numbers off: QBO numbers it, ours is ignored
        doc = str(doc)
        if len(doc) > MAX_DOC_NUMBER:
            raise BusinessFault(
                "2050",
                "String length specified does not match the supported length",
                "String length is either shorter or longer than supported by specification. "
                f"Min:0 Max:{MAX_DOC_NUMBER} supported. Supplied length:{len(doc)}",
                "DocNumber",
            )
        if self.dup_check:
            for existing in self.entities["Invoice"].values():
                if existing.get("DocNumber") == doc:
                    raise BusinessFault(
                        "6140",
                        "Duplicate Document Number Error",
                        "Duplicate Document Number Error : You must specify a different number. "
                        f"This number has already been used. DocNumber={doc} is assigned to "
                        f"TxnType=Invoice with TxnId={existing['Id']}",
                        "DocNumber",
                    )
        txn_date = _date(data.get("TxnDate"), "TxnDate") or date.today()
        due = _date(data.get("DueDate"), "DueDate")
        if due is None:
            due = txn_date + timedelta(days=int(term["DueDays"]) if term else 0)
        self.counters["Invoice"] += 1
        new_id = str(self.counters["Invoice"])
        record = {k: v for k, v in data.items() if v not in (None, "", [])}
        record.update(
            {
                "Id": new_id,
                "SyncToken": "0",
                "domain": "QBO",
                "sparse": False,
                "DocNumber": doc,
                "TxnDate": txn_date.isoformat(),
                "DueDate": due.isoformat(),
                "CustomerRef": {
                    "value": customer["Id"],
                    "name": display_name("Customer", customer),
                },
                "Line": [
                    *lines,
                    {
                        "Amount": _num(total),
                        "DetailType": "SubTotalLineDetail",
                        "SubTotalLineDetail": {},
                    },
                ],
                "TotalAmt": _num(total),
                "Balance": _num(total),
                "HomeBalance": _num(total),
                "Deposit": 0,
                "CurrencyRef": {"value": "USD", "name": "United States Dollar"},
                "MetaData": {"CreateTime": _stamp(), "LastUpdatedTime": _stamp()},
            }
        )
        if term is not None:
            record["SalesTermRef"] = {"value": term["Id"], "name": term["Name"]}
        self.entities["Invoice"][new_id] = record
        self.invoice_log.append(
            {
                "realm": self.realm,
                "id": new_id,
                "doc_number": doc,
                "request_id": request_id,
                "customer": customer["Id"],
                "total": f"{total:.2f}",
                # when the simulator created it (UTC, microseconds): benches time sync latency
                "created_at": datetime.now(UTC).isoformat(timespec="microseconds"),
            }
        )
        return copy.deepcopy(record)

    def _create_customer(self, data: JsonDict, request_id: str | None) -> JsonDict:
        """A Customer; DisplayName (or the name parts) required and unique (6240)."""
        parts = ("Title", "GivenName", "MiddleName", "FamilyName", "Suffix")
        name = str(data.get("DisplayName") or "").strip()
        if not name:
            name = " ".join(str(data.get(p) or "").strip() for p in parts if data.get(p)).strip()
        if not name:
            raise business(
                "At least one of the following name elements is required: Title, GivenName, "
                "MiddleName, FamilyName or DisplayName.",
                "DisplayName",
            )
        if len(name) > MAX_DISPLAY_NAME:
            raise BusinessFault(
                "2050",
                "String length specified does not match the supported length",
                "String length is either shorter or longer than supported by specification. "
                f"Min:1 Max:{MAX_DISPLAY_NAME} supported. Supplied length:{len(name)}",
                "DisplayName",
            )
        key = " ".join(name.split()).casefold()
        for existing_id, existing in self.entities["Customer"].items():
            if ("Customer", existing_id) in self.deleted:
                continue
            if " ".join(str(existing.get("DisplayName", "")).split()).casefold() == key:
                raise BusinessFault(
                    "6240",
                    DUPLICATE_NAME_MESSAGE,
                    f"The name supplied already exists. : Id={existing_id}",
                    "DisplayName",
                )
        email = data.get("PrimaryEmailAddr")
        address = str(email.get("Address") or "") if isinstance(email, dict) else ""
        if address and ("@" not in address or len(address) > 100):
            raise business(f"Invalid email address {address!r}.", "PrimaryEmailAddr.Address")
        record = self.add_customer(name, address or None, fields=data)
        self.customer_log.append(
            {
                "realm": self.realm,
                "id": record["Id"],
                "display_name": name,
                "email": address or None,
                "request_id": request_id,
            }
        )
        return record

    def add_customer(
        self,
        display_name: str,
        email: str | None = None,
        *,
        active: bool = True,
        fields: JsonDict | None = None,
    ) -> JsonDict:
        """Store a Customer without the API's checks (the company's existing data: tests and
        scripts may give it names QuickBooks would now refuse)."""
        with self._lock:
            self.counters["Customer"] += 1
            new_id = str(self.counters["Customer"])
            record = {k: v for k, v in (fields or {}).items() if v not in (None, "", [])}
            record.update(
                {
                    "Id": new_id,
                    "SyncToken": "0",
                    "domain": "QBO",
                    "sparse": False,
                    "Active": active,
                    "DisplayName": display_name,
                    "FullyQualifiedName": display_name,
                    "PrintOnCheckName": display_name,
                    "Balance": 0,
                    "BalanceWithJobs": 0,
                    "Job": False,
                    "CurrencyRef": {"value": "USD", "name": "United States Dollar"},
                    "MetaData": {"CreateTime": _stamp(), "LastUpdatedTime": _stamp()},
                }
            )
            if email:
                record["PrimaryEmailAddr"] = {"Address": email}
            else:
                record.pop("PrimaryEmailAddr", None)
            self.entities["Customer"][new_id] = record
            return copy.deepcopy(record)

    def _create_payment(self, data: JsonDict, request_id: str | None) -> JsonDict:
        customer = self._ref("Customer", data.get("CustomerRef"), "CustomerRef", required=True)
        assert customer is not None
        total = _money(data.get("TotalAmt"), "TotalAmt")
        if total is None:
            raise business("Required parameter TotalAmt is missing in the request", "TotalAmt")
        if total < 0:
            raise business("Payment amount cannot be negative.", "TotalAmt")
        deposit = self._ref(
            "Account", data.get("DepositToAccountRef"), "DepositToAccountRef", required=False
        )
        method = self._ref(
            "PaymentMethod", data.get("PaymentMethodRef"), "PaymentMethodRef", required=False
        )
        applied = Decimal(0)
        lines: list[JsonDict] = []
        linked_first: str | None = None
        targets: list[tuple[JsonDict, Decimal]] = []
        for line in data.get("Line") or []:
            amount = _money(line.get("Amount"), "Line.Amount") or Decimal(0)
            if amount < 0:
                raise business("Line amount cannot be negative.", "Line.Amount")
            linked: list[JsonDict] = []
            for txn in line.get("LinkedTxn") or []:
                txn_id = str(txn.get("TxnId", ""))
                invoice = self.entities["Invoice"].get(txn_id)
                if invoice is None or ("Invoice", txn_id) in self.deleted:
                    raise BusinessFault(
                        "2500",
                        "Invalid Reference Id",
                        "Invalid Reference Id : Invoice assigned to this transaction has been "
                        "deleted. Before you can modify this transaction, you must restore "
                        f"Invoice {txn_id} (deleted).",
                        "Line.LinkedTxn.TxnId",
                    )
                if invoice["CustomerRef"]["value"] != customer["Id"]:
                    raise business(
                        f"Invoice {txn_id} belongs to another customer.", "Line.LinkedTxn"
                    )
                linked.append({"TxnId": txn_id, "TxnType": "Invoice"})
                targets.append((invoice, amount))
                linked_first = linked_first or txn_id
            applied += amount
            lines.append({"Amount": _num(amount), "LinkedTxn": linked})
        if applied > total:
            raise business("The amount received must be at least the amount applied.", "TotalAmt")
        for invoice, amount in targets:
            balance = max(Decimal(str(invoice["Balance"])) - amount, Decimal(0))
            invoice["Balance"] = _num(balance)
        self.counters["Payment"] += 1
        new_id = str(self.counters["Payment"])
        record = {k: v for k, v in data.items() if v not in (None, "", [])}
        record.update(
            {
                "Id": new_id,
                "SyncToken": "0",
                "domain": "QBO",
                "sparse": False,
                "TxnDate": (_date(data.get("TxnDate"), "TxnDate") or date.today()).isoformat(),
                "CustomerRef": {
                    "value": customer["Id"],
                    "name": display_name("Customer", customer),
                },
                "TotalAmt": _num(total),
                "UnappliedAmt": _num(total - applied),
                "Line": lines,
                "CurrencyRef": {"value": "USD", "name": "United States Dollar"},
                "MetaData": {"CreateTime": _stamp(), "LastUpdatedTime": _stamp()},
            }
        )
        if deposit is not None:
            record["DepositToAccountRef"] = {"value": deposit["Id"], "name": deposit["Name"]}
        if method is not None:
            record["PaymentMethodRef"] = {"value": method["Id"], "name": method["Name"]}
        self.entities["Payment"][new_id] = record
        self.payment_log.append(
            {
                "realm": self.realm,
                "id": new_id,
                "request_id": request_id,
                "customer": customer["Id"],
                "total": f"{total:.2f}",
                "linked_invoice": linked_first,
            }
        )
        return copy.deepcopy(record)

    # ----- corrections: update, void, credit memos, refund receipts
    def _live_invoice(self, data: Any) -> JsonDict:
        if not isinstance(data, dict) or not data.get("Id"):
            raise business("Required parameter Id is missing in the request", "Id")
        key = str(data["Id"])
        record = self.entities["Invoice"].get(key)
        if record is None or ("Invoice", key) in self.deleted:
            raise BusinessFault(
                "610",
                "Object Not Found",
                f"Object Not Found : Another user has deleted this transaction (Invoice {key}).",
                "Id",
            )
        if str(data.get("SyncToken")) != str(record["SyncToken"]):
            raise BusinessFault(
                "5010",
                "Stale Object Error",
                "Stale Object Error : You and another user were working on the same thing. "
                f"Invoice {key} is at SyncToken {record['SyncToken']}, the request sent "
                f"{data.get('SyncToken')!r}.",
                "SyncToken",
            )
        return record

    def update_invoice(self, data: Any) -> JsonDict:
        """A (sparse) invoice update checked against its SyncToken; raises BusinessFault."""
        with self._lock:
            record = self._live_invoice(data)
            key = str(record["Id"])
            if key in self.voided:
                raise business(f"Invoice {key} is voided and cannot be changed.")
            paid = Decimal(str(record["TotalAmt"])) - Decimal(str(record["Balance"]))
            if "Line" in data or not data.get("sparse"):
                lines, total = self._sales_lines(data)
                if total < paid:
                    raise business(
                        f"Invoice {key}: the new total {total} is below the {paid} already paid."
                    )
                record["Line"] = [
                    *lines,
                    {
                        "Amount": _num(total),
                        "DetailType": "SubTotalLineDetail",
                        "SubTotalLineDetail": {},
                    },
                ]
                record["TotalAmt"] = _num(total)
                record["Balance"] = _num(total - paid)
                record["HomeBalance"] = record["Balance"]
            if data.get("CustomerRef") is not None:
                customer = self._ref("Customer", data["CustomerRef"], "CustomerRef", required=True)
                assert customer is not None
                record["CustomerRef"] = {
                    "value": customer["Id"],
                    "name": display_name("Customer", customer),
                }
            for name in ("PrivateNote", "TxnDate"):
                if data.get(name):
                    record[name] = data[name]
            self._touch(record)
            return copy.deepcopy(record)

    def void_invoice(self, data: Any) -> JsonDict:
        """Void an invoice: amounts to zero, kept in the books."""
        with self._lock:
            record = self._live_invoice(data)
            key = str(record["Id"])
            self.voided.add(key)
            record["TotalAmt"] = 0
            record["Balance"] = 0
            record["HomeBalance"] = 0
            record["PrivateNote"] = f"Voided {record.get('PrivateNote', '')}".strip()
            self._touch(record)
            return copy.deepcopy(record)

    def hand_edit_invoice(self, key: str, total: Decimal) -> bool:
        """An edit made by a person in QuickBooks: the first line's amount makes the new total."""
        with self._lock:
            record = self.entities["Invoice"].get(key)
            if record is None:
                return False
            sales = [x for x in record["Line"] if x.get("DetailType") == "SalesItemLineDetail"]
            old = Decimal(str(record["TotalAmt"]))
            first = sales[0]
            first["Amount"] = _num(Decimal(str(first["Amount"])) + total - old)
            first["SalesItemLineDetail"].pop("Qty", None)
            first["SalesItemLineDetail"].pop("UnitPrice", None)
            paid = old - Decimal(str(record["Balance"]))
            record["TotalAmt"] = _num(total)
            record["Balance"] = _num(max(total - paid, Decimal(0)))
            for line in record["Line"]:
                if line.get("DetailType") == "SubTotalLineDetail":
                    line["Amount"] = _num(total)
            self._touch(record)
            return True

    def hand_save_invoice(self, key: str) -> bool:
        """A person opens the invoice in QuickBooks and saves it unchanged: a new SyncToken."""
        with self._lock:
            record = self.entities["Invoice"].get(key)
            if record is None:
                return False
            self._touch(record)
            return True

    def _touch(self, record: JsonDict) -> None:
        record["SyncToken"] = str(int(record["SyncToken"]) + 1)
        record["MetaData"] = {**record.get("MetaData", {}), "LastUpdatedTime": _stamp()}

    def _create_credit(self, entity: str, data: JsonDict, request_id: str | None) -> JsonDict:
        customer = self._ref("Customer", data.get("CustomerRef"), "CustomerRef", required=True)
        assert customer is not None
        lines, total = self._sales_lines(data)
        deposit = self._ref(
            "Account",
            data.get("DepositToAccountRef"),
            "DepositToAccountRef",
            required=entity == "RefundReceipt",
        )
        method = self._ref(
            "PaymentMethod", data.get("PaymentMethodRef"), "PaymentMethodRef", required=False
        )
        doc = str(data.get("DocNumber") or "")
        if len(doc) > MAX_DOC_NUMBER:
            raise business(f"DocNumber is longer than {MAX_DOC_NUMBER} characters", "DocNumber")
        if doc and self.dup_check:
            for existing in self.entities[entity].values():
                if existing.get("DocNumber") == doc:
                    raise BusinessFault(
                        "6140",
                        "Duplicate Document Number Error",
                        "Duplicate Document Number Error : You must specify a different number. "
                        f"DocNumber={doc} is assigned to TxnType={entity} with "
                        f"TxnId={existing['Id']}",
                        "DocNumber",
                    )
        self.counters[entity] += 1
        new_id = str(self.counters[entity])
        record = {k: v for k, v in data.items() if v not in (None, "", [])}
        record.update(
            {
                "Id": new_id,
                "SyncToken": "0",
                "domain": "QBO",
                "sparse": False,
                "DocNumber": doc,
                "TxnDate": (_date(data.get("TxnDate"), "TxnDate") or date.today()).isoformat(),
                "CustomerRef": {
                    "value": customer["Id"],
                    "name": display_name("Customer", customer),
                },
                "Line": lines,
                "TotalAmt": _num(total),
                "CurrencyRef": {"value": "USD", "name": "United States Dollar"},
                "MetaData": {"CreateTime": _stamp(), "LastUpdatedTime": _stamp()},
            }
        )
        if entity == "CreditMemo":
            record["RemainingCredit"] = _num(total)
            record["Balance"] = _num(total)
        if deposit is not None:
            record["DepositToAccountRef"] = {"value": deposit["Id"], "name": deposit["Name"]}
        if method is not None:
            record["PaymentMethodRef"] = {"value": method["Id"], "name": method["Name"]}
        self.entities[entity][new_id] = record
        (self.credit_log if entity == "CreditMemo" else self.refund_log).append(
            {
                "realm": self.realm,
                "id": new_id,
                "doc_number": doc,
                "request_id": request_id,
                "customer": customer["Id"],
                "total": f"{total:.2f}",
                "deposit_account": None if deposit is None else deposit["Id"],
            }
        )
        return copy.deepcopy(record)

    def invoice_count(self) -> int:
        """How many invoices were created (voided and deleted ones included)."""
        with self._lock:
            return len(self.invoice_log)

    def invoice_rows(self) -> list[JsonDict]:
        """The invoice log with each invoice's current state (/_sim/invoices)."""
        with self._lock:
            rows: list[JsonDict] = []
            for entry in self.invoice_log:
                record = self.entities["Invoice"].get(entry["id"]) or {}
                sales = [
                    x
                    for x in record.get("Line", [])
                    if x.get("DetailType") == "SalesItemLineDetail"
                ]
                rows.append(
                    {
                        **entry,
                        "total": f"{Decimal(str(record.get('TotalAmt', entry['total']))):.2f}",
                        "sync_token": str(record.get("SyncToken", "0")),
                        "voided": entry["id"] in self.voided,
                        "deleted": ("Invoice", entry["id"]) in self.deleted,
                        "balance": f"{Decimal(str(record.get('Balance', 0))):.2f}",
                        "lines": [
                            {
                                "item": str(x["SalesItemLineDetail"]["ItemRef"]["value"]),
                                "amount": f"{Decimal(str(x['Amount'])):.2f}",
                                "description": x.get("Description", ""),
                            }
                            for x in sales
                        ],
                    }
                )
            return rows


def _date(value: Any, element: str) -> date | None:
    if value is None or value == "":
        return None
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        raise business(f"Invalid date {value!r}.", element) from None
