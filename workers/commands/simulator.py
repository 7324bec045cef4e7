"""`simulator`: run the bundled QuickBooks Online simulator in the foreground."""

from __future__ import annotations

import threading

import typer

from workers.signals import stop_on_signals


def simulator(
    *,
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (loopback default)"),
    port: int = typer.Option(8400, "--port", help="TCP port (0 picks a free one)"),
    minute_seconds: float = typer.Option(
        60.0, "--minute-seconds", help="Real seconds in one rate-limit minute"
    ),
    fault_rate: float = typer.Option(
        0.0, "--fault-rate", help="Fraction of API requests answered 500/503 (HTML)"
    ),
    fault_seed: int | None = typer.Option(None, "--fault-seed", help="Seed for fault choices"),
    client_id: str = typer.Option("sim-client", "--client-id", help="OAuth client id"),
    client_secret: str = typer.Option("sim-secret", "--client-secret", help="OAuth secret"),
    company: str = typer.Option("Sunrise Flight School", "--company", help="Company name"),
    country: str = typer.Option("US", "--country", help="Company country"),
    realm: str = typer.Option("9130350000000001", "--realm", help="Default realm id"),
    one_realm_per_connection: bool = typer.Option(
        False, "--one-realm-per-connection", help="Each authorization gets a new company"
    ),
    access_token_seconds: int = typer.Option(
        3600, "--access-token-seconds", min=1, help="Lifetime of an access token"
    ),
    refresh_token_seconds: int = typer.Option(
        8726400,
        "--refresh-token-seconds",
        min=1,
        help="Rolling refresh-token lifetime (e.g. 2592000: '30d left' amber; 3600: "
        "'Reconnect soon')",
    ),
    hard_expiry_seconds: int = typer.Option(
        5 * 365 * 86400,
        "--hard-expiry-seconds",
        min=1,
        help="Hard refresh-token expiry, counted from the authorization",
    ),
    no_refresh_expiry: bool = typer.Option(
        False,
        "--no-refresh-expiry",
        help="Token answers carry no refresh-token expiry (the badge reads 'Token unknown')",
    ),
    no_authorization_endpoint: bool = typer.Option(
        False,
        "--no-authorization-endpoint",
        help="Discovery gives no authorization endpoint ('No authorization URL received')",
    ),
) -> None:
    """Serve a local QuickBooks Online (OAuth + accounting API) until Ctrl-C."""
    from qbo_simulator import QboSimulator, SimulatorConfig

    if not 0.0 <= fault_rate <= 1.0:
        typer.echo("--fault-rate must be between 0 and 1", err=True)
        raise typer.Exit(2)
    if minute_seconds <= 0:
        typer.echo("--minute-seconds must be positive", err=True)
        raise typer.Exit(2)
    config = SimulatorConfig(
        host=host,
        port=port,
        minute_seconds=minute_seconds,
        fault_rate=fault_rate,
        fault_seed=fault_seed,
        client_id=client_id,
        client_secret=client_secret,
        company_name=company,
        country=country,
        realm=realm,
        one_realm_per_connection=one_realm_per_connection,
        access_token_seconds=access_token_seconds,
        refresh_token_seconds=refresh_token_seconds,
        hard_expiry_seconds=hard_expiry_seconds,
        report_refresh_expiry=not no_refresh_expiry,
        authorization_endpoint=not no_authorization_endpoint,
    )
    sim = QboSimulator(config)
    stop = threading.Event()
    # Ctrl-C and SIGTERM stop it, also when started with SIGINT ignored (a background job of a
    # script, a process manager): Python installs no Ctrl-C handler of its own then. The
    # handlers are in before the URL is printed.
    with stop_on_signals(stop):
        try:
            sim.start()
        except OSError as exc:
            typer.echo(f"cannot listen on {host}:{port}: {exc.strerror or exc}", err=True)
            raise typer.Exit(1) from None
        try:
            typer.echo(sim.url, nl=True)
            typer.echo(f"discovery: {sim.discovery_url}", err=True)
            typer.echo(f"realm {realm} ({company}); client id {client_id}; Ctrl-C stops", err=True)
            stop.wait()
        finally:
            sim.stop()


def register(app: typer.Typer) -> None:
    """Add the `simulator` command to the CLI."""
    app.command("simulator")(simulator)
