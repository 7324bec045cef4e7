"""DESIGN.md's layers, checked on the import statements of every module."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("domain", "projections", "services", "adapters", "workers")
IO_MODULES = {
    "sqlite3",
    "psycopg",
    "psycopg_pool",
    "requests",
    "socket",
    "http",
    "urllib",
    "subprocess",
    "fcntl",
    "quickbooks",
    "intuitlib",
    "fastapi",
    "uvicorn",
}


def imports(package: str) -> Iterator[tuple[str, str]]:
    """(module file relative to the root, top-level name) for every import in a package."""
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                yield str(path.relative_to(ROOT)), name


def offenders(package: str, forbidden: set[str]) -> list[str]:
    """Imports in package whose top-level name (or dotted prefix) is forbidden."""
    found = []
    for where, name in imports(package):
        parts = name.split(".")
        if any(".".join(parts[: n + 1]) in forbidden for n in range(len(parts))):
            found.append(f"{where}: {name}")
    return found


def test_the_checker_sees_imports() -> None:
    """The walk finds imports, so an empty offender list means something."""
    seen = {name for _, name in imports("adapters")}
    assert {"psycopg", "quickbooks.objects.invoice", "domain.ports"} <= seen


@pytest.mark.parametrize("package", ["domain", "projections", "services"])
def test_domain_projections_and_use_cases_do_no_io(package: str) -> None:
    """domain/, projections/ and the use cases (services/) import no driver, HTTP client,
    adapter or entry point: the use cases reach the outside only through ports."""
    assert offenders(package, IO_MODULES | {"adapters", "workers", "qbo_simulator"}) == []


def test_domain_does_not_import_projections() -> None:
    """The domain knows nothing of the views built from it."""
    assert offenders("domain", {"projections"}) == []


@pytest.mark.parametrize("package", ["domain", "projections"])
def test_the_inner_layers_do_not_import_the_use_cases(package: str) -> None:
    """The use cases sit above the domain and the views: nothing below calls up into them."""
    assert offenders(package, {"services"}) == []


# The entry points (CLI commands, dashboard routes, API routes) run an operator's use case
# through services/, never by calling the ledger's command themselves: one place per use case.
ENTRY_POINTS = ("workers/commands/", "adapters/web/routes/", "adapters/api/app.py")
LEDGER_COMMANDS = (
    "retry_failed",
    "dismiss",
    "map_charge",
    "map_student",
    "map_payment_type",
    "set_defaults",
    "set_auto_invoice",
    "set_auto_customers",
    "record",
    "record_correction",
)


def ledger_calls(command: str) -> list[str]:
    """`<...ledger...>.<command>(...)` calls in the entry-point modules, as file:line."""
    found = []
    for package in ("workers", "adapters"):
        for path in sorted((ROOT / package).rglob("*.py")):
            where = str(path.relative_to(ROOT))
            if not where.startswith(ENTRY_POINTS):
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            found += [
                f"{where}:{node.lineno}"
                for node in ast.walk(tree)
                if isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == command
                and "ledger" in ast.unparse(node.func.value)
            ]
    return found


def test_the_ledger_call_finder_sees_a_call() -> None:
    """The finder sees the ledger calls the worker's engine code makes (outside entry points
    they are allowed), so an empty list in the entry points means something."""
    tree = ast.parse("cli.ledger().dismiss(school, ref)\nuse_case.dismiss(ledger, ref)\n")
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    hits = [
        c
        for c in calls
        if isinstance(c.func, ast.Attribute) and "ledger" in ast.unparse(c.func.value)
    ]
    assert len(hits) == 1


DRIVERS = {"sqlite3", "psycopg", "psycopg_pool", "quickbooks", "intuitlib", "requests", "socket"}


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_entry_points_import_no_driver(entry: str) -> None:
    """The CLI commands, the dashboard's routes and the API reach databases and QuickBooks only
    through the use cases, ports and adapters: they import no driver or HTTP client."""
    package = entry.partition("/")[0]
    found = [hit for hit in offenders(package, DRIVERS) if hit.startswith(entry)]
    assert found == []
    assert any(where.startswith(entry) for where, _ in imports(package))  # the walk sees it


@pytest.mark.parametrize("command", LEDGER_COMMANDS)
def test_entry_points_call_the_use_case_not_the_ledger(command: str) -> None:
    """The CLI, the dashboard and the API press Retry Failed and Dismiss, set mappings and
    record through services/, so they cannot drift apart again."""
    assert ledger_calls(command) == []


# The connection use cases (connect, callback, test, disconnect, status, what a refresh records)
# are services/connection.py's: the CLI, the dashboard and the API call them and never reach the
# vault, the OAuth client, the gateway's company reads or the Connection aggregate themselves.
CONNECTION_ENTRY_POINTS = (*ENTRY_POINTS, "adapters/web/")
CONNECTION_PORT_CALLS = frozenset(
    {
        # ConnectionVault / TokenVault
        "put_state",
        "consume_state",
        "get_tokens",
        "put_tokens",
        "delete_tokens",
        "refresh_lock",
        # OAuthPort / intuitlib's client
        "authorization_url",
        "exchange",
        "revoke",
        "oauth_client",
        "OAuthClient",
        "read_callback",
        # CompanyDirectory / CompanyProbe / the gateway
        "company_with",
        "company_info",
        "test_connection",
        "custom_txn_numbers",
        "gateway_for",
        "RealmSession",
        "QuickBooksGateway",
        # the Connection aggregate's commands
        "record_test",
        "record_refresh",
        "record_failure",
        "record_preferences",
        "expire",
        "update_connection",
    }
)
AGGREGATE_ONLY = frozenset({"connect", "disconnect"})  # also use-case names: on the aggregate


def connection_calls(tree: ast.AST, where: str) -> list[str]:
    """Calls in a module that do a connection use case's work: a port's method or the
    Connection aggregate's command, as where:line."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        on_aggregate = (
            isinstance(func, ast.Attribute)
            and name in AGGREGATE_ONLY
            and (".connection(" in ast.unparse(func.value) or "ledger" in ast.unparse(func.value))
        )
        if name in CONNECTION_PORT_CALLS or on_aggregate:
            found.append(f"{where}:{node.lineno} {name}")
    return found


