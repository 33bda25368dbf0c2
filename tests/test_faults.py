"""Faults (issue #11): parts of the real stack fail while users talk to it.

Each test stops or slows one part, checks what the user gets (a kind reply, the crisis numbers
first where the message is a crisis, within the gateway's timeout), restores the part, checks
that the conversation carries on, and counts the user events in the tracker store: every message
Rasa received is stored exactly once, none is replayed (doubled) later.

- the action server killed mid-form, then restarted: the form works again;
- Rasa killed, then restarted: the conversation continues with its earlier slots (SQLite);
- the tracker database locked (SQLite ``BEGIN EXCLUSIVE`` from another connection): a second
  gateway with a short ``RASA_TIMEOUT`` answers with the fail-safe within it, the gateway's own
  erasure waits in a thread without stalling other requests, and everything recovers;
- a slow Rasa (a fake on loopback that waits longer than ``RASA_TIMEOUT`` before forwarding to
  the real one): 20 concurrent requests all get the fail-safe within timeout + 2 s, each message
  reaches Rasa once;
- a short load test (bench/load.py: 20 users for 20 s) with no error;
- afterwards no secret (HMAC key, Rasa token) and no message text is in any log.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from typing import Dict, Iterator, List, Optional

import httpx
import pytest
import sqlalchemy as sa
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from bot import privacy
from bot.settings import ROOT
from tests.conftest import free_port, serve_in_thread, wait_http

pytestmark = pytest.mark.e2e

CANARY_HMAC = "canary-hmac-" + uuid.uuid4().hex
CANARY_TOKEN = "canary-rasa-token-" + uuid.uuid4().hex
CANARY_WORD = "zebrafish" + uuid.uuid4().hex[:8]
CANARY_TEXT = f"my cousin {CANARY_WORD} keeps sending me videos"
#: Words of messages sent by these tests (in normal operation) that must never be in a log.
LOGGED_NEVER: List[str] = []


# ---------------------------------------------------------------------------- helpers
def key_of(stack) -> bytes:
    return stack.env["SIGNPOST_HMAC_KEY"].encode()


def user_texts(stack, session: str, key: Optional[bytes] = None) -> Counter:
    """How often each user text of a web session is stored in the tracker store."""
    sender = privacy.sender_id(key or key_of(stack), "web", session)
    with privacy.engine_for(stack.tracker_url).connect() as conn:
        rows = conn.execute(sa.select(privacy.EVENTS.c.data)
                            .where(privacy.EVENTS.c.sender_id == sender,
                                   privacy.EVENTS.c.type_name == "user")).all()
    return Counter(json.loads(data).get("text") for (data,) in rows)


def bot_actions(stack, session: str) -> List[str]:
    sender = privacy.sender_id(key_of(stack), "web", session)
    with privacy.engine_for(stack.tracker_url).connect() as conn:
        rows = conn.execute(sa.select(privacy.EVENTS.c.data)
                            .where(privacy.EVENTS.c.sender_id == sender,
                                   privacy.EVENTS.c.type_name == "bot")
                            .order_by(privacy.EVENTS.c.id)).all()
    return [(json.loads(d).get("metadata") or {}).get("utter_action") for (d,) in rows]


def post(url: str, text: str, session: str, timeout: float = 40, **metadata) -> dict:
    """POST /api/chat to a gateway; the JSON reply plus ``texts`` and ``elapsed`` (s)."""
    start = time.monotonic()
    r = httpx.post(url + "/api/chat", json={"session_id": session, "message": text,
                                           "metadata": metadata}, timeout=timeout)
    elapsed = time.monotonic() - start
    assert r.status_code == 200, r.text
    data = r.json()
    data["texts"] = [m.get("text", "") for m in data["messages"]]
    data["elapsed"] = elapsed
    assert data["texts"] and all(t.strip() for t in data["texts"]), data
    return data


def assert_kind(reply: dict) -> None:
    joined = " ".join(reply["texts"])
    for word in ("Traceback", "Exception", "Internal Server Error", "NoneType"):
        assert word not in joined, joined[:300]


def assert_crisis_first(reply: dict) -> None:
    first = reply["texts"][0]
    assert "999" in first and "112" in first and "116 123" in first, first[:300]


def assert_all_up(stack) -> None:
    for name, proc in stack.procs.items():
        assert proc.poll() is None, f"{name} is not running"
    assert httpx.get(stack.gateway + "/healthz", timeout=10).json()["status"] == "ok"


@contextlib.contextmanager
def extra_gateway(stack, name: str, **env: str) -> Iterator[str]:
    """A second gateway process (``python -m bot.gateway``) with its own settings."""
    port = free_port()
    log = open(stack.tmp / f"gateway-{name}.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "bot.gateway"], cwd=ROOT,
                            env={**stack.env, "GATEWAY_PORT": str(port), **env},
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/privacy", 60, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


class SlowRasa:
    """A fake Rasa on loopback that waits ``delay_s`` before answering each message.

    With ``upstream`` (a real Rasa), it then forwards the message there once and returns its
    answer, like a slow Rasa that finishes its work after the caller gave up.
    """

    def __init__(self, delay_s: float, upstream: Optional[str] = None) -> None:
        self.delay_s = delay_s
        self.upstream = upstream
        self.received: List[dict] = []
        self.forwarded = 0
        self._tasks: set = set()
        self._server: Optional[uvicorn.Server] = None
        self._thread: Optional[threading.Thread] = None
        self.port = 0
        self.app = Starlette(routes=[Route("/", self._hello),
                                     Route("/webhooks/rest/webhook", self._webhook, methods=["POST"])])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _hello(self, request: Request) -> PlainTextResponse:
        return PlainTextResponse("Hello from Rasa (slow fake)")

    async def _forward(self, body: dict, delay: float) -> list:
        await asyncio.sleep(delay)
        if not self.upstream:
            return [{"text": "A slow answer."}]
        async with httpx.AsyncClient(timeout=60) as client:
            r = await client.post(self.upstream + "/webhooks/rest/webhook", json=body)
        self.forwarded += 1
        return r.json()

    async def _webhook(self, request: Request) -> JSONResponse:
        body = await request.json()
        self.received.append(body)
        task = asyncio.create_task(self._forward(body, self.delay_s))  # runs even if the caller leaves
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return JSONResponse(await asyncio.shield(task))

    def start(self) -> "SlowRasa":
        self._server, self._thread, self.port = serve_in_thread(self.app, "slow-rasa")
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._thread.join(15)


# ---------------------------------------------------------------------------- load (short)
def test_short_load_without_errors(stack):
    """bench/load.py's core: 20 users for 20 s (think 1-3 s) against the stack, no error."""
    sys.path.insert(0, str(ROOT))
    from bench.load import report, run_load

    pids = {name: proc.pid for name, proc in stack.procs.items()}
    result = asyncio.run(run_load(stack.gateway, users=20, seconds=20, think=(1.0, 3.0),
                                  pids=pids, sample_every_s=5))
    print(result.summary())
    assert result.requests >= 60, result.summary()
    assert result.errors == 0, report(result)
    assert result.failsafes == 0, report(result)
    assert set(result.rss) == set(pids) and all(v[-1][1] > 0 for v in result.rss.values())
    assert_all_up(stack)


