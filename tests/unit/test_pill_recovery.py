"""The "Connection error" pill ends when the worker syncs again (help article 000).

An error QuickBooks returned (a 403, an uncured 401, a failed test) makes the pill red until a
test passes, a reconnect, or - here - a worker pass begun after the error syncs a record and
meets no auth error on the way: then the pill, the CLI's `connection status` and the API (all
status_document over the Connection) tell the token's own state again and the card's red panel
goes. The signal costs no read: the pass already loads the Connection for its preflight, and
writes one CallsSucceeded event only when an older error is there to end.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta

import pytest

from domain.application import FlightLedger
from domain.connection import Connection, ConnectionState
from domain.ids import connection_id
from domain.pill import AMBER, GREEN, RED, connection_pill, status_document
from domain.ports import FixedClock, InvoiceDraft, OutcomeKind, PushOutcome, ReasonCode
from services.push_pass import SyncEngine
from tests.fakes import (
    T0,
    FakeAccountingGateway,
    FakeFinancialEventView,
    ready_school,
    record_flights,
)

SCHOOL = "default"
FORBIDDEN = "message=ApplicationAuthorizationFailed; errorCode=003100; statusCode=403"
MINUTE = timedelta(minutes=1)


def _connected(days: int = 100) -> Connection:
    conn = Connection._create(
        Connection.Registered, id=connection_id("demo"), school="demo", timestamp=T0
    )
    conn.connect(
        realm="1",
        company="Sunrise",
        country="US",
        access_expires_at=T0 + timedelta(hours=1),
        refresh_expires_at=T0 + timedelta(days=days),
        hard_expires_at=None,
        actor="ana",
        at=T0,
    )
    return conn


# --- the rule, on the Connection (pure: the pass's start time is passed in) -----------------


@pytest.mark.parametrize(
    ("days", "tone", "pill"), [(100, GREEN, "Connected"), (20, AMBER, "19d left")]
)
def test_an_error_older_than_the_pass_ends_and_the_pill_tells_the_token(
    days: int, tone: str, pill: str
) -> None:
    """A 403 at T0+1m, a pass begun at T0+2m synced: back to the token's pill (green or
    amber), no last_error for the CLI/API/card, the error's time gone with it."""
    conn = _connected(days)
    conn.record_failure(message=FORBIDDEN, at=T0 + MINUTE)
    assert conn.last_error_at == T0 + MINUTE
    assert connection_pill(conn, T0 + 3 * MINUTE).pill == "Connection error"
    conn.record_calls_succeeded(since=T0 + 2 * MINUTE, at=T0 + 3 * MINUTE)
    shown = connection_pill(conn, T0 + 3 * MINUTE)
    assert (shown.pill, shown.tone) == (pill, tone)
    document = status_document(conn, T0 + 3 * MINUTE)
    assert (document["pill"], document["last_error"]) == (pill, None)
    assert conn.last_error_at is None


@pytest.mark.parametrize("error_after", [timedelta(0), MINUTE])
def test_an_error_at_or_after_the_pass_began_stays(error_after: timedelta) -> None:
    """A failed test while the pass ran (or at its very start) is newer news than its syncs."""
    conn = _connected()
    since = T0 + MINUTE
    conn.record_test(
        ok=False, company=None, country=None, message="invalid_client", actor="ana",
        at=since + error_after,
    )  # fmt: skip
    version = conn.version
    conn.record_calls_succeeded(since=since, at=since + 2 * MINUTE)
    assert conn.version == version, "nothing recorded"
    shown = connection_pill(conn, since + 2 * MINUTE)
    assert (shown.pill, shown.tone) == ("Connection error", RED)


def test_nothing_is_recorded_without_an_error_and_an_expired_token_stays_reconnect() -> None:
    """No error: no event (a syncing pass writes nothing to the Connection). invalid_grant:
    only a reconnect ends it, whatever the worker's later luck."""
    conn = _connected()
    version = conn.version
    conn.record_calls_succeeded(since=T0 + MINUTE, at=T0 + MINUTE)
    assert conn.version == version
    conn.expire(message="invalid_grant", at=T0 + MINUTE)
    conn.record_calls_succeeded(since=T0 + 2 * MINUTE, at=T0 + 2 * MINUTE)
    assert conn.version == version + 1
    assert connection_pill(conn, T0 + 2 * MINUTE).pill == "Reconnect"
    assert conn.state == ConnectionState.EXPIRED


def test_the_same_403_after_a_recovery_is_recorded_again() -> None:
    """record_failure keeps one event per distinct message: after the recovery the same
    message is news again, so the pill turns red again."""
    conn = _connected()
    conn.record_failure(message=FORBIDDEN, at=T0 + MINUTE)
    conn.record_calls_succeeded(since=T0 + 2 * MINUTE, at=T0 + 3 * MINUTE)
    conn.record_failure(message=FORBIDDEN, at=T0 + 4 * MINUTE)
    assert connection_pill(conn, T0 + 4 * MINUTE).pill == "Connection error"
    assert conn.last_error_at == T0 + 4 * MINUTE


