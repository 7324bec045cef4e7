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
