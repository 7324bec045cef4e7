"""The dashboard app with the API installed, on a real ledger and view, for API tests."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from adapters.api.app import ApiConfig, install_api
from adapters.api.limits import RateLimiter
from adapters.views import open_view
from adapters.web.app import create_app
from adapters.web.auth import local_operator
from domain.application import FlightLedger
from workers.projector import Projector


def api_app(
    ledger: FlightLedger,
    db_url: str,
    *,
    school: str = "alpha",
    rate: RateLimiter | None = None,
    body_limit: int | None = None,
    **extra: Any,
) -> tuple[FastAPI, Any]:
    """`serve`'s app (dashboard + API) on the ledger's database; returns (app, view)."""
    view = open_view(db_url)
    projector = Projector(ledger, view)
    app = create_app(
        ledger=ledger,
        view=view,
        refresh_view=projector.catch_up,
        session_key=b"k" * 32,
        local_user=local_operator(school),
    )
    cfg = ApiConfig(
        ledger=ledger, view=view, refresh_view=projector.catch_up, rate=rate or RateLimiter()
    )
    if body_limit is not None:
        cfg.body_limit = body_limit
    for name, value in extra.items():
        setattr(cfg, name, value)
    install_api(app, cfg)
    return app, view


def bearer(key: str) -> dict[str, str]:
    """The Authorization header of a key."""
    return {"Authorization": f"Bearer {key}"}


def new_key(ledger: FlightLedger, school: str, permissions: Sequence[str], name: str = "") -> str:
    """A fresh API key of the school."""
    _, text = ledger.create_api_key(
        school,
        name=name
        or f"key-{'-'.join(p.replace(':', '_').replace('*', 'all') for p in permissions)}",
        permissions=permissions,
        operator="test",
    )
    return text


@contextmanager
def api_client(
    ledger: FlightLedger, db_url: str, school: str, permissions: Sequence[str], **extra: Any
) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """A TestClient of the app and the headers of a new key with the permissions (`extra`:
    ApiConfig fields, e.g. qbo_lists)."""
    app, view = api_app(ledger, db_url, school=school, **extra)
    headers = bearer(new_key(ledger, school, permissions))
    try:
        with TestClient(app, follow_redirects=False) as client:
            yield client, headers
    finally:
        view.close()