def test_the_time_survives_a_reload_from_the_log() -> None:
    """last_error_at comes from the stored event's timestamp (no new field in old events)."""
    ledger = FlightLedger(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}, clock=FixedClock(T0))
    ready_school(ledger)
    conn = ledger.connection(SCHOOL)
    conn.record_failure(message=FORBIDDEN, at=T0 + MINUTE)
    ledger.save(conn)
    assert ledger.connection(SCHOOL).last_error_at == T0 + MINUTE


# --- the worker's pass ------------------------------------------------------------------------


@dataclass
class RefusingGateway(FakeAccountingGateway):
    """The fake QuickBooks, answering 403 to the pushes after the first ``allow`` invoices,
    and telling the Connection as the real gateway's on_auth_failed hook does."""

    allow: int = 10**6

    def push_invoice(self, draft: InvoiceDraft) -> PushOutcome:
        """One create; 403 once ``allow`` invoices exist."""
        if len(self.invoices) < self.allow:
            return super().push_invoice(draft)
        self.calls.append(("invoice", 1))
        assert self.ledger is not None
        conn = self.ledger.connection(SCHOOL)
        conn.record_failure(message=FORBIDDEN, at=self.ledger.clock.now())
        if conn.pending_events:
            self.ledger.save(conn)
        return PushOutcome(
            event_id=draft.event_id,
            kind=OutcomeKind.ACTION_REQUIRED,
            reason_code=ReasonCode.AUTH_FAILED,
            code="3100",
            message=FORBIDDEN,
            http_status=403,
        )


@pytest.fixture
def clock() -> FixedClock:
    """A clock standing at T0."""
    return FixedClock(T0)


@pytest.fixture
def ledger(clock: FixedClock) -> FlightLedger:
    """An in-memory ledger with a connected, mapped school."""
    made = FlightLedger(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}, clock=clock)
    ready_school(made)
    return made


def _pass(ledger: FlightLedger, gateway: FakeAccountingGateway) -> None:
    SyncEngine(
        ledger,
        FakeFinancialEventView(ledger),
        lambda school: gateway,
        rng=random.Random(7),
        batch_size=1,
    ).run_pass(SCHOOL)


def _types(ledger: FlightLedger) -> list[str]:
    return [entry.type for entry in ledger.history(SCHOOL, "connection")]


def test_a_403_then_a_pass_that_syncs_turns_the_pill_back(
    ledger: FlightLedger, clock: FixedClock
) -> None:
    """The worker meets a 403 (red), access comes back, a later pass syncs: the pill is green
    and status_document (CLI, API, card) has no error, without a connection test."""
    gateway = RefusingGateway(ledger=ledger, allow=0)
    record_flights(ledger, 1)
    _pass(ledger, gateway)
    assert status_document(ledger.connection(SCHOOL), clock.now())["pill"] == "Connection error"

    clock.advance(60)
    gateway.allow = 10**6  # access restored
    record_flights(ledger, 1, start=2)
    _pass(ledger, gateway)
    document = status_document(ledger.connection(SCHOOL), clock.now())
    assert (document["pill"], document["tone"], document["last_error"]) == (
        "Connected", GREEN, None,
    )  # fmt: skip
    assert _types(ledger)[-2:] == ["ConnectionFailed", "CallsSucceeded"]
    assert "ConnectionTested" not in _types(ledger)

    clock.advance(60)
    record_flights(ledger, 1, start=3)
    _pass(ledger, gateway)
    assert _types(ledger)[-1] == "CallsSucceeded", "a healthy pass writes nothing more"


def test_a_pass_that_syncs_and_then_meets_the_403_again_stays_red(
    ledger: FlightLedger, clock: FixedClock
) -> None:
    """An old 403, then a pass that syncs one flight and is refused on the next with the same
    message (not recorded twice): the error is not over."""
    conn = ledger.connection(SCHOOL)
    conn.record_failure(message=FORBIDDEN, at=clock.now())
    ledger.save(conn)
    clock.advance(60)
    gateway = RefusingGateway(ledger=ledger, allow=1)
    record_flights(ledger, 2)
    _pass(ledger, gateway)
    assert len(gateway.invoices) == 1
    assert status_document(ledger.connection(SCHOOL), clock.now())["pill"] == "Connection error"
    assert "CallsSucceeded" not in _types(ledger)


def test_a_failed_test_during_the_pass_is_not_ended_by_it(
    ledger: FlightLedger, clock: FixedClock
) -> None:
    """The dashboard's Test Connection fails while a pass is pushing: its error is newer than
    the pass's start, so the pass's syncs do not end it."""
    conn = ledger.connection(SCHOOL)
    conn.record_failure(message=FORBIDDEN, at=clock.now())
    ledger.save(conn)
    clock.advance(60)

    class TestedMeanwhile(FakeAccountingGateway):
        def push_invoice(self, draft: InvoiceDraft) -> PushOutcome:
            clock.advance(1)
            tested = ledger.connection(SCHOOL)
            tested.record_test(
                ok=False, company=None, country=None, message="invalid_client", actor="ana",
                at=clock.now(),
            )  # fmt: skip
            ledger.save(tested)
            return super().push_invoice(draft)

    record_flights(ledger, 1)
    _pass(ledger, TestedMeanwhile(ledger=ledger))
    document = status_document(ledger.connection(SCHOOL), clock.now())
    assert (document["pill"], document["last_error"]) == ("Connection error", "invalid_client")
