"""Many schools at once: flights to invoices within seconds, and what an idle school costs.

Each school is its own QuickBooks company (realm) in the simulator, connected through OAuth and
mapped by the code the CLI runs, with a `records:write` API key. Each school's flights are
POSTed to `flightledger serve` at random moments over the window; two long-running
`flightledger worker` subprocesses sync them while the simulator answers every request after
200 ms. Then nothing happens for a while and the database's own transaction counter
(pg_stat_database, in a database of the bench's own) tells what the idle schools cost.
BENCH_SCHOOLS (default 500), BENCH_SCHOOLS_FLIGHTS (20), BENCH_SCHOOLS_SECONDS (120) and
BENCH_IDLE_SECONDS (60) change the sizes (BENCH_SCHOOLS_LOGS: a directory that keeps the
processes' logs); --quick runs 3 schools for a few seconds.
"""

from __future__ import annotations

import os
import random
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from bench import common, services
from qbo_simulator import QboSimulator, SimulatorConfig

QBO_LATENCY = 0.2
WORKERS = 2
GOAL_SECONDS = 10.0


def _sizes(quick: bool) -> tuple[int, int, float, float]:
    if quick:
        return 3, 3, 3.0, 3.0
    return (
        int(os.environ.get("BENCH_SCHOOLS", "500")),
        int(os.environ.get("BENCH_SCHOOLS_FLIGHTS", "20")),
        float(os.environ.get("BENCH_SCHOOLS_SECONDS", "120")),
        float(os.environ.get("BENCH_IDLE_SECONDS", "60")),
    )


@contextmanager
def _log_dir() -> Iterator[str]:
    """BENCH_SCHOOLS_LOGS (kept afterwards) or a temporary directory for the processes' logs."""
    kept = os.environ.get("BENCH_SCHOOLS_LOGS")
    if kept:
        Path(kept).mkdir(parents=True, exist_ok=True)
        yield kept
        return
    with tempfile.TemporaryDirectory(prefix="bench_schools_") as logs:
        yield logs


TICKS = os.sysconf("SC_CLK_TCK")


def _process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far; 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def _machine_busy() -> float:
    """CPU seconds all cores spent busy so far (every process on the machine)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / TICKS


def _cpu_snapshot(procs: services.Processes, database: str) -> dict[str, float]:
    """CPU seconds so far of serve, each worker, this process (the simulator and the load
    generator), the PostgreSQL backends connected to the bench's database, the whole machine."""
    import psycopg

    from adapters.persistence import parse_database_url

    snapshot = {"wall": time.monotonic(), "machine": _machine_busy()}
    for n, proc in enumerate(procs.running):
        snapshot["serve" if n == 0 else f"worker {n}"] = _process_cpu(proc.pid)
    snapshot["simulator + load generator"] = _process_cpu(os.getpid())
    admin = parse_database_url(common.postgres_base_url()).psycopg_conninfo()
    with psycopg.connect(admin, autocommit=True) as conn:
        pids = [
            int(row[0])
            for row in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s", (database,)
            ).fetchall()
        ]
    snapshot["PostgreSQL backends"] = sum(_process_cpu(pid) for pid in pids)
    snapshot["backends"] = len(pids)
    return snapshot


def _cpu_lines(before: dict[str, float], after: dict[str, float], invoices: int) -> list[str]:
    """A table of CPU used from the first POST to the last invoice, per process."""
    wall = after["wall"] - before["wall"]
    cores = os.cpu_count() or 1
    rows = [
        f"CPU from the first POST to the last invoice ({wall:.0f} s; {cores} cores = "
        f"{cores * wall:.0f} CPU s available):",
        "",
        "| process | CPU s | share of one core | CPU ms per invoice |",
        "|---|---:|---:|---:|",
    ]
    names = [k for k in after if k not in ("wall", "machine", "backends")]
    for name in [*names, "machine"]:
        used = after[name] - before.get(name, 0.0)
        label = "whole machine (other work included)" if name == "machine" else name
        rows.append(
            f"| {label} | {used:.1f} | {100 * used / wall:.0f} % | {1000 * used / invoices:.1f} |"
        )
    rows += [
        "",
        f"PostgreSQL: the backends connected to the bench's database at the end "
        f"({after['backends']:.0f}; connections closed meanwhile are not counted).",
        "",
    ]
    return rows


