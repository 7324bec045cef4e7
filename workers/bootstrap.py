"""Composition root: read configuration once and build the application and its adapters."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from adapters.persistence import (
    DEFAULT_DB_URL,
    DatabaseUrl,
    ensure_schema,
    parse_database_url,
    setup_lock,
)
from domain.application import FlightLedger
from domain.ports import Clock


@dataclass
class Config:
    """Settings read from flags and the environment, once."""

    db_url: str = DEFAULT_DB_URL
    school: str = "default"
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, db_url: str | None = None, school: str | None = None) -> Config:
        """Flags win over FLIGHTLEDGER_* variables, which win over defaults."""
        return cls(
            db_url=db_url or os.environ.get("FLIGHTLEDGER_DB") or DEFAULT_DB_URL,
            school=school or os.environ.get("FLIGHTLEDGER_SCHOOL") or "default",
            env={k: v for k, v in os.environ.items() if k.startswith("FLIGHTLEDGER_")},
        )

    @property
    def database(self) -> DatabaseUrl:
        """The parsed database URL."""
        return parse_database_url(self.db_url)


def open_ledger(db: DatabaseUrl | str, clock: Clock | None = None) -> FlightLedger:
    """Open the log at a database URL (creating tables and the schema as needed)."""
    parsed = parse_database_url(db) if isinstance(db, str) else db
    ensure_schema(parsed)
    with setup_lock(parsed):
        return FlightLedger(env=parsed.eventsourcing_env(), clock=clock)
