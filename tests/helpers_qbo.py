"""The one set of helpers for tests against the QBO simulator.

- Environment: sim_env (the FLIGHTLEDGER_QBO_* variables and a vault key) and cli_env (those
  plus the database and school, for CLI runs).
- In process: make_rig opens a ledger, vault and ConnectionService on a simulator (connected
  through its OAuth by default); draft / payment_draft build gateway inputs.
- Through the CLI: Cli runs `flightledger --json ...` in this process (typer's CliRunner, fast)
  or as the real executable (subprocess); connect_via_cli, map_via_cli, record_via_cli,
  spawn_worker drive it. Both reach the simulator over loopback HTTP.
- Checks: doc_numbers, assert_one_invoice_each.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

import requests
from typer.testing import CliRunner

from adapters.quickbooks.gateway import QuickBooksGateway
from adapters.vault import KEY_ENV, TokenVault
from domain.application import FlightLedger
from domain.ports import FixedClock, InvoiceDraft, InvoiceLine, PaymentDraft
from qbo_simulator import QboSimulator
from tests.factories import jsonl
from workers.bootstrap import open_ledger
from workers.cli import _register_commands, app
from workers.logging import configure_logging
from workers.qbo import ConnectionService, gateway_for, open_vault, qbo_settings_from_env

EXE = str(Path(sys.executable).with_name("flightledger"))
CHARGE_ITEMS = {"aircraft_rental": "1", "instructor_dual": "2"}
SCHOOL = "sunrise"  # make_rig's school
TEST_KEY = base64.urlsafe_b64encode(bytes(range(32))).decode()  # a fixed vault key


def new_secret_key() -> str:
    """A fresh token-vault key (32 random bytes, url-safe base64)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


# --- environment --------------------------------------------------------------------------------


def sim_env(
    sim: QboSimulator | str,
    minute_seconds: str = "0.6",
    *,
    timeout: str = "1",
    secret_key: str = TEST_KEY,
) -> dict[str, str]:
    """FLIGHTLEDGER_* variables pointing at a running simulator (or its URL), with a vault key."""
    return {
        "FLIGHTLEDGER_QBO_ENVIRONMENT": "simulator",
        "FLIGHTLEDGER_QBO_SIMULATOR_URL": sim if isinstance(sim, str) else sim.url,
        "FLIGHTLEDGER_QBO_MINUTE_SECONDS": minute_seconds,
        "FLIGHTLEDGER_QBO_TIMEOUT": timeout,
        KEY_ENV: secret_key,
    }


def cli_env(
    sim: QboSimulator,
    db_url: str,
    school: str = "default",
    *,
    minute_seconds: float = 0.6,
    timeout: float = 2.0,
    secret_key: str | None = None,
) -> dict[str, str]:
    """FLIGHTLEDGER_* variables for CLI runs against a simulator and a database (a fresh key)."""
    return {
        "FLIGHTLEDGER_DB": db_url,
        "FLIGHTLEDGER_SCHOOL": school,
        **sim_env(
            sim,
            str(minute_seconds),
            timeout=str(timeout),
            secret_key=secret_key or new_secret_key(),
        ),
        "OAUTHLIB_INSECURE_TRANSPORT": "1",  # plain http to the loopback simulator only
    }


# --- in process: a connected ConnectionService and gateway inputs ------------------------------


@dataclass
class Rig:
    """A ledger, vault and connection service wired to a simulator."""

    ledger: FlightLedger
    vault: TokenVault
    service: ConnectionService
    clock: FixedClock

    def gateway(self, max_attempts: int = 3) -> QuickBooksGateway:
        """A fresh gateway for the school."""
        gw = gateway_for(
            self.ledger, self.vault, self.service.settings, SCHOOL, oauth=self.service.oauth
        )
        gw.session.max_attempts = max_attempts
        return gw


def make_rig(
    db_url: str,
    sim: QboSimulator,
    clock: FixedClock,
    *,
    connect: bool = True,
    extra_env: dict[str, str] | None = None,
) -> Rig:
    """Open everything and (by default) connect the school through the simulator's OAuth."""
    env = {**sim_env(sim), **(extra_env or {})}
    ledger = open_ledger(db_url, clock=clock)
    vault = open_vault(db_url, env, create_key=False)
    service = ConnectionService(ledger, vault, qbo_settings_from_env(env, vault))
    if connect:
        check = service.connect_simulator(SCHOOL, "ana")
        assert check.ok, check.message
    return Rig(ledger, vault, service, clock)


def draft(n: int, customer: str = "1", item: str = "1", total: str = "198.00") -> InvoiceDraft:
    """An invoice draft with its own event id and DocNumber FL-<n>."""
    event_id = uuid.uuid5(uuid.NAMESPACE_URL, f"flight-{n}")
    amount = Decimal(total)
    return InvoiceDraft(
        event_id=event_id,
        request_id=str(event_id),
        doc_number=f"FL-{n}",
        customer_id=customer,
        txn_date=date(2026, 11, 20),
        lines=(InvoiceLine(item, "Aircraft rental", Decimal("1"), amount, amount),),
        total=amount,
        term_id="1",
        customer_memo="Thank you",
    )


