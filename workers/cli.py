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


def _register_commands() -> None:
    for module_info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{module_info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(app)


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
    _register_commands()
    args = hoist_global_options(sys.argv[1:] if argv is None else argv)
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
