"""The QuickBooks gateway through the real python-quickbooks client against the simulator."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from adapters.quickbooks.gateway import batch_request_id
from domain.connection import ConnectionState
from domain.ports import FixedClock, OutcomeKind, ReasonCode
from qbo_simulator import QboSimulator, SimulatorConfig
from tests.helpers_qbo import SCHOOL, Rig, draft, make_rig, payment_draft

T, U, A, S = (
    OutcomeKind.TRANSIENT,
    OutcomeKind.UNCERTAIN,
    OutcomeKind.ACTION_REQUIRED,
    OutcomeKind.SYNCED,
)


@pytest.fixture
def sim() -> Iterator[QboSimulator]:
    """A simulator with a 0.6-second QBO minute."""
    with QboSimulator(SimulatorConfig(minute_seconds=0.6, max_sleep_seconds=3)) as simulator:
        yield simulator


@pytest.fixture
def rig(sqlite_url: str, sim: QboSimulator, clock: FixedClock) -> Iterator[Rig]:
    """A connected school on SQLite."""
    r = make_rig(sqlite_url, sim, clock)
    yield r
    r.ledger.close()


def forced(spec: dict[str, Any], count: int = 10) -> dict[str, Any]:
    return {"force_error": {**spec, "count": count}}


ROWS = [
    # (id, fault settings, expected kind, expected reason, expected code)
    ("3200 gateway envelope", forced({"preset": "auth_3200"}), A, ReasonCode.AUTH_FAILED, "3200"),
    ("100 application envelope", forced({"preset": "auth_100"}), A, ReasonCode.AUTH_FAILED, "100"),
    ("100 gateway envelope", forced({"preset": "auth_100", "envelope": "gateway"}),
     A, ReasonCode.AUTH_FAILED, "100"),
    ("3100/403", forced({"preset": "authz_3100"}), A, ReasonCode.AUTH_FAILED, "3100"),
    ("3100/500", forced({"preset": "authz_3100_500"}), T, None, "3100"),
    ("3001/429 json", forced({"preset": "throttle_3001"}), T, None, "3001"),
    ("429 xml body", forced({"preset": "throttle_xml"}), T, None, "3001"),
    ("2500", forced({"http_status": 400, "code": "2500", "message": "Invalid Reference Id",
                     "detail": "Invalid Reference Id : Something you're trying to use has been "
                               "made inactive", "element": "Line.SalesItemLineDetail.ItemRef"}),
     A, ReasonCode.INVALID_REFERENCE, "2500"),
    ("610", forced({"http_status": 400, "code": "610", "message": "Object Not Found",
                    "detail": "Something you're trying to use has been made inactive."}),
     A, ReasonCode.INACTIVE_MAPPING, "610"),
    ("6000 application", forced({"preset": "validation_6000"}), A, ReasonCode.VALIDATION, "6000"),
    ("6000 gateway envelope", forced({"preset": "validation_6000", "envelope": "gateway"}),
     A, ReasonCode.VALIDATION, "6000"),
    ("5010", forced({"preset": "stale_5010"}), T, None, "5010"),
    ("10000", forced({"preset": "system_10000"}), U, None, "10000"),
    ("500 html", forced({"preset": "html_500"}), U, None, None),
    ("502 html", forced({"preset": "html_502"}), U, None, None),
    ("503 html", forced({"preset": "html_503"}), U, None, None),
    ("504 html", forced({"preset": "html_504"}), U, None, None),
    ("timeout", {"timeout_rate": 1.0, "timeout_seconds": 2.0, "fault_after_commit": 0.0},
     U, None, None),
    ("connection reset", {"reset_rate": 1.0, "fault_after_commit": 0.0}, U, None, None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("faults", "kind", "reason", "code"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS]
)
def test_error_table_through_real_client(
    rig: Rig,
    sim: QboSimulator,
    faults: dict[str, Any],
    kind: OutcomeKind,
    reason: ReasonCode | None,
    code: str | None,
) -> None:
    """Every row of QBO.md's table, sent over HTTP, is classified as the table says."""
    gateway = rig.gateway(max_attempts=1)
    sim.set_faults(**faults)
    outcome = gateway.push_invoice(draft(1))
    assert outcome.kind == kind, outcome
    assert outcome.reason_code == reason
    if code is not None:
        assert outcome.code == code
    assert outcome.message and not outcome.message.isdigit()


def test_real_inactive_item_and_unknown_item(rig: Rig) -> None:
    """The simulator's own validation: inactive Item 5 -> inactive_mapping, unknown -> 2500."""
    gateway = rig.gateway()
    inactive = gateway.push_invoice(draft(1, item="5"))
    unknown = gateway.push_invoice(draft(2, item="999"))
    assert (inactive.kind, inactive.reason_code) == (A, ReasonCode.INACTIVE_MAPPING)
    assert (unknown.kind, unknown.reason_code) == (A, ReasonCode.INVALID_REFERENCE)


def test_throttle_pauses_then_retries_inside_the_call(rig: Rig, sim: QboSimulator) -> None:
    """One 429 pauses the realm (scaled 60 s) and the retry in the same call syncs."""
    gateway = rig.gateway()
    sim.set_faults(**forced({"preset": "throttle_3001"}, count=1))
    outcome = gateway.push_invoice(draft(1))
    assert outcome.kind == S
    assert len(sim.invoices()) == 1


