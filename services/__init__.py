"""The use cases: one function per thing an operator does, called by every entry point.

The CLI (`workers/commands/`), the dashboard (`adapters/web/routes/`) and the HTTP API
(`adapters/api/app.py`) parse their input, call one use case here and render its answer; none
of them decides what Retry Failed selects, what a mapping is checked against or when a note is
missing. The use cases depend on the domain (the ledger, its rules) and on ports only: the
financial-event view (`projections.view.FinancialEventView`, through domain.retry.WaitingRows)
and QuickBooks' lists (`domain.qbo_lists.QboListsPort`), never on an adapter or a driver
(tests/unit/test_layers.py checks it, and that no entry point calls the ledger's command of a
use case itself).

- `services.records`: record a fact or a correction, and say what it became (new, duplicate,
  conflict); the CLI's file import streams through workers/bulk_import.py instead.
- `services.retry`: Retry Failed (a group, a selection, one event) and Dismiss.
- `services.mappings`: set a mapping, set the invoice defaults, the per-school switches.
- `services.connection`: connect, the OAuth callback (and the company-switch confirmation),
  test, disconnect, status, and what a gateway's token refresh records; behind the ports of
  domain/ports.py, wired to intuitlib, the vault and QuickBooks by workers.qbo.ConnectionService.

The worker's push pass, in the order it runs (the worker loop, workers/worker_loop.py, only
takes each school's lock and calls it; workers/runtime.py wires the adapters in):
- `services.push_pass`: `SyncEngine`, one pass per school (recovery of `syncing` events,
  preflight, then the steps below) and what is recorded when no call can be made;
- `services.new_customers`: auto-customers, a new student's QuickBooks customer first;
- `services.push_run`: `PushRun`, the pushes of fresh creates and their recorded outcomes;
- `services.corrections`: `CorrectionRun`, amendments, cancellations and refunds of what
  QuickBooks already holds;
- `services.retry_schedule`: `RetrySchedule`, due times, realm pauses, circuit breakers.
"""
