"""Pseudonymous ids, erasure and retention on SQLite and PostgreSQL."""
import os
import time
import uuid

import pytest
import sqlalchemy as sa

from bot import privacy


def test_sender_id_is_keyed_and_stable():
    key = b"k" * 32
    a = privacy.sender_id(key, "telegram", "123456789")
    assert a == privacy.sender_id(key, "telegram", "123456789")
    assert a != privacy.sender_id(b"j" * 32, "telegram", "123456789")
    assert a != privacy.sender_id(key, "web", "123456789")
    assert "123456789" not in a and a.startswith("telegram-") and len(a) == len("telegram-") + 32
    with pytest.raises(ValueError):
        privacy.sender_id(b"short", "web", "x")


def _urls():
    urls = [("sqlite", None)]
    urls.append(("postgres", os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")))
    return urls


@pytest.fixture(params=_urls(), ids=lambda p: p[0])
def db_url(request, tmp_path):
    kind, url = request.param
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'tracker.db'}"
        return
    schema = f"t_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(url, future=True)
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    yield f"{url}?options=-csearch_path%3D{schema}"
    privacy._engines.clear()
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))


def _plant(url, sender, ages_days, now):
    privacy.ensure_events_table(url)
    with privacy.engine_for(url).begin() as conn:
        for age in ages_days:
            conn.execute(sa.insert(privacy.EVENTS).values(
                sender_id=sender, type_name="user", timestamp=now - age * 86400, data="{}"))


def _count(url):
    with privacy.engine_for(url).connect() as conn:
        return dict(conn.execute(sa.select(privacy.EVENTS.c.sender_id, sa.func.count())
                                 .group_by(privacy.EVENTS.c.sender_id)).all())


@pytest.mark.postgres
def test_purge_removes_exactly_the_old_conversations(db_url):
    now = time.time()
    _plant(db_url, "old-1", [45, 40], now)
    _plant(db_url, "old-2", [31], now)
    _plant(db_url, "mixed", [60, 2], now)  # newest event is recent: kept whole
    _plant(db_url, "new", [1], now)
    result = privacy.purge(db_url, 30, batch_size=1, now=now)
    assert (result.conversations, result.events) == (2, 3)
    assert _count(db_url) == {"mixed": 2, "new": 1}
    assert privacy.purge(db_url, 30, now=now).conversations == 0


@pytest.mark.postgres
def test_forget_removes_one_sender(db_url):
    now = time.time()
    _plant(db_url, "a", [1, 1, 1], now)
    _plant(db_url, "b", [1], now)
    assert privacy.forget(db_url, "a") == 3
    assert _count(db_url) == {"b": 1}
    assert privacy.forget(db_url, "nobody") == 0


def test_purge_rejects_bad_limit(tmp_path):
    with pytest.raises(ValueError):
        privacy.purge(f"sqlite:///{tmp_path/'x.db'}", 0)
