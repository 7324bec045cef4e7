"""A command's start imports only the module that registers it (workers.cli.COMMAND_MODULES)."""

from __future__ import annotations

import importlib
import pkgutil

import pytest
import typer
import typer.main

from workers import cli, commands


def _top_level(app: typer.Typer) -> set[str]:
    group = typer.main.get_command(app)
    return set(getattr(group, "commands", {}))


def _registered_by(module_names: list[str]) -> set[str]:
    app = typer.Typer()
    app.callback()(lambda: None)
    for name in module_names:
        module = importlib.import_module(f"{commands.__name__}.{name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(app)
    return _top_level(app)


@pytest.mark.parametrize("command", sorted(cli.COMMAND_MODULES))
def test_each_listed_command_is_registered_by_its_module(command: str) -> None:
    """Registering only the listed module gives the command: the lazy start finds it."""
    assert command in _registered_by([cli.COMMAND_MODULES[command]])


def test_every_command_is_listed() -> None:
    """Every top-level command is in the table, so no start falls back to importing all."""
    every = sorted(m.name for m in pkgutil.iter_modules(commands.__path__))
    assert _registered_by(every) == set(cli.COMMAND_MODULES)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--db", "sqlite:///x.db", "--json", "record", "flight-ended", "-"], "record"),
        (["--school=s", "retry-failed", "--reason", "failed"], "retry-failed"),
        (["--help"], None),
        ([], None),
    ],
)
def test_command_name_skips_global_options(argv: list[str], expected: str | None) -> None:
    """The command is the first word after the hoisted global options; --help means all."""
    assert cli.command_name(argv) == expected


def test_registering_again_adds_nothing() -> None:
    """Every in-process caller registers; a second registration must not duplicate commands.

    Typer keeps each registration and converts all of them at every invocation, so duplicates
    made each later in-process call slower (a property test's examples slowed to seconds each).
    """
    cli._register_commands()
    before = (len(cli.app.registered_commands), len(cli.app.registered_groups))
    cli._register_commands()
    cli._register_commands("record")
    assert (len(cli.app.registered_commands), len(cli.app.registered_groups)) == before
    assert before[0] + before[1] > 0
