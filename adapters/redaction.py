"""Keep secrets out of logs and messages: a structlog processor and a text scrubber."""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from typing import Any

SECRET_KEY_PATTERN = re.compile(
    r"(token|secret|password|authorization|cookie|api[_-]?key|code_verifier|cipher)", re.I
)
_TEXT_PATTERNS = [
    # key=value / "key": "value" pairs whose key looks secret
    re.compile(
        r"(?i)((?:access_token|refresh_token|id_token|client_secret|password|secret_key)"
        r"[\"']?\s*[:=]\s*[\"']?)([^\"'\s,&}]+)"
    ),
    re.compile(r"(?i)(bearer\s+)([A-Za-z0-9._~+/=-]{8,})"),
    re.compile(r"(?i)(basic\s+)([A-Za-z0-9+/=]{8,})"),
    re.compile(r"(postgres(?:ql)?://[^:/@\s]+:)([^@\s]+)(@)"),
]
REDACTED = "[redacted]"


def redact_text(text: str) -> str:
    """Replace token-like values in free text."""
    for pattern in _TEXT_PATTERNS:
        if pattern.groups == 3:
            text = pattern.sub(lambda m: m.group(1) + REDACTED + m.group(3), text)
        else:
            text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
    return text


def _redact(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {
            k: (REDACTED if isinstance(k, str) and _is_secret_key(k) else _redact(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact(v) for v in value]
    return value


def _is_secret_key(key: str) -> bool:
    if key in ("token_type", "expires_at", "refresh_expires_at", "hard_expires_at"):
        return False
    if key.endswith(("_expires_at", "_expiry", "_seconds")):
        return False
    return bool(SECRET_KEY_PATTERN.search(key))


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: redact secret-looking keys and token-like values."""
    for key in list(event_dict):
        value = event_dict[key]
        if _is_secret_key(key):
            event_dict[key] = REDACTED
        else:
            event_dict[key] = _redact(value)
    return event_dict
