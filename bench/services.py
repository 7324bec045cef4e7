"""Running flightledger as it runs in production, for the latency benches: `serve` and
long-running `worker` subprocesses, schools connected and mapped through the CLI's own code,
flights POSTed over HTTP at a fixed rate, and the simulator's invoice creation times."""

from __future__ import annotations

import base64
import os
import signal
import socket
import statistics
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

import requests

from bench import common
from qbo_simulator import QboSimulator

CHARGE_ITEMS = {"aircraft_rental": "1", "instructor_dual": "2", "fuel_surcharge": "3"}


def free_port() -> int:
    """A port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def bench_env(url: str, sim: QboSimulator) -> dict[str, str]:
    """The environment serve, worker and CLI get: database, simulator, a fresh vault key."""
    return {
        **os.environ,
        "FLIGHTLEDGER_DB": url,
        "FLIGHTLEDGER_QBO_ENVIRONMENT": "simulator",
        "FLIGHTLEDGER_QBO_SIMULATOR_URL": sim.url,
        "FLIGHTLEDGER_SECRET_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "OAUTHLIB_INSECURE_TRANSPORT": "1",  # plain http to the loopback simulator only
    }


def prepare_schools(
    url: str, env: dict[str, str], schools: Sequence[str], students: int
) -> dict[str, str]:
    """Connect each school to its own simulator realm and map it (the code the CLI's
    `connection connect` / `mappings set` / `keys create` run); its records:write key."""
    from workers.bootstrap import open_ledger
    from workers.qbo import ConnectionService, open_vault, qbo_settings_from_env

    ledger = open_ledger(url)
    keys: dict[str, str] = {}
    try:
        vault = open_vault(url, env, create_key=False)
        service = ConnectionService(ledger, vault, qbo_settings_from_env(env, vault))
        for school in schools:
            if not service.connect_simulator(school, "bench").ok:
                raise RuntimeError(f"could not connect {school} to the simulator")
            for code, item in CHARGE_ITEMS.items():
                ledger.map_charge(school, code, item, operator="bench")
            ledger.set_defaults(
                school, operator="bench", term_id="3", memo="Thanks", income_account_id="79"
            )
            for s in range(students):
                ledger.map_student(school, f"S-{s}", str(1 + s % 20), operator="bench")
            _, text = ledger.create_api_key(
                school, name="scheduler", permissions=["records:write"], operator="bench"
            )
            keys[school] = text
    finally:
        ledger.close()
    return keys


@dataclass
class Processes:
    """serve and worker subprocesses; their stderr goes to log files."""

    env: dict[str, str]
    logs: Path
    port: int = field(default_factory=free_port)
    running: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _files: list[IO[bytes]] = field(default_factory=list)

    @property
    def base(self) -> str:
        """The serve process's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        """Start `flightledger ARGS` (stderr to LOGS/NAME.log)."""
        log = (self.logs / f"{name}.log").open("ab")
        self._files.append(log)
        proc = subprocess.Popen(
            [*common.flightledger_command(), *args],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=log,
            cwd=common.ROOT,
        )
        self.running.append(proc)
        return proc

    def serve(self) -> None:
        """Start `flightledger serve` and wait until /healthz answers."""
        self.spawn("serve", "serve", "--port", str(self.port))
        self.wait_until("serve to answer", self._healthy, timeout=60)

    def _healthy(self) -> bool:
        try:
            return requests.get(f"{self.base}/healthz", timeout=2).ok
        except requests.RequestException:
            return False

    def check_alive(self) -> None:
        """Raise when a subprocess has exited."""
        for proc in self.running:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{proc.args!r} exited {proc.returncode}; see the logs in {self.logs}"
                )

    def wait_until(self, what: str, condition: Any, timeout: float) -> None:
        """Poll the condition until true; raise when a process died or time ran out."""
        deadline = time.monotonic() + timeout
        while not condition():
            self.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what} (logs in {self.logs})")
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM every process, SIGKILL the ones that do not exit."""
        for proc in self.running:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.running:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        for log in self._files:
            log.close()


@contextmanager
def processes(env: dict[str, str], logs: Path) -> Iterator[Processes]:
    """Processes stopped on the way out."""
    procs = Processes(env=env, logs=logs)
    try:
        yield procs
    finally:
        procs.stop()


@dataclass(frozen=True)
class Post:
    """One flight POSTed: its DocNumber-to-be, when its answer came (epoch s), how long."""

    school: str
    doc_number: str
    answered_at: float
    seconds: float
    status: int


def post_flights(
    base: str,
    plan: Sequence[tuple[float, str, str, dict[str, Any]]],
    *,
    threads: int = 16,
) -> list[Post]:
    """POST each (offset seconds, school, key, record) at its offset from now; the answers."""
    local = threading.local()
    start = time.perf_counter()

    def one(item: tuple[float, str, str, dict[str, Any]]) -> Post:
        offset, school, key, record = item
        delay = start + offset - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        began = time.perf_counter()
        answer = session.post(
            f"{base}/api/v1/flights",
            json=record,
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )
        seconds = time.perf_counter() - began
        return Post(school, f"FL-{record['flight_id']}", time.time(), seconds, answer.status_code)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(one, plan))


def invoice_times(sim: QboSimulator) -> dict[tuple[str, str], float]:
    """(realm, DocNumber) -> the simulator's creation time of that invoice (epoch seconds)."""
    return {
        (str(row["realm"]), str(row["doc_number"])): datetime.fromisoformat(
            str(row["created_at"])
        ).timestamp()
        for row in sim.invoices()
    }


def percentile(values: Sequence[float], pct: float) -> float:
    """The pct-th percentile (nearest rank on the sorted values; pct in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    if len(ordered) == 1:
        return ordered[0]
    cuts = statistics.quantiles(ordered, n=100, method="inclusive")
    return ordered[-1] if pct >= 100 else cuts[max(0, min(98, round(pct) - 1))]


def load_average() -> str:
    """The 1/5/15-minute load averages, for the record of how busy the machine was."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.1f} / {five:.1f} / {fifteen:.1f}"


@contextmanager
def own_database(prefix: str) -> Iterator[str]:
    """A PostgreSQL database of its own (so its counters count only us), dropped afterwards."""
    import psycopg
    from psycopg import sql

    from adapters.persistence import parse_database_url

    base = common.postgres_base_url()
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    parts = urlsplit(base)
    url = urlunsplit(parts._replace(path=f"/{name}"))
    admin = parse_database_url(base).psycopg_conninfo()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


def transactions(database: str) -> int:
    """Committed + rolled-back transactions so far in one database (pg_stat_database),
    read from a connection to the base database so the reading does not count itself."""
    import psycopg

    from adapters.persistence import parse_database_url

    admin = parse_database_url(common.postgres_base_url()).psycopg_conninfo()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s",
            (database,),
        ).fetchone()
    return int(row[0]) if row else 0
