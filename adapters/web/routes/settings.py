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
from domain.mapping_input import InvalidMappingInput, mapping_key, memo, qbo_id
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
from services import mappings as use_case

log = structlog.get_logger(__name__)

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
        problems = use_case.mapping_problems(ledger, cfg.view, school, lists)
        students = {split_key(p.key)[1] for p in problems if p.key.startswith("student:")}
        names = cfg.view.student_names(school, students | set(mappings.students))
        unmapped = []
        for problem in problems:
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

    def cached_lists(school: str) -> QboLists | None:
        """The cached lists a change is checked with (none: recorded unchecked, as the CLI
        does when QuickBooks cannot be read); a request never calls QuickBooks for them."""
        return cfg.qbo_lists.cached(school) if cfg.qbo_lists is not None else None

    def allowed(fields: dict[str, str]) -> bool:
        return fields.get("allow_inactive") in ("1", "on")

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
        try:
            use_case.set_defaults(
                ledger,
                user.school,
                operator=user.name,
                term_id=term,
                memo=text,
                income_account_id=income,
                lists=cached_lists(user.school),
                allow_inactive=allowed(fields),
            )
        except use_case.ReferenceRefused as exc:
            labels = {use_case.TERM_ID: "Term", use_case.INCOME_ACCOUNT_ID: "Income account"}
            return refused(request, exc.sentence(labels[exc.reference.part]), back)
        log.info("web_defaults_set", school=user.school, operator=user.name)
        return done(request, "QuickBooks Defaults saved.", back)

    def mapping_post(
        path: str,
        kind: str,
        key_field: tuple[str, str],
        id_field: tuple[str, str],
        done_words: str,
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
            change = use_case.MappingChange(
                kind,
                key,
                value,
                payment_method_id=fields.get("payment_method", "").strip() or None,
                active=kind != use_case.PAYMENT_TYPE or fields.get("inactive") not in ("1", "on"),
            )
            try:
                use_case.set_mapping(
                    ledger,
                    user.school,
                    change,
                    operator=user.name,
                    lists=cached_lists(user.school),
                    allow_inactive=allowed(fields),
                )
            except use_case.ReferenceRefused as exc:
                labels = {
                    use_case.QBO_ID: id_field[1],
                    use_case.PAYMENT_METHOD_ID: "Payment method",
                }
                return refused(request, exc.sentence(labels[exc.reference.part]), back)
            log.info("web_mapping_set", school=user.school, operator=user.name, path=path)
            return done(request, done_words.format(key=key, qbo_id=value), back)

    mapping_post(
        "/settings/mappings/charge",
        use_case.CHARGE,
        ("code", "Charge code"),
        ("item", "QuickBooks item"),
        "Charge code {key} mapped to QuickBooks item {qbo_id}.",
    )
    mapping_post(
        "/settings/mappings/student",
        use_case.STUDENT,
        ("student", "Student"),
        ("customer", "QuickBooks customer"),
        "Student {key} mapped to QuickBooks customer {qbo_id}.",
    )
    mapping_post(
        "/settings/mappings/payment-type",
        use_case.PAYMENT_TYPE,
        ("name", "Payment type"),
        ("deposit_account", "Deposit account"),
        "Payment type {key} mapped to deposit account {qbo_id}.",
    )

    def switch_post(path: str, switch: str, done_words: str) -> None:
        @app.post(path)
        def save(
            request: Request, fields: dict[str, str] = Depends(form), user: User = Depends(admin)
        ) -> Response:
            state = fields.get("state", "")
            try:
                use_case.set_switch(ledger, user.school, switch, state, operator=user.name)
            except use_case.InvalidSwitch as exc:
                return refused(request, str(exc))
            log.info(f"web_{switch}_set", school=user.school, operator=user.name, state=state)
            return done(request, done_words.format(state=state))

    switch_post("/settings/auto-invoice", "auto_invoice", "Auto-invoice {state}.")
    switch_post(
        "/settings/auto-customers",
        "auto_customers",
        "New students become QuickBooks customers by themselves: {state}.",
    )

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
