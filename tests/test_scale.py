"""Scale-out: two real Rasa instances sharing a PostgreSQL tracker store and a Redis lock store.

The stack (started once for this module): one action server, Rasa instances ``rasa`` and
``rasa-2`` on their own loopback ports, and the gateway with ``RASA_URLS`` listing both. The
tracker store is a throwaway PostgreSQL database (``signpost_test_<random>``, created on the
server of TEST_POSTGRES_URL and dropped at the end); the lock store is Redis (TEST_REDIS_URL) with
a random alphanumeric key prefix whose keys are deleted at the end.

(a) one conversation alternating between the instances message by message stays coherent;
(b) 20 concurrent conversations, each sending bursts of 3 simultaneous messages spread over
    both instances: every message is stored exactly once and every turn is complete
    (rasa-notes B11);
(c) every process is stopped and started again in the middle of a conversation, which then
    continues where it was (slots survive in the tracker store).
"""
from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections import defaultdict
from typing import Dict, List, Tuple

import httpx
import pytest
import sqlalchemy as sa

from bot import privacy
from tests.conftest import start_stack

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_BASE = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/2")
KEY = b"test-key-" + b"x" * 24
UK_HELPLINE = "0800 011 3764"

# Benign questions (no form, no crisis): each sender sends each at most once, so user events
# can be counted by their text.
QUESTIONS = [
    "what is love bombing",
    "how do extremists recruit teenagers online?",
    "what are the warning signs",
    "how do I talk to my son about this",
    "how do I report a post",
    "who are you",
    "what is grooming",
    "is calling a helpline confidential",
    "what is an exit programme",
]


@pytest.fixture(scope="module")
def pg_tracker_url():
    """A throwaway PostgreSQL database for the tracker store; dropped afterwards."""
    name = f"signpost_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT", future=True)
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        engine = privacy._engines.pop(url, None)
        if engine is not None:
            engine.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="module")
def redis_lock():
    """``(redis_url, key_prefix)``; every key under the prefix is deleted afterwards."""
    import redis

    prefix = "signposttest" + uuid.uuid4().hex[:10]
    client = redis.Redis.from_url(REDIS_BASE)
    client.ping()
    try:
        yield REDIS_BASE, prefix
    finally:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=500))
        if keys:
            client.delete(*keys)
        client.close()


@pytest.fixture(scope="module")
def scale_stack(tmp_path_factory, model_path, pg_tracker_url, redis_lock):
    redis_url, prefix = redis_lock
    with start_stack(tmp_path_factory.mktemp("scale"), model_path, rasa_instances=2,
                     tracker_url=pg_tracker_url, redis_url=redis_url,
                     redis_key_prefix=prefix) as s:
        yield s


def events_of(url: str, sender: str) -> List[Tuple[str, dict]]:
    """``(type_name, data)`` of one sender's stored events, in insertion order."""
    engine = privacy.engine_for(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(privacy.EVENTS.c.type_name, privacy.EVENTS.c.data)
                            .where(privacy.EVENTS.c.sender_id == sender)
                            .order_by(privacy.EVENTS.c.id)).all()
    return [(t, json.loads(d or "{}")) for t, d in rows]


