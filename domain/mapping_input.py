"""Checks of what an operator types or picks for a mapping, shared by the CLI and the web page.

Each check names the field and the reason; the CLI passes its flag ("--item"), the settings page
its label ("QuickBooks item"), and the sentence after the colon is the same.
"""

from __future__ import annotations

from domain.records import normalise_id

MEMO_MAX = 1000


class InvalidMappingInput(ValueError):
    """A mapping field was refused; the message names the field and the reason."""


def qbo_id(value: str, field: str) -> str:
    """A QuickBooks id: 1-64 printable characters (surrounding blanks dropped)."""
    value = value.strip()
    if not value or len(value) > 64 or not value.isprintable():
        raise InvalidMappingInput(f"{field}: must be a QuickBooks id of 1-64 printable characters")
    return value


def mapping_key(value: str, field: str) -> str:
    """A charge code, student id or payment type: 1-64 printable characters, no outer blanks.

    NFKC-normalised like the ids of records (domain.records.normalise_id), so a key typed in
    fullwidth forms maps what the records name in ASCII.
    """
    normal = normalise_id(value)
    for text in (value, normal):
        if not 1 <= len(text) <= 64 or not text.isprintable() or text.strip() != text:
            raise InvalidMappingInput(f"{field}: must be 1-64 printable characters")
    return normal


def memo(value: str, field: str) -> str:
    """The default customer memo: 1-1000 characters, not only blanks."""
    if not value.strip() or len(value) > MEMO_MAX:
        raise InvalidMappingInput(f"{field}: must be 1-{MEMO_MAX} characters")
    return value
