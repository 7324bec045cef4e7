"""Reconnecting to another QuickBooks company: the realm is confirmed, a switch is refused by
default, and records that may be in the old company are held for an operator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import pytest
import requests

from adapters.views import open_view
from domain.ports import FixedClock
from qbo_simulator import QboSimulator, SimulatorConfig
from services.push_pass import SyncEngine
from tests.factories import flight
from tests.helpers_qbo import (
    Cli,
    cli_env,
    connect_via_cli,
    draft,
    make_rig,
    map_via_cli,
    record_via_cli,
    sim_env,
)
from workers.bootstrap import Config, open_ledger
from workers.projector import Projector
from workers.qbo import gateway_for, open_vault, qbo_settings_from_env
from workers.runtime import gateway_factory

pytestmark = pytest.mark.timeout(120)
SCHOOL = "sunrise"
OTHER_REALM = "9130350000000777"


@pytest.fixture
def sim() -> Iterator[QboSimulator]:
    """A simulator with its default company (A) and a second one (B)."""
    with QboSimulator(SimulatorConfig(minute_seconds=0.6)) as simulator:
        simulator.add_company(OTHER_REALM, "Other Aviation LLC")
        yield simulator


def _redirect(cli: Cli, *, hint: str | None = None) -> str:
    """Start a connection and follow the authorize URL (to company `hint` when given)."""
    url = cli.ok("connection", "connect")["authorization_url"]
    if hint:
        url += "&" + urlencode({"realm_hint": hint})
    answer = requests.get(url, allow_redirects=False, timeout=10)
    assert answer.status_code == 302
    return str(answer.headers["Location"])


def _with_realm(location: str, realm: str) -> str:
    parts = urlsplit(location)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()} | {"realmId": realm}
    return urlunsplit(parts._replace(query=urlencode(query)))


@pytest.fixture
def cli(db_url: str, sim: QboSimulator, tmp_path: Path) -> Cli:
    """A school connected to company A with one invoice synced there (F-1)."""
    made = Cli(cli_env(sim, db_url, SCHOOL, timeout=0.5))
    connect_via_cli(made)
    map_via_cli(made, {"aircraft_rental": "1", "instructor_dual": "2"}, {"S-1": "1"})
    record_via_cli(made, tmp_path / "f1.jsonl", [flight("F-1", "S-1")])
    assert made.ok("worker", "--until-idle", "--max-seconds", "60")["synced"] == 1
    return made


def test_a_realm_the_tokens_do_not_open_is_refused(cli: Cli, sim: QboSimulator) -> None:
    """A callback whose realmId is not the authorized company: refused, old link intact."""
    location = _with_realm(_redirect(cli), OTHER_REALM)
    code, data, _ = cli.full("connection", "callback", location)
    assert code != 0
    assert f"did not open company {OTHER_REALM}" in data["error"]
    status = cli.ok("connection", "status")
    assert (status["pill"], status["realm"]) == ("Connected", sim.config.realm)
    assert cli.ok("connection", "test")["ok"]


def test_switching_company_is_refused_unless_confirmed_and_holds_maybe_created_records(
    cli: Cli, sim: QboSimulator, db_url: str, tmp_path: Path
) -> None:
    """B instead of A: refused by default; --switch-company holds what may be in A."""
    record_via_cli(cli, tmp_path / "f2.jsonl", [flight("F-2", "S-1")])
    _leave_uncertain_in_a(cli, sim, db_url)
    assert [i["doc_number"] for i in sim.invoices(sim.config.realm)] == ["FL-F-1", "FL-F-2"]

    code, data, _ = cli.full("connection", "callback", _redirect(cli, hint=OTHER_REALM))
    assert code != 0
    assert "This school's invoices are in Sunrise Flight School" in data["error"]
    assert "you connected Other Aviation LLC" in data["error"]
    assert "1 record(s) may already be in Sunrise Flight School" in data["error"]
    assert "F-2" in data["error"]  # named before the operator decides
    assert cli.ok("connection", "status")["realm"] == sim.config.realm

    done = cli.ok("connection", "callback", _redirect(cli, hint=OTHER_REALM), "--switch-company")
    assert (done["ok"], done["company"]) == (True, "Other Aviation LLC")
    held = cli.ok("events", "--reason", "company_switched")
    assert [r["reference"] for r in held] == ["F-2"]
    assert "may already be in the old company" in held[0]["reason"]

    record_via_cli(cli, tmp_path / "f3.jsonl", [flight("F-3", "S-1")])
    cli.ok("worker", "--until-idle", "--max-seconds", "60")
    assert [i["doc_number"] for i in sim.invoices(OTHER_REALM)] == ["FL-F-3"]
    assert cli.ok("events", "--reason", "company_switched")[0]["reference"] == "F-2"
    # the operator checked company A and decides it belongs in B too
    assert cli.ok("retry-failed", "--reason", "company_switched")["requeued"] == 1
    cli.ok("worker", "--until-idle", "--max-seconds", "60")
    assert sorted(i["doc_number"] for i in sim.invoices(OTHER_REALM)) == ["FL-F-2", "FL-F-3"]


def _leave_uncertain_in_a(cli: Cli, sim: QboSimulator, db_url: str) -> None:
    """One pass in which QBO (company A) creates F-2 but the answer times out."""
    ledger = open_ledger(db_url)
    view = open_view(db_url)
    try:
        Projector(ledger, view).catch_up()
        vault = open_vault(db_url, cli.env, create_key=False)
        settings = qbo_settings_from_env(cli.env, vault)
        engine = SyncEngine(ledger, view, lambda s: gateway_for(ledger, vault, settings, s))
        sim.set_faults(timeout_rate=1.0, timeout_seconds=1.5, fault_after_commit=1.0)
        engine.run_pass(SCHOOL)
        sim.set_faults(timeout_rate=0.0)
        assert ledger.find(SCHOOL, "F-2").status.value == "uncertain"
    finally:
        view.close()
        ledger.close()


def test_a_kept_gateway_factory_follows_a_switch_to_another_company(
    sqlite_url: str, sim: QboSimulator, clock: FixedClock
) -> None:
    """The worker's gateway factory rebuilds the gateway when the vault's realm changed."""
    rig = make_rig(sqlite_url, sim, clock)
    try:
        factory = gateway_factory(rig.ledger, Config(db_url=sqlite_url, env=sim_env(sim)))
        first = factory(SCHOOL)
        assert factory(SCHOOL) is first  # unchanged realm: the same HTTP session
        url, _ = rig.service.connect(SCHOOL)
        answer = requests.get(
            url + "&" + urlencode({"realm_hint": OTHER_REALM}), allow_redirects=False, timeout=10
        )
        assert rig.service.callback(SCHOOL, answer.headers["Location"], "ana").ok
        second = factory(SCHOOL)
        assert second is not first
        assert second.push_invoice(draft(1)).kind.value == "synced"
        assert [i["doc_number"] for i in sim.invoices(OTHER_REALM)] == ["FL-1"]
    finally:
        rig.ledger.close()
