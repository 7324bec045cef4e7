"""Configuration of the QBO simulator (one frozen dataclass)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SimulatorConfig:
    """Settings of one simulator instance; time values are real seconds unless noted.

    ``minute_seconds`` scales the rate-limit windows: one QBO "minute" lasts that many real
    seconds and one QBO "second" lasts ``minute_seconds / 60``. Token lifetimes are real seconds.
    """

    host: str = "127.0.0.1"
    port: int = 0
    minute_seconds: float = 60.0
    fault_rate: float = 0.0
    fault_seed: int | None = None
    client_id: str = "sim-client"
    client_secret: str = "sim-secret"  # noqa: S105 - the simulator's public default credential
    company_name: str = "Sunrise Flight School"
    country: str = "US"
    realm: str = "9130350000000001"
    access_token_seconds: int = 3600
    refresh_token_seconds: int = 8726400
    hard_expiry_seconds: int = 5 * 365 * 86400
    auth_code_seconds: int = 600
    # False: token answers carry no refresh-token expiry at all ("Token unknown" on the badge)
    report_refresh_expiry: bool = True
    # False: the discovery document has no authorization_endpoint (no authorization URL)
    authorization_endpoint: bool = True
    one_realm_per_connection: bool = False
    custom_txn_numbers_dup_check: bool = True
    requests_per_minute: int = 500
    requests_per_second: int = 10
    max_concurrent: int = 10
    batch_requests_per_minute: int = 40
    max_batch_items: int = 30
    max_sleep_seconds: float = 30.0
    log_requests: bool = False
