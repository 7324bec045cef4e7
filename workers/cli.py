"""The flightledger command line (CLI.md): global options and command registration."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from collections.abc import Sequence

import typer

from adapters.persistence import DatabaseUrlError
from workers import commands
from workers.bootstrap import Config
from workers.context import EXIT_USAGE, CliContext
from workers.logging import configure_logging

app = typer.Typer(
    name="flightledger",
    help="Event-sourced QuickBooks Online sync engine for flight schools.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

GLOBAL_VALUE_OPTIONS = ("--db", "--school")
GLOBAL_FLAGS = ("--json",)


@app.callback()
def main_options(
    ctx: typer.Context,
    db: str | None = typer.Option(
        None, "--db", help="Database URL (FLIGHTLEDGER_DB); default sqlite:///./flightledger.db"
    ),
    school: str | None = typer.Option(
        None, "--school", help="School slug (FLIGHTLEDGER_SCHOOL); default 'default'"
    ),
    json_output: bool = typer.Option(False, "--json", help="One JSON document on stdout"),
) -> None:
    """flightledger: flights in, QuickBooks invoices out, every step on the record."""
    config = Config.from_env(db_url=db, school=school)
    cli = CliContext(config=config, json_output=json_output)
    ctx.obj = cli
    ctx.call_on_close(cli.close)


# The module of workers/commands that registers each top-level command. Starting a command
# imports only its module: all of them together pull in python-quickbooks, FastAPI, the
# simulator, ... (about 1 s of CPU at every start). A name not listed here, `--help` or no
# command at all registers every command (tests/unit/test_cli_lazy.py keeps the table true).
COMMAND_MODULES = {
    "audit": "audit",
    "checklist": "checklist",
    "connection": "connection",
    "demo": "demo",
    "dismiss": "retry",
    "events": "events",
    "history": "history",
    "keys": "keys",
    "mappings": "mappings",
    "record": "record",
    "retry-failed": "retry",
    "serve": "serve",
    "settings": "mappings",
    "simulator": "simulator",
    "view": "view",
    "worker": "worker",
}


_REGISTERED: set[str] = set()  # command modules already on `app` (registering twice duplicates)


def _register_commands(command: str | None = None) -> None:
    """Register the command's module, or every module when the command is unknown or None.

    Idempotent: a module registered before is not registered again. Typer keeps every
    registration, and each invocation converts all of them to click, so repeated calls (every
    in-process caller, every test fixture) made each later invocation slower.
    """
    only = COMMAND_MODULES.get(command or "")
    if only is not None:
        names = [only]
    else:
        names = sorted(m.name for m in pkgutil.iter_modules(commands.__path__))
    for name in names:
        if name in _REGISTERED:
            continue
        _REGISTERED.add(name)
        module = importlib.import_module(f"{commands.__name__}.{name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(app)


def command_name(argv: Sequence[str]) -> str | None:
    """The command an argument list runs (global options hoisted to the front), if any."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in GLOBAL_VALUE_OPTIONS:
            i += 2
        elif arg.startswith("-"):
            if arg in ("--help", "-h"):
                return None
            i += 1
        else:
            return arg
    return None


def hoist_global_options(argv: Sequence[str]) -> list[str]:
    """Move --db/--school/--json to the front so they work after the command name too."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    args = list(argv)
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest.extend(args[i:])
            break
        name = arg.split("=", 1)[0]
        if arg in GLOBAL_FLAGS or (name in GLOBAL_VALUE_OPTIONS and "=" in arg):
            front.append(arg)
        elif arg in GLOBAL_VALUE_OPTIONS and i + 1 < len(args):
            front.extend([arg, args[i + 1]])
            i += 1
        else:
            rest.append(arg)
        i += 1
    return front + rest


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point: never prints a traceback."""
    configure_logging()
    args = hoist_global_options(sys.argv[1:] if argv is None else argv)
    _register_commands(command_name(args))
    try:
        app(args=args, prog_name="flightledger", standalone_mode=True)
    except DatabaseUrlError as exc:
        sys.stderr.write(f"error: {exc}\n")
        raise SystemExit(EXIT_USAGE) from None
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        raise SystemExit(130) from None
    except SystemExit:
        raise
    except Exception as exc:  # the last line of defence: a stated reason, never a traceback
        from workers.errors import describe_unexpected

        sys.stderr.write(f"error: {describe_unexpected(exc)}\n")
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