def test_duplicate_doc_number(rig: Rig, sim: QboSimulator) -> None:
    """6140: same customer and total counts as synced; different contents need a person."""
    gateway = rig.gateway()
    first = gateway.push_invoice(draft(1))
    same = draft(1)
    same_contents = gateway.push_invoice(
        type(same)(**{**same.__dict__, "request_id": "other-request", "event_id": same.event_id})
    )
    different = gateway.push_invoice(
        type(same)(**{**draft(1, customer="2").__dict__, "request_id": "third-request"})
    )
    assert first.kind == S
    assert (same_contents.kind, same_contents.qbo_id) == (S, first.qbo_id)
    assert (different.kind, different.reason_code) == (A, ReasonCode.DUPLICATE_DOC_NUMBER)
    assert len(sim.invoices()) == 1


def test_replay_after_timeout_never_duplicates(rig: Rig, sim: QboSimulator) -> None:
    """A create that timed out after QBO performed it, pushed again, yields one invoice."""
    gateway = rig.gateway(max_attempts=1)
    sim.set_faults(timeout_rate=1.0, timeout_seconds=2.0, fault_after_commit=1.0)
    lost = gateway.push_invoice(draft(1))
    assert lost.kind == U
    sim.set_faults(timeout_rate=0.0)
    again = gateway.push_invoice(draft(1))
    again_2 = rig.gateway().push_invoice(draft(1))  # a new process after a crash
    assert again.kind == S and again_2.qbo_id == again.qbo_id
    assert len(sim.invoices()) == 1


def test_batch_partial_failure_matched_by_bid(rig: Rig, sim: QboSimulator) -> None:
    """A batch with one bad item syncs the others and reports the bad one on its own draft."""
    gateway = rig.gateway()
    drafts = [draft(n) for n in range(1, 36)]
    drafts[3] = draft(4, item="5")  # inactive item
    outcomes = gateway.push_invoices(drafts)
    assert [o.event_id for o in outcomes] == [d.event_id for d in drafts]
    assert outcomes[3].reason_code == ReasonCode.INACTIVE_MAPPING
    assert sum(o.kind == S for o in outcomes) == 34
    created = {i["doc_number"]: i["id"] for i in sim.invoices()}
    assert {o.doc_number: o.qbo_id for o in outcomes if o.kind == S} == created


def test_batch_replay_is_deterministic(rig: Rig, sim: QboSimulator) -> None:
    """The batch requestid is derived from the drafts (<= 36 chars): a re-send creates nothing."""
    drafts = [draft(n) for n in range(1, 4)]
    assert batch_request_id(drafts) == batch_request_id(list(reversed(drafts)))
    assert len(batch_request_id(drafts)) <= 36
    first = rig.gateway().push_invoices(drafts)
    second = rig.gateway().push_invoices(drafts)
    assert [o.qbo_id for o in first] == [o.qbo_id for o in second]
    assert len(sim.invoices()) == 3


def test_payment_links_invoice(rig: Rig, sim: QboSimulator) -> None:
    """A payment is created with its request id and linked to the invoice."""
    gateway = rig.gateway()
    invoice = gateway.push_invoice(draft(1))
    assert invoice.qbo_id is not None
    paid = gateway.push_payment(payment_draft(invoice.qbo_id))
    again = gateway.push_payment(payment_draft(invoice.qbo_id))
    assert paid.kind == S and again.qbo_id == paid.qbo_id
    assert len(sim.payments()) == 1


def test_refresh_on_401_then_retry(rig: Rig, sim: QboSimulator) -> None:
    """An expired access token (3200) is refreshed once, the push retried, expiries recorded."""
    before = rig.vault.get_tokens(SCHOOL)
    sim.set_faults(expire_access_tokens_now=True)
    outcome = rig.gateway().push_invoice(draft(1))
    after = rig.vault.get_tokens(SCHOOL)
    assert outcome.kind == S
    assert before is not None and after is not None
    assert after.refresh_token != before.refresh_token  # rotated and persisted
    types = [e.type for e in rig.ledger.history(SCHOOL, "connection")]
    assert types.count("TokensRefreshed") == 1


def test_proactive_refresh_before_expiry(rig: Rig) -> None:
    """Within 5 minutes of the access expiry the gateway refreshes before calling."""
    before = rig.vault.get_tokens(SCHOOL)
    assert before is not None
    rig.clock.advance(3600 - 200)
    outcome = rig.gateway().push_invoice(draft(1))
    after = rig.vault.get_tokens(SCHOOL)
    assert outcome.kind == S and after is not None
    assert after.access_token != before.access_token
    assert after.access_expires_at > before.access_expires_at + timedelta(minutes=50)


def test_invalid_grant_marks_connection_expired(rig: Rig, sim: QboSimulator) -> None:
    """A revoked refresh token gives auth_expired, RefreshTokenExpired, and no further calls."""
    sim.set_faults(revoke_refresh_tokens=True, expire_access_tokens_now=True)
    gateway = rig.gateway()
    outcome = gateway.push_invoice(draft(1))
    assert (outcome.kind, outcome.reason_code) == (A, ReasonCode.AUTH_EXPIRED)
    assert rig.ledger.connection(SCHOOL).state == ConnectionState.EXPIRED
    served = sim.stats_snapshot()
    second = gateway.push_invoices([draft(2), draft(3)])
    assert all(o.reason_code == ReasonCode.AUTH_EXPIRED for o in second)
    assert sim.stats_snapshot() == served  # QBO not called again
    assert sim.invoices() == []