def test_the_connection_call_finder_sees_the_use_cases_work() -> None:
    """services/connection.py and workers/qbo.py make these calls (there they belong), and the
    aggregate's connect is told from the use case's, so an empty list below means something."""
    for module in ("services/connection.py", "workers/qbo.py"):
        path = ROOT / module
        tree = ast.parse(path.read_text(encoding="utf-8"))
        assert connection_calls(tree, module)
    source = "ledger.connection(s).connect(realm=r)\nservice().connect(school)\n"
    assert [hit.split()[1] for hit in connection_calls(ast.parse(source), "x")] == ["connect"]


def test_entry_points_do_not_implement_the_connection_use_cases() -> None:
    """The CLI's `connection ...` commands, the dashboard's connection routes and helpers and the
    API call services.connection (wired by workers/qbo.py): none of them touches the token vault,
    the OAuth client, QuickBooks' company reads or the Connection aggregate itself."""
    found = []
    seen = 0
    for package in ("workers", "adapters"):
        for path in sorted((ROOT / package).rglob("*.py")):
            where = str(path.relative_to(ROOT))
            if where.startswith(CONNECTION_ENTRY_POINTS):
                seen += 1
                tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
                found += connection_calls(tree, where)
    assert found == []
    assert seen > 10  # the walk reaches the entry points


def test_the_connection_entry_points_call_one_use_case_module() -> None:
    """The CLI's commands, the dashboard's connection routes and the API import the connection
    use cases' module, so all three answer with its sentences and documents."""
    for entry in (
        "workers/commands/connection.py",
        "adapters/web/routes/connection.py",
        "adapters/api/app.py",
    ):
        package = entry.partition("/")[0]
        names = {name for where, name in imports(package) if where == entry}
        assert "services.connection" in names, entry


