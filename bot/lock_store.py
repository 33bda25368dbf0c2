"""A Redis lock store for several Rasa instances whose ticket operations are atomic.

Rasa 3.6's ``RedisLockStore`` keeps one JSON value per conversation (the ticket queue) and
changes it with separate GET and SET calls: issuing a ticket, dropping expired tickets while
waiting, finishing a ticket and deleting the lock are all read-modify-write (rasa#9213,
rasa-notes B11). Inside one process that is safe (the calls are synchronous on the event
loop), but with two or more Rasa instances a SET from one instance overwrites a ticket another
instance issued a moment before. Measured in tests/test_scale.py with the stock class (20
conversations sending bursts of 3 messages over two instances): ``LockError: Could not acquire
lock`` after a few seconds, i.e. HTTP 200 with an empty answer, because a ticket was lost and
the lock deleted under a waiting message; a lost ticket can equally let two turns of one
conversation run at the same time and corrupt its tracker.

:class:`AtomicRedisLockStore` does each of those changes in one Redis transaction
(``WATCH``/``MULTI``/``EXEC``, retried when another instance changed the key in between), keeps
the stored format (so ``redis-cli`` inspection and Rasa's own reader still work) and sets a
time-to-live on each lock key so a crashed instance cannot leave keys behind for ever.

Use it in endpoints.yml (``python -m bot run`` writes this when ``REDIS_URL`` is set)::

    lock_store:
      type: bot.lock_store.AtomicRedisLockStore
      url: redis            # host
      port: 6379
      db: 1
      key_prefix: signpost  # alphanumeric only
      # password, username, use_ssl, socket_timeout: as for ``type: redis``

The module imports only Rasa and redis-py, so it works in the official ``rasa/rasa`` image with
``bot/`` on ``PYTHONPATH``.
"""
from __future__ import annotations

import json
import logging
import math
import time
from typing import Any, Callable, Optional, Text, Tuple

from rasa.core.lock import TicketLock
from rasa.core.lock_store import LOCK_LIFETIME, LockError, RedisLockStore

logger = logging.getLogger(__name__)

#: A lock key lives this long after its last ticket expires (seconds).
KEY_TTL_MARGIN_S = 60

_UNCHANGED = object()


class AtomicRedisLockStore(RedisLockStore):
    """``RedisLockStore`` whose read-modify-write operations are Redis transactions.

    Accepts the same settings as Rasa's ``type: redis`` lock store (``url`` is the host).
    """

    def __init__(self, endpoint_config: Any = None, **kwargs: Any) -> None:
        if endpoint_config is not None:
            settings = dict(getattr(endpoint_config, "kwargs", None) or {})
            settings.setdefault("host", getattr(endpoint_config, "url", None) or "localhost")
            kwargs = {**settings, **kwargs}
        super().__init__(**kwargs)

    # -- helpers -------------------------------------------------------------------------------

    def _key(self, conversation_id: Text) -> Text:
        return self.key_prefix + conversation_id

    def _atomic(self, conversation_id: Text,
                change: Callable[[Optional[TicketLock]], Tuple[Any, Any]]) -> Any:
        """Apply ``change`` to the stored lock in one transaction; return its result.

        ``change(lock_or_None)`` returns ``(new_state, result)`` where ``new_state`` is a
        ``TicketLock`` to store, ``None`` to delete the key, or ``_UNCHANGED``.
        """
        key = self._key(conversation_id)

        def transaction(pipe: Any) -> Any:
            raw = pipe.get(key)
            lock = TicketLock.from_dict(json.loads(raw)) if raw else None
            new_state, result = change(lock)
            pipe.multi()
            if new_state is None:
                if raw is not None:
                    pipe.delete(key)
            elif new_state is not _UNCHANGED:
                pipe.set(key, new_state.dumps(), ex=self._ttl(new_state))
            return result

        return self.red.transaction(transaction, key, value_from_callable=True)

    @staticmethod
    def _ttl(lock: TicketLock) -> int:
        newest = max((t.expires for t in lock.tickets), default=time.time())
        return max(1, math.ceil(newest - time.time()) + KEY_TTL_MARGIN_S)

    # -- the operations Rasa's LockStore performs as read-modify-write ---------------------------

    def issue_ticket(self, conversation_id: Text, lock_lifetime: float = LOCK_LIFETIME) -> int:
        """Issue the next ticket of the conversation's queue (creating the lock if needed)."""

        def change(lock: Optional[TicketLock]) -> Tuple[TicketLock, int]:
            lock = lock or TicketLock(conversation_id)
            return lock, lock.issue_ticket(lock_lifetime)

        try:
            return self._atomic(conversation_id, change)
        except Exception as exc:  # same contract as LockStore.issue_ticket
            raise LockError(f"Error while acquiring lock. Error:\n{exc}") from exc

    def update_lock(self, conversation_id: Text) -> None:
        """Drop expired tickets (called by waiting messages every second)."""

        def change(lock: Optional[TicketLock]) -> Tuple[Any, None]:
            if lock is None:
                return _UNCHANGED, None
            before = len(lock.tickets)
            lock.remove_expired_tickets()
            return (lock if len(lock.tickets) != before else _UNCHANGED), None

        self._atomic(conversation_id, change)

    def finish_serving(self, conversation_id: Text, ticket_number: int) -> None:
        """Remove one ticket from the queue."""

        def change(lock: Optional[TicketLock]) -> Tuple[Any, None]:
            if lock is None:
                return _UNCHANGED, None
            lock.remove_ticket_for(ticket_number)
            return lock, None

        self._atomic(conversation_id, change)

    def cleanup(self, conversation_id: Text, ticket_number: int) -> None:
        """Remove the ticket and, when no one else waits, the lock, in one transaction."""

        def change(lock: Optional[TicketLock]) -> Tuple[Any, None]:
            if lock is None:
                return _UNCHANGED, None
            lock.remove_ticket_for(ticket_number)
            return (lock if lock.is_someone_waiting() else None), None

        self._atomic(conversation_id, change)
        logger.debug("Finished ticket %s of a conversation.", ticket_number)

    def save_lock(self, lock: TicketLock) -> None:
        """Store a whole lock (not used by the operations above; kept for API compatibility)."""
        self.red.set(self._key(lock.conversation_id), lock.dumps(), ex=self._ttl(lock))
