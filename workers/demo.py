"""The main job end to end on the embedded default: SQLite + the bundled QBO simulator."""

from __future__ import annotations

import random
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from rich.console import Console

from domain.application import FlightLedger
from domain.reasons import fix_for
from domain.records import RecordKind, parse_flight_ended, parse_payment_received
from qbo_simulator import QboSimulator, SimulatorConfig
from services.connection import CONNECTED_VERIFYING
from services.retry import retry_failed
from workers.bootstrap import Config, open_ledger
from workers.context import table
from workers.qbo import ConnectionService, open_vault, qbo_settings_from_env
from workers.runtime import build_worker

SCHOOL = "default"
OPERATOR = "demo"
UNMAPPED_CODE = "fuel_surcharge"
# (id, name, QuickBooks customer mapped by hand or None, email on the records or None). The two
# without a mapping are auto-customers' job: Ana Ortiz is already a customer in QuickBooks (1,
# matched by name), Eva Novak is new (created, with her email).
STUDENTS: list[tuple[str, str, str | None, str | None]] = [
    ("S-101", "Ana Ortiz", None, None),
    ("S-102", "Ben Okafor", "2", None),
    ("S-103", "Chloe Martin", "3", None),
    ("S-104", "Dev Patel", "4", None),
    ("S-105", "Eva Novak", None, "eva.novak@example.com"),
]
AIRCRAFT = [("N172SP", "C172"), ("N738WX", "C172"), ("N44PA", "PA28")]


@dataclass(frozen=True)
class DemoResult:
    """What the demo ended with (also printed)."""

    db_url: str
    flights: int
    payments: int
    invoices_in_qbo: int
    payments_in_qbo: int
    synced: int
    seconds: float
    customers_created: int = 0  # by auto-customers, for students with no mapping
    customers_matched: int = 0

    @property
    def ok(self) -> bool:
        """One invoice per flight, one payment per payment, everything synced."""
        return (
            self.invoices_in_qbo == self.flights
            and self.payments_in_qbo == self.payments
            and self.synced == self.flights + self.payments
        )


def day_of_flights(day: datetime, count: int, seed: int = 7) -> list[dict[str, Any]]:
    """A realistic day: dual and solo flights from 07:00, some with a fuel surcharge."""
    rng = random.Random(seed)
    flights = []
    hobbs = {tail: Decimal("1234.5") + Decimal(i * 300) for i, (tail, _) in enumerate(AIRCRAFT)}
    for i in range(count):
        student_id, name, _, email = STUDENTS[i % len(STUDENTS)]
        tail, kind = AIRCRAFT[i % len(AIRCRAFT)]
        hours = Decimal(rng.choice(["0.8", "1.1", "1.3", "1.5", "1.8", "2.0"]))
        start = hobbs[tail]
        hobbs[tail] = start + hours
        charges = [{"code": "aircraft_rental", "quantity": str(hours), "rate": "165.00"}]
        if i % 3 != 2:  # two flights in three are dual
            charges.append({"code": "instructor_dual", "quantity": str(hours), "rate": "60.00"})
        if i % 6 == 5:  # a fuel surcharge now and then: the code nobody mapped yet
            charges.append({"code": UNMAPPED_CODE, "quantity": "1", "rate": "18.50"})
        ended = day.replace(hour=7) + timedelta(minutes=30 * (i + 1) + rng.randint(0, 20))
        flights.append(
            {
                "flight_id": f"F-{2001 + i}",
                "ended_at": ended.isoformat().replace("+00:00", "Z"),
                "student": {"id": student_id, "name": name, **({"email": email} if email else {})},
                "instructor": {"id": "I-3", "name": "Sam Lee"},
                "aircraft": {"tail": tail, "type": kind},
                "hobbs": {"start": str(start), "end": str(start + hours)},
                "charges": charges,
                "currency": "USD",
            }
        )
    return flights


