"""Schemathesis over /openapi.json: generated requests (bounded) find no 5xx and no response
that breaks its documented schema, with a key holding every permission."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.api_support import api_app, bearer, new_key
from workers.bootstrap import open_ledger

MAX_EXAMPLES = 10
# 503, documented: no QuickBooks and no vault here (webhooks: tests/integration/test_webhooks)
UNAVAILABLE_WITHOUT_QBO = {"/api/v1/connection/test", "/api/v1/webhooks"}


def test_no_server_error_and_responses_match_their_schema(tmp_path: Path) -> None:
    """Every generated request to every operation is answered without 5xx, as documented."""
    url = f"sqlite:///{tmp_path / 'flightledger.db'}"
    ledger = open_ledger(url)
    app, view = api_app(ledger, url, checklist=lambda school: [])
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
                case.validate_response(response, checks=(response_schema_conformance,))

            check()
            checked.append(f"{operation.method.upper()} {operation.path}")
    finally:
        view.close()
        ledger.close()
    assert "POST /api/v1/flights" in checked and len(checked) >= 18
