"""The QBO simulator driven by the real intuitlib and python-quickbooks clients over HTTP."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from intuitlib.client import AuthClient
from intuitlib.enums import Scopes
from intuitlib.exceptions import AuthClientError
from quickbooks import QuickBooks
from quickbooks.batch import batch_create
from quickbooks.exceptions import (
    AuthorizationException,
    ObjectNotFoundException,
    QuickbooksException,
    SevereException,
    ValidationException,
)
from quickbooks.objects.base import LinkedTxn, Ref
from quickbooks.objects.company_info import CompanyInfo
from quickbooks.objects.customer import Customer
from quickbooks.objects.detailline import SalesItemLine, SalesItemLineDetail
from quickbooks.objects.invoice import Invoice
from quickbooks.objects.payment import Payment, PaymentLine

from qbo_simulator import QboSimulator, SimulatorConfig

REDIRECT = "http://localhost:8765/callback"
REALM = "9130350000000001"
pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def sim() -> Iterator[QboSimulator]:
    with QboSimulator(SimulatorConfig()) as simulator:
        yield simulator


@pytest.fixture(autouse=True)
def _fresh(sim: QboSimulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    sim.reset()


def auth_client(sim: QboSimulator, **kw: Any) -> AuthClient:
    return AuthClient("sim-client", "sim-secret", REDIRECT, sim.discovery_url, **kw)


def authorize(sim: QboSimulator, client: AuthClient, extra: str = "") -> dict[str, str]:
    url = client.get_authorization_url([Scopes.ACCOUNTING]) + extra
    answer = requests.get(url, allow_redirects=False, timeout=5)
    assert answer.status_code == 302
    location = answer.headers["Location"]
    assert location.startswith(REDIRECT + "?")
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def quickbooks(sim: QboSimulator, realm: str | None = None) -> QuickBooks:
    tokens = sim.connect(realm)
    client = auth_client(
        sim, access_token=tokens["access_token"], refresh_token=tokens["refresh_token"]
    )
    qb = QuickBooks(
        auth_client=client,
        refresh_token=tokens["refresh_token"],
        company_id=tokens["realm"],
        minorversion=75,
    )
    qb.api_url_v3 = sim.api_base
    return qb


def make_invoice(
    customer: str = "1", item: str = "1", amount: str = "198.00", doc: str | None = None
) -> Invoice:
    invoice = Invoice()
    line = SalesItemLine()
    line.Amount = Decimal(amount)
    line.Description = "C172 N172SP 1.2 h"
    line.SalesItemLineDetail = SalesItemLineDetail()
    line.SalesItemLineDetail.ItemRef = Ref()
    line.SalesItemLineDetail.ItemRef.value = item
    line.SalesItemLineDetail.Qty = Decimal("1.2")
    line.SalesItemLineDetail.UnitPrice = Decimal("165.00")
    invoice.Line.append(line)
    invoice.CustomerRef = Ref()
    invoice.CustomerRef.value = customer
    invoice.DocNumber = doc
    return invoice


def raw(sim: QboSimulator, qb: QuickBooks, method: str, path: str, **kw: Any) -> requests.Response:
    headers = {
        "Authorization": f"Bearer {qb.auth_client.access_token}",
        "Accept": "application/json",
    }
    headers.update(kw.pop("headers", {}))
    url = f"{sim.url}/v3/company/{qb.company_id}/{path}"
    return requests.request(method, url, headers=headers, timeout=10, **kw)


# ----- OAuth


def test_discovery_points_back_at_the_simulator(sim: QboSimulator) -> None:
    """The discovery document names this server's authorize, token and revoke endpoints."""
    doc = requests.get(sim.discovery_url, timeout=5).json()
    assert doc["authorization_endpoint"] == f"{sim.url}/connect/oauth2"
    assert doc["token_endpoint"] == f"{sim.url}/oauth2/v1/tokens/bearer"
    assert doc["revocation_endpoint"] == f"{sim.url}/v2/oauth2/tokens/revoke"
    assert {"issuer", "jwks_uri", "userinfo_endpoint"} <= set(doc)


