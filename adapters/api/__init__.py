"""The HTTP API (/api/v1, API.md): served by `flightledger serve` beside the dashboard."""
