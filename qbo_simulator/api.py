"""The accounting API under /v3/company/{realm}/: auth, limits, faults, routes, requestid."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from qbo_simulator.company import BusinessFault, Company
from qbo_simulator.envelopes import (
    Response,
    app_fault,
    app_fault_payload,
    gateway_fault,
    json_response,
    now_iso,
    throttle_json,
    throttle_xml,
    token_expired,
)
from qbo_simulator.faults import PRESETS, FaultInjector
from qbo_simulator.limits import RateLimiter
from qbo_simulator.oauth import TokenAuthority
from qbo_simulator.query import QueryError

JsonDict = dict[str, Any]
ENTITY_PATHS = {
    "invoice": "Invoice",
    "payment": "Payment",
    "customer": "Customer",
    "item": "Item",
    "account": "Account",
    "term": "Term",
    "paymentmethod": "PaymentMethod",
    "creditmemo": "CreditMemo",
    "refundreceipt": "RefundReceipt",
}
CREATABLE = ("Invoice", "Payment", "CreditMemo", "RefundReceipt", "Customer")


@dataclass
class RealmStats:
    """Counters of one realm."""

    requests: int = 0
    throttled: int = 0
    throttled_by: dict[str, int] = field(default_factory=dict)
    faults_injected: int = 0
    replays: int = 0
    dropped: int = 0  # requests whose client hung up, dropped unperformed
    customer_creates: int = 0  # Customer create requests received (before latency or faults)
    queries: int = 0  # query requests received (QBO meters these)


class Stats:
    """Thread-safe per-realm counters for /_sim/stats."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._realms: dict[str, RealmStats] = {}

    def bump(self, realm: str, name: str, reason: str | None = None) -> None:
        """Increase one counter."""
        with self._lock:
            stats = self._realms.setdefault(realm, RealmStats())
            setattr(stats, name, getattr(stats, name) + 1)
            if reason is not None:
                stats.throttled_by[reason] = stats.throttled_by.get(reason, 0) + 1

    def snapshot(self) -> dict[str, JsonDict]:
        """All counters as JSON."""
        with self._lock:
            return {
                realm: {**vars(s), "throttled_by": dict(s.throttled_by)}
                for realm, s in self._realms.items()
            }

    def clear(self) -> None:
        """Forget all counters."""
        with self._lock:
            self._realms.clear()


def _processed_refusal(response: Response) -> bool:
    """A 4xx answer of the accounting service itself (not auth, not throttling)."""
    return 400 <= response.status < 500 and response.status not in (401, 403, 429)


def _unsupported(detail: str) -> Response:
    return app_fault(400, "500", "Unsupported Operation", detail)


