"""Invoicing settings (/settings, billing:admin): QuickBooks Defaults, mappings chosen from
QuickBooks' own lists by name, the auto-invoice switch and who changed what when.

Every POST is CSRF-checked (`form`), needs billing:admin (403 otherwise), validates with
domain.mapping_input (the CLI's checks and sentences) and records through the same FlightLedger
use cases as `flightledger mappings set ...` / `settings auto-invoice`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlencode

import structlog
from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from adapters.web.access import Access
from adapters.web.auth import ADMIN, User
from adapters.web.card import card_context
from adapters.web.config import WebConfig
from adapters.web.pages import Pages
from adapters.web.session import flash, form
from domain.application import HistoryEntry
from domain.financial_event import Status
from domain.mapping_input import (
    InvalidMappingInput,
    mapping_key,
    memo,
    qbo_id,
    reference_refusal,
)
from domain.qbo_lists import (
    ACCOUNT,
    CUSTOMER,
    ITEM,
    PAYMENT_METHOD,
    TERM,
    ListsUnavailable,
    QboLists,
    QboObject,
)
from domain.reasons import split_key
from domain.retry import waiting_events

log = structlog.get_logger(__name__)

UNSENT = (
    Status.PENDING,
    Status.SYNCING,
    Status.RETRYING,
    Status.FAILED,
    Status.UNCERTAIN,
    Status.ACTION_REQUIRED,
)
HISTORY_LIMIT = 50
KIND_WORDS = {"charge": "Charge code", "student": "Student", "payment_type": "Payment type"}
DEPOSIT_TYPES = ("Bank", "Other Current Asset")


@dataclass(frozen=True)
class Choice:
    """One option of a pick-list: QuickBooks' id, its name, and whether it is active."""

    id: str
    label: str
    active: bool


def _choices(
    lists: QboLists | None,
    entity: str,
    *,
    include_inactive: bool,
    current: str | None = None,
    types: tuple[str, ...] = (),
) -> list[Choice]:
    """QuickBooks' objects by name; inactive ones only when asked (or already chosen)."""
    if lists is None:
        return []
    found: list[Choice] = []
    for obj in lists.of(entity, include_inactive=True):
        if types and obj.type not in types and obj.id != current:
            continue
        if not obj.active and not include_inactive and obj.id != current:
            continue
        found.append(Choice(obj.id, obj.name + ("" if obj.active else " (inactive)"), obj.active))
    return found


def _name(lists: QboLists | None, entity: str, object_id: str | None) -> str:
    """'Aircraft rental (item 1)' or the bare id when the lists do not hold it."""
    if object_id is None:
        return ""
    found: QboObject | None = lists.get(entity, object_id) if lists is not None else None
    if found is None:
        return f"id {object_id}"
    return found.name + ("" if found.active else " (inactive in QuickBooks)")


def _history_line(entry: HistoryEntry, lists: QboLists | None) -> str:
    """One change in words staff read."""
    d = entry.data
    if entry.type == "ChargeCodeMapped":
        state = "" if d.get("active", True) else " (no longer used)"
        return f"Charge code {d['code']} → {_name(lists, ITEM, d['item_id'])}{state}"
    if entry.type == "StudentAutoMapped":
        how = "created in QuickBooks" if d.get("how") == "created" else "matched by name"
        return (
            f"Student {d['student_id']} → {_name(lists, CUSTOMER, d['customer_id'])} "
            f"({how}, by itself)"
        )
    if entry.type == "CustomerCreateStarted":
        return f"Creating QuickBooks customer “{d['display_name']}” for student {d['student_id']}"
    if entry.type == "StudentMapped":
        return f"Student {d['student_id']} → {_name(lists, CUSTOMER, d['customer_id'])}"
    if entry.type == "PaymentTypeMapped":
        state = "" if d.get("active", True) else " (inactive payment type)"
        return (
            f"Payment type {d['name']} → deposit account "
            f"{_name(lists, ACCOUNT, d['deposit_account_id'])}{state}"
        )
    if entry.type == "DefaultsSet":
        parts = []
        if d.get("term_id") is not None:
            parts.append(f"term {_name(lists, TERM, d['term_id'])}")
        if d.get("memo") is not None:
            parts.append(f"memo “{d['memo']}”")
        if d.get("income_account_id") is not None:
            parts.append(f"income account {_name(lists, ACCOUNT, d['income_account_id'])}")
        return "QuickBooks Defaults: " + ", ".join(parts)
    if entry.type == "AutoInvoiceSet":
        return "Auto-invoice " + ("on" if d.get("enabled") else "off")
    if entry.type == "AutoCustomersSet":
        return "New students become QuickBooks customers by themselves: " + (
            "on" if d.get("enabled") else "off"
        )
    return entry.type


