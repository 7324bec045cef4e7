"""Helpers for end-to-end runs against the QBO simulator: CLI environment, CLI calls, workers.

The CLI runs either in this process (typer's CliRunner, fast) or as the real executable
(subprocess); both reach the simulator over loopback HTTP.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import requests
from typer.testing import CliRunner

from adapters.vault import KEY_ENV
from qbo_simulator import QboSimulator
from tests.factories import jsonl
from workers.cli import _register_commands, app
from workers.logging import configure_logging

EXE = str(Path(sys.executable).with_name("flightledger"))
CHARGE_ITEMS = {"aircraft_rental": "1", "instructor_dual": "2"}


def new_secret_key() -> str:
    """A fresh token-vault key (32 random bytes, url-safe base64)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def cli_env(
    sim: QboSimulator,
    db_url: str,
    school: str = "default",
    *,
    minute_seconds: float = 0.6,
    timeout: float = 2.0,
    secret_key: str | None = None,
) -> dict[str, str]:
    """FLIGHTLEDGER_* variables for CLI runs against a simulator and a database."""
    return {
        "FLIGHTLEDGER_DB": db_url,
        "FLIGHTLEDGER_SCHOOL": school,
        "FLIGHTLEDGER_QBO_ENVIRONMENT": "simulator",
        "FLIGHTLEDGER_QBO_SIMULATOR_URL": sim.url,
        "FLIGHTLEDGER_QBO_MINUTE_SECONDS": str(minute_seconds),
        "FLIGHTLEDGER_QBO_TIMEOUT": str(timeout),
        KEY_ENV: secret_key or new_secret_key(),
        "OAUTHLIB_INSECURE_TRANSPORT": "1",  # plain http to the loopback simulator only
    }


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
