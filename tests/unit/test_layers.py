"""DESIGN.md's layers, checked on the import statements of every module."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("domain", "projections", "adapters", "workers")
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


@pytest.mark.parametrize("package", ["domain", "projections"])
def test_domain_and_projections_do_no_io(package: str) -> None:
    """domain/ and projections/ import no driver, HTTP client, or outer layer."""
    assert offenders(package, IO_MODULES | {"adapters", "workers"}) == []


def test_domain_does_not_import_projections() -> None:
    """The domain knows nothing of the views built from it."""
    assert offenders("domain", {"projections"}) == []


def test_adapters_do_not_import_workers() -> None:
    """Adapters are assembled by workers/, never the other way round."""
    assert offenders("adapters", {"workers"}) == []


def test_only_the_quickbooks_adapter_imports_python_quickbooks() -> None:
    """python-quickbooks and intuitlib are imported only under adapters/quickbooks/."""
    found = [
        hit
        for package in PACKAGES
        for hit in offenders(package, {"quickbooks", "intuitlib"})
        if not hit.startswith("adapters/quickbooks/")
    ]
    assert found == []


def test_database_drivers_stay_in_adapters() -> None:
    """Callers never import psycopg or sqlite3: driver errors are translated in adapters/."""
    assert offenders("workers", {"psycopg", "psycopg_pool", "sqlite3"}) == []