def test_full_oauth_flow_with_intuitlib(sim: QboSimulator) -> None:
    """intuitlib connects, refreshes (rotating), is refused the old token, and revokes."""
    client = auth_client(sim)
    callback = authorize(sim, client)
    assert callback["state"] == client.state_token
    assert callback["realmId"] == REALM
    client.get_bearer_token(callback["code"], realm_id=callback["realmId"])
    assert client.expires_in == 3600
    assert client.x_refresh_token_expires_in == 8726400
    first_refresh = client.refresh_token
    client.refresh()
    assert client.refresh_token != first_refresh
    with pytest.raises(AuthClientError) as refused:
        client.refresh(refresh_token=first_refresh)
    assert refused.value.status_code == 400
    assert json.loads(refused.value.content) == {
        "error": "invalid_grant",
        "error_description": "Incorrect or invalid refresh token",
    }
    assert client.revoke() is True
    with pytest.raises(AuthClientError):
        client.refresh()


def test_authorization_code_is_single_use(sim: QboSimulator) -> None:
    """A second exchange of the same code fails with invalid_grant (400)."""
    client = auth_client(sim)
    code = authorize(sim, client)["code"]
    client.get_bearer_token(code)
    with pytest.raises(AuthClientError) as refused:
        client.get_bearer_token(code)
    assert refused.value.status_code == 400


def test_hard_expiry_header_adds_the_hard_expiry_field(sim: QboSimulator) -> None:
    """With x-include-refresh-token-hard-expires-in the token answer carries the 5-year limit."""
    code = authorize(sim, auth_client(sim))["code"]
    basic = base64.b64encode(b"sim-client:sim-secret").decode()
    answer = requests.post(
        f"{sim.url}/oauth2/v1/tokens/bearer",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT},
        headers={
            "Authorization": f"Basic {basic}",
            "x-include-refresh-token-hard-expires-in": "true",
        },
        timeout=5,
    ).json()
    assert answer["token_type"] == "bearer"
    assert 5 * 365 * 86400 - 5 <= answer["x_refresh_token_hard_expires_in"] <= 5 * 365 * 86400


def test_bad_client_secret_is_invalid_client(sim: QboSimulator) -> None:
    """Wrong Basic credentials on the token endpoint answer 401 invalid_client."""
    client = AuthClient("sim-client", "wrong", REDIRECT, sim.discovery_url)
    code = authorize(sim, client)["code"]
    with pytest.raises(AuthClientError) as refused:
        client.get_bearer_token(code)
    assert refused.value.status_code == 401
    assert json.loads(refused.value.content) == {"error": "invalid_client"}


def test_authorize_rejects_unknown_client_and_missing_params(sim: QboSimulator) -> None:
    """The authorize endpoint answers 400 for an unknown client_id or a missing parameter."""
    base = f"{sim.url}/connect/oauth2"
    ok = {"client_id": "sim-client", "response_type": "code", "scope": "x",
          "redirect_uri": REDIRECT, "state": "s"}  # fmt: skip
    unknown = requests.get(
        base, params={**ok, "client_id": "nope"}, allow_redirects=False, timeout=5
    )
    assert unknown.status_code == 400
    missing = {k: v for k, v in ok.items() if k != "state"}
    assert requests.get(base, params=missing, allow_redirects=False, timeout=5).status_code == 400


def test_revoked_refresh_tokens_fault_gives_invalid_grant(sim: QboSimulator) -> None:
    """revoke_refresh_tokens makes every issued refresh token answer invalid_grant."""
    client = auth_client(sim)
    client.get_bearer_token(authorize(sim, client)["code"])
    sim.set_faults(revoke_refresh_tokens=True)
    with pytest.raises(AuthClientError) as refused:
        client.refresh()
    assert refused.value.status_code == 400


def test_realm_hint_and_one_realm_per_connection_give_separate_companies() -> None:
    """Each connection gets its own realm when configured, and a realm_hint picks one."""
    with QboSimulator(SimulatorConfig(one_realm_per_connection=True)) as sim:
        realms = [authorize(sim, auth_client(sim))["realmId"] for _ in range(3)]
        assert realms[0] == REALM
        assert len(set(realms)) == 3
        hinted = authorize(sim, auth_client(sim), "&realm_hint=4620816365000000001")
        assert hinted["realmId"] == "4620816365000000001"
        assert set(realms) | {"4620816365000000001"} <= set(sim.realms())


