"""One school's authorised calls to its QuickBooks realm.

RealmSession holds what every call needs: the current access token (refreshed when it expires
within 5 minutes, and once on a 401/3200, under the school's refresh lock, with the rotated
token set persisted in the vault before it is used), the realm's rate budget, and bounded
tenacity retries for failures that surely did not reach QuickBooks. A failure comes back as a
classify.Verdict, never as an exception.

Calls may run from several threads at once (a pass sends its single creates concurrently): each
call leases a QboClient of its own (its own python-quickbooks object and requests.Session, which
are not safe to share between threads) from a small pool and gives it back afterwards, so the
pool holds at most as many clients (keep-alive connections) as calls ever ran at once.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

import structlog
from tenacity import (
    RetryCallState,
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_any,
    wait_exponential_jitter,
)
from tenacity.stop import stop_base

from adapters.quickbooks.classify import Failure, Verdict, classify
from adapters.quickbooks.client import QboCallFailed, QboClient, TimedQuickBooks
from adapters.quickbooks.oauth import OAuthClient, QboAuthError, oauth_client
from adapters.quickbooks.ratelimit import BudgetLimits, RateBudget
from adapters.quickbooks.settings import QboSettings
from domain.ports import OutcomeKind, PushOutcome, ReasonCode, TokenExpiries, TokenSet
from domain.preflight import NOT_CONNECTED_MESSAGE

log = structlog.get_logger(__name__)
T = TypeVar("T")

REFRESH_MARGIN = timedelta(minutes=5)
NO_EVENT = uuid.UUID(int=0)


class TokenStore(Protocol):
    """Where a school's tokens live (adapters.vault.TokenVault)."""

    def get_tokens(self, school: str) -> TokenSet | None:
        """The token set, or None."""
        ...

    def put_tokens(self, school: str, tokens: TokenSet) -> None:
        """Replace the token set atomically."""
        ...

    def refresh_lock(self, school: str) -> AbstractContextManager[None]:
        """Exclusive refresh of one school's tokens (threads and processes)."""
        ...


@dataclass
class GatewayHooks:
    """What the caller records when tokens change (Connection events)."""

    on_refreshed: Callable[[TokenExpiries], None] = lambda _e: None
    on_expired: Callable[[str], None] = lambda _m: None
    on_auth_failed: Callable[[str], None] = lambda _m: None


class _Stop(Exception):
    """End the call with this verdict."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.outcome.message)
        self.verdict = verdict


class _StopWhen(stop_base):
    """tenacity: no further attempt once the worker is shutting down."""

    def __init__(self, stopping: Callable[[], bool]) -> None:
        self.stopping = stopping

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self.stopping()


class _RetryNow(Exception):
    """Surely not performed: try again inside this call."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.outcome.message)
        self.verdict = verdict


def _fingerprint(token: str) -> str:
    """A one-way fingerprint of a token (the token itself is not kept)."""
    return hashlib.sha256(token.encode()).hexdigest()


def utcnow() -> datetime:
    """Now, in UTC."""
    return datetime.now(UTC)


