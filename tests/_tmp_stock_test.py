"""bot.lock_store.AtomicRedisLockStore against the real Redis server (rasa-notes B11, rasa#9213).

Two store objects (two connections, as two Rasa instances would have) are driven from several
threads at once, so their Redis calls really interleave.
"""
import asyncio
import os
import threading
import time
import uuid

import pytest
from rasa.core.lock_store import RedisLockStore
from rasa.utils.endpoints import EndpointConfig

from bot.lock_store import AtomicRedisLockStore

pytestmark = pytest.mark.redis

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/2")


@pytest.fixture
def prefix():
    import redis

    value = "locktest" + uuid.uuid4().hex[:10]
    client = redis.Redis.from_url(REDIS_URL)
    yield value
    keys = list(client.scan_iter(match=f"{value}:*"))
    if keys:
        client.delete(*keys)
    client.close()


def make(cls, prefix):
    from urllib.parse import urlsplit

    parts = urlsplit(REDIS_URL)
    return cls(host=parts.hostname, port=parts.port or 6379, db=int(parts.path.lstrip("/") or 0),
               key_prefix=prefix)


def hammer(stores, conversation, threads_per_store=4, tickets_each=25):
    """Issue tickets from every thread at once; return the numbers handed out."""
    issued, barrier = [], threading.Barrier(len(stores) * threads_per_store)

    def worker(store):
        barrier.wait()
        for _ in range(tickets_each):
            issued.append(store.issue_ticket(conversation, 60))

    threads = [threading.Thread(target=worker, args=(s,)) for s in stores
               for _ in range(threads_per_store)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return issued


def test_created_from_the_endpoints_file_like_rasa_does(prefix):
    from urllib.parse import urlsplit

    parts = urlsplit(REDIS_URL)
    config = EndpointConfig(url=parts.hostname, type="bot.lock_store.AtomicRedisLockStore",
                            port=parts.port or 6379, db=int(parts.path.lstrip("/")),
                            key_prefix=prefix)
    from rasa.core.lock_store import LockStore

    store = LockStore.create(config)
    assert isinstance(store, AtomicRedisLockStore)
    assert store.key_prefix == f"{prefix}:lock:"
    assert store.issue_ticket("c1") == 0
    assert store.red.ttl(store.key_prefix + "c1") > 60


def test_concurrent_tickets_are_unique_and_none_is_lost(prefix):
    stores = [make(AtomicRedisLockStore, prefix), make(AtomicRedisLockStore, prefix)]
    issued = hammer(stores, "conv")
    assert len(issued) == 200 and len(set(issued)) == 200
    lock = stores[0].get_lock("conv")
    assert sorted(t.number for t in lock.tickets) == sorted(issued)
    # finishing every ticket from both stores at once leaves no lock behind
    half = len(issued) // 2
    threads = [threading.Thread(target=lambda s=s, ns=ns: [s.cleanup("conv", n) for n in ns])
               for s, ns in ((stores[0], issued[:half]), (stores[1], issued[half:]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert stores[0].get_lock("conv") is None


def test_stock_redis_lock_store_loses_tickets_under_the_same_load(prefix):
    """The reason for AtomicRedisLockStore: Rasa's own class, same load (rasa#9213).

    The race is timing-dependent, so this only records what happened: it passes either way
    and prints the numbers (run with -s).
    """
    stores = [make(RedisLockStore, prefix), make(RedisLockStore, prefix)]
    issued = hammer(stores, "conv")
    lock = stores[0].get_lock("conv")
    kept = len(lock.tickets) if lock else 0
    print(f"\nstock RedisLockStore: {len(issued)} tickets issued, {len(set(issued))} distinct "
          f"numbers, {kept} still in the queue (atomic store: 200, 200, 200)")


def test_lock_gives_mutual_exclusion_across_two_stores(prefix):
    """Two event loops (two "instances"), 3 concurrent turns each for one conversation."""
    stores = [make(RedisLockStore, prefix), make(RedisLockStore, prefix)]
    inside, overlaps, done = [0], [0], []
    guard = threading.Lock()

    async def turn(store, n):
        async with store.lock("conv", lock_lifetime=30, wait_time_in_seconds=0.05):
            with guard:
                inside[0] += 1
                if inside[0] > 1:
                    overlaps[0] += 1
            await asyncio.sleep(0.02)
            with guard:
                inside[0] -= 1
            done.append(n)

    def instance(store, base):
        async def main():
            await asyncio.gather(*(turn(store, base + i) for i in range(3)))

        asyncio.run(main())

    threads = [threading.Thread(target=instance, args=(s, 10 * i)) for i, s in enumerate(stores)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(done) == [0, 1, 2, 10, 11, 12]
    assert overlaps[0] == 0
    assert time.monotonic() - start < 30
    assert stores[0].get_lock("conv") is None
