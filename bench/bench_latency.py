"""Flight-to-invoice latency through the HTTP API (PostgreSQL, one long-running worker).

Flights are POSTed at a fixed rate to `flightledger serve`; one `flightledger worker` subprocess,
started before the first flight and left running, syncs them to the simulator, which answers
every QuickBooks request after 100 ms. Latency: from the POST's answer to the simulator's own
creation time of the invoice. Rate and length: BENCH_LATENCY_RATE (flights/s, default 20) and
BENCH_LATENCY_SECONDS (default 120); --quick posts at 5/s for 5 s.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench import common, services
from qbo_simulator import QboSimulator, SimulatorConfig

QBO_LATENCY = 0.1
GOAL_P50, GOAL_P99, GOAL_POST_P99 = 0.25, 1.0, 0.05


def _settings(quick: bool) -> tuple[float, float, list[int]]:
    if quick:
        return 5.0, 5.0, [2]
    rate = float(os.environ.get("BENCH_LATENCY_RATE", "20"))
    seconds = float(os.environ.get("BENCH_LATENCY_SECONDS", "120"))
    schools = [int(n) for n in os.environ.get("BENCH_LATENCY_SCHOOLS", "1,10").split(",")]
    return rate, seconds, schools


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


@dataclass(frozen=True)
class Round:
    """One measured run: the POST and flight-to-invoice latencies, in seconds."""

    schools: int
    post: list[float]
    sync: list[float]
    load: str
    serve_cpu: float  # CPU seconds the serve process spent per POST (its request and delivery
    # threads; Linux /proc), steadier than the latency on a shared machine


def _round(rate: float, seconds: float, schools: int) -> Round:
    count = max(1, round(rate * seconds))
    names = [f"school-{s:02d}" for s in range(schools)]
    students = min(500, count)
    load_before = services.load_average()
    with (
        common.postgres_schema("bench_latency") as url,
        QboSimulator(SimulatorConfig(one_realm_per_connection=True)) as sim,
        tempfile.TemporaryDirectory(prefix="bench_latency_") as logs,
    ):
        env = services.bench_env(url, sim)
        keys = services.prepare_schools(url, env, names, students)
        sim.set_faults(latency_seconds=QBO_LATENCY)
        plan = []
        for n in range(count):  # the flights take turns among the schools
            school = names[n % schools]
            plan.append((n / rate, school, keys[school], common.flight_record(n)))
        with services.processes(env, Path(logs)) as procs:
            procs.serve()
            procs.spawn("worker", "worker")
            time.sleep(2.0)  # the worker is up and idle before the first flight
            serve_pid = procs.running[0].pid
            cpu_before = _cpu_seconds(serve_pid)
            posts = services.post_flights(procs.base, plan)
            serve_cpu = (_cpu_seconds(serve_pid) - cpu_before) / max(1, len(posts))
            bad = [p for p in posts if p.status != 201]
            if bad:
                raise RuntimeError(f"{len(bad)} POSTs refused, e.g. HTTP {bad[0].status}")
            wanted = {p.doc_number for p in posts}

            def created() -> dict[str, float]:
                return {doc: at for (_, doc), at in services.invoice_times(sim).items()}

            procs.wait_until(
                "every invoice in the simulator",
                lambda: wanted <= set(created()),
                timeout=300 + seconds,
            )
            times = created()
            if len(times) != count:
                raise RuntimeError(f"{len(times)} invoices for {count} flights")
    return Round(
        schools=schools,
        post=[p.seconds for p in posts],
        sync=[times[p.doc_number] - p.answered_at for p in posts],
        load=f"{load_before} -> {services.load_average()}",
        serve_cpu=serve_cpu,
    )


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(quick: bool = False) -> str:
    """Markdown section: POST latency and flight-to-invoice latency, p50/p99, against goals."""
    rate, seconds, school_counts = _settings(quick)
    count = max(1, round(rate * seconds))
    lines = [
        "## Flight to invoice through the HTTP API (`serve` + one `worker`, PostgreSQL)",
        "",
        f"{count} flights POSTed to `POST /api/v1/flights` at {rate:g}/s for {seconds:g} s, "
        "taking turns among the schools of the round (each its own QuickBooks company); one "
        "long-running `flightledger worker` subprocess; the simulator answers every QuickBooks "
        f"request after {QBO_LATENCY * 1000:.0f} ms and enforces QBO's per-realm limits. Flight "
        "to invoice = from the POST's answer to the simulator's own creation time of the "
        "invoice. `BENCH_LATENCY_RATE`, `BENCH_LATENCY_SECONDS` and `BENCH_LATENCY_SCHOOLS` "
        "(comma-separated school counts, one round each) change the run.",
        "",
    ]
    reason = common.postgres_unavailable()
    if reason is not None:
        return "\n".join([*lines, f"Skipped: {reason}", ""])
    rounds = [_round(rate, seconds, n) for n in school_counts]
    lines += [
        "| schools | flights/s per school | measured | p50 | goal p50 | p99 | goal p99 | max "
        "| goals met | serve CPU per POST | load average 1/5/15 before -> after |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---|---:|---|",
    ]
    for r in rounds:
        measured = [
            ("POST answer", r.post, None, GOAL_POST_P99),
            ("POST answer to invoice in QuickBooks", r.sync, GOAL_P50, GOAL_P99),
        ]
        for name, values, g50, g99 in measured:
            p50, p99 = services.percentile(values, 50), services.percentile(values, 99)
            met = (g50 is None or p50 <= g50) and p99 <= g99
            lines.append(
                f"| {r.schools} | {rate / r.schools:g} | {name} | {_ms(p50)} | "
                f"{'-' if g50 is None else _ms(g50)} | {_ms(p99)} | < {_ms(g99)} | "
                f"{_ms(max(values))} | {'yes' if met else '**no**'} | "
                f"{r.serve_cpu * 1000:.1f} ms | {r.load} |"
            )
    lines += [
        "",
        f"Every round: {count} invoices, one per flight. Machine: {common.machine()}, shared "
        "with other work (see the load averages).",
        "",
        "Before the worker changes of issue 11 (same bench, 120 s rounds, load average 8-9): one "
        "school p50 28,634 ms / p99 48,855 ms; ten schools p50 2,335 ms / p99 6,559 ms; POST "
        "p99 118 ms and 221 ms.",
        "",
        "What QuickBooks' limits allow one realm (QBO.md: 500 requests a minute, 10 a second, "
        "10 at once, 40 batch requests a minute of at most 30; the gateway keeps 480, 8, 8 and "
        "38):",
        "",
        "- 20 flights/s is 1,200 invoices a minute. Single creates alone reach 480 a minute "
        "(8/s), so most invoices must go in batches, and batches can start only every 60/37 = "
        "1.6 s on average; single creates can take at most 480 - 38 - 4 = 438 a minute, about "
        "37 % of the flights. For 99 % of the flights to be sent within W of their arrival, "
        "37 batches of 20 W seconds' flights plus ~440 singles must cover 1,188 a minute: "
        "W >= 1.0 s, so p99 >= 1.1 s with QuickBooks' 100 ms; with only 37 % alone, p50 >= "
        "~0.31 s (at QBO's own limits, no margin: p99 >= 1.01 s, p50 >= 0.275 s). Both goals "
        "are out of reach for one realm at 20/s whatever the policy. The engine's own "
        "RateBudget run on a fake clock (flights every 50 ms, QuickBooks answering after 100 "
        "ms, no engine overhead) gives the best a policy can do: oldest first p50 ~650 ms / "
        "p99 ~1,140-1,250 ms; the newest sent alone at once and the oldest batched p50 ~440 ms "
        "/ p99 ~1,800 ms. We keep oldest first (its p99 is 1.1x the goal, against 1.8x). At 7 "
        "flights/s or less a realm is served by single creates alone (about one QuickBooks "
        "round trip).",
        "- The policy now (services/push_run.py, adapters/quickbooks/ratelimit.py, 2026-12-02): "
        "a pass sends one wave of calls in flight at once: a batch of up to 30 of the oldest "
        "for a backlog, then single creates as far as the budget has room, each with its own "
        "requestid on a QuickBooks client of its own from the realm's pool (a requests session "
        "is not shared between threads). A pass never waits for the budget: it tells the "
        "schedule when the budget has room again and the loop skips the school until then, "
        "without reading its waiting events. The budget is paced so that what the buckets hold "
        "never meets the sliding minute: batches refill at 37 a minute with 1 saved up, other "
        "requests at 480 - 38 - 4 a minute with 4 saved up (before, with 38 and 3 saved up, a "
        "backlog stopped batches for about 4 s at the end of every minute). Measured, 1 school "
        "at 20/s for 60 s, before -> after: load 5-9, p50 1,945 -> 703 ms, p99 5,864 -> 1,325 "
        "ms; back to back at load 0.6-1.1, p50 1,047 -> 664 ms, p99 3,093 -> 1,221 ms, within "
        "15-80 ms of the ideal oldest-first figures above. 10 schools at 2/s each after the "
        "change (load 0.3-1.2): POST p50 9 / p99 18 ms, flight to invoice p50 189 / p99 289 "
        "ms.",
        "- Two workers, one school at 20/s (2026-12-02, 20 s of flights, same rig with a second "
        "`flightledger worker`): each worker kept the realm's budget in its own memory and they "
        "passed the school in turn, so the realm got two budgets' worth of calls: QuickBooks "
        "answered 429 (per second) within seconds, the throttled worker paused the realm for a "
        "minute while the other kept calling, and 90 s later 85 of the 400 invoices existed. "
        "Now a worker keeps a school while its realm is busy in that worker (no room for the "
        "work within the minute, a batch within the minute, many calls within the last "
        "second, a pause: RealmLocks.hold, SyncEngine.keeps_realm) and hands it back after: 0 "
        "throttled, all 400 in p50 665 ms / p99 1,260 ms, the figures of one worker; 60 s of "
        "flights (1,200) p50 648 / p99 1,179 ms, 0 throttled "
        "(tests/integration/test_workers_share_a_realm.py).",
        "- Several schools: the worker runs the passes of different schools at once (a pool of "
        "16 threads, each pass under its school's advisory lock, the threads sharing one lock "
        "connection), "
        "so a flight no longer waits for the other schools' passes, and it keeps aggregates "
        "between passes (fast-forwarded from the log on every read), so a pass no longer "
        "replays the school's whole mapping history (500 students here: about 30 % of the "
        "worker's CPU samples before). What is left is a round's length (a round waits for its "
        "slowest pass before the next catch-up), the pass's own "
        "reads and writes, and CPU: serve, worker, simulator and PostgreSQL share two cores "
        "with other work here (see the load averages).",
        "- POST answer: a POST is a key lookup and one append (the answer no longer reads the "
        "new financial event back: one query less). The append takes PostgreSQL's EXCLUSIVE "
        "lock on the events table (the library keeps notification ids in commit order) and "
        "NOTIFYs, so it waits behind the worker's own appends; the p99 tail follows the "
        "machine's load (in a 20/s POST-only run with no worker at load 10-12 the p99 was "
        "0.8-1.0 s, at load 3-5 0.1-0.27 s). In the same process the webhook deliverer "
        "used to read the outbox aggregate whole and the new log every 0.5 s (py-spy of serve "
        "at 20 POSTs/s with a worker: its thread had 40 % of the samples once woken by every "
        "NOTIFY, 4-8 % now): it now keeps the outbox between rounds, fast-forwarded from the "
        "log, runs a round at most every 0.5 s and only when the log moved or a delivery is "
        "due, and saves its cursor at most once a minute when nothing is delivered. Measured "
        "the same hour (POST-only, 20/s for 30 s, load 4-9): serve CPU per POST 7.55 ms before, "
        "6.15-6.20 ms after; serve alone, idle, on PostgreSQL: 4.02 -> 0.23 transactions/s. "
        "The tail is not steady: a repeat of this bench right after the 2026-12-02 06:16 run "
        "(same code, load 0.8-3.4) had POST p99 691 ms and 490 ms (max 2.0 s and 1.5 s), "
        "flight to invoice p50 1,612 ms / 246 ms and p99 3,801 ms / 750 ms; the 1-2 s POST "
        "stalls at low load are not explained (the PostgreSQL server is shared with other "
        "work's tests; not investigated further).",
        "",
        (
            "serve's CPU per POST (2026-12-02, 30 s POST runs at 20/s into one school with a "
            "worker syncing, PostgreSQL, serve CPU from /proc utime+stime, main and this "
            "branch interleaved, load average 1.6-10): 5.25-6.53 ms before (median 6.3 over 8"
            " runs), 3.48-4.18 ms after (5 runs; user 3.4 ms, system 0.3 ms); POST p50 8-17 "
            "ms -> 8-15 ms, p99 19-234 ms -> 21-158 ms (the tail follows the load). What "
            "went: the dashboard's two BaseHTTPMiddlewares (security headers, session) on "
            "every API request (now pure ASGI; /api/ skips the session), the second "
            "threadpool hop (the key lookup and the append now run in one worker thread), "
            "uvicorn's h11 parser and asyncio loop (httptools and uvloop; without them this "
            "branch measured 3.57-4.73 ms, not separable from the noise), its access-log "
            "formatting (dropped at log level warning anyway), and the webhook deliverer's "
            "decoding of every synced event with no subscription (it now follows the "
            "subscriptions in the log and decodes only event types someone wants). In "
            "process, the ASGI stack of a POST with the database stubbed costs 0.45 ms (1.30 "
            "ms before); the key lookup 0.13 ms and the append 0.76 ms of CPU."
        ),
        "",
    ]
    return "\n".join(lines)