def payment_draft(invoice_id: str) -> PaymentDraft:
    """A payment draft linked to an invoice."""
    event_id = uuid.uuid5(uuid.NAMESPACE_URL, f"payment-{invoice_id}")
    return PaymentDraft(
        event_id=event_id,
        request_id=str(event_id),
        customer_id="1",
        txn_date=date(2026, 11, 20),
        amount=Decimal("198.00"),
        deposit_account_id="35",
        payment_method_id="2",
        linked_invoice_id=invoice_id,
    )


# --- through the CLI ----------------------------------------------------------------------------


class CliResult(NamedTuple):
    """Exit code, the parsed JSON on stdout (None when empty) and stderr."""

    code: int
    data: Any
    stderr: str


def _parse(stdout: str, stderr: str) -> Any:
    assert "Traceback" not in stdout + stderr, stderr[-2000:]
    return json.loads(stdout) if stdout.strip() else None


@dataclass
class Cli:
    """Runs `flightledger --json ...` with a fixed environment, in process or as a subprocess."""

    env: dict[str, str]
    subprocess: bool = False
    runner: CliRunner = field(default_factory=CliRunner)

    def __post_init__(self) -> None:
        if not self.subprocess:
            configure_logging()  # as main() does: logs to stderr, stdout carries only the JSON
            _register_commands()

    def full(self, *args: str, school: str | None = None) -> CliResult:
        """Run one command: (exit code, JSON, stderr)."""
        env = {**self.env, **({"FLIGHTLEDGER_SCHOOL": school} if school else {})}
        argv = ["--json", *args]
        if self.subprocess:
            done = subprocess.run(
                [EXE, *argv],
                capture_output=True,
                text=True,
                timeout=180,
                check=False,
                env={**os.environ, **env},
            )
            return CliResult(done.returncode, _parse(done.stdout, done.stderr), done.stderr)
        result = self.runner.invoke(app, argv, env=env)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return CliResult(result.exit_code, _parse(result.stdout, result.stderr), result.stderr)

    def __call__(self, *args: str, school: str | None = None) -> tuple[int, Any]:
        """Run one command: (exit code, JSON)."""
        code, data, _ = self.full(*args, school=school)
        return code, data

    def ok(self, *args: str, school: str | None = None) -> Any:
        """Run one command that must succeed; its JSON."""
        code, data, stderr = self.full(*args, school=school)
        assert code == 0, f"{args}: exit {code}: {stderr[-1500:]}"
        return data


def run_cli(env: Mapping[str, str], *args: str) -> tuple[int, Any]:
    """The real executable with --json: (exit code, parsed stdout)."""
    return Cli(dict(env), subprocess=True)(*args)


def connect_via_cli(cli: Cli, school: str | None = None) -> dict[str, Any]:
    """The OAuth flow through the CLI: connect, follow the authorize URL, callback."""
    started = cli.ok("connection", "connect", school=school)
    answer = requests.get(started["authorization_url"], allow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.text[:300]
    done: dict[str, Any] = cli.ok(
        "connection", "callback", answer.headers["Location"], school=school
    )
    assert done["ok"], done
    return done


def map_via_cli(
    cli: Cli,
    charges: Mapping[str, str],
    students: Mapping[str, str],
    school: str | None = None,
) -> None:
    """Map charge codes to items, students to customers, and set the defaults."""
    for code, item in charges.items():
        cli.ok("mappings", "set", "charge", code, "--item", item, school=school)
    for student, customer in students.items():
        cli.ok("mappings", "set", "student", student, "--customer", customer, school=school)
    cli.ok(
        "mappings", "set", "defaults", "--term", "3", "--memo", "Thanks",
        "--income-account", "79", school=school,
    )  # fmt: skip


def record_via_cli(
    cli: Cli, path: Path, records: Sequence[dict[str, Any]], school: str | None = None
) -> dict[str, Any]:
    """Write flight-ended records to a JSONL file and record them; the CLI's answer."""
    path.write_text(jsonl(list(records)))
    done: dict[str, Any] = cli.ok("record", "flight-ended", str(path), school=school)
    assert done["recorded"] == len(records), done
    return done


def spawn_worker(
    env: Mapping[str, str], *args: str, log_path: Path | None = None
) -> subprocess.Popen[str]:
    """Start `flightledger --json worker ...` as a subprocess (stderr to a file if given)."""
    stderr: Any = open(log_path, "a") if log_path else subprocess.DEVNULL  # noqa: SIM115 - closed below
    try:
        return subprocess.Popen(
            [EXE, "--json", "worker", *args],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env={**os.environ, **env},
        )
    finally:
        if log_path:
            stderr.close()


# --- checks -------------------------------------------------------------------------------------


def doc_numbers(invoices: Iterable[dict[str, Any]]) -> list[str]:
    """The DocNumbers of simulator invoices."""
    return [str(i["doc_number"]) for i in invoices]


def assert_one_invoice_each(invoices: list[dict[str, Any]], expected_docs: set[str]) -> None:
    """Exactly one simulator invoice per expected DocNumber, and nothing else."""
    docs = doc_numbers(invoices)
    duplicates = sorted(d for d, n in Counter(docs).items() if n > 1)
    assert not duplicates, f"{len(duplicates)} duplicated DocNumbers, e.g. {duplicates[:5]}"
    assert set(docs) == expected_docs
    assert len(invoices) == len(expected_docs)
