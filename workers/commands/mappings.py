"""`mappings set|list|check` and `settings auto-invoice|auto-customers`: how codes map to
QuickBooks."""

from __future__ import annotations

import contextlib
import getpass
import os
from collections.abc import Callable, Sequence
from typing import Any

import typer
from rich.console import Console

from domain import mapping_input
from domain.mappings import mapping_rows
from domain.qbo_lists import (
    ACCOUNT,
    CUSTOMER,
    ITEM,
    LIST_ENTITIES,
    TERM,
    ListsUnavailable,
    QboLists,
)
from domain.reasons import command_for, split_key
from services.mappings import (
    CHARGE,
    INCOME_ACCOUNT_ID,
    PAYMENT_METHOD_ID,
    PAYMENT_TYPE,
    QBO_ID,
    STUDENT,
    TERM_ID,
    Checked,
    InvalidSwitch,
    MappingChange,
    NothingToSet,
    Reference,
    ReferenceRefused,
    defaults_references,
    set_mapping,
    set_switch,
)
from services.mappings import set_defaults as set_defaults_use_case
from workers.context import EXIT_REFUSED, EXIT_USAGE, CliContext, emit, fail, get_context, table

mappings_app = typer.Typer(help="Map charge codes, students and payment types to QuickBooks.")
set_app = typer.Typer(help="Record one mapping (every change is kept with its operator).")
settings_app = typer.Typer(help="Per-school settings.")


def default_operator() -> str:
    """Who is acting: FLIGHTLEDGER_OPERATOR, else the login name."""
    try:
        fallback = getpass.getuser()
    except OSError:
        fallback = "operator"
    return os.environ.get("FLIGHTLEDGER_OPERATOR") or fallback


OPERATOR = typer.Option(None, "--operator", help="Who is acting (default: your login name)")


def _qbo_id(value: str, field: str) -> str:
    try:
        return mapping_input.qbo_id(value, field)  # the settings page's check and sentence
    except mapping_input.InvalidMappingInput as exc:
        raise typer.BadParameter(str(exc)) from None


ALLOW_INACTIVE = typer.Option(
    False,
    "--allow-inactive",
    help="Accept a QuickBooks object that is inactive (the mapping is then flagged)",
)
RECHECK_AFTER_SECONDS = 60.0  # an id missing from lists older than this: read them once more


def quickbooks_lists(
    cli: CliContext, references: Sequence[Reference]
) -> tuple[QboLists | None, str | None]:
    """The lists to check a mapping with: read once when never read (or once more when an id
    is missing from lists older than a minute); (None, why) when QuickBooks cannot be read."""
    from workers.qbo_lists import list_service

    service = list_service(cli)
    try:
        lists = service.lists(cli.school)
    except ListsUnavailable as exc:
        return None, str(exc)
    age = (cli.ledger().clock.now() - lists.fetched_at).total_seconds()
    if age > RECHECK_AFTER_SECONDS and any(
        lists.get(r.entity, r.qbo_id) is None for r in references
    ):
        with contextlib.suppress(ListsUnavailable):  # else judge by the cached lists
            lists = service.refresh(cli.school)
    return lists, None


def record_checked(
    cli: CliContext,
    references: Sequence[Reference],
    flags: dict[str, str],
    record: Callable[[QboLists | None], Checked],
) -> dict[str, Any]:
    """Run a mapping use case with the lists to check against (none read when it names no
    QuickBooks object); a nonexistent id is refused naming its flag (exit 1), an inactive one
    too unless allowed, then flagged. When QuickBooks cannot be read the mapping is recorded
    unchecked and the answer says so."""
    lists, unavailable = quickbooks_lists(cli, references) if references else (None, None)
    try:
        checked = record(lists)
    except ReferenceRefused as exc:
        what, problem = flags[exc.reference.part], exc.problem
        assert lists is not None  # only lists refuse
        if problem.state == "missing":
            fail(
                cli,
                f"{what}: {problem.sentence()} (lists read {_when(lists)}; "
                "`flightledger mappings quickbooks` shows them, `mappings refresh` reads them "
                "again)",
                EXIT_REFUSED,
                field=what,
                qbo_id=problem.id,
            )
        fail(
            cli,
            f"{what}: {problem.sentence()} in QuickBooks: choose an active one, or pass "
            "--allow-inactive if this is meant",
            EXIT_REFUSED,
            field=what,
            qbo_id=problem.id,
        )
    if unavailable is not None:
        return {"checked": False, "warnings": [f"not checked against QuickBooks: {unavailable}"]}
    warnings = [
        f"{flags[reference.part]}: {problem.sentence()} (accepted with --allow-inactive)"
        for reference, problem in checked.accepted_inactive
    ]
    return {"checked": checked.checked, "warnings": warnings}


