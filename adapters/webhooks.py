"""Webhook delivery, the Standard Webhooks way (standardwebhooks signs every message).

`WebhookDeliverer.run_once()` follows the log from the outbox's cursor (domain/webhooks.py),
schedules a delivery per message and subscription (saved with the cursor in one transaction),
then POSTs the due ones with a short timeout and records each attempt. It runs in its own thread
(`start()`), so a slow or dead receiver never slows the sync. The thread runs a round only when
the log moved (every change of the outbox is in the log too) or a delivery is due: on PostgreSQL
it sleeps until a NOTIFY of the log's channel, the next due delivery or a long fallback; on
SQLite it reads the log's last position every half second (one small query). Receivers must be
https, except on loopback; private addresses are refused unless the operator allows them (no
SSRF).
"""

from __future__ import annotations

import base64
import ipaddress
import json
import secrets
import socket
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, cast
from urllib.parse import urlsplit
from uuid import UUID

import requests
import structlog
from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError, Notification
from standardwebhooks.webhooks import Webhook

from adapters import metrics
from domain.application import FlightLedger
from domain.connection import Connection
from domain.financial_event import FinancialEvent
from domain.ids import webhooks_id
from domain.reasons import fix_for
from domain.webhooks import (
    ACTION_REQUIRED,
    DELIVERED,
    FAILED,
    OUTBOX_ID,
    RECONNECT_NEEDED,
    SYNCED,
    Delivery,
    WebhookOutbox,
    Webhooks,
    next_attempt_at,
)
from projections.view import Listener

log = structlog.get_logger(__name__)

ALLOW_PRIVATE_VARIABLE = "FLIGHTLEDGER_WEBHOOKS_ALLOW_PRIVATE"
TIMEOUT_SECONDS = 5.0
POLL_SECONDS = 0.5  # no NOTIFY (SQLite): the log's last position is read this often
FALLBACK_SECONDS = 30.0  # listening for NOTIFY: a round anyway this often (a missed NOTIFY)
WAIT_SLICE_SECONDS = 1.0  # a wait for NOTIFY is cut in slices: stop() is seen within one
MAX_DRAINED_NOTIFIES = 10_000  # NOTIFYs already queued are one wake
MIN_ROUND_SECONDS = 0.5  # rounds woken by NOTIFY are this far apart at least (a busy log)
# a page of the log that calls for no delivery moves the saved cursor at most this often (the
# read position is kept in memory meanwhile; a restart rereads at most this much of the log)
CURSOR_SAVE_SECONDS = 60.0
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
# the log events that may be sent, and the webhook type each may become (a PushFailed only
# when exhausted): one whose type no active subscription wants is not even decoded
_TOPICS = {
    f"{FinancialEvent.__module__}:FinancialEvent.ActionRequired": ACTION_REQUIRED,
    f"{FinancialEvent.__module__}:FinancialEvent.Synced": SYNCED,
    f"{FinancialEvent.__module__}:FinancialEvent.PushFailed": FAILED,
    f"{Connection.__module__}:Connection.RefreshTokenExpired": RECONNECT_NEEDED,
}
# every change of a school's subscriptions
_HOOK_TOPICS = [
    f"{Webhooks.__module__}:Webhooks.{name}" for name in ("Started", "Subscribed", "Unsubscribed")
]
SCAN_PAGE = 1000


_OWN_TOPIC = f"{WebhookOutbox.__module__}:WebhookOutbox."


class SecretStore(Protocol):
    """Where webhook secrets are kept (the encrypted token vault)."""

    def put_secret(self, school: str, name: str, value: str) -> None:
        """Store a named secret."""
        ...

    def get_secret(self, school: str, name: str) -> str | None:
        """A named secret, or None."""
        ...


class UnsafeReceiver(ValueError):
    """A receiver URL that may not be called."""


def new_secret() -> str:
    """`whsec_` + base64 of 24 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode("ascii")


def secret_name(subscription_id: str) -> str:
    """The vault name of a subscription's secret."""
    return f"webhook:{subscription_id}"


