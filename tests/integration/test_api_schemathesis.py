"""Schemathesis over /openapi.json: generated requests (bounded) find no 5xx and no response
that breaks its documented schema, status codes or content type, with a key holding every
permission."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from adapters.persistence import parse_database_url
from tests.api_support import api_app, bearer, new_key
from tests.helpers_qbo import new_secret_key
from workers.bootstrap import open_ledger
from workers.qbo import open_vault

MAX_EXAMPLES = 10
# 503, documented: no QuickBooks connection service here
UNAVAILABLE_WITHOUT_QBO = {"/api/v1/connection/test"}
CHECKS = (status_code_conformance, content_type_conformance, response_schema_conformance)


def test_no_server_error_and_responses_match_their_schema(tmp_path: Path) -> None:
    """Every generated request to every operation is answered without 5xx, as documented."""
    url = f"sqlite:///{tmp_path / 'flightledger.db'}"
    ledger = open_ledger(url)
    vault = open_vault(
        parse_database_url(url), {"FLIGHTLEDGER_SECRET_KEY": new_secret_key()}, True
    )  # webhook subscriptions are made for real
    app, view = api_app(ledger, url, checklist=lambda school: [], webhook_secrets=vault)
    key = bearer(new_key(ledger, "alpha", ["*", "records:write"], "fuzzer"))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    checked: list[str] = []
    try:
        for result in schema.get_all_operations():
            assert isinstance(result, Ok), result
            operation = result.ok()

            @given(case=operation.as_strategy())
            @settings(
                max_examples=MAX_EXAMPLES,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                derandomize=True,
                database=None,
            )
            def check(case: Any) -> None:
                response = case.call(headers=key)
                documented_503 = (
                    case.path in UNAVAILABLE_WITHOUT_QBO and response.status_code == 503
                )
                assert response.status_code < 500 or documented_503, (
                    case.method,
                    case.path,
                    response.text,
                )
                case.validate_response(response, checks=CHECKS)

            check()
            checked.append(f"{operation.method.upper()} {operation.path}")
    finally:
        view.close()
        ledger.close()
    assert "POST /api/v1/flights" in checked and len(checked) >= 18
