"""Corrections end to end: records -> worker -> simulator over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests

from qbo_simulator import QboSimulator, SimulatorConfig
from tests.factories import amendment, cancellation, flight, jsonl, payment, refund
from tests.helpers_qbo import Cli, cli_env, connect_via_cli, map_via_cli

SCHOOL = "sunrise"
STUDENTS = {"S-7": "7"}
CHARGES = {"aircraft_rental": "1", "instructor_dual": "2"}


@pytest.fixture
def sim() -> Iterator[QboSimulator]:
    """A simulator with its limits scaled out of the way."""
    with QboSimulator(SimulatorConfig(minute_seconds=0.6)) as simulator:
        yield simulator


def setup(sim: QboSimulator, db_url: str) -> Cli:
    """Connected, mapped (charges, student, card -> Checking 35), auto-invoice on."""
    cli = Cli(cli_env(sim, db_url, SCHOOL))
    connect_via_cli(cli)
    map_via_cli(cli, CHARGES, STUDENTS)
    cli.ok("mappings", "set", "payment-type", "card", "--deposit-account", "35")
    return cli


def record(cli: Cli, tmp: Path, kind: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    """Record JSON lines of one kind; every line must be recorded."""
    path = tmp / f"{kind}.jsonl"
    path.write_text(jsonl(records))
    done: dict[str, Any] = cli.ok("record", kind, str(path), "--operator", "ana")
    assert done["recorded"] == len(records), done
    return done


def sync(cli: Cli) -> dict[str, Any]:
    """One `worker --until-idle` run."""
    summary: dict[str, Any] = cli.ok("worker", "--until-idle", "--max-seconds", "60")
    return summary


def invoices(sim: QboSimulator) -> dict[str, dict[str, Any]]:
    """Simulator invoices by DocNumber (one each, checked)."""
    rows = requests.get(f"{sim.url}/_sim/invoices", timeout=10).json()
    docs = [r["doc_number"] for r in rows]
    assert len(docs) == len(set(docs)), f"an invoice was created twice: {docs}"
    return {r["doc_number"]: r for r in rows}


def sim_list(sim: QboSimulator, name: str) -> list[dict[str, Any]]:
    """GET /_sim/<name>."""
    rows: list[dict[str, Any]] = requests.get(f"{sim.url}/_sim/{name}", timeout=10).json()
    return rows


def test_every_correction_row_reaches_quickbooks(
    db_url: str, sim: QboSimulator, tmp_path: Path
) -> None:
    """Amend before/after sync, paid or not, cancel unpaid/paid, refund: QBO ends as logged."""
    cli = setup(sim, db_url)
    record(cli, tmp_path, "flight-ended", [flight(f"F-{n}") for n in range(1, 7)])
    record(cli, tmp_path, "flight-amended", [amendment("F-1", "1.0")])  # before sync: 225.00
    record(cli, tmp_path, "flight-cancelled", [cancellation("F-6")])  # before sync: never sent
    sync(cli)
    assert sorted(invoices(sim)) == [f"FL-F-{n}" for n in range(1, 6)]
    assert invoices(sim)["FL-F-1"]["total"] == "225.00"
    record(
        cli,
        tmp_path,
        "payment-received",
        [
            payment("P-3", amount="100.00", applies_to="F-3"),
            payment("P-5", amount="270.00", applies_to="F-5"),
        ],
    )
    sync(cli)
    record(cli, tmp_path, "flight-amended", [amendment("F-2", "1.0"), amendment("F-3", "1.0")])
    record(cli, tmp_path, "flight-cancelled", [cancellation("F-4"), cancellation("F-5")])
    record(cli, tmp_path, "payment-refunded", [refund("RF-1", "P-5", "100.00")])
    waiting = {r["reference"]: r for r in cli.ok("events")}
    assert Decimal(str(waiting["F-2"]["amount"])) == Decimal("225.00")  # the current version
    assert Decimal(str(waiting["F-2"]["qbo_amount"])) == Decimal("270.00")  # what QBO holds
    assert waiting["F-2"]["corrections_pending"] == ["amendment"]
    assert waiting["F-4"]["corrections_pending"] == ["cancellation"]
    sync(cli)
    record(cli, tmp_path, "flight-amended", [amendment("F-3", "2.0")])  # paid, now up: 450.00
    sync(cli)

    qbo = invoices(sim)
    assert qbo["FL-F-1"]["sync_token"] == "0"  # amended before it was sent: sent once, as amended
    assert (qbo["FL-F-2"]["total"], qbo["FL-F-2"]["sync_token"]) == ("225.00", "1")
    assert [line["amount"] for line in qbo["FL-F-2"]["lines"]] == ["165.00", "60.00"]
    assert (qbo["FL-F-3"]["total"], qbo["FL-F-3"]["balance"]) == ("270.00", "170.00")  # untouched
    assert qbo["FL-F-3-A1"]["total"] == "225.00"  # 450.00 - 225.00 after the credit memo
    assert qbo["FL-F-4"]["voided"] is True and qbo["FL-F-4"]["total"] == "0.00"
    assert qbo["FL-F-5"]["voided"] is False and qbo["FL-F-5"]["total"] == "270.00"
    assert "FL-F-6" not in qbo
    memos = {m["doc_number"]: m["total"] for m in sim_list(sim, "creditmemos")}
    assert memos == {"FL-F-3-C1": "45.00", "FL-F-5-C1": "270.00"}
    refunds = sim_list(sim, "refunds")
    assert [(r["doc_number"], r["total"], r["deposit_account"]) for r in refunds] == [
        ("RF-RF-1", "100.00", "35")
    ]

    rows = {r["reference"]: r for r in cli.ok("events")}
    assert rows["F-6"]["status"] == "cancelled"
    assert {rows[f"F-{n}"]["status"] for n in range(1, 6)} == {"synced"}
    assert rows["RF-1"]["status"] == "synced" and rows["RF-1"]["kind"] == "payment-refunded"
    assert Decimal(str(rows["F-3"]["amount"])) == Decimal("450.00")
    assert "supplementary invoice FL-F-3-A1" in rows["F-3"]["reason"]
    assert Decimal(str(rows["F-3"]["qbo_amount"])) == Decimal("450.00")  # 270 - 45 + 225
    assert Decimal(str(rows["F-5"]["qbo_amount"])) == Decimal("0.00")  # credited in full
    assert {tuple(r["corrections_pending"]) for r in rows.values()} == {()}

    history = cli.ok("history", "F-3")
    types = [h["type"] for h in history]
    assert types[0] == "FlightEnded" and types.count("FlightAmended") == 2
    applied = [h["data"] for h in history if h["type"] == "CorrectionApplied"]
    assert [(a["action"], a["doc_number"]) for a in applied] == [
        ("credit_memo", "FL-F-3-C1"),
        ("supplement", "FL-F-3-A1"),
    ]
    amended = [h for h in history if h["type"] == "FlightAmended"]
    assert {h["actor"] for h in amended} == {"ana"}
    before = len(sim_list(sim, "creditmemos")), len(invoices(sim))
    sync(cli)  # nothing left to correct: no document twice
    assert (len(sim_list(sim, "creditmemos")), len(invoices(sim))) == before
    assert invoices(sim)["FL-F-2"]["sync_token"] == "1"  # updated once, never again


def test_invoice_deleted_or_edited_in_quickbooks_needs_a_person(
    db_url: str, sim: QboSimulator, tmp_path: Path
) -> None:
    """A hand delete or edit in QBO stops the correction with changed_in_quickbooks, saying what."""
    cli = setup(sim, db_url)
    record(cli, tmp_path, "flight-ended", [flight("F-1"), flight("F-2")])
    sync(cli)
    qbo = invoices(sim)
    requests.post(
        f"{sim.url}/_sim/entity",
        json={"entity": "Invoice", "id": qbo["FL-F-1"]["id"], "deleted": True},
        timeout=10,
    ).raise_for_status()
    requests.post(
        f"{sim.url}/_sim/invoices/edit", json={"id": qbo["FL-F-2"]["id"], "total": "250.00"},
        timeout=10,
    ).raise_for_status()  # fmt: skip
    record(cli, tmp_path, "flight-amended", [amendment("F-1", "1.0"), amendment("F-2", "1.0")])
    sync(cli)
    rows = {r["reference"]: r for r in cli.ok("events")}
    for ref in ("F-1", "F-2"):
        assert rows[ref]["status"] == "action_required"
        assert rows[ref]["reason_code"] == "changed_in_quickbooks"
    assert "was deleted in QuickBooks" in rows["F-1"]["reason"]
    assert "its total in QuickBooks is 250.00, the log says 270.00" in rows["F-2"]["reason"]
    assert invoices(sim)["FL-F-2"]["total"] == "250.00"  # nothing overwritten
    assert sim_list(sim, "creditmemos") == []


def test_update_meets_a_stale_synctoken_rereads_and_retries_once(
    db_url: str, sim: QboSimulator, tmp_path: Path
) -> None:
    """Invoice saved in QuickBooks just before our update: 5010, one re-read + retry, 1 invoice."""
    cli = setup(sim, db_url)
    record(cli, tmp_path, "flight-ended", [flight("F-1")])
    sync(cli)
    assert invoices(sim)["FL-F-1"]["sync_token"] == "0"
    sim.set_faults(edit_before_update=1)  # a person saves it between our read and our update
    record(cli, tmp_path, "flight-amended", [amendment("F-1", "1.0")])
    sync(cli)
    assert sim.faults()["edit_before_update"] == 0  # the stale update did happen
    qbo = invoices(sim)
    assert list(qbo) == ["FL-F-1"]  # updated in place, never a second invoice
    # SyncToken 1 = the person's save, 2 = our retried update at the re-read token
    assert (qbo["FL-F-1"]["total"], qbo["FL-F-1"]["sync_token"]) == ("225.00", "2")
    assert [line["amount"] for line in qbo["FL-F-1"]["lines"]] == ["165.00", "60.00"]
    row = {r["reference"]: r for r in cli.ok("events")}["F-1"]
    assert row["status"] == "synced" and row["corrections_pending"] == []
    assert Decimal(str(row["qbo_amount"])) == Decimal("225.00")
    applied = [h["data"] for h in cli.ok("history", "F-1") if h["type"] == "CorrectionApplied"]
    assert [a["action"] for a in applied] == ["update"]
    note = applied[0]["note"]  # QuickBooks' own first answer, with its code
    assert "QuickBooks first answered: Stale Object Error" in note and "code 5010" in note
    assert "270.00 -> 225.00" in applied[0]["note"]
