"""python-quickbooks' client with a timeout on every request and the HTTP status seen first.

``QboClient.call(fn)`` runs one library operation and either returns its result or raises
``QboCallFailed`` with a classify.Failure built from the raw status and body (the library loses
the status on XML/HTML bodies and raises by code range, not meaning).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import requests
from quickbooks import QuickBooks
from quickbooks.exceptions import QuickbooksException

from adapters import metrics
from adapters.quickbooks.classify import Failure, describe, is_throttled, parse_fault
from adapters.quickbooks.oauth import transport_kind
from adapters.quickbooks.settings import QboSettings

MINOR_VERSION = 75
T = TypeVar("T")


class QboCallFailed(Exception):
    """One API call failed; ``failure`` holds what was seen on the wire."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(describe(failure))
        self.failure = failure


class TimedQuickBooks(QuickBooks):  # type: ignore[misc]
    """QuickBooks with our own requests.Session: timeouts, bearer token, last status per thread."""

    def configure(self, settings: QboSettings, access_token: str) -> None:
        """Point at the API base and set the token (no OAuth2Session needed)."""
        self.api_url_v3 = settings.api_base
        self.sandbox = False
        self.timeout = (settings.connect_timeout, settings.request_timeout)
        self.access_token = access_token
        self.http = requests.Session()
        self.seen = threading.local()

    def process_request(
        self, request_type: str, url: str, headers: Any = "", params: Any = "", data: Any = ""
    ) -> requests.Response:
        """Send with a timeout and remember the status and body before the library parses it."""
        headers = dict(headers or {})
        headers["Authorization"] = "Bearer " + self.access_token
        self.seen.status = None
        self.seen.text = ""
        response = self.http.request(
            request_type, url, headers=headers, params=params, data=data, timeout=self.timeout
        )
        self.seen.status = response.status_code
        self.seen.text = response.text
        return response


class QboClient:
    """One realm's API client; ``call`` translates every library failure into QboCallFailed."""

    def __init__(self, settings: QboSettings, realm: str, access_token: str) -> None:
        self.settings = settings
        self.realm = realm
        self.qb = TimedQuickBooks(company_id=realm, minorversion=MINOR_VERSION)
        self.qb.configure(settings, access_token)

    def set_access_token(self, access_token: str) -> None:
        """Use a refreshed access token."""
        self.qb.access_token = access_token

    def call(self, operation: Callable[[TimedQuickBooks], T]) -> T:
        """Run one operation; raise QboCallFailed with the wire-level failure."""
        self.qb.seen.status = None
        self.qb.seen.text = ""
        started = time.monotonic()
        try:
            result = operation(self.qb)
        except requests.RequestException as exc:
            metrics.qbo_request("transport_error", time.monotonic() - started)
            raise QboCallFailed(Failure(transport=transport_kind(exc))) from None
        except (QuickbooksException, TypeError, KeyError, ValueError) as exc:
            failure = self._failure(exc)
            throttled = is_throttled(failure)
            metrics.qbo_request(
                "throttled" if throttled else "error",
                time.monotonic() - started,
                throttled=throttled,
            )
            raise QboCallFailed(failure) from None
        metrics.qbo_request("ok", time.monotonic() - started)
        return result

    def _failure(self, exc: Exception) -> Failure:
        status = getattr(self.qb.seen, "status", None)
        text = getattr(self.qb.seen, "text", "")
        failure = parse_fault(status, text)
        if failure.code or failure.body_kind in ("html", "xml") or failure.message:
            return failure
        if isinstance(exc, QuickbooksException):
            return Failure(
                http_status=status,
                code=str(exc.error_code or ""),
                message=str(exc.message or ""),
                detail=str(exc.detail or "")[:300],
            )
        return Failure(http_status=status, message="QuickBooks sent an answer we cannot read")

    def close(self) -> None:
        """Close the HTTP session."""
        self.qb.http.close()