def _set(
    cli: CliContext,
    change: MappingChange,
    flags: dict[str, str],
    *,
    allow_inactive: bool,
    operator: str | None,
) -> dict[str, Any]:
    """services.mappings.set_mapping with the CLI's lists and words."""
    return record_checked(
        cli,
        change.references(),
        flags,
        lambda lists: set_mapping(
            cli.ledger(),
            cli.school,
            change,
            operator=operator or default_operator(),
            lists=lists,
            allow_inactive=allow_inactive,
        ),
    )


def _when(lists: QboLists) -> str:
    return lists.fetched_at.strftime("%Y-%m-%d %H:%M UTC")


def _done(cli: CliContext, checked: dict[str, Any], line: str) -> None:
    def human(console: Console) -> None:
        console.print(line)
        for warning in checked["warnings"]:
            console.print(f"[yellow]warning:[/yellow] {warning}")

    if cli.json_output:
        for warning in checked["warnings"]:
            from workers.context import stderr

            stderr().print(f"warning: {warning}")
    emit(cli, {"ok": True, **checked}, human)


def _key(value: str, field: str) -> str:
    try:
        return mapping_input.mapping_key(value, field)
    except mapping_input.InvalidMappingInput as exc:
        raise typer.BadParameter(str(exc)) from None


@set_app.command("charge")
def set_charge(
    ctx: typer.Context,
    code: str = typer.Argument(..., help="Charge code, e.g. aircraft_rental"),
    item: str = typer.Option(..., "--item", help="QuickBooks Item id"),
    inactive: bool = typer.Option(
        False, "--inactive", help="The school no longer uses this code (hidden from lists)"
    ),
    allow_inactive: bool = ALLOW_INACTIVE,
    operator: str | None = OPERATOR,
) -> None:
    """Map a charge code to a QuickBooks Item."""
    cli = get_context(ctx)
    code, item = _key(code, "CODE"), _qbo_id(item, "--item")
    change = MappingChange(CHARGE, code, item, active=not inactive)
    checked = _set(
        cli, change, {QBO_ID: "--item"}, allow_inactive=allow_inactive, operator=operator
    )
    _done(cli, checked, f"charge code {code} -> item {item}")


@set_app.command("student")
def set_student(
    ctx: typer.Context,
    student_id: str = typer.Argument(..., metavar="ID", help="Student id"),
    customer: str = typer.Option(..., "--customer", help="QuickBooks Customer id"),
    allow_inactive: bool = ALLOW_INACTIVE,
    operator: str | None = OPERATOR,
) -> None:
    """Map a student to a QuickBooks Customer."""
    cli = get_context(ctx)
    student_id, customer = _key(student_id, "ID"), _qbo_id(customer, "--customer")
    change = MappingChange(STUDENT, student_id, customer)
    checked = _set(
        cli, change, {QBO_ID: "--customer"}, allow_inactive=allow_inactive, operator=operator
    )
    _done(cli, checked, f"student {student_id} -> customer {customer}")


@set_app.command("payment-type")
def set_payment_type(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Payment type, e.g. card"),
    deposit_account: str = typer.Option(..., "--deposit-account", help="QuickBooks Account id"),
    payment_method: str | None = typer.Option(
        None, "--payment-method", help="QuickBooks PaymentMethod id (optional)"
    ),
    inactive: bool = typer.Option(
        False,
        "--inactive",
        help="The school no longer uses this payment type: hidden from lists, its historical "
        "payments still sync",
    ),
    allow_inactive: bool = ALLOW_INACTIVE,
    operator: str | None = OPERATOR,
) -> None:
    """Map a payment type to a deposit account."""
    cli = get_context(ctx)
    name, account = _key(name, "NAME"), _qbo_id(deposit_account, "--deposit-account")
    method = None if payment_method is None else _qbo_id(payment_method, "--payment-method")
    change = MappingChange(
        PAYMENT_TYPE, name, account, payment_method_id=method, active=not inactive
    )
    flags = {QBO_ID: "--deposit-account", PAYMENT_METHOD_ID: "--payment-method"}
    checked = _set(cli, change, flags, allow_inactive=allow_inactive, operator=operator)
    _done(cli, checked, f"payment type {name} -> account {account}")