class RealmSession:
    """Tokens, rate budget and retries for one school's calls to its realm."""

    def __init__(
        self,
        *,
        settings: QboSettings,
        school: str,
        tokens: TokenStore,
        oauth: OAuthClient | None = None,
        budget: RateBudget | None = None,
        hooks: GatewayHooks | None = None,
        now: Callable[[], datetime] = utcnow,
        max_attempts: int = 3,
        sleep: Callable[[float], None] = time.sleep,
        stopping: Callable[[], bool] | None = None,
    ) -> None:
        self.settings = settings
        self.school = school
        self.tokens = tokens
        self._oauth = oauth
        self.budget = budget or RateBudget(BudgetLimits(minute_seconds=settings.minute_seconds))
        self.hooks = hooks or GatewayHooks()
        self.now = now
        self.max_attempts = max_attempts
        self.sleep = sleep
        # the worker is shutting down: no further retry, and a retry's wait ends early
        self.stopping = stopping or (lambda: False)
        self._idle: list[QboClient] = []  # clients no call holds now (one per concurrent call)
        self._idle_lock = threading.Lock()
        self._expired: tuple[str, str] | None = None  # (refused refresh token's hash, message)

    @property
    def oauth(self) -> OAuthClient:
        """The (cached) OAuth client."""
        if self._oauth is None:
            self._oauth = oauth_client(self.settings)
        return self._oauth

    def current(self) -> TokenSet:
        """The school's tokens as the vault holds them now (another process may have changed
        them), refreshed when they expire soon; a refresh token QBO refused stops the call until
        the vault holds a new one (a reconnect)."""
        tokens = self.tokens.get_tokens(self.school)
        if self._expired is not None:
            refused, message = self._expired
            if tokens is not None and _fingerprint(tokens.refresh_token) == refused:
                raise _Stop(self.auth_expired(message))
            self._expired = None  # reconnected (or disconnected) since: the vault decides
        if tokens is None:
            raise _Stop(
                Verdict(
                    PushOutcome(
                        event_id=NO_EVENT,
                        kind=OutcomeKind.ACTION_REQUIRED,
                        reason_code=ReasonCode.NOT_CONNECTED,
                        message=NOT_CONNECTED_MESSAGE,
                    )
                )
            )
        if tokens.access_expires_at - self.now() <= REFRESH_MARGIN:
            tokens = self.refresh(tokens, force=False)
        return tokens

    def auth_expired(self, message: str) -> Verdict:
        return Verdict(
            PushOutcome(
                event_id=NO_EVENT,
                kind=OutcomeKind.ACTION_REQUIRED,
                reason_code=ReasonCode.AUTH_EXPIRED,
                code="invalid_grant",
                message=message,
            )
        )

    def refresh(self, stale: TokenSet, *, force: bool) -> TokenSet:
        """Refresh under the school's lock; persist before use; hooks record expiries."""
        with self.tokens.refresh_lock(self.school):
            current = self.tokens.get_tokens(self.school)
            if current is None:
                return self.current()  # disconnected meanwhile: raises _Stop
            fresh = current.access_expires_at - self.now() > REFRESH_MARGIN
            if fresh and (not force or current.access_token != stale.access_token):
                return current  # another thread or process refreshed already
            try:
                new = self.oauth.refresh(current.refresh_token, current.realm, self.now())
            except QboAuthError as exc:
                verdict = classify(exc.failure, event_id=NO_EVENT, is_create=False)
                if exc.invalid_grant:
                    latest = self.tokens.get_tokens(self.school)
                    if latest is not None and latest.refresh_token != current.refresh_token:
                        return latest  # reconnected by another process meanwhile
                    message = (
                        "QuickBooks refused the refresh token (invalid_grant): "
                        f"{exc.failure.message or 'expired or revoked'}. Reconnect QuickBooks."
                    )
                    self._expired = (_fingerprint(current.refresh_token), message)
                    log.warning("qbo_refresh_token_expired", school=self.school)
                    self._safe_hook(self.hooks.on_expired, message)
                    raise _Stop(self.auth_expired(message)) from None
                if verdict.outcome.reason_code == ReasonCode.AUTH_FAILED:
                    log.warning("qbo_refresh_refused", school=self.school, code=exc.failure.code)
                    self._safe_hook(self.hooks.on_auth_failed, verdict.outcome.message)
                raise _Stop(verdict) from None
            self.tokens.put_tokens(self.school, new)
            log.info(
                "qbo_tokens_refreshed",
                school=self.school,
                realm=new.realm,
                access_expires_at=new.access_expires_at.isoformat(),
            )
        self._safe_hook(
            self.hooks.on_refreshed,
            TokenExpiries(new.access_expires_at, new.refresh_expires_at, new.hard_expires_at),
        )
        return new

    def _safe_hook(self, hook: Callable[[Any], None], value: Any) -> None:
        try:
            hook(value)
        except Exception as exc:  # recording must not lose the token already persisted
            log.error("qbo_hook_failed", school=self.school, error=type(exc).__name__)

    @contextmanager
    def lease(self, tokens: TokenSet) -> Iterator[QboClient]:
        """A client for one call, used by no other thread meanwhile; back to the pool after."""
        client: QboClient | None = None
        stale: list[QboClient] = []
        with self._idle_lock:
            while self._idle and client is None:
                candidate = self._idle.pop()
                if candidate.realm == tokens.realm:
                    client = candidate
                else:  # the school reconnected to another company
                    stale.append(candidate)
        for old in stale:
            old.close()
        if client is None:
            client = QboClient(self.settings, tokens.realm, tokens.access_token)
        else:
            client.set_access_token(tokens.access_token)
        try:
            yield client
        finally:
            with self._idle_lock:
                self._idle.append(client)

    @property
    def clients(self) -> int:
        """Clients in the pool now (as many as calls ran at once, at most)."""
        with self._idle_lock:
            return len(self._idle)

    def run(
        self,
        operation: Callable[[TimedQuickBooks], T],
        *,
        event_id: uuid.UUID,
        is_create: bool,
        batch: bool = False,
    ) -> T | Verdict:
        """Run an operation with refresh, rate budget and bounded retries; a Verdict on failure."""
        refreshed = False

        def attempt() -> T:
            nonlocal refreshed
            tokens = self.current()
            with self.lease(tokens) as client, self.budget.slot(batch=batch):
                try:
                    return client.call(operation)
                except QboCallFailed as exc:
                    failure: Failure = exc.failure
            verdict = classify(
                failure,
                event_id=event_id,
                is_create=is_create,
                minute_seconds=self.settings.minute_seconds,
            )
            log.info(
                "qbo_call_failed",
                school=self.school,
                realm=tokens.realm,
                event_id=str(event_id),
                code=failure.code,
                http_status=failure.http_status,
                kind=verdict.outcome.kind.value,
            )
            if verdict.refresh and not refreshed:
                refreshed = True
                self.refresh(tokens, force=True)
                raise _RetryNow(verdict)
            if verdict.outcome.retry_after:
                self.budget.pause(verdict.outcome.retry_after)
            if verdict.retry_now:
                raise _RetryNow(verdict)
            if verdict.outcome.reason_code == ReasonCode.AUTH_FAILED:
                self._safe_hook(self.hooks.on_auth_failed, verdict.outcome.message)
            raise _Stop(verdict)

        retrying = Retrying(
            stop=stop_any(stop_after_attempt(self.max_attempts), _StopWhen(self.stopping)),
            wait=wait_exponential_jitter(
                multiplier=self.settings.scaled(0.5), max=self.settings.scaled(5), jitter=0.1
            ),
            retry=retry_if_exception_type(_RetryNow),
            sleep=self._wait,
        )
        try:
            return retrying(attempt)
        except _Stop as stop:
            return for_event(stop.verdict, event_id)
        except RetryError as exc:
            last = exc.last_attempt.exception()
            assert isinstance(last, _RetryNow)
            return for_event(last.verdict, event_id)

    def _wait(self, seconds: float) -> None:
        """A retry's backoff, cut short when the worker is shutting down."""
        end = time.monotonic() + seconds
        while not self.stopping():
            left = end - time.monotonic()
            if left <= 0:
                return
            self.sleep(min(left, 0.1))

    def close(self) -> None:
        """Close the HTTP sessions of the pool's clients."""
        with self._idle_lock:
            idle, self._idle = self._idle, []
        for client in idle:
            client.close()


def for_event(verdict: Verdict, event_id: uuid.UUID) -> Verdict:
    """The same verdict, attributed to one financial event."""
    return replace(verdict, outcome=replace(verdict.outcome, event_id=event_id))
