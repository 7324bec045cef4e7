"""Fault injection: random server failures, timeouts, resets and forced QBO errors.

Settings (JSON names, also accepted by ``QboSimulator.set_faults`` and ``POST /_sim/faults``):

- ``fault_rate`` (0..1): API requests answered 500 or 503 with an HTML body.
- ``timeout_rate`` (0..1) and ``timeout_seconds``: the answer is delayed that long (bounded by
  ``SimulatorConfig.max_sleep_seconds``) so the client's timeout fires first; then a 504 page
  or, when the operation was committed, the real answer.
- ``reset_rate`` (0..1): the connection is closed with a TCP reset (SO_LINGER 0).
- ``fault_after_commit`` (bool or 0..1 probability, default 0.5): for an injected 5xx, timeout
  or reset on a create, whether the create was performed first ("the request reached QBO").
- ``fault_seed``: seeds the random choices (same seed, same sequence).
- ``latency_seconds``: every API request is held this long (keeps its concurrency slot).
- ``drop_if_client_gone`` (0..1): after the latency, a request whose client has hung up is
  dropped unperformed with this probability (it never reached QBO); otherwise it is performed,
  as QBO finishes what it received.
- ``xml_throttle``: 429 bodies are XML instead of JSON.
- ``gateway_faults``: auth errors other than 3200 (code 100) use the lowercase gateway envelope.
- ``force_error``: a spec (or list of specs) answered to the next ``count`` matching requests:
  ``{"http_status", "code", "message", "detail", "element", "fault_type", "envelope":
  "application"|"gateway"|"html"|"xml", "count": 1, "on": "create"|"any", "commit": false}`` or
  ``{"preset": NAME, "count": n}`` with NAME in ``PRESETS``.
- ``replay_failures``: a repeated ``requestid`` is answered with its first answer even when
  that was a fault (a validation refusal, a forced 4xx), as QuickBooks is assumed to do; by
  default only successful creates are replayed.
- ``inactive_items`` / ``inactive_customers``: ids made inactive in every realm.
- ``expire_access_tokens_now`` / ``revoke_refresh_tokens``: one-shot actions (not stored).
- ``edit_before_update`` (count): the next N invoice updates find the invoice saved by a person
  just before them (its SyncToken moved on, nothing else changed), so each answers the real
  5010 Stale Object Error; the re-read then shows the new SyncToken.
- ``custom_txn_numbers`` (bool): every company's SalesFormsPrefs.CustomTxnNumbers (GET
  .../preferences); off, QBO ignores the DocNumber sent and numbers invoices itself. Kept in the
  companies until ``/_sim/reset``.
"""

from __future__ import annotations

import random
import threading
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from qbo_simulator.envelopes import (
    AUTH_FAILED_MESSAGE,
    THROTTLE_MESSAGE,
    Response,
    app_fault,
    gateway_fault,
    html_error,
    throttle_xml,
    xml_fault,
)

JsonDict = dict[str, Any]

PRESETS: dict[str, JsonDict] = {
    "throttle_3001": {"http_status": 429, "code": "3001", "message": THROTTLE_MESSAGE,
                      "detail": "The request limit was reached.", "fault_type": "SERVICE"},
    "throttle_xml": {"http_status": 429, "envelope": "xml"},
    "auth_3200": {"http_status": 401, "code": "3200", "message": AUTH_FAILED_MESSAGE,
                  "detail": "Token expired", "envelope": "gateway", "fault_type": "AUTHENTICATION"},
    "auth_100_xml": {"http_status": 401, "code": "100", "message": "General Authentication Error",
                     "detail": "AuthenticationErrorGeneral: SRV-110-Authentication Failure",
                     "fault_type": "AUTHENTICATION", "envelope": "xml"},
    "auth_100": {"http_status": 401, "code": "100", "message": "General Authentication Error",
                 "detail": "AuthenticationErrorGeneral: SRV-110-Authentication Failure",
                 "fault_type": "AuthenticationFault"},
    "authz_3100": {"http_status": 403, "code": "3100",
                   "message": "message=ApplicationAuthorizationFailed; errorCode=003100; "
                              "statusCode=403",
                   "detail": "", "envelope": "gateway", "fault_type": "AUTHORIZATION"},
    "authz_3100_500": {"http_status": 500, "code": "3100",
                       "message": "message=ApplicationAuthorizationFailed; errorCode=003100; "
                                  "statusCode=500",
                       "detail": "", "fault_type": "AuthorizationFault"},
    "system_10000": {"http_status": 500, "code": "10000",
                     "message": "An application error has occurred while processing your request",
                     "detail": "System Failure Error: An unexpected error occurred",
                     "fault_type": "SystemFault"},
    "stale_5010": {"http_status": 400, "code": "5010", "message": "Stale Object Error",
                   "detail": "Stale Object Error : You and another user were working on the same "
                             "thing.", "fault_type": "ValidationFault"},
    "validation_6000": {"http_status": 400, "code": "6000",
                        "message": "A business validation error has occurred while processing "
                                   "your request",
                        "detail": "Business Validation Error: forced by the simulator"},
    "html_500": {"http_status": 500, "envelope": "html"},
    "html_502": {"http_status": 502, "envelope": "html"},
    "html_503": {"http_status": 503, "envelope": "html"},
    "html_504": {"http_status": 504, "envelope": "html"},
}  # fmt: skip