# ---------------------------------------------------------------------------- action server
def test_action_server_killed_mid_conversation(stack):
    session = str(uuid.uuid4())
    sent: Counter = Counter()

    def say(text: str) -> dict:
        sent[text] += 1
        return post(stack.gateway, text, session)

    first = say("find help in the UK")
    assert bot_actions(stack, session)[-1] == "utter_ask_need"
    assert "radicalisation" in json.dumps(first["messages"])  # the need buttons
    stack.stop("actions")
    try:
        # the form's lookup needs the action server: a kind reply all the same
        during = say('/choose_need{"need":"radicalisation"}')
        assert_kind(during)
        crisis = say("i want to kill myself")
        assert_kind(crisis)
        assert_crisis_first(crisis)
        print(f"actions down: form turn -> {during['texts'][0][:80]!r} (failsafe={during['failsafe']}); "
              f"crisis -> {crisis['texts'][0][:60]!r}")
    finally:
        stack.start_actions()
    # back: the same conversation can use the support finder again
    again = say("find help in the UK")
    assert_kind(again)
    result = say('/choose_need{"need":"radicalisation"}')
    joined = "\n".join(result["texts"])
    assert "0800 011 3764" in joined, joined[:500]
    assert result["failsafe"] is False
    assert user_texts(stack, session) == sent  # every message stored exactly once
    assert_all_up(stack)