def register(app: FastAPI, cfg: WebConfig, access: Access, pages: Pages) -> None:
    """Add GET /settings and its POSTs (defaults, mappings, auto-invoice, refresh lists)."""
    ledger = cfg.ledger
    admin = access.requires(ADMIN)

    def lists_for(school: str) -> tuple[QboLists | None, str]:
        """The cached lists (read once when none yet), or None and why."""
        if cfg.qbo_lists is None:
            return None, "QuickBooks' lists cannot be read on this server (not configured)."
        found = cfg.qbo_lists.cached(school)
        if found is not None:
            return found, ""
        if not ledger.connection(school).is_usable:
            return None, "Connect QuickBooks to choose from its lists."
        try:
            return cfg.qbo_lists.refresh(school), ""
        except ListsUnavailable as exc:
            return None, str(exc)

    @app.get("/settings", response_class=HTMLResponse)
    def settings_page(
        request: Request, include_inactive: str = "", user: User = Depends(admin)
    ) -> Response:
        cfg.refresh()
        school = user.school
        inactive = include_inactive in ("1", "on", "true")
        lists, lists_note = lists_for(school)
        mappings = ledger.mappings(school)
        unsent = waiting_events(ledger, cfg.view, school, UNSENT)
        names = {e.student_id: e.student_name for e in unsent}
        unmapped = []
        for problem in ledger.mapping_problems(school, unsent):
            kind, key = split_key(problem.key)
            unmapped.append(
                {
                    "kind": kind,
                    "kind_words": KIND_WORDS.get(kind, kind),
                    "key": key,
                    "name": names.get(key, "") if kind == "student" else "",
                    "state": problem.state,
                    "count": problem.count,
                    "used_by": problem.used_by[:3],
                }
            )
        choose = _chooser(lists, inactive)
        entries = sorted(
            (e for ref in ("mappings", "settings") for e in ledger.history(school, ref)),
            key=lambda e: e.at,
            reverse=True,
        )
        history = [
            {"at": e.at, "actor": e.actor, "line": _history_line(e, lists), "type": e.type}
            for e in entries
            if e.type != "Started"
        ]
        auto_history = [h for h in history if h["type"] == "AutoInvoiceSet"]
        customers_history = [h for h in history if h["type"] == "AutoCustomersSet"]
        return pages.render(
            request,
            "settings.html",
            {
                **card_context(cfg, request, school),
                "school": school,
                "lists": lists,
                "lists_note": lists_note,
                "include_inactive": inactive,
                "mappings": mappings,
                "unmapped": unmapped,
                "items": choose(ITEM),
                "customers": choose(CUSTOMER),
                "deposit_accounts": choose(ACCOUNT, types=DEPOSIT_TYPES),
                "income_accounts": choose(
                    ACCOUNT, current=mappings.income_account_id, types=("Income",)
                ),
                "terms": choose(TERM, current=mappings.term_id),
                "payment_methods": choose(PAYMENT_METHOD),
                "item_name": lambda i: _name(lists, ITEM, i),
                "customer_name": lambda i: _name(lists, CUSTOMER, i),
                "account_name": lambda i: _name(lists, ACCOUNT, i),
                "auto_invoice": ledger.settings(school).auto_invoice,
                "auto_changed": auto_history[0] if auto_history else None,
                "auto_customers": ledger.settings(school).auto_customers,
                "customers_changed": customers_history[0] if customers_history else None,
                "history": history[:HISTORY_LIMIT],
                "history_total": len(history),
                "students": sorted(mappings.students.items()),
                "names": names,
            },
        )

    def done(request: Request, ok: str, back: str = "") -> Response:
        flash(request, "ok", ok)
        return RedirectResponse("/settings" + back, 303)

    def refused(request: Request, why: str, back: str = "") -> Response:
        flash(request, "bad", f"Not saved: {why}")
        return RedirectResponse("/settings" + back, 303)

    def back_of(fields: dict[str, str]) -> str:
        inactive = fields.get("include_inactive") in ("1", "on")
        return "?" + urlencode({"include_inactive": "1"}) if inactive else ""

    def checked(
        school: str, fields: dict[str, str], refs: list[tuple[str, str, str]]
    ) -> str | None:
        """Refuse an id QuickBooks does not hold, or holds as inactive (unless allowed)."""
        lists = cfg.qbo_lists.cached(school) if cfg.qbo_lists is not None else None
        if lists is None:
            return None  # recorded unchecked, as the CLI does when QuickBooks cannot be read
        allow = fields.get("allow_inactive") in ("1", "on")
        for entity, value, label in refs:
            why = reference_refusal(lists, entity, value, label, allow_inactive=allow)
            if why is not None:
                return why
        return None

    @app.post("/settings/defaults")
    def save_defaults(
        request: Request, fields: dict[str, str] = Depends(form), user: User = Depends(admin)
    ) -> Response:
        back = back_of(fields)
        try:
            term = qbo_id(fields.get("term", ""), "Term")
            income = qbo_id(fields.get("income_account", ""), "Income account")
            text = memo(fields.get("memo", ""), "Default memo")
        except InvalidMappingInput as exc:
            return refused(request, str(exc), back)
        why = checked(
            user.school, fields, [(TERM, term, "Term"), (ACCOUNT, income, "Income account")]
        )
        if why:
            return refused(request, why, back)
        ledger.set_defaults(
            user.school, operator=user.name, term_id=term, memo=text, income_account_id=income
        )
        log.info("web_defaults_set", school=user.school, operator=user.name)
        return done(request, "QuickBooks Defaults saved.", back)

    def mapping_post(
        path: str,
        entity: str,
        key_field: tuple[str, str],
        id_field: tuple[str, str],
        record: Callable[[User, str, str, dict[str, str]], str],
    ) -> None:
        @app.post(path)
        def save(
            request: Request, fields: dict[str, str] = Depends(form), user: User = Depends(admin)
        ) -> Response:
            back = back_of(fields)
            try:
                key = mapping_key(fields.get(key_field[0], ""), key_field[1])
                value = qbo_id(fields.get(id_field[0], ""), id_field[1])
            except InvalidMappingInput as exc:
                return refused(request, str(exc), back)
            refs = [(entity, value, id_field[1])]
            method = fields.get("payment_method", "").strip()
            if method:
                refs.append((PAYMENT_METHOD, method, "Payment method"))
            why = checked(user.school, fields, refs)
            if why:
                return refused(request, why, back)
            sentence = record(user, key, value, fields)
            log.info("web_mapping_set", school=user.school, operator=user.name, path=path)
            return done(request, sentence, back)

    def record_charge(user: User, code: str, item: str, fields: dict[str, str]) -> str:
        ledger.map_charge(user.school, code, item, operator=user.name)
        return f"Charge code {code} mapped to QuickBooks item {item}."

    def record_student(user: User, student: str, customer: str, fields: dict[str, str]) -> str:
        ledger.map_student(user.school, student, customer, operator=user.name)
        return f"Student {student} mapped to QuickBooks customer {customer}."

    def record_payment_type(user: User, name: str, account: str, fields: dict[str, str]) -> str:
        method = fields.get("payment_method", "").strip() or None
        ledger.map_payment_type(
            user.school,
            name,
            account,
            payment_method_id=method,
            active=fields.get("inactive") not in ("1", "on"),
            operator=user.name,
        )
        return f"Payment type {name} mapped to deposit account {account}."

    mapping_post(
        "/settings/mappings/charge",
        ITEM,
        ("code", "Charge code"),
        ("item", "QuickBooks item"),
        record_charge,
    )
    mapping_post(
        "/settings/mappings/student",
        CUSTOMER,
        ("student", "Student"),
        ("customer", "QuickBooks customer"),
        record_student,
    )
    mapping_post(
        "/settings/mappings/payment-type",
        ACCOUNT,
        ("name", "Payment type"),
        ("deposit_account", "Deposit account"),
        record_payment_type,
    )

    @app.post("/settings/auto-invoice")
    def auto_invoice(
        request: Request, fields: dict[str, str] = Depends(form), user: User = Depends(admin)
    ) -> Response:
        state = fields.get("state", "")
        if state not in ("on", "off"):
            return refused(request, f"state: must be 'on' or 'off', not {state!r}")
        ledger.set_auto_invoice(user.school, state == "on", operator=user.name)
        log.info("web_auto_invoice_set", school=user.school, operator=user.name, state=state)
        return done(request, f"Auto-invoice {state}.")

    @app.post("/settings/auto-customers")
    def auto_customers(
        request: Request, fields: dict[str, str] = Depends(form), user: User = Depends(admin)
    ) -> Response:
        state = fields.get("state", "")
        if state not in ("on", "off"):
            return refused(request, f"state: must be 'on' or 'off', not {state!r}")
        ledger.set_auto_customers(user.school, state == "on", operator=user.name)
        log.info("web_auto_customers_set", school=user.school, operator=user.name, state=state)
        return done(request, f"New students become QuickBooks customers by themselves: {state}.")

    @app.post("/settings/refresh-lists")
    def refresh_lists(
        request: Request, fields: dict[str, str] = Depends(form), user: User = Depends(admin)
    ) -> Response:
        back = back_of(fields)
        if cfg.qbo_lists is None:
            return refused(request, "QuickBooks' lists cannot be read on this server.", back)
        try:
            lists = cfg.qbo_lists.refresh(user.school)
        except ListsUnavailable as exc:
            flash(request, "bad", str(exc))
            return RedirectResponse("/settings" + back, 303)
        count = sum(len(v) for v in lists.objects.values())
        return done(request, f"QuickBooks' lists read again: {count} objects.", back)


def _chooser(lists: QboLists | None, include_inactive: bool) -> Callable[..., list[Choice]]:
    def choose(
        entity: str, *, current: str | None = None, types: tuple[str, ...] = ()
    ) -> list[Choice]:
        return _choices(
            lists, entity, include_inactive=include_inactive, current=current, types=types
        )

    return choose
