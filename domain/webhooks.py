"""Webhook subscriptions per school and the delivery outbox, both kept in the log.

`Webhooks` (one per school) holds the subscriptions (url, event types; the signing secret lives
in the encrypted vault, never in the log). `WebhookOutbox` (one) is a delivery cursor over the
log: `Scheduled` moves its log position and adds the deliveries the new log events call for, in
one save, so a delivery that was due when the server died is still due after the restart;
`Attempted` keeps every attempt. Delivery is at least once, in order per financial event, with
backoff for 24 hours. Pure: the sending is adapters/webhooks.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any
from uuid import NAMESPACE_URL, uuid5

from eventsourcing.domain import Aggregate

ACTION_REQUIRED = "financial_event.action_required"
SYNCED = "financial_event.synced"
FAILED = "financial_event.failed"
RECONNECT_NEEDED = "connection.reconnect_needed"
EVENT_TYPES = (ACTION_REQUIRED, SYNCED, FAILED, RECONNECT_NEEDED)
RETRY_FOR = timedelta(hours=24)
BACKOFF_SECONDS = (5, 30, 120, 600, 1800, 3600, 7200, 14400)
OUTBOX_ID = uuid5(NAMESPACE_URL, "flightledger:webhook-outbox")
PENDING, DELIVERED, GAVE_UP = "pending", "delivered", "gave_up"


@dataclass(frozen=True)
class Subscription:
    """Where and what to deliver."""

    id: str
    url: str
    events: tuple[str, ...]
    created_at: datetime
    active: bool = True


@dataclass(frozen=True)
class Attempt:
    """One delivery attempt."""

    at: datetime
    status_code: int | None
    outcome: str  # delivered | failed | refused
    detail: str


@dataclass(frozen=True)
class Delivery:
    """One message to one subscription."""

    id: str  # also the webhook-id header: stable across retries
    subscription_id: str
    school: str
    type: str
    payload: str  # the exact JSON body that is signed
    event_key: str  # deliveries of one key go in order
    sequence: int  # the log position that caused it
    created_at: datetime
    next_at: datetime
    state: str = PENDING
    attempts: tuple[Attempt, ...] = field(default=())


def next_attempt_at(delivery: Delivery, now: datetime) -> datetime | None:
    """When to try again after a failed attempt, or None once 24 hours are spent."""
    n = len(delivery.attempts)
    step = BACKOFF_SECONDS[min(n, len(BACKOFF_SECONDS) - 1)]
    when = now + timedelta(seconds=step)
    return None if when - delivery.created_at > RETRY_FOR else when


class Webhooks(Aggregate):
    """A school's webhook subscriptions."""

    class Started(Aggregate.Created):
        """No subscriptions yet."""

        school: str

        def apply(self, aggregate: Any) -> None:
            """Empty."""
            agg: Webhooks = aggregate
            agg.school = self.school
            agg.subscriptions = {}

    class Subscribed(Aggregate.Event):
        """A receiver subscribed."""

        subscription_id: str
        url: str
        events: list[str]
        operator: str

        def apply(self, aggregate: Any) -> None:
            """Add it."""
            agg: Webhooks = aggregate
            agg.subscriptions[self.subscription_id] = Subscription(
                self.subscription_id, self.url, tuple(self.events), self.timestamp
            )

    class Unsubscribed(Aggregate.Event):
        """A subscription was deleted."""

        subscription_id: str
        operator: str

        def apply(self, aggregate: Any) -> None:
            """Mark it inactive (its deliveries stay readable)."""
            agg: Webhooks = aggregate
            sub = agg.subscriptions[self.subscription_id]
            agg.subscriptions[self.subscription_id] = replace(sub, active=False)

    school: str
    subscriptions: dict[str, Subscription]

    def __init__(self) -> None:
        """State is set by the creation event's apply()."""

    def subscribe(
        self, subscription_id: str, url: str, events: list[str], *, operator: str, at: datetime
    ) -> Subscription:
        """Add a subscription."""
        self.trigger_event(
            self.Subscribed,
            subscription_id=subscription_id,
            url=url,
            events=events,
            operator=operator,
            timestamp=at,
        )
        return self.subscriptions[subscription_id]

    def unsubscribe(self, subscription_id: str, *, operator: str, at: datetime) -> bool:
        """Delete an active subscription; False when there is none by that id."""
        sub = self.subscriptions.get(subscription_id)
        if sub is None or not sub.active:
            return False
        self.trigger_event(
            self.Unsubscribed, subscription_id=subscription_id, operator=operator, timestamp=at
        )
        return True

    def active_for(self, event_type: str) -> list[Subscription]:
        """Active subscriptions that want this type."""
        return [s for s in self.subscriptions.values() if s.active and event_type in s.events]


