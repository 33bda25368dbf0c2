"""Pre-flight checks (bot/preflight.py): an unreachable tracker DB or Redis fails fast and clearly.

Rasa's SQLTrackerStore would retry forever (rasa-notes B12); ``python -m bot run`` must instead
exit within TRACKER_DB_TIMEOUT with a message that names host and port but never the password.
"""
import socket
import time

import pytest

from bot import cli, preflight
from bot.preflight import PreflightError

SECRET = "s3cr3t-pa55word"


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_tracker_db_fails_within_the_deadline_without_the_password():
    port = closed_port()
    url = f"postgresql://signpost:{SECRET}@127.0.0.1:{port}/signpost"
    start = time.monotonic()
    with pytest.raises(PreflightError) as info:
        preflight.check_tracker_db(url, timeout_s=2)
    took = time.monotonic() - start
    message = str(info.value)
    assert f"127.0.0.1:{port}/signpost" in message
    assert "within 2 s" in message and "TRACKER_STORE_URL" in message
    assert SECRET not in message and "signpost:" not in message
    assert 1.9 <= took < 10, took  # retried until the deadline, then gave up


def test_unreachable_redis_fails_without_the_password():
    port = closed_port()
    with pytest.raises(PreflightError) as info:
        preflight.check_redis(f"redis://:{SECRET}@127.0.0.1:{port}/3", timeout_s=1)
    message = str(info.value)
    assert f"127.0.0.1:{port}/3" in message and "REDIS_URL" in message
    assert SECRET not in message


def test_describe_urls_never_show_credentials():
    assert preflight.describe_db_url(f"postgresql://u:{SECRET}@db:5433/t") == "db:5433/t"
    assert preflight.describe_db_url("postgresql://u@db/t") == "db:5432/t"
    assert preflight.describe_db_url("sqlite:////srv/x.db") == "sqlite file /srv/x.db"
    assert preflight.describe_redis_url(f"redis://:{SECRET}@r:6380/2") == "r:6380/2"
    assert preflight.describe_redis_url("redis://r") == "r:6379/0"


def test_timeout_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("TRACKER_DB_TIMEOUT", "7.5")
    assert preflight.timeout_from_env() == 7.5
    monkeypatch.setenv("TRACKER_DB_TIMEOUT", "nonsense")
    assert preflight.timeout_from_env() == 30
    monkeypatch.delenv("TRACKER_DB_TIMEOUT")
    assert preflight.timeout_from_env() == 30


def test_sqlite_tracker_is_reachable(tmp_path):
    preflight.check_all(f"sqlite:///{tmp_path / 'tracker.db'}", timeout_s=2)


def test_run_exits_with_a_clear_error_before_starting_anything(monkeypatch, capsys):
    """``python -m bot run`` with an unreachable DB: exit 1 quickly, nothing trained or started."""
    port = closed_port()
    monkeypatch.setenv("TRACKER_STORE_URL", f"postgresql://signpost:{SECRET}@127.0.0.1:{port}/x")
    monkeypatch.setenv("TRACKER_DB_TIMEOUT", "1")
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("RASA_INSTANCES", raising=False)
    started = []
    monkeypatch.setattr(cli, "train", lambda *a, **k: started.append("train"))
    monkeypatch.setattr(cli.subprocess, "Popen", lambda *a, **k: started.append("popen"))
    start = time.monotonic()
    code = cli.main(["run"])
    err = capsys.readouterr().err
    assert code == 1
    assert time.monotonic() - start < 15
    assert f"127.0.0.1:{port}/x" in err and SECRET not in err
    assert started == []


@pytest.mark.postgres
def test_real_postgres_and_redis_pass():
    preflight.check_all("postgresql://postgres@127.0.0.1:5432/test", "redis://127.0.0.1:6379/1",
                        timeout_s=5)
