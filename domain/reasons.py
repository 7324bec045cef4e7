"""Operator-facing words for reason codes: what to do to fix each group."""

from __future__ import annotations

from collections.abc import Iterable

from domain.ports import ReasonCode

_FIX = {
    ReasonCode.AUTH_EXPIRED: "Reconnect QuickBooks, then press Retry Failed",
    ReasonCode.AUTH_FAILED: (
        "Reconnect QuickBooks with an admin user of the company, then press Retry Failed"
    ),
    ReasonCode.NOT_CONNECTED: "Connect QuickBooks, then press Retry Failed",
    ReasonCode.INVALID_REFERENCE: (
        "A mapped QuickBooks object no longer exists: map it to an existing one, then Retry Failed"
    ),
    ReasonCode.VALIDATION: "Correct what QuickBooks reported, then press Retry Failed",
    ReasonCode.CHANGED_IN_QUICKBOOKS: (
        "The QuickBooks document was deleted or edited by hand: put it back as the log says "
        "(or correct the flight), then Retry Failed, or Dismiss"
    ),
    ReasonCode.DUPLICATE_DOC_NUMBER: (
        "An invoice with this number but different contents exists in QuickBooks: "
        "review it there, then Retry Failed or Dismiss"
    ),
    ReasonCode.COMPANY_SWITCHED: (
        "QuickBooks now points at another company and this record may already be in the old "
        "one: check there, then Dismiss it or press Retry Failed to create it in the new company"
    ),
    ReasonCode.AMBIGUOUS_CUSTOMER: (
        "More than one QuickBooks customer could be this student: map the student to the right "
        "one (flightledger mappings set student ID --customer ID), then press Retry Failed"
    ),
}

_KIND_WORDS = {
    "charge": ("charge code", "a QuickBooks item", "mappings set charge {key} --item ID"),
    "student": ("student", "a QuickBooks customer", "mappings set student {key} --customer ID"),
    "payment_type": (
        "payment type",
        "a QuickBooks deposit account",
        "mappings set payment-type {key} --deposit-account ID",
    ),
    "default": ("default", "a value", "mappings set defaults --{flag} VALUE"),
}


def split_key(key: str) -> tuple[str, str]:
    """'charge:fuel' -> ('charge', 'fuel')."""
    kind, _, name = key.partition(":")
    return kind, name


def describe_missing(key: str) -> str:
    """One missing mapping key in plain words."""
    kind, name = split_key(key)
    if kind == "default":
        return f"Set the default {name.replace('_', ' ')}"
    word, target, _ = _KIND_WORDS.get(kind, (kind, "a QuickBooks object", ""))
    return f"Map {word} {name} to {target}"


def command_for(key: str) -> str:
    """The CLI command that fixes one missing mapping key."""
    kind, name = split_key(key)
    _, _, template = _KIND_WORDS.get(kind, ("", "", ""))
    flag = {"term": "term", "memo": "memo", "income_account": "income-account"}.get(name, name)
    return "flightledger " + template.format(key=name, flag=flag) if template else ""


def fix_for(reason_code: str | None, missing: Iterable[str] = ()) -> str:
    """What the operator does to fix a reason group."""
    if reason_code is None:
        return ""
    code = ReasonCode(reason_code)
    keys = sorted(set(missing))
    if code == ReasonCode.MISSING_MAPPING:
        if not keys:
            return "Complete the mappings, then press Retry Failed"
        return "; ".join(describe_missing(k) for k in keys) + ", then press Retry Failed"
    named = [k for k in keys if split_key(k)[0] in _KIND_WORDS]  # never QBO's element path
    if code == ReasonCode.INACTIVE_MAPPING:
        if not named:
            return (
                "A mapped QuickBooks object is inactive: reactivate it in QuickBooks or map "
                "another, then press Retry Failed"
            )
        return (
            f"{_mapped_words(named)} {'points' if len(named) == 1 else 'point'} at an inactive "
            "QuickBooks object: reactivate it there or map another, then press Retry Failed"
        )
    if code == ReasonCode.INVALID_REFERENCE and named:
        return (
            f"{_mapped_words(named)} {'points' if len(named) == 1 else 'point'} at a QuickBooks "
            "object that does not exist: "
            + "; ".join(_remap(k) for k in named)
            + ", then press Retry Failed"
        )
    return _FIX[code]


def _key_words(key: str) -> str:
    kind, name = split_key(key)
    if kind == "default":
        return f"the default {name.replace('_', ' ')}"
    return f"{_KIND_WORDS[kind][0]} {name}"


def _mapped_words(keys: list[str]) -> str:
    words = [_key_words(k) for k in keys]
    text = words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
    return text[0].upper() + text[1:]


def _remap(key: str) -> str:
    kind, name = split_key(key)
    if kind == "default":
        return f"set {_key_words(key)} to an existing QuickBooks {name.replace('_', ' ')}"
    return f"map {_key_words(key)} to an existing {_KIND_WORDS[kind][1].removeprefix('a ')}"