class WebhookOutbox(Aggregate):
    """The delivery cursor over the log and every delivery with its attempts."""

    class Started(Aggregate.Created):
        """At the start of the log."""

        def apply(self, aggregate: Any) -> None:
            """Nothing delivered yet."""
            agg: WebhookOutbox = aggregate
            agg.position = 0
            agg.deliveries = {}

    class Scheduled(Aggregate.Event):
        """The cursor moved to `position`; these deliveries are due."""

        position: int
        deliveries: list[dict[str, Any]]

        def apply(self, aggregate: Any) -> None:
            """Add them."""
            agg: WebhookOutbox = aggregate
            agg.position = self.position
            for d in self.deliveries:
                agg.deliveries[d["id"]] = Delivery(
                    id=d["id"],
                    subscription_id=d["subscription_id"],
                    school=d["school"],
                    type=d["type"],
                    payload=d["payload"],
                    event_key=d["event_key"],
                    sequence=d["sequence"],
                    created_at=self.timestamp,
                    next_at=self.timestamp,
                )

    class Attempted(Aggregate.Event):
        """One attempt and what follows it."""

        delivery_id: str
        status_code: int | None
        outcome: str
        detail: str
        next_at: datetime | None

        def apply(self, aggregate: Any) -> None:
            """Record it."""
            agg: WebhookOutbox = aggregate
            d = agg.deliveries[self.delivery_id]
            attempt = Attempt(self.timestamp, self.status_code, self.outcome, self.detail)
            if self.outcome == DELIVERED:
                state = DELIVERED
            else:
                state = PENDING if self.next_at is not None else GAVE_UP
            agg.deliveries[self.delivery_id] = replace(
                d,
                attempts=(*d.attempts, attempt),
                state=state,
                next_at=self.next_at or d.next_at,
            )

    position: int
    deliveries: dict[str, Delivery]

    def __init__(self) -> None:
        """State is set by the creation event's apply()."""

    def due(self, now: datetime) -> list[Delivery]:
        """Pending deliveries due now, the first of each (subscription, event key) only."""
        heads: dict[tuple[str, str], Delivery] = {}
        for d in sorted(self.deliveries.values(), key=lambda x: x.sequence):
            if d.state != PENDING:
                continue
            heads.setdefault((d.subscription_id, d.event_key), d)
        return sorted((d for d in heads.values() if d.next_at <= now), key=lambda x: x.sequence)

    def next_due(self) -> datetime | None:
        """When the earliest pending head delivery (as `due` picks them) is due; None: none."""
        heads: dict[tuple[str, str], Delivery] = {}
        for d in sorted(self.deliveries.values(), key=lambda x: x.sequence):
            if d.state == PENDING:
                heads.setdefault((d.subscription_id, d.event_key), d)
        return min((d.next_at for d in heads.values()), default=None)

    def of_subscription(self, subscription_id: str) -> list[Delivery]:
        """Every delivery of a subscription, newest first."""
        found = [d for d in self.deliveries.values() if d.subscription_id == subscription_id]
        return sorted(found, key=lambda d: d.sequence, reverse=True)
