"""Opening the SQLite view writes nothing once it exists, so it works beside a busy writer.

A long-running worker holds SQLite's write lock while it records; every CLI command and page
opens the view. An open that wrote (even an unchanged layout version) waited for that lock and
failed with "database is locked" on a busy log.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from adapters.views import open_view


def test_opening_an_existing_view_needs_no_write_lock(tmp_path: Path) -> None:
    """With another connection holding the write lock, the view still opens and reads."""
    path = tmp_path / "log.db"
    url = f"sqlite:///{path}"
    first = open_view(url)  # creates the tables and records the layout version
    first.close()
    writer = sqlite3.connect(path, timeout=0.1, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # what a recording worker holds between its writes
    try:
        view = open_view(url)
        try:
            assert list(view.schools()) == []
        finally:
            view.close()
    finally:
        writer.execute("ROLLBACK")
        writer.close()