def post(instance: str, sender: str, text: str) -> List[dict]:
    r = httpx.post(f"{instance}/webhooks/rest/webhook", json={"sender": sender, "message": text},
                   timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def turn_problems(events: List[Tuple[str, dict]]) -> List[str]:
    """Structural problems of a tracker: each user turn must be answered and closed.

    After each ``user`` event there must be exactly one ``action_listen`` before the next
    ``user`` event, and it must be the last action of that turn (Rasa processes a turn until
    it predicts ``action_listen``). Two turns processed at the same time (a lock that did not
    hold) would show up as two user events in a row, a turn without its ``action_listen``,
    or a lost event.
    """
    problems = []
    turns: List[List[Tuple[str, dict]]] = []
    for type_name, data in events:
        if type_name == "user":
            turns.append([])
        elif turns:
            turns[-1].append((type_name, data))
    for i, turn in enumerate(turns):
        actions = [d.get("name") for t, d in turn if t == "action"]
        if actions.count("action_listen") != 1 or actions[-1:] != ["action_listen"]:
            problems.append(f"turn {i}: actions {actions}")
    sessions = sum(1 for t, _ in events if t == "session_started")
    if sessions != 1:
        problems.append(f"{sessions} session_started events")
    return problems


def test_one_conversation_alternates_between_instances(scale_stack):
    a, b = scale_stack.rasa_urls
    sender = f"scale-a-{uuid.uuid4().hex}"
    first = post(a, sender, "find help in the UK")
    assert first, "instance A said nothing"
    second = post(b, sender, '/choose_need{"need":"radicalisation"}')
    joined = "\n".join(m.get("text", "") for m in second)
    assert UK_HELPLINE in joined, joined
    third = post(a, sender, "what is love bombing")
    assert third
    # both instances see the same conversation, read from the shared tracker store
    trackers = [httpx.get(f"{u}/conversations/{sender}/tracker",
                          params={"token": scale_stack.env["RASA_TOKEN"]}, timeout=30).json()
                for u in (a, b)]
    assert trackers[0]["slots"]["country"] == trackers[1]["slots"]["country"] == "GB"
    assert len(trackers[0]["events"]) == len(trackers[1]["events"])
    events = events_of(scale_stack.tracker_url, sender)
    user_texts = [d.get("text") for t, d in events if t == "user"]
    assert user_texts == ["find help in the UK", '/choose_need{"need":"radicalisation"}',
                          "what is love bombing"]
    assert turn_problems(events) == []
    utters = [(d.get("metadata") or {}).get("utter_action") for t, d in events if t == "bot"]
    assert "utter_ask_need" in utters and "utter_ask_country" not in utters, utters


async def _burst_load(instances: List[str], conversations: int, bursts: int, burst_size: int,
                      stagger_s: float) -> Dict[str, List[List[str]]]:
    """Send the load; return ``{sender: [[texts of burst 0], [texts of burst 1], …]}``.

    Each conversation sends ``bursts`` bursts one after the other; a burst is ``burst_size``
    messages sent at (almost) the same time (``stagger_s`` apart, to give them an order) to
    alternating instances. All conversations run at the same time. Request count and time are
    bounded: conversations × bursts × burst_size requests, 60 s timeout each.
    """
    sent: Dict[str, List[List[str]]] = {}
    limits = httpx.Limits(max_connections=conversations * burst_size)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:

        async def one(i: int, sender: str, text: str, instance: str, delay: float) -> None:
            await asyncio.sleep(delay)
            r = await client.post(f"{instance}/webhooks/rest/webhook",
                                  json={"sender": sender, "message": text})
            assert r.status_code == 200, (sender, text, r.status_code, r.text[:300])
            assert r.json(), (sender, text, "empty answer")

        async def conversation(c: int) -> None:
            sender = f"scale-b-{c:02d}-{uuid.uuid4().hex[:12]}"
            sent[sender] = []
            texts = QUESTIONS[c % len(QUESTIONS):] + QUESTIONS[:c % len(QUESTIONS)]
            for b in range(bursts):
                burst = texts[b * burst_size:(b + 1) * burst_size]
                sent[sender].append(burst)
                await asyncio.gather(*(
                    one(c, sender, text, instances[(c + b + j) % len(instances)], j * stagger_s)
                    for j, text in enumerate(burst)))

        await asyncio.gather(*(conversation(c) for c in range(conversations)))
    return sent


async def test_concurrent_bursts_across_instances_keep_every_tracker_intact(scale_stack):
    conversations, bursts, burst_size = 20, 2, 3
    start = time.monotonic()
    sent = await asyncio.wait_for(
        _burst_load(scale_stack.rasa_urls, conversations, bursts, burst_size, stagger_s=0.02),
        timeout=240)
    took = time.monotonic() - start
    counts = defaultdict(int)
    inversions = 0
    problems = {}
    for sender, sent_bursts in sent.items():
        events = events_of(scale_stack.tracker_url, sender)
        user_texts = [d.get("text") for t, d in events if t == "user"]
        listens = sum(1 for t, d in events if t == "action" and d.get("name") == "action_listen")
        counts["user"] += len(user_texts)
        counts["events"] += len(events)
        flat = [t for burst in sent_bursts for t in burst]
        # exactly once: as many user events as messages sent, each text once
        assert len(user_texts) == len(flat), (sender, user_texts, flat)
        assert sorted(user_texts) == sorted(flat), (sender, user_texts, flat)
        # bursts are sent one after the other: all of burst k is stored before burst k+1
        position = {text: i for i, text in enumerate(user_texts)}
        for k in range(1, len(sent_bursts)):
            assert max(position[t] for t in sent_bursts[k - 1]) < \
                min(position[t] for t in sent_bursts[k]), (sender, user_texts, sent_bursts)
        # within a burst the lock store serialises, in the order the tickets were issued, which
        # need not be the send order across two servers: counted, not asserted
        for burst in sent_bursts:
            order = [position[t] for t in burst]
            inversions += sum(1 for x, y in zip(order, order[1:]) if x > y)
        # one action_listen closing each user turn, plus the one after session start
        assert listens == len(user_texts) + 1, (sender, listens, len(user_texts))
        found = turn_problems(events)
        if found:
            problems[sender] = found
    assert not problems, problems
    total = conversations * bursts * burst_size
    assert counts["user"] == total
    print(f"\nB11 load: {total} messages from {conversations} conversations in "
          f"{bursts}×{burst_size} bursts over 2 instances took {took:.1f} s; "
          f"{counts['user']} user events of {counts['events']} stored events checked; "
          f"in-burst order inversions vs send order: {inversions}")


def test_restart_every_process_mid_conversation(scale_stack):
    s = scale_stack
    session = str(uuid.uuid4())
    sender = privacy.sender_id(KEY, "web", session)
    first = s.chat("find help in the UK", session)
    assert first["failsafe"] is False
    utters = [(d.get("metadata") or {}).get("utter_action")
              for t, d in events_of(s.tracker_url, sender) if t == "bot"]
    assert utters[-1] == "utter_ask_need", utters

    old_pids = {name: p.pid for name, p in s.procs.items()}
    for name in ["gateway", *s.rasa_names, "actions"]:
        s.stop(name)
    assert not s.procs
    s.start_actions()
    s.start_all_rasa()
    s.start_gateway()
    assert set(s.procs) == set(old_pids)
    assert all(s.procs[n].pid != pid for n, pid in old_pids.items())

    # the form started before the restart continues: the country is still known
    reply = s.chat('/choose_need{"need":"radicalisation"}', session)
    assert reply["failsafe"] is False
    assert UK_HELPLINE in "\n".join(reply["texts"]), reply["texts"]
    # a new search asks only for the kind of help: the country slot survived the restart
    before = len(events_of(s.tracker_url, sender))
    again = s.chat("find help", session)
    assert again["failsafe"] is False
    new_utters = [(d.get("metadata") or {}).get("utter_action")
                  for t, d in events_of(s.tracker_url, sender)[before:] if t == "bot"]
    assert "utter_ask_need" in new_utters and "utter_ask_country" not in new_utters, new_utters
    reply = s.chat('/choose_need{"need":"radicalisation"}', session)
    assert UK_HELPLINE in "\n".join(reply["texts"]), reply["texts"]
    assert turn_problems(events_of(s.tracker_url, sender)) == []
