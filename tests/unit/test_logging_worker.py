"""The worker loop's log lines, as data (issue 10): names, levels and the fields they carry."""

from __future__ import annotations

from tests.fakes import FreeLocks
from tests.logging_support import captured_logs
from tests.unit.test_worker_hardening import Beats, setup
from workers.worker_loop import UNHEALTHY_ROUNDS_UNTIL_IDLE, WorkerLoop


class RefusingLocks(FreeLocks):
    """Realm locks another worker holds."""

    def try_acquire(self, school: str) -> bool:
        """Never owned here."""
        return False


def test_crashing_then_healthy_rounds_log_their_events() -> None:
    """Every pass crashing: sync_pass_crashed per school and worker_round_failed per round;
    the first good round after: worker_recovered; each run ends with worker_stopped."""
    _, _, _, engine, _ = setup(2)

    def disk_full(school: str) -> int:
        raise OSError(28, "No space left on device")

    engine.run_school = disk_full  # type: ignore[method-assign,assignment]
    loop = WorkerLoop(
        engine, engine.view, FreeLocks(), catch_up=lambda: None, heartbeat=Beats(),  # type: ignore[arg-type]
        poll_seconds=0.001,
    )  # fmt: skip
    with captured_logs() as logs:
        loop.run(until_idle=True)
        del engine.run_school
        loop.run(until_idle=True)
    events = [e["event"] for e in logs]
    crashed = [e for e in logs if e["event"] == "sync_pass_crashed"]
    assert len(crashed) == UNHEALTHY_ROUNDS_UNTIL_IDLE
    assert crashed[0]["school"] == "default" and "No space left" in crashed[0]["error"]
    unhealthy = [e for e in logs if e["event"] == "worker_round_failed"]
    assert [e["rounds"] for e in unhealthy] == list(range(1, UNHEALTHY_ROUNDS_UNTIL_IDLE + 1))
    assert {e["log_level"] for e in unhealthy} == {"error"}
    recovered = [e for e in logs if e["event"] == "worker_recovered"]
    assert [e["after_rounds"] for e in recovered] == [UNHEALTHY_ROUNDS_UNTIL_IDLE]
    assert events.index("worker_recovered") > events.index("worker_stopped")  # the second run
    stopped = [e for e in logs if e["event"] == "worker_stopped"]
    assert [e["healthy"] for e in stopped] == [False, True]


def test_a_refused_realm_lock_is_logged_and_the_school_left_alone() -> None:
    """A school whose lock another worker holds: realm_lock_refused naming it, no pass run."""
    _, _, gateway, engine, _ = setup(1)
    loop = WorkerLoop(engine, engine.view, RefusingLocks(), catch_up=lambda: None)
    with captured_logs() as logs:
        passes, worked, contested = loop.round()
    assert (passes, worked, contested) == (0, False, True) and gateway.calls == []
    refused = [e for e in logs if e["event"] == "realm_lock_refused"]
    assert refused == [{"event": "realm_lock_refused", "school": "default", "log_level": "debug"}]
