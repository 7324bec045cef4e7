"""A local QuickBooks Online simulator for tests, demos and benchmarks.

The real python-quickbooks and intuitlib clients run against it over loopback HTTP.

Addresses (CLI.md, "The simulator's addresses"): discovery at
``/.well-known/openid_configuration``, authorize ``/connect/oauth2`` (auto-consent, 302 with
code, state and realmId), token ``/oauth2/v1/tokens/bearer``, revoke ``/v2/oauth2/tokens/revoke``,
accounting API ``/v3/company/{realm}/...`` and controls under ``/_sim/``.

Several companies (realms): every realm gets the same seed data. A new realm appears when

- the authorize URL carries ``realm_hint=<id>`` (that realm, created on first use), or
- ``SimulatorConfig.one_realm_per_connection`` is on: the first authorization gets the default
  realm, every later one a fresh realm (default realm + 1, + 2, ...), or
- ``QboSimulator.add_company()`` / ``POST /_sim/companies`` is called.

Otherwise every authorization connects the default realm. Access tokens work only for the
realm they were issued for (another realm answers 401 code 100).

Limits are per realm: 500 requests per minute, 10 per second, 10 in flight, 40 batch requests
per minute, where one minute lasts ``minute_seconds`` real seconds. Throttled requests answer 429
code 3001 and perform nothing. A POST with ``requestid`` whose first answer was 200 returns that
answer again without performing the operation (failed answers are not remembered, so a retry
after fixing the data can succeed with the same request id).

Fault switches are documented in ``qbo_simulator.faults``.
"""

from qbo_simulator.config import SimulatorConfig
from qbo_simulator.faults import PRESETS
from qbo_simulator.server import QboSimulator

__all__ = ["PRESETS", "QboSimulator", "SimulatorConfig"]
