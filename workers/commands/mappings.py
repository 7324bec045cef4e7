"""`mappings set|list|check` and `settings auto-invoice`: how codes map to QuickBooks."""

from __future__ import annotations

import getpass
import os
from typing import Any

import typer
from rich.console import Console

from domain.reasons import command_for, split_key
from workers.context import EXIT_USAGE, emit, fail, get_context, table

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
    value = value.strip()
    if not value or len(value) > 64 or not value.isprintable():
        raise typer.BadParameter(f"{field}: must be a QuickBooks id of 1-64 printable characters")
    return value


def _key(value: str, field: str) -> str:
    if not 1 <= len(value) <= 64 or not value.isprintable() or value.strip() != value:
        raise typer.BadParameter(f"{field}: must be 1-64 printable characters")
    return value


@set_app.command("charge")
def set_charge(
    ctx: typer.Context,
    code: str = typer.Argument(..., help="Charge code, e.g. aircraft_rental"),
    item: str = typer.Option(..., "--item", help="QuickBooks Item id"),
    inactive: bool = typer.Option(False, "--inactive", help="Keep the mapping but do not use it"),
    operator: str | None = OPERATOR,
) -> None:
    """Map a charge code to a QuickBooks Item."""
    cli = get_context(ctx)
    cli.ledger().map_charge(
        cli.school,
        _key(code, "CODE"),
        _qbo_id(item, "--item"),
        active=not inactive,
        operator=operator or default_operator(),
    )
    emit(cli, {"ok": True}, lambda c: c.print(f"charge code {code} -> item {item}"))


@set_app.command("student")
def set_student(
    ctx: typer.Context,
    student_id: str = typer.Argument(..., metavar="ID", help="Student id"),
    customer: str = typer.Option(..., "--customer", help="QuickBooks Customer id"),
    operator: str | None = OPERATOR,
) -> None:
    """Map a student to a QuickBooks Customer."""
    cli = get_context(ctx)
    cli.ledger().map_student(
        cli.school,
        _key(student_id, "ID"),
        _qbo_id(customer, "--customer"),
        operator=operator or default_operator(),
    )
    emit(cli, {"ok": True}, lambda c: c.print(f"student {student_id} -> customer {customer}"))


@set_app.command("payment-type")
def set_payment_type(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Payment type, e.g. card"),
    deposit_account: str = typer.Option(..., "--deposit-account", help="QuickBooks Account id"),
    payment_method: str | None = typer.Option(
        None, "--payment-method", help="QuickBooks PaymentMethod id (optional)"
    ),
    inactive: bool = typer.Option(False, "--inactive", help="Keep the mapping but do not use it"),
    operator: str | None = OPERATOR,
) -> None:
    """Map a payment type to a deposit account."""
    cli = get_context(ctx)
    cli.ledger().map_payment_type(
        cli.school,
        _key(name, "NAME"),
        _qbo_id(deposit_account, "--deposit-account"),
        payment_method_id=None
        if payment_method is None
        else _qbo_id(payment_method, "--payment-method"),
        active=not inactive,
        operator=operator or default_operator(),
    )
    emit(cli, {"ok": True}, lambda c: c.print(f"payment type {name} -> account {deposit_account}"))


@set_app.command("defaults")
def set_defaults(
    ctx: typer.Context,
    term: str | None = typer.Option(None, "--term", help="QuickBooks Term id"),
    memo: str | None = typer.Option(None, "--memo", help="Customer memo on every invoice"),
    income_account: str | None = typer.Option(
        None, "--income-account", help="QuickBooks income Account id"
    ),
    operator: str | None = OPERATOR,
) -> None:
    """Set invoice defaults (term, memo, income account)."""
    cli = get_context(ctx)
    if term is None and memo is None and income_account is None:
        fail(cli, "defaults: give at least one of --term, --memo, --income-account", EXIT_USAGE)
    if memo is not None and (not memo.strip() or len(memo) > 1000):
        fail(cli, "--memo: must be 1-1000 characters", EXIT_USAGE)
    cli.ledger().set_defaults(
        cli.school,
        term_id=None if term is None else _qbo_id(term, "--term"),
        memo=memo,
        income_account_id=None
        if income_account is None
        else _qbo_id(income_account, "--income-account"),
        operator=operator or default_operator(),
    )
    emit(cli, {"ok": True}, lambda c: c.print("defaults updated"))


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


@mappings_app.command("check")
def check_mappings(ctx: typer.Context) -> None:
    """What unsent financial events reference but is unmapped or inactive."""
    from workers.commands.events import caught_up_view
    from workers.selection import UNSENT, events_in

    cli = get_context(ctx)
    ledger = cli.ledger()
    unsent = events_in(ledger, caught_up_view(cli), cli.school, UNSENT)
    problems = ledger.mapping_problems(cli.school, unsent)
    missing: list[dict[str, Any]] = [
        {
            "kind": split_key(p.key)[0],
            "key": split_key(p.key)[1],
            "used_by": p.used_by,
            "count": p.count,
            "state": p.state,
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


@settings_app.command("auto-invoice")
def auto_invoice(
    ctx: typer.Context,
    state: str = typer.Argument(..., metavar="on|off", help="on or off"),
    operator: str | None = OPERATOR,
) -> None:
    """Switch automatic invoicing of ended flights on or off."""
    cli = get_context(ctx)
    if state not in ("on", "off"):
        fail(cli, f"state: must be 'on' or 'off', not {state!r}", EXIT_USAGE)
    cli.ledger().set_auto_invoice(
        cli.school, state == "on", operator=operator or default_operator()
    )
    emit(cli, {"ok": True}, lambda c: c.print(f"auto-invoice {state}"))


@settings_app.command("show")
def show_settings(ctx: typer.Context) -> None:
    """Show the school's settings."""
    cli = get_context(ctx)
    settings = cli.ledger().settings(cli.school)
    emit(cli, {"school": cli.school, "auto_invoice": settings.auto_invoice})


def register(app: typer.Typer) -> None:
    """Add the `mappings` and `settings` groups."""
    mappings_app.add_typer(set_app, name="set")
    app.add_typer(mappings_app, name="mappings")
    app.add_typer(settings_app, name="settings")