# ---------------------------------------------------------------------------- tracker database
def test_tracker_database_locked_for_a_while(stack):
    key = key_of(stack)
    session, other = str(uuid.uuid4()), str(uuid.uuid4())
    before = ["I live in the UK", "what is love bombing"]
    for text in before:
        assert post(stack.gateway, text, session)["failsafe"] is False
    post(stack.gateway, "hello", other)
    assert user_texts(stack, other)["hello"] == 1
    db_path = stack.tracker_url.split("sqlite:///", 1)[1]
    timings: Dict[str, float] = {}
    with extra_gateway(stack, "short-timeout", RASA_TIMEOUT="4") as short:
        lock = sqlite3.connect(db_path, timeout=30, isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")  # nobody else can read or write the tracker store
        locked_at = time.monotonic()
        forget_result: Dict[str, object] = {}

        def forget() -> None:
            start = time.monotonic()
            r = httpx.post(stack.gateway + "/api/forget", json={"session_id": other}, timeout=60)
            forget_result.update(status=r.status_code, body=r.json(), elapsed=time.monotonic() - start)

        eraser = threading.Thread(target=forget)
        try:
            eraser.start()
            crisis = post(short, "i want to die", session, timeout=30)
            timings["crisis"] = crisis["elapsed"]
            # the gateway serves other requests while its erasure waits for the database
            probes = []
            for _ in range(5):
                start = time.monotonic()
                assert httpx.get(stack.gateway + "/privacy", timeout=10).status_code == 200
                probes.append(time.monotonic() - start)
            assert eraser.is_alive(), "the erasure should still wait for the locked database"
            time.sleep(max(0.0, 6.0 - (time.monotonic() - locked_at)))
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        eraser.join(60)
    print(f"database locked: crisis fail-safe after {timings['crisis']:.2f} s (RASA_TIMEOUT 4), "
          f"page probes max {max(probes):.3f} s, erasure waited {forget_result.get('elapsed', 0):.1f} s")
    assert crisis["failsafe"] is True and timings["crisis"] <= 4 + 2, timings
    assert_crisis_first(crisis)
    assert crisis["texts"][0].startswith("Thank you for telling me")
    assert max(probes) < 2.0, probes
    assert forget_result.get("status") == 200 and forget_result["body"] == {"ok": True}, forget_result
    assert user_texts(stack, other) == Counter()
    # Rasa recovers by itself once the database answers again
    wait_http(stack.rasa + "/", 60, stack.procs["rasa"])
    after = post(stack.gateway, "what are the warning signs", session)
    assert after["failsafe"] is False
    crisis_after = post(stack.gateway, "i just want it all to stop", session)
    assert crisis_after["texts"][0].startswith("In danger right now? Call 999."), crisis_after["texts"][0]
    stored = user_texts(stack, session)
    for text in before + ["what are the warning signs", "i just want it all to stop"]:
        assert stored[text] == 1, (text, stored)
    print(f"database locked: the message sent during the lock is stored {stored['i want to die']} time(s)")
    # the message sent while the database was locked was handled from Rasa's in-memory
    # fall-back store: stored at most once, never replayed
    assert stored["i want to die"] <= 1, stored
    assert_all_up(stack)


# ---------------------------------------------------------------------------- slow Rasa
def test_slow_rasa_times_out_without_pile_up(stack):
    timeout_s = 2.0
    slow = SlowRasa(delay_s=6.0, upstream=stack.rasa).start()
    try:
        with extra_gateway(stack, "slow-rasa", RASA_URLS=slow.url, RASA_TIMEOUT=str(timeout_s),
                           SIGNPOST_HMAC_KEY=CANARY_HMAC, RASA_TOKEN=CANARY_TOKEN) as gateway:
            sessions = [str(uuid.uuid4()) for _ in range(20)]
            texts = ["what is love bombing"] * 19 + ["i want to kill myself"]

            async def burst() -> List[dict]:
                async with httpx.AsyncClient(timeout=30) as client:
                    async def one(session: str, text: str) -> dict:
                        start = time.monotonic()
                        r = await client.post(gateway + "/api/chat", json={
                            "session_id": session, "message": text, "metadata": {}})
                        return {"status": r.status_code, "data": r.json(),
                                "elapsed": time.monotonic() - start}
                    return await asyncio.gather(*(one(s, t) for s, t in zip(sessions, texts)))

            start = time.monotonic()
            results = asyncio.run(burst())
            wall = time.monotonic() - start
            print(f"slow Rasa: 20 concurrent requests done in {wall:.2f} s "
                  f"(slowest {max(r['elapsed'] for r in results):.2f} s, RASA_TIMEOUT {timeout_s} s)")
            assert wall <= timeout_s + 2, wall
            for result in results:
                assert result["status"] == 200 and result["data"]["failsafe"] is True, result
                assert result["elapsed"] <= timeout_s + 2, result["elapsed"]
                assert "999" in result["data"]["messages"][0]["text"]
            assert results[-1]["data"]["messages"][0]["text"].startswith("Thank you for telling me")
            # each message reached Rasa once: the gateway does not retry a timed-out message
            assert len(slow.received) == 20
            # while Rasa is slow the gateway itself answers at once
            start = time.monotonic()
            assert httpx.get(gateway + "/privacy", timeout=10).status_code == 200
            assert time.monotonic() - start < 1.0
            deadline = time.monotonic() + 40
            while slow.forwarded < 20 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert slow.forwarded == 20
            # Rasa fast again: answers flow without a fail-safe, no stuck connection
            slow.delay_s = 0.0
            LOGGED_NEVER.append(CANARY_WORD)
            fresh = post(gateway, CANARY_TEXT, sessions[0])
            assert fresh["failsafe"] is False and fresh["elapsed"] < timeout_s
    finally:
        slow.stop()
    key = CANARY_HMAC.encode()
    for session, text in zip(sessions, texts):
        expected = Counter({text: 1})
        if session == sessions[0]:
            expected[CANARY_TEXT] = 1
        assert user_texts(stack, session, key) == expected, session
    assert_all_up(stack)


# ---------------------------------------------------------------------------- Rasa
def test_rasa_killed_then_conversation_continues(stack):
    session = str(uuid.uuid4())
    before = ["I live in the UK", "what is love bombing"]
    for text in before:
        assert post(stack.gateway, text, session)["failsafe"] is False
    stack.stop("rasa")
    try:
        down = post(stack.gateway, "how do recruiters work", session)
        assert down["failsafe"] is True and down["elapsed"] < 5, down["elapsed"]
        assert all(n in down["texts"][0] for n in ("999", "112", "911"))
        crisis = post(stack.gateway, "i want to die", session)
        assert crisis["failsafe"] is True and crisis["texts"][0].startswith("Thank you for telling me")
        assert_crisis_first(crisis)
        health = httpx.get(stack.gateway + "/healthz", timeout=10).json()
        assert health["status"] == "degraded"
    finally:
        stack.start_rasa()
    print(f"Rasa down: fail-safe after {down['elapsed']:.2f} s")
    # the conversation continues with its earlier slots (country GB) from the SQLite tracker
    reply = post(stack.gateway, "i just want it all to stop", session)
    assert reply["texts"][0].startswith("In danger right now? Call 999."), reply["texts"][0]
    stored = user_texts(stack, session)
    assert stored == Counter({t: 1 for t in before + ["i just want it all to stop"]}), stored
    assert_all_up(stack)


# ---------------------------------------------------------------------------- logs
def test_no_secret_or_message_text_in_any_log(stack):
    """Secrets come from the environment and are never logged; nor is message text at INFO."""
    assert stack.procs, "the stack is not running"
    LOGGED_NEVER.append("zebrafish" + uuid.uuid4().hex[:8])
    post(stack.gateway, f"my friend {LOGGED_NEVER[-1]} asked what is grooming", str(uuid.uuid4()))
    time.sleep(0.5)
    secrets = {
        "SIGNPOST_HMAC_KEY": stack.env["SIGNPOST_HMAC_KEY"],
        "RASA_TOKEN": stack.env["RASA_TOKEN"],
        "canary HMAC key": CANARY_HMAC,
        "canary Rasa token": CANARY_TOKEN,
    }
    logs = sorted(stack.tmp.glob("*.log"))
    assert any(p.name.startswith("gateway") for p in logs) and any(p.name == "rasa.log" for p in logs)
    for path in logs:
        content = path.read_text(encoding="utf-8", errors="replace")
        for name, value in secrets.items():
            assert value not in content, f"{name} found in {path.name}"
        for word in LOGGED_NEVER:
            assert word not in content, f"message text found in {path.name}"