@dataclass
class ForcedError:
    """One forced answer, used ``count`` more times."""

    http_status: int = 400
    code: str = "6000"
    message: str = "A business validation error has occurred while processing your request"
    detail: str = ""
    element: str = ""
    fault_type: str = "ValidationFault"
    envelope: Literal["application", "gateway", "html", "xml"] = "application"
    count: int = 1
    on: Literal["create", "any"] = "create"
    commit: bool = False

    @classmethod
    def from_json(cls, spec: JsonDict) -> ForcedError:
        """Build from a JSON spec, expanding ``preset``; unknown keys raise ValueError."""
        data = dict(spec)
        preset = data.pop("preset", None)
        if preset is not None:
            if preset not in PRESETS:
                raise ValueError(f"unknown preset {preset!r}; known: {sorted(PRESETS)}")
            data = {**PRESETS[preset], **data}
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown force_error keys: {sorted(unknown)}")
        forced = cls(**data)
        forced.code = str(forced.code)
        return forced

    def response(self) -> Response:
        """The HTTP answer this spec describes."""
        if self.envelope == "html":
            return html_error(self.http_status)
        if self.envelope == "xml":
            if self.http_status == 429:
                return throttle_xml()
            return xml_fault(
                self.http_status,
                self.code,
                self.message,
                self.detail,
                self.fault_type,
                element=self.element,
            )
        if self.envelope == "gateway":
            return gateway_fault(
                self.http_status, self.code, self.message, self.detail, self.fault_type
            )
        return app_fault(
            self.http_status,
            self.code,
            self.message,
            self.detail,
            element=self.element,
            fault_type=self.fault_type,
        )


@dataclass
class FaultSettings:
    """The stored injection settings (see the module docstring)."""

    fault_rate: float = 0.0
    fault_seed: int | None = None
    fault_after_commit: float = 0.5
    timeout_rate: float = 0.0
    timeout_seconds: float = 5.0
    reset_rate: float = 0.0
    latency_seconds: float = 0.0
    drop_if_client_gone: float = 0.0
    xml_throttle: bool = False
    gateway_faults: bool = False
    replay_failures: bool = False
    inactive_items: list[str] = field(default_factory=list)
    inactive_customers: list[str] = field(default_factory=list)
    force_error: list[ForcedError] = field(default_factory=list)
    edit_before_update: int = 0


@dataclass(frozen=True)
class Decision:
    """What to do to one API request."""

    kind: Literal["none", "forced", "http", "timeout", "reset"] = "none"
    response: Response | None = None
    commit: bool = False
    sleep: float = 0.0


class FaultInjector:
    """Holds the settings and makes the (seeded) random choices; thread-safe."""

    def __init__(self, fault_rate: float = 0.0, fault_seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self._default_rate = fault_rate
        self._default_seed = fault_seed
        self.reset()

    def reset(self) -> None:
        """Back to the configured defaults."""
        with self._lock:
            self.settings = FaultSettings(
                fault_rate=self._default_rate, fault_seed=self._default_seed
            )
            self._rng = random.Random(self._default_seed)

    def update(self, changes: JsonDict) -> None:
        """Apply a partial settings document; raises ValueError on unknown names or types."""
        with self._lock:
            for name, value in changes.items():
                if name == "force_error":
                    specs = value if isinstance(value, list) else [value] if value else []
                    self.settings.force_error = [ForcedError.from_json(s) for s in specs]
                elif name == "fault_after_commit":
                    self.settings.fault_after_commit = float(value)
                elif name == "fault_seed":
                    self.settings.fault_seed = None if value is None else int(value)
                    self._rng = random.Random(self.settings.fault_seed)
                elif name == "edit_before_update":
                    self.settings.edit_before_update = max(0, int(value))
                elif name in ("inactive_items", "inactive_customers"):
                    setattr(self.settings, name, [str(v) for v in value])
                elif name in ("xml_throttle", "gateway_faults", "replay_failures"):
                    setattr(self.settings, name, bool(value))
                elif name in FaultSettings.__dataclass_fields__:
                    setattr(self.settings, name, float(value))
                else:
                    raise ValueError(f"unknown fault setting {name!r}")

    def snapshot(self) -> JsonDict:
        """The settings as JSON."""
        with self._lock:
            return asdict(self.settings)

    def take_edit_before_update(self) -> bool:
        """Whether this invoice update is preceded by a person's save (edit_before_update)."""
        with self._lock:
            if self.settings.edit_before_update <= 0:
                return False
            self.settings.edit_before_update -= 1
            return True

    def drop_abandoned(self) -> bool:
        """Whether a request whose client hung up is dropped (drop_if_client_gone)."""
        with self._lock:
            rate = self.settings.drop_if_client_gone
            return rate > 0 and self._rng.random() < rate

    def decide(self, *, is_create: bool) -> Decision:
        """Choose the fault (if any) for one API request."""
        with self._lock:
            s = self.settings
            if s.force_error:
                forced = s.force_error[0]
                if forced.on == "any" or is_create:
                    forced.count -= 1
                    if forced.count <= 0:
                        s.force_error.pop(0)
                    return Decision("forced", forced.response(), forced.commit and is_create)
            draw = self._rng.random()
            commit = is_create and self._rng.random() < s.fault_after_commit
            if draw < s.reset_rate:
                return Decision("reset", Response(status=0, action="reset"), commit)
            draw -= s.reset_rate
            if draw < s.timeout_rate:
                return Decision("timeout", html_error(504), commit, s.timeout_seconds)
            draw -= s.timeout_rate
            if draw < s.fault_rate:
                status = self._rng.choice((500, 503))
                return Decision("http", html_error(status), commit)
            return Decision()
