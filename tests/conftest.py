"""Shared fixtures. The ``stack`` fixture starts the real servers on free loopback ports.

It trains a model first if none exists for the current data (``python -m bot train``; Rasa's
cache makes that quick when little changed), then starts the action server, one Rasa server
(REST channel, SQLite tracker store in a temporary folder) and the gateway, once per test
session. ``start_stack(..., rasa_instances=2, tracker_url=…, redis_url=…)`` starts several Rasa
servers sharing a tracker store and a Redis lock store instead (tests/test_scale.py).
"""
from __future__ import annotations

import contextlib

import os
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout_s: float, proc: Optional[subprocess.Popen] = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {timeout_s} s")


def serve_in_thread(app, name: str, timeout_s: float = 10.0):
    """Run an ASGI ``app`` with uvicorn on a free loopback port in a daemon thread (local
    stand-ins: fake Bot API, slow Rasa). Returns ``(server, thread, port)``; stop with
    ``server.should_exit = True`` and ``thread.join()``.

    Raises:
        RuntimeError: the server did not start within ``timeout_s`` seconds.
    """
    import threading

    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                            access_log=False, lifespan="off", ws="none", loop="asyncio",
                            http="h11")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=name, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"{name} did not start")
        time.sleep(0.01)
    return server, thread, server.servers[0].sockets[0].getsockname()[1]


@dataclass
class Stack:
    """The running servers, and helpers to talk to them and to stop/start parts."""

    tmp: Path
    env: Dict[str, str]
    model: Path
    ports: Dict[str, int]
    procs: Dict[str, subprocess.Popen] = field(default_factory=dict)
    logs: List = field(default_factory=list)
    #: Names of the Rasa instances ("rasa", "rasa-2", …); each has a port of the same name.
    rasa_names: List[str] = field(default_factory=lambda: ["rasa"])
    #: Lock store of the Rasa instances: "" = in-memory, else ``redis://host:port/db``.
    redis_url: str = ""
    redis_key_prefix: str = "signpost"

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.ports['gateway']}"

    @property
    def rasa(self) -> str:
        return f"http://127.0.0.1:{self.ports['rasa']}"

    def rasa_url(self, name: str = "rasa") -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    @property
    def rasa_urls(self) -> List[str]:
        return [self.rasa_url(name) for name in self.rasa_names]

    @property
    def tracker_url(self) -> str:
        return self.env["TRACKER_STORE_URL"]

    def _spawn(self, name: str, cmd: List[str], extra: Optional[Dict[str, str]] = None) -> None:
        log = open(self.tmp / f"{name}.log", "ab")
        self.logs.append(log)
        self.procs[name] = subprocess.Popen(cmd, cwd=ROOT, env={**self.env, **(extra or {})},
                                            stdout=log, stderr=subprocess.STDOUT)

    def start_actions(self) -> None:
        self._spawn("actions", [sys.executable, "-m", "rasa_sdk", "--actions", "actions",
                                "-p", str(self.ports["actions"])])
        wait_http(f"http://127.0.0.1:{self.ports['actions']}/health", 90, self.procs["actions"])

    def write_endpoints(self) -> Path:
        """The endpoints file shared by every Rasa instance, written by the production code."""
        from bot.cli import write_endpoints
        from bot.settings import Settings

        return write_endpoints(Settings(tracker_store_url=self.tracker_url),
                               self.ports["actions"], self.tmp / "endpoints.yml",
                               redis_url=self.redis_url, key_prefix=self.redis_key_prefix)

    def start_rasa(self, name: str = "rasa", wait: bool = True) -> None:
        endpoints = self.write_endpoints()
        rasa = str(Path(sys.executable).parent / "rasa")
        self._spawn(name, [rasa, "run", "-m", str(self.model), "--endpoints", str(endpoints),
                           "--credentials", "credentials.yml", "-i", "127.0.0.1",
                           "-p", str(self.ports[name]), "--enable-api",
                           "--auth-token", self.env["RASA_TOKEN"]])
        if wait:
            wait_http(self.rasa_url(name) + "/", 240, self.procs[name])

    def start_all_rasa(self) -> None:
        """Start every Rasa instance at once (they load the model in parallel), then wait."""
        for name in self.rasa_names:
            self.start_rasa(name, wait=False)
        for name in self.rasa_names:
            wait_http(self.rasa_url(name) + "/", 240, self.procs[name])

    def start_gateway(self) -> None:
        self._spawn("gateway", [sys.executable, "-m", "bot.gateway"])
        wait_http(self.gateway + "/healthz", 60, self.procs["gateway"])

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()

    def chat(self, text: str, session: Optional[str] = None, **metadata) -> dict:
        """POST /api/chat; returns the JSON reply plus ``session`` and ``texts``."""
        session = session or str(uuid.uuid4())
        r = httpx.post(self.gateway + "/api/chat",
                       json={"session_id": session, "message": text, "metadata": metadata},
                       timeout=30)
        assert r.status_code == 200, r.text
        data = r.json()
        data["session"] = session
        data["texts"] = [m.get("text", "") for m in data["messages"]]
        return data


