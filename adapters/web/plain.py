"""Words for office staff: the setup checklist's fixes without command lines.

The checklist (domain/checklist.py) states each fix as the CLI command an operator runs. In the
browser nobody is told to run a command: a billing admin is sent to the page where the fix is
made, anyone else is told whom to ask. Only the sync worker line keeps its command for admins,
since starting a process is done on the server, not in a page.
"""

from __future__ import annotations

import re
from typing import Any

COMMAND = re.compile(r":?\s*`?flightledger [^;()`]*`?")
WORKER_ITEM = "Worker seen recently"
CONNECTED_ITEM = "QuickBooks connected"
FALLBACK = {
    "Invoice defaults set (term, memo, income account)": (
        "Set the QuickBooks Defaults (term, memo, income account)"
    ),
    "Auto-invoice on": "Switch auto-invoice on",
    CONNECTED_ITEM: "Connect QuickBooks on the QuickBooks Online card",
    WORKER_ITEM: "The sync worker has not run recently",
}


def plain_fix(text: str) -> str:
    """A fix sentence with any command line taken out."""
    return " ".join(COMMAND.sub("", text).split()).strip(" ;:")


def web_checklist(rows: list[dict[str, Any]], *, admin: bool) -> list[dict[str, Any]]:
    """Checklist rows with `web_fix` (words) and `where` ('settings', 'card' or '')."""
    shown: list[dict[str, Any]] = []
    for row in rows:
        item = str(row.get("item", ""))
        fix = str(row.get("fix") or "")
        words = plain_fix(fix)
        if item == CONNECTED_ITEM and "Reconnect" in fix:
            words = "Reconnect QuickBooks on the QuickBooks Online card"
        elif not words or item in (CONNECTED_ITEM, WORKER_ITEM):
            words = FALLBACK.get(item, words)
        where = "card" if item == CONNECTED_ITEM else "" if item == WORKER_ITEM else "settings"
        if not admin:
            words += (
                ": ask whoever runs flightledger on the server to start it"
                if item == WORKER_ITEM
                else ": ask a billing administrator"
            )
            where = ""
        elif item == WORKER_ITEM:
            words = fix or words  # the admin starts it on the server: the command is the fix
        shown.append({**row, "web_fix": words, "where": where})
    return shown


# --- statuses, reasons and kinds as staff say them (the codes stay in a tooltip and the JSON) --

STATUS_WORDS = {
    "pending": "Waiting to send",
    "syncing": "Sending",
    "synced": "In QuickBooks",
    "retrying": "Retrying by itself",
    "failed": "Failed: press Retry",
    "uncertain": "Checking with QuickBooks",
    "action_required": "Needs action",
    "dismissed": "Dismissed",
    "cancelled": "Cancelled",
}
REASON_WORDS = {
    "auth_expired": "QuickBooks needs reconnecting",
    "auth_failed": "QuickBooks refused the connection",
    "not_connected": "QuickBooks is not connected",
    "missing_mapping": "Something is not mapped",
    "inactive_mapping": "Mapped to something inactive in QuickBooks",
    "invalid_reference": "QuickBooks does not know something it refers to",
    "validation": "QuickBooks rejected it",
    "duplicate_doc_number": "The invoice number is already used in QuickBooks",
    "ambiguous_customer": "Two QuickBooks customers match the student",
    "changed_in_quickbooks": "Changed or deleted in QuickBooks by hand",
    "company_switched": "May be in the QuickBooks company connected before",
}
KIND_WORDS = {
    "flight-ended": "Flight",
    "invoice-requested": "Invoice request",
    "payment-received": "Payment",
}
AUTO_INVOICE_OFF = "Waiting: auto-invoice is off, so nothing is sent to QuickBooks"


def status_words(status: str) -> str:
    """'action_required' -> 'Needs action'."""
    return STATUS_WORDS.get(status, status.replace("_", " "))


def reason_words(code: str | None) -> str:
    """'missing_mapping' -> 'Something is not mapped'."""
    return "" if not code else REASON_WORDS.get(code, code.replace("_", " "))


def kind_words(kind: str) -> str:
    """'flight-ended' -> 'Flight'."""
    return KIND_WORDS.get(kind, kind.replace("-", " "))


def attention_banner(total: int, flights: int) -> str:
    """'QuickBooks sync needs attention: 4 flights' (events when not all `total` are flights)."""
    if not total:
        return ""
    word = (
        ("flight" if total == 1 else "flights")
        if flights == total
        else ("event" if total == 1 else "events")
    )
    return f"QuickBooks sync needs attention: {total} {word}"
