"""Pseudonymous conversation ids, erasure (``/forget``) and retention purge.

Rasa's ``SQLTrackerStore`` keeps every event of a conversation in the table ``events``
(columns used here: ``sender_id`` VARCHAR(255), ``timestamp`` FLOAT seconds since the epoch).
Rasa has no API to delete a conversation, so erasure and purge delete rows directly with
SQLAlchemy (2.0-style, works the same on SQLite and PostgreSQL).
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import time
from dataclasses import dataclass
from typing import Optional

import sqlalchemy as sa

logger = logging.getLogger(__name__)

_metadata = sa.MetaData()
#: The subset of Rasa's ``events`` table that erasure and purge need (Rasa creates the table).
EVENTS = sa.Table(
    "events",
    _metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("sender_id", sa.String(255), nullable=False, index=True),
    sa.Column("type_name", sa.String(255), nullable=False),
    sa.Column("timestamp", sa.Float),
    sa.Column("intent_name", sa.String(255)),
    sa.Column("action_name", sa.String(255)),
    sa.Column("data", sa.Text),
)


def sender_id(key: bytes, channel: str, user_id: str) -> str:
    """Return the pseudonymous Rasa sender id for a user of a channel.

    Args:
        key: the HMAC secret (``SIGNPOST_HMAC_KEY``), at least 16 bytes.
        channel: ``"telegram"`` or ``"web"``.
        user_id: the channel's own id (Telegram user id, or the web session UUID).

    Returns:
        ``"<channel>-<hex>"``: HMAC-SHA256 of ``channel:user_id`` truncated to 32 hex digits
        (128 bits). The raw id cannot be recovered from it without the key.

    Raises:
        ValueError: if the key is shorter than 16 bytes or ``user_id`` is empty.
    """
    if len(key) < 16:
        raise ValueError("the HMAC key must be at least 16 bytes")
    if not str(user_id):
        raise ValueError("user_id must not be empty")
    digest = hmac.new(key, f"{channel}:{user_id}".encode("utf-8"), hashlib.sha256).hexdigest()
    return f"{channel}-{digest[:32]}"


_engines: dict = {}


def engine_for(url: str) -> sa.engine.Engine:
    """Return a cached SQLAlchemy engine (``future=True``) for a database URL."""
    if url not in _engines:
        kwargs = {"future": True, "pool_pre_ping": True}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"timeout": 30}
        _engines[url] = sa.create_engine(url, **kwargs)
    return _engines[url]


def ensure_events_table(url: str) -> None:
    """Create the ``events`` table if Rasa has not created it yet (harmless if it exists)."""
    _metadata.create_all(engine_for(url), checkfirst=True)


def forget(url: str, conversation_id: str) -> int:
    """Delete every stored event of one conversation.

    Args:
        url: SQLAlchemy URL of the tracker store (``TRACKER_STORE_URL``).
        conversation_id: the pseudonymous sender id.

    Returns:
        The number of event rows deleted (0 if there were none or the table does not exist yet).
    """
    engine = engine_for(url)
    if not sa.inspect(engine).has_table("events"):
        return 0
    with engine.begin() as conn:
        result = conn.execute(sa.delete(EVENTS).where(EVENTS.c.sender_id == conversation_id))
    logger.info("erased a conversation (%d events)", result.rowcount)
    return int(result.rowcount or 0)


@dataclass
class PurgeResult:
    """Outcome of :func:`purge`: how many conversations and event rows were deleted."""

    conversations: int
    events: int


def purge(url: str, older_than_days: float, batch_size: int = 200,
          now: Optional[float] = None) -> PurgeResult:
    """Delete conversations whose newest event is older than ``older_than_days``.

    Works in batches of ``batch_size`` conversations, each in its own short transaction, so it is
    safe to run while the bot serves (a conversation that receives a new message is no longer
    old and is left alone: the age is re-checked inside each batch's delete).

    Args:
        url: SQLAlchemy URL of the tracker store.
        older_than_days: retention limit in days (> 0).
        batch_size: conversations per transaction.
        now: current time in seconds since the epoch (tests pass a fixed value).

    Raises:
        ValueError: if ``older_than_days`` is not positive.
    """
    if older_than_days <= 0:
        raise ValueError("older_than_days must be positive")
    engine = engine_for(url)
    if not sa.inspect(engine).has_table("events"):
        return PurgeResult(0, 0)
    cutoff = (now if now is not None else time.time()) - older_than_days * 86400
    newest = sa.func.max(EVENTS.c.timestamp)
    stale = (
        sa.select(EVENTS.c.sender_id)
        .group_by(EVENTS.c.sender_id)
        .having(newest < cutoff)
        .limit(batch_size)
    )
    conversations = events = 0
    while True:
        with engine.begin() as conn:
            senders = [row[0] for row in conn.execute(stale)]
            if not senders:
                break
            still_stale = (
                sa.select(EVENTS.c.sender_id)
                .where(EVENTS.c.sender_id.in_(senders))
                .group_by(EVENTS.c.sender_id)
                .having(newest < cutoff)
            )
            confirmed = [row[0] for row in conn.execute(still_stale)]
            if confirmed:
                result = conn.execute(sa.delete(EVENTS).where(EVENTS.c.sender_id.in_(confirmed)))
                events += int(result.rowcount or 0)
                conversations += len(confirmed)
        if len(senders) < batch_size:
            break
    logger.info("purged %d conversations (%d events)", conversations, events)
    return PurgeResult(conversations, events)
