"""Log conventions (issue 10): logger names, past-tense event names, bound context, redaction."""

from __future__ import annotations

import ast
import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from starlette.types import Message, Receive, Scope, Send

from adapters.request_context import RequestContextMiddleware, bind_actor
from workers import worker_loop
from workers.logging import configure_logging

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("domain", "projections", "services", "adapters", "workers", "qbo_simulator")
# event names: the engine's (the simulator, a tool beside it, keeps its own words)
ENGINE = ("domain", "projections", "services", "adapters", "workers")
LOG_METHODS = {"debug", "info", "warning", "error", "exception", "critical", "msg"}
# irregular past participles used (or likely) in event names; regular ones end in -ed
IRREGULAR_WORDS = (
    "set broken taken sent found held lost run begun shown done built rebuilt kept read written "
    "spent made reset split given seen chosen withdrawn bound left put cut"
)
IRREGULAR = frozenset(IRREGULAR_WORDS.split())
PARTICLES = {"in", "out", "off", "up", "down", "back", "over"}  # signed_in, signed_out
PREPOSITIONS = {"by", "for", "from", "to", "with", "at", "on", "after", "before", "during"}


def modules(packages: tuple[str, ...]) -> Iterator[tuple[str, ast.Module]]:
    """(path relative to the root, parsed module) for every module of the packages."""
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            where = str(path.relative_to(ROOT))
            yield where, ast.parse(path.read_text(encoding="utf-8"))


def logger_calls(tree: ast.Module) -> Iterator[ast.Call]:
    """Every structlog.get_logger(...) call."""
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get_logger"
        ):
            yield node


def event_names(tree: ast.Module) -> Iterator[tuple[int, str | None]]:
    """(line, event name) of every log.<level>(...) call; None when the name is not literal."""
    for node in ast.walk(tree):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in LOG_METHODS
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id in ("log", "logger")
        ):
            continue
        first = node.args[0] if node.args else None
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            yield node.lineno, first.value
        elif isinstance(first, ast.JoinedStr):  # f"web_{switch}_set": the placeholders as "x"
            parts = [v.value if isinstance(v, ast.Constant) else "x" for v in first.values]
            yield node.lineno, "".join(str(p) for p in parts)
        else:
            yield node.lineno, None


def is_past_tense(name: str) -> bool:
    """snake_case `<subject>_<past participle>`, optionally `_<particle>`, `_<adverb>ly` or
    `_<preposition>_...` after it (web_signed_in, event_changed_concurrently,
    invoice_found_by_doc_number)."""
    words = name.split("_")
    if not name or name != name.lower() or not all(w.isidentifier() for w in words):
        return False
    for i, word in enumerate(words[2:], start=2):
        if word in PREPOSITIONS:
            words = words[:i]
            break
    while len(words) > 2 and (words[-1] in PARTICLES or words[-1].endswith("ly")):
        words = words[:-1]
    last = words[-1]
    return len(words) >= 2 and (last.endswith("ed") or last in IRREGULAR)


def test_the_checkers_see_loggers_and_events() -> None:
    """The walks find get_logger calls and event names, so empty offender lists mean something."""
    found = {name for _, tree in modules(("workers",)) for _, name in event_names(tree) if name}
    assert {"worker_stopped", "view_rebuilt"} <= found
    assert sum(1 for _, tree in modules(ENGINE) for _ in logger_calls(tree)) >= 20


@pytest.mark.parametrize(
    ("name", "past"),
    [
        ("worker_stopped", True),
        ("web_signed_in", True),
        ("audit_chain_broken", True),
        ("event_changed_concurrently", True),
        ("invoice_found_by_doc_number", True),
        ("web_x_set", True),
        ("webhook_loop_error", False),
        ("worker_healthy_again", False),
        ("realm_lock_unavailable", False),
        ("api_unexpected_error", False),
        ("event_needs_action", False),
        ("failed", False),
        ("Worker_Stopped", False),
    ],
)
def test_the_past_tense_rule(name: str, past: bool) -> None:
    """The rule accepts past participles (with particles and trailing phrases) only."""
    assert is_past_tense(name) is past


def test_every_module_names_its_logger_after_itself() -> None:
    """One naming scheme: `structlog.get_logger(__name__)`, never a hand-written name."""
    wrong = [
        f"{where}:{call.lineno}"
        for where, tree in modules(PACKAGES)
        for call in logger_calls(tree)
        if not (
            len(call.args) == 1
            and not call.keywords
            and isinstance(call.args[0], ast.Name)
            and call.args[0].id == "__name__"
        )
    ]
    assert wrong == []


def test_every_event_name_is_past_tense() -> None:
    """Event names are snake_case `<subject>_<past participle>` literals (STYLE.md)."""
    wrong = [
        f"{where}:{line} {name}"
        for where, tree in modules(ENGINE)
        for line, name in event_names(tree)
        if name is None or not is_past_tense(name)
    ]
    assert wrong == []


@pytest.fixture
def restore_structlog() -> Iterator[None]:
    """Put structlog's configuration and context back after the test."""
    saved = structlog.get_config()
    try:
        yield
    finally:
        structlog.contextvars.clear_contextvars()
        structlog.configure(**saved)


def test_a_json_line_carries_bound_context_logger_name_and_no_secret(
    capsys: pytest.CaptureFixture[str], restore_structlog: None
) -> None:
    """workers/logging.py: merge_contextvars puts the bound keys on the JSON line, which names
    the module that logged it; a secret-looking key is redacted; a traceback is text."""
    configure_logging("INFO", json_logs=True)
    structlog.contextvars.bind_contextvars(request_id="r-1", school="alpha", actor="ops")
    worker_loop.log.info("probe_logged", access_token="s3cret-Zq9", event_id="e-1")
    try:
        raise ValueError("boom")
    except ValueError:
        worker_loop.log.exception("probe_failed")
    first, second = (json.loads(line) for line in capsys.readouterr().err.splitlines())
    assert first["event"] == "probe_logged" and first["level"] == "info"
    assert first["logger"] == "workers.worker_loop"
    assert (first["request_id"], first["school"], first["actor"], first["event_id"]) == (
        "r-1",
        "alpha",
        "ops",
        "e-1",
    )
    assert first["access_token"] == "[redacted]"
    assert "s3cret-Zq9" not in json.dumps([first, second])
    assert "ValueError: boom" in second["exception"]


def test_the_middleware_binds_the_request_and_clears_it_after(restore_structlog: None) -> None:
    """Inside a request: its request_id (stale context gone) and the actor bound meanwhile;
    after it: nothing is left bound, the actor included."""
    seen: list[dict[str, Any]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        bind_actor("alpha", "ops-robot")  # what a permission dependency does
        seen.append(structlog.contextvars.get_contextvars())
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        sent.append(message)

    async def one_request() -> dict[str, Any]:
        structlog.contextvars.bind_contextvars(school="stale", request_id="old")
        scope: Scope = {
            "type": "http",
            "method": "GET",
            "path": "/",
            "headers": [(b"x-request-id", b"abc-1")],
        }
        await RequestContextMiddleware(app)(scope, receive, send)
        return structlog.contextvars.get_contextvars()

    after = asyncio.run(one_request())
    assert seen == [{"request_id": "abc-1", "school": "alpha", "actor": "ops-robot"}]
    assert after == {}
    assert (b"x-request-id", b"abc-1") in sent[0]["headers"]