# ----- python-quickbooks: happy paths


def test_company_info(sim: QboSimulator) -> None:
    """CompanyInfo.get returns the configured company name and country."""
    qb = quickbooks(sim)
    info = CompanyInfo.get(REALM, qb=qb)
    assert (info.CompanyName, info.Country) == ("Sunrise Flight School", "US")


def test_invoice_save_and_requestid_replay(sim: QboSimulator) -> None:
    """A repeated requestid returns the original (time-stamped) invoice and creates nothing new."""
    qb = quickbooks(sim)
    first = make_invoice(doc="FL-1001").save(qb=qb, request_id="evt-1")
    again = make_invoice(doc="FL-1001").save(qb=qb, request_id="evt-1")
    assert first.Id == again.Id
    assert sim.invoice_count() == 1
    assert first.SyncToken == "0"
    assert first.TotalAmt == 198.0
    records = requests.get(f"{sim.url}/_sim/invoices", timeout=5).json()
    created = datetime.fromisoformat(records[0].pop("created_at"))
    assert created.tzinfo is not None and abs(datetime.now(UTC) - created) < timedelta(minutes=5)
    assert records == [
        {"realm": REALM, "id": first.Id, "doc_number": "FL-1001", "request_id": "evt-1",
         "customer": "1", "total": "198.00", "sync_token": "0", "voided": False,
         "deleted": False, "balance": "198.00",
         "lines": [{"item": "1", "amount": "198.00", "description": "C172 N172SP 1.2 h"}]}
    ]  # fmt: skip


def test_doc_number_is_assigned_when_absent(sim: QboSimulator) -> None:
    """An invoice without DocNumber gets one."""
    saved = make_invoice().save(qb=quickbooks(sim))
    assert saved.DocNumber


def test_filter_query_count_and_get(sim: QboSimulator) -> None:
    """Invoice.filter, count and get find the created invoice; list queries hide inactive."""
    qb = quickbooks(sim)
    saved = make_invoice(doc="FL-'7").save(qb=qb)
    found = Invoice.filter(DocNumber="FL-'7", qb=qb)
    assert [i.Id for i in found] == [saved.Id]
    assert Invoice.filter(DocNumber="FL-none", qb=qb) == []
    assert Invoice.count(qb=qb) == 1
    assert Invoice.get(saved.Id, qb=qb).DocNumber == "FL-'7"
    assert len(Customer.all(qb=qb)) == 20
    assert len(Customer.where("Active IN (true, false)", qb=qb)) == 21


def test_payment_linked_to_invoice(sim: QboSimulator) -> None:
    """A payment linked to an invoice is stored and listed with its invoice id."""
    qb = quickbooks(sim)
    invoice = make_invoice().save(qb=qb)
    payment = Payment()
    payment.CustomerRef = Ref()
    payment.CustomerRef.value = "1"
    payment.TotalAmt = Decimal("198.00")
    line = PaymentLine()
    line.Amount = Decimal("198.00")
    link = LinkedTxn()
    link.TxnId = invoice.Id
    link.TxnType = "Invoice"
    line.LinkedTxn.append(link)
    payment.Line.append(line)
    saved = payment.save(qb=qb, request_id="pay-1")
    assert sim.payments() == [
        {"realm": REALM, "id": saved.Id, "request_id": "pay-1", "customer": "1",
         "total": "198.00", "linked_invoice": invoice.Id}
    ]  # fmt: skip
    assert Invoice.get(invoice.Id, qb=qb).Balance == 0
    link.TxnId = "999"
    payment.Id = None
    with pytest.raises(ValidationException) as failed:
        payment.save(qb=qb)
    assert failed.value.error_code == 2500


