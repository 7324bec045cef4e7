"""Turn unexpected exceptions into one plain sentence (no traceback, no secrets)."""

from __future__ import annotations

from adapters.redaction import redact_text


def describe_unexpected(exc: BaseException) -> str:
    """A short, secret-free description of an unexpected failure."""
    name = type(exc).__name__
    text = redact_text(str(exc)) or "no details"
    if "could not connect" in text.lower() or "connection refused" in text.lower():
        return f"cannot reach the database ({name}): {text}"
    return f"{name}: {text}"