@set_app.command("defaults")
def set_defaults(
    ctx: typer.Context,
    term: str | None = typer.Option(None, "--term", help="QuickBooks Term id"),
    memo: str | None = typer.Option(None, "--memo", help="Customer memo on every invoice"),
    income_account: str | None = typer.Option(
        None, "--income-account", help="QuickBooks income Account id"
    ),
    allow_inactive: bool = ALLOW_INACTIVE,
    operator: str | None = OPERATOR,
) -> None:
    """Set invoice defaults (term, memo, income account)."""
    cli = get_context(ctx)
    if memo is not None:
        try:
            mapping_input.memo(memo, "--memo")
        except mapping_input.InvalidMappingInput as exc:
            fail(cli, str(exc), EXIT_USAGE)
    term_id = None if term is None else _qbo_id(term, "--term")
    income = None if income_account is None else _qbo_id(income_account, "--income-account")
    try:
        checked = record_checked(
            cli,
            defaults_references(term_id, income),
            {TERM_ID: "--term", INCOME_ACCOUNT_ID: "--income-account"},
            lambda lists: set_defaults_use_case(
                cli.ledger(),
                cli.school,
                term_id=term_id,
                memo=memo,
                income_account_id=income,
                operator=operator or default_operator(),
                lists=lists,
                allow_inactive=allow_inactive,
            ),
        )
    except NothingToSet:
        fail(cli, "defaults: give at least one of --term, --memo, --income-account", EXIT_USAGE)
    _done(cli, checked, "defaults updated")


@mappings_app.command("list")
def list_mappings(
    ctx: typer.Context,
    include_inactive: bool = typer.Option(
        False, "--include-inactive", help="Also show inactive mappings"
    ),
) -> None:
    """List the school's mappings."""
    cli = get_context(ctx)
    mappings = cli.ledger().mappings(cli.school)
    rows = mapping_rows(mappings, include_inactive=include_inactive)
    _with_quickbooks(cli, rows)

    def human(console: Console) -> None:
        if not rows:
            console.print("no mappings yet: see `flightledger mappings check`")
            return
        console.print(
            table(
                ["kind", "key", "QuickBooks id", "active"],
                [[r["kind"], r["key"], r["qbo_id"], "yes" if r["active"] else "no"] for r in rows],
            )
        )

    emit(cli, rows, human)


ROW_ENTITIES = {
    ("charge", None): ITEM,
    ("student", None): CUSTOMER,
    ("payment_type", None): ACCOUNT,
    ("default", "term"): TERM,
    ("default", "income_account"): ACCOUNT,
}


def _with_quickbooks(cli: CliContext, rows: list[dict[str, Any]]) -> None:
    """Add what the cached QuickBooks lists say of each mapped object (no QuickBooks call)."""
    from workers.qbo_lists import list_service

    lists = list_service(cli).cached(cli.school)
    for row in rows:
        entity = ROW_ENTITIES.get((row["kind"], None)) or ROW_ENTITIES.get(
            (row["kind"], row["key"])
        )
        if entity is None:
            continue
        found = lists.get(entity, row["qbo_id"]) if lists is not None else None
        row["qbo_name"] = found.name if found else None
        row["qbo_active"] = None if lists is None else (found.active if found else False)
        row["qbo_state"] = (
            "unknown"
            if lists is None
            else "missing"
            if found is None
            else "active"
            if found.active
            else "inactive"
        )


@mappings_app.command("check")
def check_mappings(
    ctx: typer.Context,
    refresh: bool = typer.Option(
        False, "--refresh", help="Read QuickBooks' lists again first (metered reads)"
    ),
) -> None:
    """What unsent financial events use that is unmapped, or mapped to an inactive or missing
    QuickBooks object (by the lists last read from QuickBooks)."""
    from workers.commands.events import caught_up_view
    from workers.qbo_lists import list_service
    from workers.selection import mapping_problems

    cli = get_context(ctx)
    lists = None
    if refresh:
        try:
            lists = list_service(cli).refresh(cli.school)
        except ListsUnavailable as exc:
            fail(cli, f"QuickBooks lists not read: {exc}")
    problems = mapping_problems(
        cli.ledger(), caught_up_view(cli), cli.config.database, cli.school, lists
    )
    missing: list[dict[str, Any]] = [
        {
            "kind": split_key(p.key)[0],
            "key": split_key(p.key)[1],
            "used_by": p.used_by,
            "count": p.count,
            "state": p.state,
            "detail": p.detail,
            "fix": command_for(p.key),
        }
        for p in problems
    ]

    def human(console: Console) -> None:
        if not missing:
            console.print("every charge code, student and payment type in use is mapped")
            return
        console.print(
            table(
                ["kind", "key", "state", "used by", "fix"],
                [
                    [
                        m["kind"],
                        m["key"],
                        m["state"],
                        ", ".join(m["used_by"][:3]) + (" …" if m["count"] > 3 else ""),
                        m["fix"],
                    ]
                    for m in missing
                ],
            )
        )

    emit(cli, {"missing": missing}, human)