def check_receiver(url: str, *, allow_private: bool = False) -> str:
    """The URL if it may be called: https (http only on loopback), no private address unless
    allowed, no credentials in it. Names are resolved, so a name pointing inside is refused."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UnsafeReceiver("url: is not a valid URL") from None
    host = (parts.hostname or "").lower()
    if not host or parts.username or parts.password:
        raise UnsafeReceiver("url: must name a host and carry no credentials")
    loopback = host in LOOPBACK_NAMES or _is_loopback_ip(host)
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        raise UnsafeReceiver("url: must be https (plain http only for a loopback receiver)")
    if loopback:
        return url
    try:
        infos = socket.getaddrinfo(host, port or 443, type=socket.SOCK_STREAM)
    except OSError:
        raise UnsafeReceiver(f"url: the host {host!r} does not resolve") from None
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]))
        if not address.is_global and not allow_private:
            raise UnsafeReceiver(
                f"url: {host} resolves to a private address ({address}); "
                f"set {ALLOW_PRIVATE_VARIABLE}=1 to allow private receivers"
            )
    return url


def _is_loopback_ip(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def outbox(ledger: FlightLedger) -> WebhookOutbox:
    """The outbox (a new, unsaved one at the start of the log)."""
    try:
        found: WebhookOutbox = ledger.repository.get(OUTBOX_ID)
    except AggregateNotFoundError:
        found = WebhookOutbox._create(WebhookOutbox.Started, id=OUTBOX_ID)
    return found


class WebhookDeliverer:
    """Follows the log, schedules deliveries and sends the due ones (one instance at a time)."""

    def __init__(
        self,
        ledger: FlightLedger,
        secrets_store: SecretStore,
        *,
        allow_private: bool = False,
        post: Callable[..., requests.Response] = requests.post,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        listen: Callable[[], Listener] | None = None,
    ) -> None:
        self.ledger = ledger
        self.secrets = secrets_store
        self.allow_private = allow_private
        self.post = post
        self.now = now
        self._stop = threading.Event()
        self._read_to = 0  # log position read so far (the outbox's own events need no save)
        self._thread: threading.Thread | None = None
        self.listen = listen  # LISTEN on the log's channel (PostgreSQL); None: poll
        self._seen = -1  # the log's last position before the last full round (-1: none yet)
        self._next_due: datetime | None = None  # the outbox's next due delivery then
        self.rounds = 0  # full rounds run (the outbox read from the log)
        self._box: WebhookOutbox | None = None  # the outbox as of the last round, fast-forwarded
        self._cursor_saved = float("-inf")  # monotonic time the cursor was last saved
        self._last_round = float("-inf")  # monotonic time of the last full round
        # the webhook types each school's active subscriptions want, by the id of the school's
        # Webhooks aggregate: read once from the whole log, then followed page by page
        self._wanted: dict[UUID, frozenset[str]] | None = None
        self.decoded = 0  # log events read whole (decoded, their aggregate read) to schedule

    # --- scheduling ------------------------------------------------------------------------------

    def schedule(self, box: WebhookOutbox, limit: int = 500) -> int:
        """Turn new log events into deliveries, saved with the cursor in one transaction;
        returns how many log events were read (0: caught up)."""
        start = max(box.position, self._read_to) + 1
        notifications = self.ledger.recorder.select_notifications(start=start, limit=limit)
        if not notifications:
            return 0
        last = notifications[-1].id
        self._read_to = last
        if all(n.topic.startswith(_OWN_TOPIC) for n in notifications):
            return len(notifications)  # only the outbox's own events: nothing to save
        wanted = self._follow_subscriptions(notifications)
        candidates = [n for n in notifications if _TOPICS.get(n.topic) in wanted]
        deliveries: list[dict[str, Any]] = []
        schools: dict[str, Webhooks] = {}  # each school's subscriptions, read once a page
        for notification in candidates:
            self.decoded += 1
            event: Any = self.ledger.mapper.to_domain_event(notification)
            message = self._message(event)
            if message is None:
                continue
            school, kind, key, data = message
            if kind not in self._wanted_by(school):
                continue  # no active subscription of this school wants it
            hooks = schools.get(school)
            if hooks is None:
                hooks = schools[school] = self.ledger.webhooks(school)
            for sub in hooks.active_for(kind):
                if event.timestamp < sub.created_at:
                    continue  # happened before the subscription: not for it
                delivery_id = f"msg_{notification.id}_{sub.id}"
                body = json.dumps(
                    {"type": kind, "timestamp": event.timestamp.isoformat(), "data": data},
                    separators=(",", ":"),
                )
                deliveries.append(
                    {
                        "id": delivery_id,
                        "subscription_id": sub.id,
                        "school": school,
                        "type": kind,
                        "payload": body,
                        "event_key": key,
                        "sequence": notification.id,
                    }
                )
        if not deliveries and time.monotonic() - self._cursor_saved < CURSOR_SAVE_SECONDS:
            return len(notifications)  # nothing to deliver: the cursor moves in memory only
        # move the saved cursor past the whole page even when nothing in it is delivered
        self._cursor_saved = time.monotonic()
        box.trigger_event(
            WebhookOutbox.Scheduled, position=last, deliveries=deliveries, timestamp=self.now()
        )
        self.ledger.save(box)
        return len(notifications)

    def _follow_subscriptions(self, notifications: Sequence[Notification]) -> frozenset[str]:
        """The webhook types some active subscription wants, as of this page: the first time
        from every subscription change in the log, then from the changes in each page read
        (before the page's events are looked at, so a subscription counts for its own page)."""
        if self._wanted is None:
            self._wanted = {}
            changed = self._changed_webhooks(1)
        else:
            changed = {UUID(str(n.originator_id)) for n in notifications if n.topic in _HOOK_TOPICS}
        for aggregate_id in changed:
            hooks: Webhooks = self.ledger.repository.get(aggregate_id)
            self._wanted[aggregate_id] = frozenset(
                kind for sub in hooks.subscriptions.values() if sub.active for kind in sub.events
            )
        return frozenset().union(*self._wanted.values())

    def _changed_webhooks(self, start: int) -> set[UUID]:
        """Ids of every school's Webhooks aggregate with a change in the log from `start` on."""
        found: set[UUID] = set()
        while True:
            page = self.ledger.recorder.select_notifications(
                start=start, limit=SCAN_PAGE, topics=_HOOK_TOPICS
            )
            found.update(UUID(str(n.originator_id)) for n in page)
            if len(page) < SCAN_PAGE:
                return found
            start = page[-1].id + 1

    def _wanted_by(self, school: str) -> frozenset[str]:
        """The webhook types the school's active subscriptions want (as last followed)."""
        return (self._wanted or {}).get(webhooks_id(school), frozenset())

    def _message(self, event: Any) -> tuple[str, str, str, dict[str, Any]] | None:
        """(school, type, ordering key, data) of a log event, or None when none is sent."""
        if isinstance(event, Connection.RefreshTokenExpired):
            connection: Connection = self.ledger.repository.get(event.originator_id)
            data = {"school": connection.school, "pill": "Reconnect", "message": event.message}
            return connection.school, RECONNECT_NEEDED, f"connection:{connection.school}", data
        fe: FinancialEvent = self.ledger.financial_event(UUID(str(event.originator_id)))
        base = {"id": str(fe.id), "reference": fe.reference}
        key = f"event:{fe.id}"
        if isinstance(event, FinancialEvent.ActionRequired):
            data = {
                **base,
                "reason_code": event.reason_code,
                "reason": event.message,
                "fix": fix_for(event.reason_code, event.missing),
            }
            return fe.school, ACTION_REQUIRED, key, data
        if isinstance(event, FinancialEvent.Synced):
            data = {**base, "qbo_id": event.qbo_id, "doc_number": event.doc_number}
            return fe.school, SYNCED, key, data
        if isinstance(event, FinancialEvent.PushFailed) and event.category == "exhausted":
            data = {**base, "code": event.code, "reason": event.message}
            return fe.school, FAILED, key, data
        return None

    # --- sending ---------------------------------------------------------------------------------

    def send_due(self, box: WebhookOutbox) -> int:
        """POST every due delivery once; record each attempt. Returns attempts made."""
        made = 0
        for delivery in box.due(self.now()):
            if self._stop.is_set():
                break
            self._attempt(box, delivery)
            made += 1
        return made

    def _attempt(self, box: WebhookOutbox, delivery: Delivery) -> None:
        sub = self.ledger.webhooks(delivery.school).subscriptions.get(delivery.subscription_id)
        secret = self.secrets.get_secret(delivery.school, secret_name(delivery.subscription_id))
        now = self.now()
        status: int | None = None
        if sub is None or not sub.active or secret is None:
            outcome, detail = "refused", "the subscription was deleted"
        else:
            try:
                check_receiver(sub.url, allow_private=self.allow_private)
                signature = Webhook(secret).sign(delivery.id, now, delivery.payload)
                answer = self.post(
                    sub.url,
                    data=delivery.payload.encode("utf-8"),
                    headers={
                        "content-type": "application/json",
                        "webhook-id": delivery.id,
                        "webhook-timestamp": str(int(now.timestamp())),
                        "webhook-signature": signature,
                    },
                    timeout=TIMEOUT_SECONDS,
                    allow_redirects=False,
                )
                status = answer.status_code
                ok = 200 <= status < 300
                outcome = DELIVERED if ok else "failed"
                detail = "" if ok else f"the receiver answered {status}"
            except UnsafeReceiver as exc:
                outcome, detail = "refused", str(exc)
            except requests.RequestException as exc:
                outcome, detail = "failed", f"{type(exc).__name__}: the receiver did not answer"
        retry_at = None
        if outcome != DELIVERED and sub is not None and sub.active:
            retry_at = next_attempt_at(delivery, now)
        box.trigger_event(
            WebhookOutbox.Attempted,
            delivery_id=delivery.id,
            status_code=status,
            outcome=outcome,
            detail=detail,
            next_at=retry_at,
            timestamp=now,
        )
        self.ledger.save(box)
        metrics.WEBHOOK_DELIVERIES.labels(outcome=outcome).inc()
        log.info(
            "webhook_delivery_attempted",
            delivery=delivery.id,
            school=delivery.school,
            type=delivery.type,
            outcome=outcome,
            status=status,
        )

    # --- the loop --------------------------------------------------------------------------------

    def run_once(self) -> int:
        """Schedule what the log calls for, then send what is due; attempts made."""
        self.rounds += 1
        self._last_round = time.monotonic()
        try:
            box = self._outbox()
            while self.schedule(box):
                pass
            made = self.send_due(box)
        except IntegrityError:  # another deliverer saved first: reload next round
            self._box, self._next_due = None, self.now()
            return 0
        except BaseException:
            self._box = None  # unsaved changes may be in it: read it from the log next time
            raise
        self._next_due = box.next_due()
        return made

    def _outbox(self) -> WebhookOutbox:
        """The outbox: the last round's, brought up to date with its events in the log since
        (another deliverer's too), or read whole the first time."""
        box = self._box
        if box is None:
            box = outbox(self.ledger)
        else:
            for event in self.ledger.repository.event_store.get(OUTBOX_ID, gt=box.version):
                box = cast(WebhookOutbox, cast(Any, event).mutate(box))
        self._box = box
        return box

    def tick(self) -> int:
        """A full round when the log moved since the last one or a delivery is due; otherwise
        only the log's last position is read. Attempts made."""
        top = self.ledger.recorder.max_notification_id() or 0
        due = self._next_due is not None and self._next_due <= self.now()
        if top == self._seen and not due:
            return 0
        self._seen = -1  # a round that fails is run again
        made = self.run_once()
        self._seen = top  # what was appended after `top` is read by the next round
        return made

    def start(self, interval: float = POLL_SECONDS) -> None:
        """Deliver in a daemon thread until stop()."""
        self._thread = threading.Thread(
            target=self._loop, args=(interval,), name="webhooks", daemon=True
        )
        self._thread.start()

    def _loop(self, interval: float) -> None:
        listener: Listener | None = None
        while not self._stop.is_set():
            listener = self._listening(listener)  # before the round: no NOTIFY is missed
            try:
                self.tick()
            except Exception as exc:  # keep delivering after a database blink
                log.warning("webhook_loop_failed", error=type(exc).__name__)
                self._stop.wait(interval)
                continue
            listener = self._wait(listener, interval)
            self._stop.wait(max(0.0, self._last_round + MIN_ROUND_SECONDS - time.monotonic()))
        if listener is not None:
            _close(listener)

    def _listening(self, listener: Listener | None) -> Listener | None:
        """The open listener, or a new one (None: polling, SQLite or LISTEN failed)."""
        if listener is not None or self.listen is None:
            return listener
        try:
            opened = self.listen()
        except Exception as exc:  # polled until the next round tries again
            log.warning("webhook_listen_failed", error=str(exc))
            return None
        if opened.pid is None:  # a poller (SQLite): the cheap check every interval instead
            _close(opened)
            self.listen = None
            return None
        return opened

    def _wait(self, listener: Listener | None, interval: float) -> Listener | None:
        """Until a NOTIFY, the next due delivery or the fallback (listening), else interval."""
        if listener is None:
            self._stop.wait(interval)
            return None
        timeout = FALLBACK_SECONDS
        if self._next_due is not None:
            timeout = min(timeout, max(0.0, (self._next_due - self.now()).total_seconds()))
        deadline = time.monotonic() + timeout
        try:
            while not self._stop.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    return listener
                if listener.wait(min(left, WAIT_SLICE_SECONDS)):
                    for _ in range(MAX_DRAINED_NOTIFIES):
                        if not listener.wait(0):
                            break
                    return listener
        except Exception as exc:  # the listening connection died: poll, reopen next round
            log.warning("webhook_listen_failed", error=str(exc))
            _close(listener)
            self._stop.wait(interval)
            return None
        return listener

    def stop(self) -> None:
        """Stop the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=TIMEOUT_SECONDS + 1)


def _close(listener: Listener) -> None:
    try:
        listener.close()
    except Exception as exc:  # closing a dead connection must not stop delivering
        log.debug("webhook_listener_close_failed", error=str(exc))