def _transactions(database: str) -> int:
    """services.transactions, tried again while PostgreSQL has no connection slot free (its
    100 are shared with other work on this machine)."""
    import psycopg

    for attempt in range(20):
        try:
            return services.transactions(database)
        except psycopg.OperationalError:
            if attempt == 19:
                raise
            time.sleep(0.5)
    raise AssertionError("unreachable")


def run(quick: bool = False) -> str:
    """Markdown section: share of invoices within 10 s, the slowest, and idle queries/s."""
    schools, flights, window, idle = _sizes(quick)
    lines = [
        f"## Many schools (`serve` + {WORKERS} `worker`s, PostgreSQL)",
        "",
        f"{schools} schools, each its own QuickBooks company in the simulator, {flights} flights "
        f"each ({schools * flights} in all) POSTed at random moments over {window:g} s; "
        f"{WORKERS} long-running `flightledger worker` subprocesses; the simulator answers every "
        f"request after {QBO_LATENCY * 1000:.0f} ms. Flight to invoice = from the POST's answer "
        "to the simulator's creation time of the invoice; goal: every one within "
        f"{GOAL_SECONDS:g} s. Idle cost: transactions committed in the bench's own database "
        f"(pg_stat_database) over {idle:g} s with nothing happening, serve and both workers "
        "running. `BENCH_SCHOOLS`, `BENCH_SCHOOLS_FLIGHTS`, `BENCH_SCHOOLS_SECONDS` and "
        "`BENCH_IDLE_SECONDS` change the sizes.",
        "",
    ]
    reason = common.postgres_unavailable()
    if reason is not None:
        return "\n".join([*lines, f"Skipped: {reason}", ""])
    names = [f"school-{s:03d}" for s in range(schools)]
    rng = random.Random(11)
    load_before = services.load_average()
    with (
        services.own_database("bench_schools") as url,
        QboSimulator(SimulatorConfig(one_realm_per_connection=True)) as sim,
        _log_dir() as logs,
    ):
        database = urlsplit(url).path.lstrip("/")
        env = services.bench_env(url, sim)
        started = time.perf_counter()
        keys = services.prepare_schools(url, env, names, students=min(500, flights))
        setup_seconds = time.perf_counter() - started
        sim.set_faults(latency_seconds=QBO_LATENCY)
        plan = []
        for s, school in enumerate(names):
            for n in range(flights):
                record = {**common.flight_record(n), "flight_id": f"F-{s:03d}-{n:03d}"}
                plan.append((rng.uniform(0, window), school, keys[school], record))
        plan.sort(key=lambda item: item[0])
        with services.processes(env, Path(logs)) as procs:
            procs.serve()
            for w in range(WORKERS):
                procs.spawn(f"worker{w}", "worker")
            time.sleep(2.0)  # the workers are up and idle before the first flight
            cpu_before = _cpu_snapshot(procs, database)
            posts = services.post_flights(procs.base, plan)
            bad = [p for p in posts if p.status != 201]
            if bad:
                raise RuntimeError(f"{len(bad)} POSTs refused, e.g. HTTP {bad[0].status}")
            wanted = {p.doc_number for p in posts}

            # a count, not the invoice rows: the simulator shares this process (and its GIL)
            procs.wait_until(
                "every invoice in the simulator",
                lambda: sim.invoice_count() >= len(wanted),
                timeout=300 + window,
            )
            cpu_after = _cpu_snapshot(procs, database)
            times = {doc: at for (_, doc), at in services.invoice_times(sim).items()}
            missing = wanted - set(times)
            if missing:
                raise RuntimeError(f"{len(missing)} invoices missing, e.g. {sorted(missing)[0]}")
            time.sleep(5.0 if not quick else 1.0)  # let the last passes and the projector settle
            before = _transactions(database)
            time.sleep(idle)
            after = _transactions(database)
            procs.check_alive()
    load_after = services.load_average()
    delays = [times[p.doc_number] - p.answered_at for p in posts]
    within = sum(1 for d in delays if d <= GOAL_SECONDS)
    per_second = (after - before) / idle
    sized = "" if quick or schools == 500 else f"This run: BENCH_SCHOOLS={schools} (default 500). "
    lines += [
        "| measured | value | goal |",
        "|---|---:|---:|",
        f"| invoices within {GOAL_SECONDS:g} s of their flight | {within} of {len(delays)} "
        f"({100 * within / len(delays):.1f} %) | 100 % |",
        f"| flight to invoice p50 / p99 | {services.percentile(delays, 50):.2f} s / "
        f"{services.percentile(delays, 99):.2f} s | |",
        f"| slowest flight to invoice | {max(delays):.2f} s | <= {GOAL_SECONDS:g} s |",
        f"| idle: transactions/s, all {schools} schools | {per_second:.2f} | |",
        f"| idle: transactions/s per school | {per_second / schools:.4f} | ~0 |",
        "",
        *_cpu_lines(cpu_before, cpu_after, len(delays)),
        f"{sized}Setting up {schools} schools (OAuth connect, mappings, key) took "
        f"{setup_seconds:.0f} s. "
        f"Load average (1/5/15 min) before: {load_before}, after: {load_after} on "
        f"{common.machine()} (shared with other work).",
        "",
        "Before the worker changes of issue 11 (same bench, 50 schools, load average 9): "
        "992 of 1000 within 10 s, p50 2.08 s / p99 9.87 s, slowest 12.22 s; idle 207 "
        "transactions/s, 4.14 per school.",
        "",
        "Where the idle cost went (analysis of this code): each worker used to ask the view, "
        "every 0.5 s, whether each school that ever had a flight had unsettled rows: one query "
        "per school per round, about 4 a second per school for two workers. Now a round is one "
        "query for the schools with unsettled rows (`schools_with_work`, a partial index), and "
        "a worker listening for NOTIFY sleeps up to 10 s when idle, woken by new log events. "
        "What is left is fixed, whatever the number of schools: each worker's projector "
        "catch-up and query every 10 s and heartbeat every 10 s, and in `serve` the webhook "
        "deliverer and the API/dashboard view catch-up. Measured on 2026-12-02 with the same "
        "code paths: 10.1 transactions/s with 50 schools, 11.5 with 100, 5.2-18.0 with 500 "
        "(60 s windows, load 3-15; the spread follows the machine's other work, not the "
        "schools): an idle school adds no measurable queries, and the per-school figure above "
        "is the fixed cost divided by the schools.",
        "",
        "Flight to invoice, what was changed and measured with 500 schools (10,000 flights "
        "over 120 s, 83 a second; each line one run; the first four on 2026-12-02 06:00-06:30 "
        "with the machine shared with other work, load average 6-19):",
        "",
        "| code | within 10 s | p50 / p99 | slowest |",
        "|---|---:|---:|---:|",
        "| 4 pass threads per worker (each with its own lock connection), a new vault "
        "connection per token read | 250 (2.5 %) | 159.7 s / 404.0 s | 438.2 s |",
        "| 16 pass threads sharing one lock connection, vault on one kept connection | "
        "6,732 (67.3 %) | 7.94 s / 20.64 s | 26.28 s |",
        "| + group commit of the log's saves | 5,273 (52.7 %) | 9.52 s / 27.78 s | 33.50 s |",
        "| + view pool 6 per worker, main of 06:03 | 3,727 (37.3 %) | "
        "12.42 s / 30.07 s | 35.15 s |",
        "| main of 06:28 (a3b9ad2), the machine otherwise quiet (load 1.5 before, 3.3 after) | "
        "6,246 (62.5 %) | 8.31 s / 19.88 s | 23.41 s |",
        "| + serve's CPU per POST, one wave of calls per pass, the pass's reads (the view once, "
        "the log once), main of 2026-12-02 14:51 (997a685), quiet (load 1.3 before, 1.9 "
        "after) | 10,000 (100 %) | 1.34 s / 4.33 s | 6.09 s |",
        "| + a worker keeps a school whose realm's budget is busy (8e7b1f4), 15:38, load 1.2 -> "
        "3.1 | 9,928 (99.3 %) | 2.91 s / 9.79 s | 13.07 s |",
        "| 997a685 again, 15:43, load 2.4 -> 3.2 | 9,167 (91.7 %) | 2.97 s / 14.10 s | 17.20 s |",
        "| 8e7b1f4 again, 15:47, load 2.4 -> 3.0 | 9,997 (99.97 %) | 1.89 s / 7.99 s | 10.46 s |",
        "| 8e7b1f4 again, 16:00, load 0.6 -> 2.9 | 9,963 (99.6 %) | 2.06 s / 9.25 s | 13.60 s |",
        "| + a quiet school is handed back after its pass (cd2d574: kept only while its realm is "
        "busy), 16:07, load 1.2 -> 2.3 | 10,000 (100 %) | 1.40 s / 4.95 s | 6.03 s |",
        "| cd2d574 again, 16:11, load 1.7 -> 3.1 | 9,919 (99.2 %) | 2.63 s / 9.84 s | 14.99 s |",
        "",
        "The 100-school run (2,000 flights, 16.7 a second) went from 677 of 2,000 within 10 s "
        "(p50 16.95 s) with 4 pass threads to 1,998 of 2,000 (p50 0.48 s, p99 8.48 s) with 16. "
        "Between the early lines throughput rose from run to run (10,000 invoices in 211 s, "
        "189 s, then 153 s: 47, 53, 65 a second) while the share within 10 s fell: every one of "
        "those runs was below the 83 a second arriving, and how long the backlog made the last "
        "flights wait depended on the order the rounds took the schools in and on the "
        "machine's other work more than on the code.",
        "",
        "What limits it on this machine, measured: (1) CPU. The goal is met once the system "
        "keeps up with the 83 flights a second arriving, and on 2 cores that is a CPU budget: "
        "at a3b9ad2 our processes needed 24 ms of CPU per invoice (serve 6.0, each worker 5.2, "
        "PostgreSQL 4.0, simulator and load generator 3.2), 89 % of the machine for 75 "
        "invoices a second, so a backlog built up and the last flights waited 20-35 s. At "
        "997a685 they needed about 19 ms on the quiet machine (serve 3.0, each worker 3.9, "
        "PostgreSQL 5.2, simulator and load generator 2.8): "
        "serve halved (the API's pure-ASGI middleware and one threadpool hop per POST, "
        "httptools and uvloop, the webhook deliverer decoding only what a subscription wants), "
        "each worker a quarter less (a pass reads the view once and the log once for all its "
        "events; one statement per table when the projector applies a batch), while "
        "PostgreSQL's share rose (4.0 -> 5.2 ms: the same work in fewer, larger statements, "
        "and the whole load now inside the 2 minutes). Then throughput matches the arrivals and "
        "no backlog forms. The margin is thin: an hour later every process, the simulator "
        "included, needed 10-20 % more CPU per invoice for the same work (21-23 ms; the "
        "machine, not the code: the simulator's share rose as much as ours), and the same "
        "code missed the goal by 833 flights (997a685 at 15:43). 8e7b1f4 kept every school "
        "until its realm's buckets had refilled (most quiet schools through the holder's next "
        "round); cd2d574 keeps only a busy realm's school. Whether that moved the figures "
        "cannot be told from these runs: runs of one commit ranged from 99.2 % to 100 % "
        "within 10 s (cd2d574: 100 % at 16:07 with the simulator's own CPU per invoice at 2.7 "
        "ms, 99.2 % at 16:11 with it at 3.3 ms), as the machine's speed moved. So on this "
        "machine the goal is met when it is quiet and missed by under 1 % of the flights when "
        "it is 10-20 % slower. The next CPU to take "
        "out, from a py-spy profile of a worker in this bench (10 % of its samples): the "
        "token-vault reads, one when the gateway factory checks the school's realm and one per "
        "QuickBooks call when the session takes the current tokens (a query and a decryption "
        "each); and each pass's lock release waiting its turn on the worker's one lock "
        "connection (7 %). "
        "(2) The log's write lock: the event library takes LOCK TABLE ... IN EXCLUSIVE MODE for "
        "every save, held through its commit's WAL flush (a durable commit here: 4.4 ms p50, "
        "27 ms p90 under load); before group commit about 20 connections at a time waited on "
        "it (pg_stat_activity samples), after it about 0.2-0.7. (3) Passes wait on QuickBooks "
        "(200 ms a call) and on PostgreSQL: a worker needs as many pass threads as invoices a "
        "second times a pass's duration (16 each).",
        "",
        "The 500-school run of 2026-12-01 23:55 UTC that did not finish (about 3,900 invoice "
        "creates answered HTTP 500 within four seconds, 242 realm circuits open): the "
        "simulator checked whether a client had hung up with select(), which raises ValueError "
        "for a socket descriptor above 1023; two workers keep a keep-alive connection per realm "
        "(about 1,000), so every request on a later socket failed. It uses poll() now "
        "(tests/integration/test_simulator_many_connections.py).",
        "",
    ]
    return "\n".join(lines)