@mappings_app.command("refresh")
def refresh_lists(ctx: typer.Context) -> None:
    """Read QuickBooks' Items, Customers, Accounts, Terms and PaymentMethods again (metered)."""
    from workers.qbo_lists import list_service

    cli = get_context(ctx)
    try:
        lists = list_service(cli).refresh(cli.school)
    except ListsUnavailable as exc:
        fail(cli, f"QuickBooks lists not read: {exc}")
    counts = {entity: len(lists.objects.get(entity, {})) for entity in LIST_ENTITIES}
    emit(
        cli,
        {"ok": True, "realm": lists.realm, "fetched_at": lists.fetched_at, "counts": counts},
        lambda c: c.print(
            "read from QuickBooks: " + ", ".join(f"{n} {e}" for e, n in counts.items())
        ),
    )


@mappings_app.command("quickbooks")
def show_lists(
    ctx: typer.Context,
    entity: str | None = typer.Option(
        None, "--entity", help="Item, Customer, Account, Term or PaymentMethod (default: all)"
    ),
    refresh: bool = typer.Option(False, "--refresh", help="Read QuickBooks again first"),
) -> None:
    """The school's QuickBooks lists as last read (read once when never read)."""
    from workers.qbo_lists import list_service

    cli = get_context(ctx)
    if entity is not None and entity not in LIST_ENTITIES:
        names = ", ".join(LIST_ENTITIES)
        fail(cli, f"--entity: must be one of {names}, not {entity!r}", EXIT_USAGE)
    service = list_service(cli)
    try:
        lists = service.refresh(cli.school) if refresh else service.lists(cli.school)
    except ListsUnavailable as exc:
        fail(cli, f"QuickBooks lists not read: {exc}")
    rows = [
        {
            "entity": o.entity,
            "id": o.id,
            "name": o.name,
            "active": o.active,
            "type": o.type,
            "email": o.email,
        }
        for e in ([entity] if entity else LIST_ENTITIES)
        for o in lists.of(e)
    ]
    emit(
        cli,
        {"realm": lists.realm, "fetched_at": lists.fetched_at, "objects": rows},
        lambda c: c.print(
            table(
                ["entity", "id", "name", "active", "type"],
                [
                    [r["entity"], r["id"], r["name"], "yes" if r["active"] else "no", r["type"]]
                    for r in rows
                ],
                title=f"QuickBooks lists read {_when(lists)}",
            )
        ),
    )


def _switch(cli: CliContext, switch: str, state: str, operator: str | None) -> None:
    try:
        set_switch(cli.ledger(), cli.school, switch, state, operator=operator or default_operator())
    except InvalidSwitch as exc:
        fail(cli, str(exc), EXIT_USAGE)


@settings_app.command("auto-invoice")
def auto_invoice(
    ctx: typer.Context,
    state: str = typer.Argument(..., metavar="on|off", help="on or off"),
    operator: str | None = OPERATOR,
) -> None:
    """Switch automatic invoicing of ended flights on or off."""
    _switch(get_context(ctx), "auto_invoice", state, operator)
    emit(get_context(ctx), {"ok": True}, lambda c: c.print(f"auto-invoice {state}"))


@settings_app.command("auto-customers")
def auto_customers(
    ctx: typer.Context,
    state: str = typer.Argument(..., metavar="on|off", help="on or off"),
    operator: str | None = OPERATOR,
) -> None:
    """Match or create a QuickBooks customer for a new (unmapped) student, by name and email."""
    _switch(get_context(ctx), "auto_customers", state, operator)
    emit(get_context(ctx), {"ok": True}, lambda c: c.print(f"auto-customers {state}"))


@settings_app.command("show")
def show_settings(ctx: typer.Context) -> None:
    """Show the school's settings."""
    cli = get_context(ctx)
    settings = cli.ledger().settings(cli.school)
    emit(
        cli,
        {
            "school": cli.school,
            "auto_invoice": settings.auto_invoice,
            "auto_customers": settings.auto_customers,
        },
    )


def register(app: typer.Typer) -> None:
    """Add the `mappings` and `settings` groups."""
    mappings_app.add_typer(set_app, name="set")
    app.add_typer(mappings_app, name="mappings")
    app.add_typer(settings_app, name="settings")