def test_batch_create_45_invoices_in_two_chunks(sim: QboSimulator) -> None:
    """batch_create of 45 invoices succeeds in two batch requests."""
    qb = quickbooks(sim)
    result = batch_create([make_invoice(doc=f"B-{n}") for n in range(45)], qb=qb)
    assert len(result.successes) == 45
    assert result.faults == []
    assert len(sim.invoices()) == 45
    assert sim.stats_snapshot()["realms"][REALM]["requests"] == 2


def test_batch_item_fault_is_per_item(sim: QboSimulator) -> None:
    """A bad item in a batch fails alone with its own Fault; the others are created."""
    qb = quickbooks(sim)
    result = batch_create([make_invoice(), make_invoice(item="99"), make_invoice()], qb=qb)
    assert len(result.successes) == 2
    assert len(result.faults) == 1
    error = result.faults[0].Error[0]
    assert (error.code, error.element) == ("2500", "Line.SalesItemLineDetail.ItemRef")


def test_batch_over_30_items_is_refused(sim: QboSimulator) -> None:
    """A BatchItemRequest with 31 items answers 400 with a Fault and creates nothing."""
    qb = quickbooks(sim)
    items = [{"bId": str(n), "operation": "create",
              "Invoice": json.loads(make_invoice().to_json())} for n in range(31)]  # fmt: skip
    answer = raw(sim, qb, "POST", "batch", json={"BatchItemRequest": items})
    assert answer.status_code == 400
    assert "Fault" in answer.json()
    assert sim.invoices() == []


# ----- errors as python-quickbooks raises them


def test_unknown_item_is_2500_validation_exception(sim: QboSimulator) -> None:
    """Unknown ItemRef: 400 code 2500 with QBO's Detail; the library raises ValidationException."""
    qb = quickbooks(sim)
    with pytest.raises(ValidationException) as failed:
        make_invoice(item="99").save(qb=qb)
    assert failed.value.error_code == 2500
    assert "restore Item 99 (deleted)" in failed.value.detail
    body = raw(sim, qb, "POST", "invoice", data=make_invoice(item="99").to_json(),
               headers={"Content-Type": "application/json"})  # fmt: skip
    assert body.status_code == 400
    error = body.json()["Fault"]["Error"][0]
    assert (error["code"], error["element"]) == ("2500", "Line.SalesItemLineDetail.ItemRef")
    assert body.json()["Fault"]["type"] == "ValidationFault"


def test_inactive_item_is_610_object_not_found(sim: QboSimulator) -> None:
    """An inactive item answers 610; the library raises ObjectNotFoundException."""
    qb = quickbooks(sim)
    with pytest.raises(ObjectNotFoundException) as failed:
        make_invoice(item="5").save(qb=qb)
    assert failed.value.error_code == 610
    assert "made inactive" in failed.value.detail
    sim.set_faults(inactive_items=["2"])
    with pytest.raises(ObjectNotFoundException):
        make_invoice(item="2").save(qb=qb)


def test_missing_customer_and_negative_amount_are_6000(sim: QboSimulator) -> None:
    """Missing CustomerRef or a negative amount: 6000, raised as plain QuickbooksException."""
    qb = quickbooks(sim)
    invoice = make_invoice()
    invoice.CustomerRef = None
    with pytest.raises(QuickbooksException) as missing:
        invoice.save(qb=qb)
    assert type(missing.value) is QuickbooksException
    assert missing.value.error_code == 6000
    with pytest.raises(QuickbooksException) as negative:
        make_invoice(amount="-5.00").save(qb=qb)
    assert negative.value.error_code == 6000


def test_duplicate_doc_number_is_6140(sim: QboSimulator) -> None:
    """A second invoice with the same DocNumber answers 6140 naming the first TxnId."""
    qb = quickbooks(sim)
    first = make_invoice(doc="FL-1001").save(qb=qb)
    with pytest.raises(QuickbooksException) as dup:
        make_invoice(doc="FL-1001").save(qb=qb)
    assert dup.value.error_code == 6140
    assert f"DocNumber=FL-1001 is assigned to TxnType=Invoice with TxnId={first.Id}" in (
        dup.value.detail
    )


