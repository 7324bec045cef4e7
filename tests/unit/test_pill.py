"""The connection pill and badge walk through every threshold of DESIGN.md."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain.connection import Connection
from domain.ids import connection_id
from domain.pill import (
    AMBER,
    GREEN,
    GREY,
    RED,
    badge_tone,
    connection_pill,
    days_left,
    pill_for,
)

NOW = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("left", "pill", "tone", "badge", "days"),
    [
        (timedelta(days=31), "Connected", "green", "31d", 31),
        (timedelta(days=30, hours=23), "30d left", "amber", "30d left", 30),
        (timedelta(days=30), "30d left", "amber", "30d left", 30),
        (timedelta(days=15), "15d left", "amber", "15d left", 15),
        (timedelta(days=14, hours=23), "14d left", "red", "14d • reconnect", 14),
        (timedelta(days=14), "14d left", "red", "14d • reconnect", 14),
        (timedelta(days=1), "1d left", "red", "1d • reconnect", 1),
        (timedelta(hours=23), "0d left", "red", "Reconnect soon", 0),
        (timedelta(seconds=1), "0d left", "red", "Reconnect soon", 0),
        (timedelta(0), "Reconnect", "red", "Reconnect", 0),
        (-timedelta(days=2), "Reconnect", "red", "Reconnect", -2),
    ],
)
def test_pill_thresholds(left: timedelta, pill: str, tone: str, badge: str, days: int) -> None:
    """Remaining time maps to the pill, tone and badge texts of DESIGN.md (floor of days)."""
    shown = pill_for(NOW + left, NOW)
    assert (shown.pill, shown.tone, shown.badge, shown.days_left) == (pill, tone, badge, days)


def test_walking_the_clock_crosses_every_threshold() -> None:
    """Moving 'now' toward a fixed expiry passes green, amber, red, reconnect-soon, reconnect."""
    expiry = NOW + timedelta(days=40)
    seen = []
    for day in range(42):
        shown = pill_for(expiry, NOW + timedelta(days=day))
        seen.append((shown.tone, shown.badge.split(" ", 1)[-1] if shown.days_left else shown.badge))
    tones = [t for t, _ in seen]
    assert tones[:10] == ["green"] * 10  # 40..31 days
    assert tones[10:26] == ["amber"] * 16  # 30..15 days
    assert tones[26:] == ["red"] * 16  # 14..0 days, then expired
    assert pill_for(expiry, expiry - timedelta(hours=1)).badge == "Reconnect soon"
    assert pill_for(expiry, expiry).pill == "Reconnect"


def test_unknown_expiry_is_connected_with_token_unknown_badge() -> None:
    """A connected school without a known refresh expiry shows 'Token unknown'."""
    shown = pill_for(None, NOW)
    assert (shown.pill, shown.tone, shown.badge) == ("Connected", GREEN, "Token unknown")


def _connection() -> Connection:
    return Connection._create(
        Connection.Registered, id=connection_id("demo"), school="demo", timestamp=NOW
    )


def test_never_connected_is_grey() -> None:
    """No connection, or one never connected, shows the grey 'Not connected' pill."""
    assert connection_pill(None, NOW).pill == "Not connected"
    shown = connection_pill(_connection(), NOW)
    assert (shown.pill, shown.tone) == ("Not connected", GREY)


def test_nearer_of_rolling_and_hard_expiry_counts() -> None:
    """The hard expiry wins when it comes before the rolling one."""
    conn = _connection()
    conn.connect(
        realm="1",
        company="Sunrise",
        country="US",
        access_expires_at=NOW + timedelta(hours=1),
        refresh_expires_at=NOW + timedelta(days=100),
        hard_expires_at=NOW + timedelta(days=10),
        actor="ana",
        at=NOW,
    )
    shown = connection_pill(conn, NOW)
    assert (shown.pill, shown.badge, shown.days_left) == ("10d left", "10d • reconnect", 10)


def test_invalid_grant_shows_reconnect_even_with_time_left() -> None:
    """After RefreshTokenExpired the pill is 'Reconnect' whatever the expiry says."""
    conn = _connection()
    conn.connect(
        realm="1",
        company="Sunrise",
        country="US",
        access_expires_at=NOW + timedelta(hours=1),
        refresh_expires_at=NOW + timedelta(days=100),
        hard_expires_at=None,
        actor="ana",
        at=NOW,
    )
    conn.expire(message="invalid_grant", at=NOW)
    shown = connection_pill(conn, NOW)
    assert (shown.pill, shown.tone, shown.badge) == ("Reconnect", RED, "Reconnect")
    assert shown.needs_reconnect
    assert (shown.expires_at, shown.days_left) == (None, None)  # revoked: no expiry date shown


def test_days_left_is_the_floor() -> None:
    """23 hours 59 minutes left count as 0 days; 24 hours as 1."""
    assert days_left(NOW + timedelta(hours=23, minutes=59), NOW) == 0
    assert days_left(NOW + timedelta(hours=24), NOW) == 1


def test_a_surfaced_error_is_not_healthy_but_expiry_still_wins() -> None:
    """An error QuickBooks returned (403, failed test): red "Connection error", the badge keeps
    the token's state; an expired token still says Reconnect; success clears it."""
    conn = _connection()
    conn.connect(
        realm="1",
        company="Sunrise",
        country="US",
        access_expires_at=NOW + timedelta(hours=1),
        refresh_expires_at=NOW + timedelta(days=100),
        hard_expires_at=None,
        actor="ana",
        at=NOW,
    )
    assert connection_pill(conn, NOW).pill == "Connected"
    conn.record_failure(message="message=ApplicationAuthorizationFailed", at=NOW)
    shown = connection_pill(conn, NOW)
    assert (shown.pill, shown.tone, shown.badge) == ("Connection error", RED, "100d")
    assert badge_tone(shown.badge, shown.days_left) == GREEN
    assert connection_pill(conn, NOW + timedelta(days=80)).badge == "20d left"
    assert connection_pill(conn, NOW + timedelta(days=80)).pill == "Connection error"
    assert connection_pill(conn, NOW + timedelta(days=100)).pill == "Reconnect"
    conn.record_test(ok=True, company="Sunrise", country="US", message="", actor="ana", at=NOW)
    assert connection_pill(conn, NOW).pill == "Connected"


@pytest.mark.parametrize(
    ("badge", "days", "tone"),
    [("100d", 100, GREEN), ("20d left", 20, AMBER), ("3d • reconnect", 3, RED),
     ("Reconnect soon", 0, RED), ("Reconnect", None, RED), ("Token unknown", None, GREEN)],
)  # fmt: skip
def test_badge_tone_follows_the_token(badge: str, days: int | None, tone: str) -> None:
    """The badge's own tone, whatever the pill shows."""
    assert badge_tone(badge, days) == tone