class Demo:
    """Runs the story step by step, saying what it does in plain words."""

    def __init__(self, workdir: Path, console: Console, flights: int = 24) -> None:
        self.workdir = workdir
        self.console = console
        self.flight_count = flights
        self.step = 0

    def say(self, text: str) -> None:
        """One numbered step."""
        self.step += 1
        self.console.print(f"\n[bold cyan]{self.step}.[/bold cyan] {text}")

    def note(self, text: str) -> None:
        """A detail under the current step."""
        self.console.print(f"   {text}", markup=False, highlight=False)

    def run(self) -> DemoResult:
        """The whole story; returns what it ended with."""
        started = time.monotonic()
        if self.workdir.exists():
            shutil.rmtree(self.workdir)
        self.workdir.mkdir(parents=True)
        db_url = f"sqlite:///{self.workdir / 'flightledger.db'}"
        with QboSimulator(SimulatorConfig()) as simulator:
            env = {
                "FLIGHTLEDGER_QBO_ENVIRONMENT": "simulator",
                "FLIGHTLEDGER_QBO_SIMULATOR_URL": simulator.url,
            }
            config = Config(db_url=db_url, school=SCHOOL, env=env)
            ledger = open_ledger(config.database)
            try:
                result = self._story(ledger, config, simulator, db_url)
            finally:
                ledger.close()
        return DemoResult(**{**result.__dict__, "seconds": round(time.monotonic() - started, 1)})

    def _story(
        self, ledger: FlightLedger, config: Config, simulator: QboSimulator, db_url: str
    ) -> DemoResult:
        self.console.print(
            "[bold]flightledger demo[/bold]: a day at a flight school, invoiced in QuickBooks."
        )
        self.note(f"log: {db_url} (SQLite)")
        self.note(f"QuickBooks: the bundled simulator at {simulator.url}")

        self.say("Connect QuickBooks through the OAuth flow (the simulator consents by itself).")
        vault = open_vault(config.database, config.env, create_key=True)
        settings = qbo_settings_from_env(config.env, vault)
        service = ConnectionService(ledger, vault, settings)
        url, _ = service.connect(SCHOOL)
        self.note(f"authorization URL: {url.split('?')[0]}?…")
        check = service.connect_simulator(SCHOOL, OPERATOR)
        self.note(CONNECTED_VERIFYING)
        self.note(check.message)
        status = service.status(SCHOOL)
        self.note(f"connection pill: {status['pill']} ({status['tone']}), token {status['badge']}")

        self.say(
            f"Map charge codes, three students and defaults — all but '{UNMAPPED_CODE}'; "
            "switch auto-customers on for the two new students."
        )
        ledger.map_charge(SCHOOL, "aircraft_rental", "1", operator=OPERATOR)
        ledger.map_charge(SCHOOL, "instructor_dual", "2", operator=OPERATOR)
        ledger.map_charge(SCHOOL, "ground_instruction", "4", operator=OPERATOR)
        for student_id, _, customer, _ in STUDENTS:
            if customer is not None:
                ledger.map_student(SCHOOL, student_id, customer, operator=OPERATOR)
        ledger.map_payment_type(SCHOOL, "card", "36", operator=OPERATOR, payment_method_id="2")
        ledger.set_defaults(
            SCHOOL,
            operator=OPERATOR,
            term_id="1",
            memo="Thank you for flying with Sunrise Flight School!",
            income_account_id="79",
        )
        ledger.set_auto_invoice(SCHOOL, True, operator=OPERATOR)
        ledger.set_auto_customers(SCHOOL, True, operator=OPERATOR)
        new = [f"{name} ({sid})" for sid, name, customer, _ in STUDENTS if customer is None]
        self.note("aircraft_rental -> item 1, instructor_dual -> item 2, 3 students -> customers")
        self.note(f"auto-customers on: {' and '.join(new)} have no customer mapping")

        day = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        flights = day_of_flights(day, self.flight_count)
        self.say(f"Instructors end {len(flights)} flights during the day; each is recorded.")
        records = [parse_flight_ended(f) for f in flights]
        batch = ledger.record_batch(SCHOOL, records, actor="instructors")
        again = ledger.record_batch(SCHOOL, records[:3], actor="instructors")
        self.note(
            f"recorded {batch.recorded}; recording three of them again: "
            f"{again.duplicates} duplicates, nothing appended"
        )
        paid = [records[0], records[1], records[3]]
        payments = [
            parse_payment_received(
                {
                    "payment_id": f"P-{r.flight_id}",
                    "received_at": r.ended_at.isoformat(),
                    "student": {"id": r.student.id, "name": r.student.name},
                    "amount": str(r.total),
                    "payment_type": "card",
                    "currency": "USD",
                    "applies_to": r.flight_id,
                }
            )
            for r in paid
        ]
        ledger.record_batch(SCHOOL, payments, actor="front-desk")
        self.note(f"and {len(payments)} card payments at the front desk")

        self.say(
            "The worker finds or creates the new students' customers, then pushes invoices "
            "(batched) and payments to QuickBooks."
        )
        self._run_worker(ledger, config)
        auto = self._show_new_customers(ledger)
        self._show_groups(ledger)

        self.say(
            f"The operator maps '{UNMAPPED_CODE}' to item 3 (Fuel surcharge) "
            "and presses Retry Failed."
        )
        ledger.map_charge(SCHOOL, UNMAPPED_CODE, "3", operator="office")
        outcome = retry_failed(
            ledger, SCHOOL, reason="missing_mapping", ids=(), operator="office"
        )  # what `flightledger retry-failed --reason missing_mapping` does
        self.note(
            f"requeued {outcome.requeued}, skipped {outcome.skipped}, "
            f"blocked {len(outcome.blocked)}"
        )

        self.say("The worker runs again.")
        counts = self._run_worker(ledger, config)
        invoices = simulator.invoices()
        qbo_payments = simulator.payments()
        doc_numbers = {i["doc_number"] for i in invoices}
        self.note(
            f"QuickBooks now holds {len(invoices)} invoices ({len(doc_numbers)} distinct "
            f"DocNumbers) for {len(flights)} flights, and {len(qbo_payments)} payments."
        )
        result = DemoResult(
            db_url=db_url,
            flights=len(flights),
            payments=len(payments),
            invoices_in_qbo=len(invoices),
            payments_in_qbo=len(qbo_payments),
            synced=counts.get("synced", 0),
            seconds=0.0,
            customers_created=auto["created"],
            customers_matched=auto["matched"],
        )
        verdict = "[green]all synced[/green]" if result.ok else "[red]NOT all synced[/red]"
        self.console.print(f"\n{verdict}: {result.synced} financial events synced.")
        self._show_next_steps(db_url, flights[-1]["flight_id"])
        return result

    def _run_worker(self, ledger: FlightLedger, config: Config) -> dict[str, int]:
        runtime = build_worker(ledger, config)
        try:
            summary = runtime.loop.run(until_idle=True, max_seconds=40).as_dict()
        finally:
            runtime.close()
        shown = {k: v for k, v in summary.items() if k not in ("passes", "seconds") and v}
        self.note("view: " + ", ".join(f"{k} {v}" for k, v in shown.items()))
        return {k: int(v) for k, v in summary.items() if k not in ("seconds",)}

    def _show_new_customers(self, ledger: FlightLedger) -> dict[str, int]:
        """What auto-customers recorded (`flightledger history mappings`): how many each way."""
        counts = {"created": 0, "matched": 0}
        for entry in ledger.history(SCHOOL, "mappings"):
            if entry.type != "StudentAutoMapped":
                continue
            data = entry.data
            how = "created" if data["how"] == "created" else "matched by name"
            self.note(
                f"new student {data['student_id']} -> QuickBooks customer {data['customer_id']} "
                f"'{data['display_name']}' ({how}, by {entry.actor}): invoiced with no manual "
                "mapping"
            )
            counts[str(data["how"])] = counts.get(str(data["how"]), 0) + 1
        return counts

    def _show_groups(self, ledger: FlightLedger) -> None:
        from adapters.views import open_view

        view = open_view(Config(db_url=self._db_url()).database)
        try:
            groups = view.reason_groups(SCHOOL)
        finally:
            view.close()
        if not groups:
            self.note("nothing needs a person")
            return
        self.note("Action Required, grouped by reason (`flightledger events --group-by reason`):")
        self.console.print(
            table(
                ["reason_code", "count", "example", "fix"],
                [
                    [g.reason_code, g.count, g.example, fix_for(g.reason_code, g.missing)]
                    for g in groups
                ],
            )
        )

    def _db_url(self) -> str:
        return f"sqlite:///{self.workdir / 'flightledger.db'}"

    def _show_next_steps(self, db_url: str, flight_id: str) -> None:
        lines = [
            "",
            "Next: look at what happened. The demo's log stays in place:",
            f"  export FLIGHTLEDGER_DB={db_url}",
            "  .venv/bin/flightledger serve                     "
            "# dashboard at http://127.0.0.1:8000",
            f"  .venv/bin/flightledger history {flight_id}            # one invoice's whole story",
            "  .venv/bin/flightledger history mappings          # who mapped what (system too)",
            "  .venv/bin/flightledger events --group-by reason  # the view, grouped",
            "  .venv/bin/flightledger audit export | head       # the log, for auditors",
            "  .venv/bin/flightledger audit verify              # tamper check",
        ]
        for line in lines:
            self.console.print(line, markup=False, highlight=False, soft_wrap=True)


def run_demo(workdir: Path, console: Console | None = None, flights: int = 24) -> DemoResult:
    """Run the demo in workdir (recreated) and return its result."""
    return Demo(workdir, console or Console(highlight=False), flights).run()


__all__ = ["DemoResult", "RecordKind", "run_demo"]