def test_expired_access_token_is_gateway_3200(sim: QboSimulator) -> None:
    """An expired token answers 401 in the lowercase gateway envelope; the library raises 401."""
    qb = quickbooks(sim)
    sim.set_faults(expire_access_tokens_now=True)
    with pytest.raises(AuthorizationException) as failed:
        make_invoice().save(qb=qb)
    assert failed.value.error_code == 401
    answer = raw(sim, qb, "GET", f"companyinfo/{REALM}")
    assert answer.status_code == 401
    error = answer.json()["fault"]["error"][0]
    assert error["code"] == "3200"
    assert error["message"] == "message=AuthenticationFailed; errorCode=003200; statusCode=401"
    assert answer.json()["fault"]["type"] == "AUTHENTICATION"


def test_token_of_another_realm_is_code_100(sim: QboSimulator) -> None:
    """A token used on another company's realm answers 401 code 100."""
    other = sim.add_company()
    qb = quickbooks(sim)
    qb.company_id = other
    with pytest.raises(AuthorizationException):
        CompanyInfo.get(other, qb=qb)
    answer = raw(sim, qb, "GET", f"companyinfo/{other}")
    assert answer.status_code == 401
    assert answer.json()["Fault"]["Error"][0]["code"] == "100"


def test_forced_throttle_json_and_xml(sim: QboSimulator) -> None:
    """429 JSON raises ValidationException 3001; 429 XML becomes QuickbooksException 10000."""
    qb = quickbooks(sim)
    sim.set_faults(force_error={"preset": "throttle_3001"})
    with pytest.raises(ValidationException) as throttled:
        make_invoice().save(qb=qb)
    assert throttled.value.error_code == 3001
    sim.set_faults(force_error={"preset": "throttle_xml"})
    with pytest.raises(QuickbooksException) as xml:
        make_invoice().save(qb=qb)
    assert xml.value.error_code == 10000
    assert "ThrottleExceeded" in xml.value.message
    assert sim.invoices() == []


def test_forced_html_503_and_system_fault(sim: QboSimulator) -> None:
    """HTML 503 loses its status (QuickbooksException 10000); SystemFault 10000 is Severe."""
    qb = quickbooks(sim)
    sim.set_faults(force_error={"preset": "html_503"})
    answer = raw(sim, qb, "POST", "invoice", data=make_invoice().to_json())
    assert answer.status_code == 503
    assert answer.headers["Content-Type"].startswith("text/html")
    sim.set_faults(force_error={"preset": "html_503"})
    with pytest.raises(QuickbooksException) as html:
        make_invoice().save(qb=qb)
    assert (type(html.value), html.value.error_code) == (QuickbooksException, 10000)
    sim.set_faults(force_error={"preset": "system_10000"})
    with pytest.raises(SevereException) as severe:
        make_invoice().save(qb=qb)
    assert severe.value.error_code == 10000


def test_forced_custom_error_via_http(sim: QboSimulator) -> None:
    """POST /_sim/faults force_error answers the next create with the given status and code."""
    qb = quickbooks(sim)
    spec = {"http_status": 403, "code": "3100", "message": "ApplicationAuthorizationFailed",
            "detail": "scope", "envelope": "gateway", "count": 2}  # fmt: skip
    set_answer = requests.post(f"{sim.url}/_sim/faults", json={"force_error": spec}, timeout=5)
    assert set_answer.json()["force_error"][0]["count"] == 2
    for _ in range(2):
        answer = raw(sim, qb, "POST", "invoice", data=make_invoice().to_json())
        assert answer.status_code == 403
        assert answer.json()["fault"]["error"][0]["code"] == "3100"
    assert raw(sim, qb, "POST", "invoice", data=make_invoice().to_json()).status_code == 200
    assert requests.get(f"{sim.url}/_sim/faults", timeout=5).json()["force_error"] == []


def test_query_parse_error_is_4000(sim: QboSimulator) -> None:
    """An unparsable query answers 400 code 4000."""
    qb = quickbooks(sim)
    answer = raw(sim, qb, "POST", "query", data="SELECT * FROM Nothing",
                 headers={"Content-Type": "application/text"})  # fmt: skip
    assert answer.status_code == 400
    assert answer.json()["Fault"]["Error"][0]["code"] == "4000"