class AccountingApi:
    """Answers one accounting request; the HTTP layer only moves bytes."""

    def __init__(
        self,
        *,
        company: Callable[[str], Company | None],
        authority: TokenAuthority,
        limiter: RateLimiter,
        injector: FaultInjector,
        stats: Stats,
        sleep: Callable[[float], None],
        max_sleep: float,
        max_batch_items: int = 30,
        remember_failures: bool = False,
    ) -> None:
        self._company = company
        self._authority = authority
        self._limiter = limiter
        self._injector = injector
        self._stats = stats
        self._sleep = sleep
        self._max_sleep = max_sleep
        self._max_batch = max_batch_items
        self._remember_failures = remember_failures

    def handle(
        self, method: str, realm: str, rest: list[str], *, params: dict[str, str],
        headers: dict[str, str], body: bytes, client_gone: Callable[[], bool] | None = None,
    ) -> Response:  # fmt: skip
        """Authenticate, rate-limit, inject faults, then route."""
        auth = headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        token_realm = self._authority.access_realm(token) if token else None
        if token_realm is None:
            return token_expired()
        company = self._company(realm)
        if token_realm != realm or company is None:
            settings = self._injector.snapshot()
            spec = PRESETS["auth_100"]
            if settings["gateway_faults"]:
                return gateway_fault(401, "100", spec["message"], spec["detail"])
            return app_fault(
                401, "100", spec["message"], spec["detail"], fault_type=spec["fault_type"]
            )
        is_batch = method == "POST" and rest == ["batch"]
        reason = self._limiter.acquire(realm, batch=is_batch)
        if reason is not None:
            self._stats.bump(realm, "throttled", reason)
            xml = bool(self._injector.snapshot()["xml_throttle"])
            return throttle_xml() if xml else throttle_json()
        self._stats.bump(realm, "requests")
        if method == "POST" and rest == ["customer"]:
            self._stats.bump(realm, "customer_creates")
        if rest == ["query"]:
            self._stats.bump(realm, "queries")
        try:
            latency = float(self._injector.snapshot()["latency_seconds"])
            if latency > 0:
                self._sleep(min(latency, self._max_sleep))
            if client_gone is not None and client_gone() and self._injector.drop_abandoned():
                self._stats.bump(realm, "dropped")
                return Response(status=0, action="reset")
            is_create = method == "POST" and (
                is_batch or (len(rest) == 1 and ENTITY_PATHS.get(rest[0]) in CREATABLE)
            )
            decision = self._injector.decide(is_create=is_create)
            if decision.kind == "none":
                return self._perform(company, method, rest, params, body)
            self._stats.bump(realm, "faults_injected")
            request_id = params.get("requestid") if method == "POST" else None
            if request_id and decision.kind == "forced" and self._replays_failures():
                stored = company.recall(request_id)
                if stored is not None:  # QBO answers a known requestid with its first answer
                    self._stats.bump(company.realm, "replays")
                    return stored
                if decision.response is not None and _processed_refusal(decision.response):
                    company.remember(request_id, decision.response)
            committed = None
            if decision.commit:
                committed = self._perform(company, method, rest, params, body)
            if decision.kind == "timeout":
                self._sleep(min(decision.sleep, self._max_sleep))
                return committed if committed is not None else decision.response or Response(504)
            assert decision.response is not None
            return decision.response
        finally:
            self._limiter.release(realm)

    def _perform(
        self, company: Company, method: str, rest: list[str], params: dict[str, str], body: bytes
    ) -> Response:
        request_id = params.get("requestid") if method == "POST" else None
        if not request_id:
            return self._route(company, method, rest, params=params, body=body, request_id=None)
        with company.request_lock(request_id):  # a concurrent repeat waits, then is replayed
            stored = company.recall(request_id)
            if stored is not None:
                self._stats.bump(company.realm, "replays")
                return stored
            response = self._route(
                company, method, rest, params=params, body=body, request_id=request_id
            )
            if response.status == 200 or self._replays_failures():
                company.remember(request_id, response)
            return response

    def _replays_failures(self) -> bool:
        """A repeated requestid gets the first answer even when it was a fault."""
        return self._remember_failures or bool(self._injector.snapshot()["replay_failures"])

    def _route(
        self, company: Company, method: str, rest: list[str], *, params: dict[str, str],
        body: bytes, request_id: str | None,
    ) -> Response:  # fmt: skip
        if method == "GET" and rest == ["preferences"]:
            return json_response(200, {"Preferences": company.preferences(), "time": now_iso()})
        if method == "GET" and len(rest) == 2 and rest[0] == "companyinfo":
            return json_response(200, {"CompanyInfo": company.company_info(), "time": now_iso()})
        if rest == ["query"]:
            text = params.get("query", "") if method == "GET" else body.decode(errors="replace")
            return self._query(company, text)
        if method == "POST" and rest == ["batch"]:
            return self._batch(company, body)
        entity = ENTITY_PATHS.get(rest[0]) if rest else None
        if entity is None:
            return _unsupported(f"Unsupported path /{'/'.join(rest)}")
        if method == "GET" and len(rest) == 2:
            record = company.get(entity, rest[1])
            if record is None:
                return app_fault(
                    400, "610", "Object Not Found",
                    "Object Not Found : Something you're trying to use has been made "
                    "inactive. Check the fields with accounts, customers, items, vendors or "
                    "employees.",
                )  # fmt: skip
            return json_response(200, {entity: record, "time": now_iso()})
        if method == "POST" and len(rest) == 1:
            operation = params.get("operation")
            if operation and not (entity == "Invoice" and operation in ("void", "update")):
                return _unsupported(f"Operation {operation} is not supported")
            try:
                data = json.loads(body or b"{}")
            except ValueError:
                return app_fault(
                    400, "2010", "Request has invalid or unsupported property",
                    "Request body is not valid JSON",
                )  # fmt: skip
            if operation == "void" or (isinstance(data, dict) and data.get("Id")):
                if entity != "Invoice":
                    return _unsupported(f"Update of {entity} is not supported by the simulator")
                try:
                    if operation == "void":
                        record = company.void_invoice(data)
                    else:
                        if self._injector.take_edit_before_update():
                            company.hand_save_invoice(str(data.get("Id")))
                        record = company.update_invoice(data)
                except BusinessFault as fault:
                    return json_response(400, app_fault_payload([fault.error()]))
                return json_response(200, {entity: record, "time": now_iso()})
            try:
                record = company.create(entity, data, request_id)
            except BusinessFault as fault:
                return json_response(400, app_fault_payload([fault.error()]))
            return json_response(200, {entity: record, "time": now_iso()})
        return _unsupported(f"{method} /{'/'.join(rest)} is not supported")

    def _query(self, company: Company, text: str) -> Response:
        try:
            result = company.query(text)
        except QueryError as exc:
            return app_fault(400, "4000", "Error parsing query", str(exc))
        return json_response(200, {"QueryResponse": result, "time": now_iso()})

    def _batch(self, company: Company, body: bytes) -> Response:
        try:
            data = json.loads(body or b"{}")
            items = data["BatchItemRequest"]
            if not isinstance(items, list) or not items:
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return app_fault(
                400, "2010", "Request has invalid or unsupported property",
                "BatchItemRequest must be a non-empty list",
            )  # fmt: skip
        if len(items) > self._max_batch:
            return app_fault(
                400, "2010", "Request has invalid or unsupported property",
                f"Batch size exceeded: at most {self._max_batch} BatchItemRequest items are "
                f"allowed, received {len(items)}",
            )  # fmt: skip
        answers = [self._batch_item(company, item) for item in items]
        return json_response(200, {"BatchItemResponse": answers, "time": now_iso()})

    def _batch_item(self, company: Company, item: Any) -> JsonDict:
        bid = str(item.get("bId", "")) if isinstance(item, dict) else ""
        if not isinstance(item, dict):
            return _item_fault(bid, BusinessFault("2010", "Invalid batch item", "not an object"))
        if "Query" in item:
            try:
                return {"bId": bid, "QueryResponse": company.query(str(item["Query"]))}
            except QueryError as exc:
                return _item_fault(bid, BusinessFault("4000", "Error parsing query", str(exc)))
        operation = item.get("operation")
        entity = next((e for e in CREATABLE if e in item), None)
        if operation != "create" or entity is None:
            return _item_fault(
                bid, BusinessFault("500", "Unsupported Operation", f"{operation} not supported")
            )
        try:
            record = company.create(entity, item[entity], None)
        except BusinessFault as fault:
            return _item_fault(bid, fault)
        return {"bId": bid, entity: record}


def _item_fault(bid: str, fault: BusinessFault) -> JsonDict:
    return {"bId": bid, "Fault": {"Error": [fault.error()], "type": "ValidationFault"}}