def module_name(path: Path) -> str:
    """The dotted module name of a file under the root (a package is its __init__)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(tree: ast.Module, package: str) -> set[str]:
    """Every dotted name a module's code imports, at any depth (inside functions too), with
    relative imports resolved against its package; `from p import m` also yields `p.m`, so a
    module imported by name counts. Imports under `if TYPE_CHECKING:` count too: they do not
    run, but two modules that need each other's types are still one module in two files."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def import_graph(packages: tuple[str, ...] = PACKAGES) -> dict[str, set[str]]:
    """Module -> the project modules it imports (see `imported_modules`)."""
    paths = {
        module_name(p): p for package in packages for p in sorted((ROOT / package).rglob("*.py"))
    }
    graph: dict[str, set[str]] = {}
    for module, path in paths.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        found = imported_modules(tree, package)
        graph[module] = {name for name in found if name in paths and name != module}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every group of modules that import each other, directly or round a loop (Tarjan's
    strongly connected components of more than one module), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in sorted(graph.get(module, ())):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == module:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return sorted(cycles)


def test_the_cycle_finder_sees_a_cycle() -> None:
    """A synthetic graph with a three-module loop and a tail is reported as exactly that loop."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"a"}}
    assert import_cycles(graph) == [["a", "b", "c"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []


def test_imports_are_resolved_at_any_depth() -> None:
    """Relative, nested, TYPE_CHECKING and `from package import module` imports are seen."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "from . import sibling\n"
        "from ..other import thing\n"
        "if TYPE_CHECKING:\n"
        "    import hidden.module\n"
        "def later() -> None:\n"
        "    import inner.module\n"
    )
    found = imported_modules(ast.parse(source), "pkg.sub")
    assert {"pkg.sub.sibling", "pkg.other", "pkg.other.thing", "inner.module"} <= found
    assert "hidden.module" in found


def test_the_import_graph_holds_real_edges() -> None:
    """The graph of the project holds known edges, including an import inside a function."""
    graph = import_graph()
    assert "domain.financial_event" in graph["domain.application"]
    assert "domain.retry" in graph["domain.application"]  # imported inside retry_failed
    assert len(graph) > 50


def test_no_import_circles() -> None:
    """No module of domain/, projections/, adapters/, workers/ or the simulator imports itself
    round a loop (the simulator's admin.py <-> server.py was one)."""
    assert import_cycles(import_graph((*PACKAGES, SIMULATOR))) == []


# The simulator is a tool, not an adapter of the engine: a top-level package of its own that
# only its command and the demo (which runs the whole story against a simulator it starts) may
# import; bench/ and tests/ may too (they are outside the packages walked here).
SIMULATOR = "qbo_simulator"
SIMULATOR_IMPORTERS = {"workers/commands/simulator.py", "workers/demo.py"}


def test_nothing_but_its_command_and_the_demo_imports_the_simulator() -> None:
    """qbo_simulator/ is imported by no module of the engine but `flightledger simulator` and
    the demo: not by domain/, projections/, adapters/ or the workers' engine code."""
    hits = [hit for package in PACKAGES for hit in offenders(package, {SIMULATOR})]
    assert [hit for hit in hits if hit.split(":")[0] not in SIMULATOR_IMPORTERS] == []
    assert {hit.split(":")[0] for hit in hits} >= SIMULATOR_IMPORTERS  # the checker sees them


def test_the_simulator_imports_nothing_of_the_engine() -> None:
    """The simulator stands alone: it plays QuickBooks and knows nothing of the engine."""
    assert offenders(SIMULATOR, set(PACKAGES)) == []


# The push pass is a use case like the others (issue 10): its modules sit in services/, where
# the checks above hold them to ports only, and workers/ only runs and wires it.
PUSH_PASS = (
    "services.push_pass",
    "services.new_customers",
    "services.push_run",
    "services.corrections",
    "services.retry_schedule",
)


def test_the_push_pass_lives_in_the_use_cases() -> None:
    """Every step of the push pass is a module of services/ (so the no-adapter and no-cycle
    checks above walk it), the worker's loop and runtime reach it, and it imports no worker."""
    graph = import_graph()
    assert set(PUSH_PASS) <= graph.keys()
    assert "services.push_pass" in graph["workers.worker_loop"]
    assert "services.push_pass" in graph["workers.runtime"]
    seen = {where for where, _ in imports("services")}
    assert {f"{m.replace('.', '/')}.py" for m in PUSH_PASS} <= seen
    for module in PUSH_PASS:
        assert not {name for name in graph[module] if name.startswith(("workers", "adapters"))}