@pytest.fixture(scope="session")
def model_path() -> Path:
    from bot.cli import current_model, train

    model = current_model()
    if not model.exists():
        train()
    return model


@contextlib.contextmanager
def start_stack(tmp: Path, model: Optional[Path] = None, *, rasa_instances: int = 1,
                tracker_url: Optional[str] = None, redis_url: str = "",
                redis_key_prefix: str = "signpost"):
    """Start action server, Rasa and gateway on free ports; stop them on exit.

    Args:
        rasa_instances: how many Rasa servers (each on its own port; the gateway's RASA_URLS
            lists them all). More than one needs ``redis_url`` and a shared ``tracker_url``.
        tracker_url: SQLAlchemy URL of the tracker store (default: SQLite file in ``tmp``).
        redis_url: ``redis://host:port/db`` for a RedisLockStore ("" = in-memory lock store).
        redis_key_prefix: alphanumeric key prefix of the lock store.
    """
    if model is None:
        from bot.cli import current_model, train

        model = current_model()
        if not model.exists():
            train()
    if rasa_instances > 1 and not redis_url:
        raise ValueError("several Rasa instances need a Redis lock store")
    rasa_names = ["rasa"] + [f"rasa-{i}" for i in range(2, rasa_instances + 1)]
    ports = {name: free_port() for name in ("actions", *rasa_names, "gateway")}
    env = dict(os.environ)
    env.update({
        "PYTHONPATH": str(ROOT), "SANIC_HOST": "127.0.0.1",
        "SQLALCHEMY_SILENCE_UBER_WARNING": "1", "TF_CPP_MIN_LOG_LEVEL": "2",
        "RASA_TELEMETRY_ENABLED": "false",
        "TRACKER_STORE_URL": tracker_url or f"sqlite:///{tmp / 'tracker.db'}",
        "DIRECTORY_DB_URL": f"sqlite:///{tmp / 'directory.db'}",
        "RASA_URLS": ",".join(f"http://127.0.0.1:{ports[n]}" for n in rasa_names),
        "RASA_TIMEOUT": "20",
        "GATEWAY_PORT": str(ports["gateway"]), "SIGNPOST_HMAC_KEY": "test-key-" + "x" * 24,
        "RATE_LIMIT_PER_MINUTE": "1000", "RASA_TOKEN": "test-rasa-token",
    })
    env.pop("TELEGRAM_BOT_TOKEN", None)
    s = Stack(tmp=tmp, env=env, model=model, ports=ports, rasa_names=rasa_names,
              redis_url=redis_url, redis_key_prefix=redis_key_prefix)
    try:
        s.start_actions()
        s.start_all_rasa()
        s.start_gateway()
        yield s
    finally:
        for name in list(s.procs):
            s.stop(name)
        for log in s.logs:
            log.close()


@pytest.fixture(scope="session")
def stack(tmp_path_factory, model_path) -> Stack:
    with start_stack(tmp_path_factory.mktemp("stack"), model_path) as s:
        yield s
