"""The setup checklist (DESIGN.md): why flights end but no invoices appear, line by line."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from domain.connection import Connection
from domain.mapping_check import MappingProblem
from domain.mappings import Mappings
from domain.ports import ReasonCode
from domain.preflight import check_connection
from domain.reasons import command_for, describe_missing, split_key

WORKER_RECENT_SECONDS = 5 * 60
START_WORKER = "start `flightledger worker`"


@dataclass(frozen=True)
class ChecklistItem:
    """One line: what must hold, whether it does, and the exact thing to do if not."""

    item: str
    ok: bool
    fix: str = ""
    detail: str = ""


CUSTOM_NUMBERS_OFF = ChecklistItem(
    "QuickBooks keeps flightledger's invoice numbers (custom transaction numbers on)",
    False,
    "In QuickBooks, turn on Settings > Account and settings > Sales > Custom transaction "
    "numbers, then run flightledger connection test. Until then QuickBooks numbers the invoices "
    "itself, so flightledger sends them one at a time and relies on its request ids alone",
)


def _ago(seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes < 1:
        return "less than a minute ago"
    if minutes < 120:
        return f"{minutes} minute{'s' if minutes != 1 else ''} ago"
    return f"{minutes // 60} hours ago"


def _mapping_line(
    item: str, kind: str, problems: Sequence[MappingProblem], inactive_fix: str
) -> ChecklistItem:
    fixes: list[str] = []
    for problem in problems:
        if split_key(problem.key)[0] != kind:
            continue
        name = split_key(problem.key)[1]
        used = ", ".join(problem.used_by[:3]) + (" ..." if problem.count > 3 else "")
        if problem.detail:
            fixes.append(f"{problem.detail} (used by {used})")
        elif problem.state == "inactive":
            fixes.append(f"{name} is mapped to an inactive {inactive_fix} (used by {used})")
        else:
            fixes.append(
                f"{describe_missing(problem.key)}: {command_for(problem.key)} (used by {used})"
            )
    return ChecklistItem(item, not fixes, "; ".join(fixes))


def build_checklist(
    *,
    connection: Connection,
    mappings: Mappings,
    problems: Sequence[MappingProblem],
    auto_invoice: bool,
    worker_last_seen: datetime | None,
    now: datetime,
    worker_unhealthy: str | None = None,
) -> list[ChecklistItem]:
    """Every line of the setup checklist for one school."""
    lines: list[ChecklistItem] = []
    blocked = check_connection(connection, now)
    if blocked is None:
        company = connection.company or connection.realm or ""
        lines.append(ChecklistItem("QuickBooks connected", True, detail=company))
    elif blocked.reason_code == ReasonCode.AUTH_EXPIRED:
        lines.append(
            ChecklistItem(
                "QuickBooks connected",
                False,
                "Reconnect QuickBooks (refresh token expired): flightledger connection connect",
            )
        )
    else:
        lines.append(
            ChecklistItem(
                "QuickBooks connected", False, "Connect QuickBooks: flightledger connection connect"
            )
        )
    if blocked is None and not connection.keeps_doc_numbers:
        lines.append(CUSTOM_NUMBERS_OFF)
    missing_defaults = mappings.missing_defaults()
    lines.append(
        ChecklistItem(
            "Invoice defaults set (term, memo, income account)",
            not missing_defaults,
            "; ".join(command_for(k) for k in missing_defaults),
        )
    )
    lines.append(
        _mapping_line(
            "Every charge code in use mapped to an active Item", "charge", problems, "item"
        )
    )
    lines.append(
        _mapping_line(
            "Every student with flights mapped to a Customer", "student", problems, "customer"
        )
    )
    lines.append(
        _mapping_line(
            "Every payment type in use mapped to an active deposit account",
            "payment_type",
            problems,
            "payment type",
        )
    )
    lines.append(
        ChecklistItem(
            "Auto-invoice on",
            auto_invoice,
            "" if auto_invoice else "flightledger settings auto-invoice on",
        )
    )
    if worker_last_seen is None:
        lines.append(
            ChecklistItem("Worker seen recently", False, f"no worker has run: {START_WORKER}")
        )
    else:
        seconds = max(0.0, (now - worker_last_seen).total_seconds())
        seen = f"last seen {_ago(seconds)}"
        recent = seconds <= WORKER_RECENT_SECONDS
        if recent and worker_unhealthy:  # running, but every pass crashes (disk, database)
            fix = (
                f"the worker runs but every pass fails ({worker_unhealthy}): fix the cause; "
                "it retries by itself and nothing is lost"
            )
            lines.append(ChecklistItem("Worker seen recently", False, fix, seen))
            return lines
        lines.append(
            ChecklistItem(
                "Worker seen recently", recent, "" if recent else f"{seen}: {START_WORKER}", seen
            )
        )
    return lines
