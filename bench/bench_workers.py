"""Throughput against the number of worker processes when many schools are active (PostgreSQL).

Each school has its own QBO company (realm) in the simulator, which answers every API request
after a fixed delay standing in for QuickBooks' own latency. The same set-up (schools connected
through OAuth, mapped, flights recorded) is synced by 1, 2 and 4 `flightledger worker
--until-idle` processes; schools are shared out through PostgreSQL advisory locks.
"""

from __future__ import annotations

import base64
import os
import subprocess
import time
from dataclasses import dataclass

from bench import common
from domain.records import parse_flight_ended
from qbo_simulator import QboSimulator, SimulatorConfig

WORKER_COUNTS = (1, 2, 4)
LATENCY_SECONDS = 0.25  # QuickBooks answers a batch create in a fraction of a second or more


@dataclass(frozen=True)
class Round:
    """One measured run."""

    workers: int
    invoices: int
    seconds: float

    @property
    def per_second(self) -> float:
        """Invoices created per second of wall time."""
        return self.invoices / self.seconds


def _prepare(url: str, sim: QboSimulator, env: dict[str, str], schools: int, flights: int) -> int:
    from workers.bootstrap import open_ledger
    from workers.qbo import ConnectionService, open_vault, qbo_settings_from_env

    ledger = open_ledger(url)
    try:
        vault = open_vault(url, env, create_key=False)
        service = ConnectionService(ledger, vault, qbo_settings_from_env(env, vault))
        total = 0
        for s in range(schools):
            school = f"school-{s:02d}"
            if not service.connect_simulator(school, "bench").ok:
                raise RuntimeError(f"could not connect {school} to the simulator")
            ledger.map_charge(school, "aircraft_rental", "1", operator="bench")
            ledger.map_charge(school, "instructor_dual", "2", operator="bench")
            ledger.map_charge(school, "fuel_surcharge", "3", operator="bench")
            ledger.set_defaults(
                school, operator="bench", term_id="3", memo="Thanks", income_account_id="79"
            )
            records = [parse_flight_ended(common.flight_record(n)) for n in range(flights)]
            for student in sorted({r.student.id for r in records}):
                customer = str(1 + int(student.removeprefix("S-")) % 20)
                ledger.map_student(school, student, customer, operator="bench")
            total += ledger.record_batch(school, records, actor="bench").recorded
        return total
    finally:
        ledger.close()


def _round(workers: int, schools: int, flights: int) -> Round:
    config = SimulatorConfig(one_realm_per_connection=True)
    with common.postgres_schema("bench_workers") as url, QboSimulator(config) as sim:
        env = {
            **os.environ,
            "FLIGHTLEDGER_DB": url,
            "FLIGHTLEDGER_QBO_ENVIRONMENT": "simulator",
            "FLIGHTLEDGER_QBO_SIMULATOR_URL": sim.url,
            "FLIGHTLEDGER_SECRET_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        }
        expected = _prepare(url, sim, env, schools, flights)
        sim.set_faults(latency_seconds=LATENCY_SECONDS)
        command = [*common.flightledger_command(), "worker", "--until-idle", "--max-seconds"]
        started = time.perf_counter()
        processes = [
            subprocess.Popen(
                [*command, "600"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
            for _ in range(workers)
        ]
        for process in processes:
            _, err = process.communicate(timeout=900)
            if process.returncode != 0:
                raise RuntimeError(f"worker failed: {err.decode()[-500:]}")
        seconds = time.perf_counter() - started
        created = len(sim.invoices())
        if created != expected:
            raise RuntimeError(f"{created} invoices for {expected} flights")
        return Round(workers=workers, invoices=created, seconds=seconds)


def run(quick: bool = False) -> str:
    """Markdown section: invoices/s with 1, 2 and 4 workers over many schools."""
    schools, flights = (4, 3) if quick else (20, 30)
    lines = [
        "## Workers in parallel (`flightledger worker`, PostgreSQL, many schools)",
        "",
        f"{schools} schools, each its own QuickBooks company in the simulator, {flights} flights "
        f"each ({schools * flights} invoices); the simulator answers every request after "
        f"{LATENCY_SECONDS} s. Wall time from starting the worker processes until the last one "
        "exits with nothing left to do.",
        "",
    ]
    reason = common.postgres_unavailable()
    if reason is not None:
        return "\n".join([*lines, f"Skipped: {reason}", ""])
    rounds = [_round(n, schools, flights) for n in WORKER_COUNTS]
    base = rounds[0].per_second
    lines += [
        "| workers | invoices | seconds | invoices/s | vs 1 worker |",
        "|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r.workers} | {r.invoices} | {r.seconds:.1f} | {r.per_second:.1f} | "
        f"{r.per_second / base:.2f}x |"
        for r in rounds
    ]
    lines += ["", f"Machine: {common.machine()}.", ""]
    return "\n".join(lines)
