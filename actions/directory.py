"""Access to the services directory for actions (SQLAlchemy; URL from ``DIRECTORY_DB_URL``).

The YAML files are validated and loaded into SQL on first use in each action-server process
(``DIRECTORY_AUTOLOAD=0`` turns that off when a separate job loads a shared database).
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

import sqlalchemy as sa

from bot.directory.store import load_into, make_engine

_lock = threading.Lock()
_engine = None


def engine() -> sa.engine.Engine:
    """The directory engine, created (and filled from data/services) on first call.

    Raises:
        bot.directory.loader.DirectoryError: if a services file is broken.
    """
    global _engine
    with _lock:
        if _engine is None:
            root = Path(__file__).resolve().parent.parent
            url = os.environ.get("DIRECTORY_DB_URL") or f"sqlite:///{root / 'var' / 'directory.db'}"
            if url.startswith("sqlite:///"):
                Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
            new = make_engine(url)
            if os.environ.get("DIRECTORY_AUTOLOAD", "1") != "0":
                load_into(new)
            _engine = new
        return _engine
