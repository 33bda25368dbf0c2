"""Pre-flight checks before Rasa starts: is the tracker database (and Redis) reachable?

Rasa's ``SQLTrackerStore`` retries an unreachable database every 5 s **forever** (rasa-notes
B12), so a wrong host, port or password makes ``rasa run`` hang without a clear error.
``python -m bot run`` calls :func:`check_all` first and exits with a message naming the host and
port (never the password) when a store cannot be reached within the deadline.

Also usable on its own (e.g. as a Kubernetes init container or before ``docker compose up``)::

    python -m bot.preflight          # reads TRACKER_STORE_URL, REDIS_URL, TRACKER_DB_TIMEOUT

Only the standard library, SQLAlchemy and redis-py are imported, so this runs in the official
``rasa/rasa`` image as well as in the project's virtualenv.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Callable, Optional
from urllib.parse import urlsplit

DEFAULT_TIMEOUT_S = 30.0


class PreflightError(Exception):
    """A store could not be reached in time. The message never contains a password."""


def describe_db_url(url: str) -> str:
    """``host:port/database`` of an SQLAlchemy URL, without user name or password.

    >>> describe_db_url("postgresql://u:secret@db.example:5433/signpost")
    'db.example:5433/signpost'
    >>> describe_db_url("sqlite:////srv/var/tracker.db")
    'sqlite file /srv/var/tracker.db'
    """
    from sqlalchemy.engine import make_url

    try:
        u = make_url(url)
    except Exception:  # noqa: BLE001 - an unparsable URL must not be echoed (may hold a password)
        return "<unparsable database URL>"
    if u.get_backend_name() == "sqlite":
        return f"sqlite file {u.database or ':memory:'}"
    default_ports = {"postgresql": 5432, "mysql": 3306, "mssql": 1433, "oracle": 1521}
    port = u.port or default_ports.get(u.get_backend_name(), "?")
    return f"{u.host or 'localhost'}:{port}/{u.database or ''}"


def describe_redis_url(url: str) -> str:
    """``host:port/db`` of a ``redis://`` URL, without user name or password."""
    parts = urlsplit(url)
    try:
        port = parts.port or 6379
    except ValueError:
        port = "?"
    db = (parts.path or "/0").lstrip("/") or "0"
    return f"{parts.hostname or 'localhost'}:{port}/{db}"


def _redact(text: str, *secrets: Optional[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _short_reason(exc: BaseException, *secrets: Optional[str]) -> str:
    """First line of the driver's own message (SQLAlchemy wraps it in ``exc.orig``)."""
    inner = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(inner).splitlines() if line.strip()]
    reason = lines[0] if lines else type(inner).__name__
    return _redact(f"{type(inner).__name__}: {reason}", *secrets)[:300]


def _retry(attempt: Callable[[float], None], timeout_s: float, interval_s: float = 1.0) -> None:
    """Call ``attempt(per_try_timeout)`` until it succeeds or ``timeout_s`` has passed.

    The last attempt starts at the deadline, so the whole check takes at most about
    ``timeout_s`` plus one attempt's own timeout (1 to 5 s).

    Raises:
        The last exception of ``attempt`` when the deadline passes.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        remaining = deadline - time.monotonic()
        try:
            attempt(max(1.0, min(5.0, remaining)))
            return
        except Exception:  # noqa: BLE001 - re-raised once the deadline has passed
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise
        time.sleep(min(interval_s, remaining))


def check_tracker_db(url: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
    """Connect to the tracker store database and run ``SELECT 1``, retrying until ``timeout_s``.

    Retrying (every second) lets the check wait for a database that is still starting, as
    happens with ``docker compose up`` or a Kubernetes rollout.

    Raises:
        PreflightError: naming ``host:port/database`` and the driver's reason (no password).
    """
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    try:
        password = make_url(url).password
    except Exception as exc:  # noqa: BLE001
        raise PreflightError("TRACKER_STORE_URL is not a valid SQLAlchemy database URL") from None
    where = describe_db_url(url)
    is_sqlite = url.startswith("sqlite")

    def attempt(per_try_s: float) -> None:
        connect_args = {} if is_sqlite else {"connect_timeout": max(1, int(per_try_s))}
        engine = sa.create_engine(url, connect_args=connect_args, poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        finally:
            engine.dispose()

    try:
        _retry(attempt, timeout_s)
    except Exception as exc:  # noqa: BLE001 - turned into one clear error
        raise PreflightError(
            f"Cannot reach the tracker store database at {where} within {timeout_s:g} s "
            f"({_short_reason(exc, password)}). Check TRACKER_STORE_URL and that the database "
            "server is running; Rasa itself would wait for it forever."
        ) from None


def check_redis(url: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
    """``PING`` the Redis server of the lock store, retrying until ``timeout_s``.

    Raises:
        PreflightError: naming ``host:port/db`` and the reason (no password).
    """
    import redis

    where = describe_redis_url(url)
    password = urlsplit(url).password

    def attempt(per_try_s: float) -> None:
        client = redis.Redis.from_url(url, socket_connect_timeout=per_try_s,
                                      socket_timeout=per_try_s)
        try:
            if not client.ping():
                raise ConnectionError("PING was not answered with PONG")
        finally:
            client.close()

    try:
        _retry(attempt, timeout_s)
    except Exception as exc:  # noqa: BLE001
        raise PreflightError(
            f"Cannot reach Redis (lock store) at {where} within {timeout_s:g} s "
            f"({_short_reason(exc, password)}). Check REDIS_URL and that Redis is running."
        ) from None


def timeout_from_env() -> float:
    """``TRACKER_DB_TIMEOUT`` in seconds (default 30)."""
    raw = os.environ.get("TRACKER_DB_TIMEOUT", "")
    try:
        value = float(raw) if raw.strip() else DEFAULT_TIMEOUT_S
    except ValueError:
        value = DEFAULT_TIMEOUT_S
    return value if value > 0 else DEFAULT_TIMEOUT_S


def check_all(tracker_store_url: str, redis_url: Optional[str] = None,
              timeout_s: Optional[float] = None) -> None:
    """Check the tracker database, then Redis when ``redis_url`` is given.

    Raises:
        PreflightError: on the first store that cannot be reached.
    """
    timeout_s = timeout_from_env() if timeout_s is None else timeout_s
    check_tracker_db(tracker_store_url, timeout_s)
    if redis_url:
        check_redis(redis_url, timeout_s)


def main() -> int:
    url = os.environ.get("TRACKER_STORE_URL")
    if not url:
        print("preflight: TRACKER_STORE_URL is not set", file=sys.stderr)
        return 2
    try:
        check_all(url, os.environ.get("REDIS_URL") or None)
    except PreflightError as exc:
        print(f"preflight: {exc}", file=sys.stderr)
        return 1
    print("preflight: tracker database" + (" and Redis" if os.environ.get("REDIS_URL") else "")
          + " reachable")
    return 0


if __name__ == "__main__":
    sys.exit(main())
