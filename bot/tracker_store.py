"""Rasa's SQL tracker store, with a kept-open connection and WAL mode when the database is SQLite.

Rasa 3.6's ``SQLTrackerStore`` with SQLAlchemy 1.4 opens and closes an SQLite connection for
every read and every write (SQLAlchemy's ``NullPool`` for files), and commits in SQLite's
default rollback-journal mode: several fsyncs per message, on Rasa's event loop, so every
conversation waits while one commit syncs the disk. bench/perf.py measured the tracker write
as the largest part of a message inside Rasa (~25 ms of ~67 ms on our 2-core machine) and
Rasa's process only ~35 % busy at saturation.

For SQLite this class keeps one connection per thread open (Rasa uses the store from its event
loop only) and sets, on that connection:

- ``journal_mode=WAL``: readers (purge, forget, stats in other processes) and the writer no
  longer block each other;
- ``synchronous=NORMAL`` (``SQLITE_SYNCHRONOUS`` to change, e.g. ``FULL``): no fsync per
  commit, only at checkpoints. A committed message survives a crash of Rasa; after a power cut
  or kernel crash the last few commits may be lost, the database is never corrupted (SQLite's
  documented WAL guarantees). PostgreSQL deployments are unaffected: for any other database the
  class is Rasa's ``SQLTrackerStore`` unchanged.

Use it in endpoints.yml (``python -m bot run`` writes this for an SQLite ``TRACKER_STORE_URL``)::

    tracker_store:
      type: bot.tracker_store.SQLTrackerStore
      url: "sqlite:////path/to/tracker.db"

The module imports only Rasa and SQLAlchemy (works in the official ``rasa/rasa`` image).
"""
from __future__ import annotations

import logging
import os
from typing import Any

import sqlalchemy as sa
from rasa.core.tracker_store import SQLTrackerStore as RasaSQLTrackerStore

logger = logging.getLogger(__name__)
SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")


class SQLTrackerStore(RasaSQLTrackerStore):
    """See module docstring; same arguments as Rasa's ``SQLTrackerStore``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        url = self.engine.url
        if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
            return
        synchronous = os.environ.get("SQLITE_SYNCHRONOUS", "NORMAL").upper()
        if synchronous not in SYNCHRONOUS:
            raise ValueError(f"SQLITE_SYNCHRONOUS must be one of {', '.join(SYNCHRONOUS)}")
        self.engine.dispose()
        # same busy timeout as Rasa's own engine (sqlite3's default, 5 s)
        engine = sa.create_engine(url, poolclass=sa.pool.SingletonThreadPool)

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection, _record) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={synchronous}")
            cursor.close()

        self.engine = engine
        self.sessionmaker = sa.orm.session.sessionmaker(bind=self.engine)
        logger.debug("SQLite tracker store: one connection, WAL, synchronous=%s", synchronous)
