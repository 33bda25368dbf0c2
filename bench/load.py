"""Load test: simulated users chatting through the gateway's web API (issue #11).

Each simulated user opens a web session (the page's ``session_start``), then sends messages
from a realistic mix — tactics questions, support-finder turns, parents' questions, greetings,
now and then a crisis message — with a random think time between messages (3–8 s by default).
Measured: error rate (HTTP error, no reply or exception), fail-safe rate (the gateway answered
because Rasa could not), latency percentiles, throughput, and the resident memory (RSS) of each
server process, sampled every 10 s to show whether it stays flat.

    python bench/load.py                      # 200 users, 5 minutes, starts its own stack
    python bench/load.py --users 20 --seconds 30
    python bench/load.py --gateway http://127.0.0.1:8000 --pid rasa=1234 …   # a running set-up

Without ``--gateway`` it starts the action server, Rasa and the gateway on free loopback ports
with ``tests.conftest.start_stack`` (rate limit 1000/min per session). Against a gateway of
``make run`` the default limits (30 messages/min per session, 4× that per IP) throttle a load
test that comes from one address: raise ``RATE_LIMIT_PER_MINUTE`` for the run.

Writes bench/results/load.md (``--out`` to change, ``--no-write`` for none). Only loopback
addresses are accepted as targets. The loop is bounded: every user stops at the deadline.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple
from urllib.parse import urlsplit

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from procstat import cpu_s, mem_kb  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "load.md"

#: Conversations a user may have, with weights: lists of (text, metadata) turns.
JOURNEYS: List[Tuple[float, str, List[str]]] = [
    (30, "tactics question", ["what is love bombing"]),
    (10, "tactics question", ["how do extremists recruit teenagers online?"]),
    (10, "tactics question", ["what are the warning signs"]),
    (6, "tactics question", ["what is grooming"]),
    (8, "parent question", ["how do I talk to my son about this"]),
    (6, "reporting", ["how do I report a post"]),
    (14, "support finder", ["find help in the UK", '/choose_need{"need":"radicalisation"}']),
    (6, "support finder", ["where can I find support", "UK", '/choose_need{"need":"crisis"}']),
    (8, "greeting", ["hi"]),
    (4, "greeting", ["thanks"]),
    (3, "crisis", ["i want to kill myself"]),
    (2, "german question", ["was ist love bombing"]),
]


@dataclass
class Sample:
    """One request: when it started (s since the start), latency (s), kind, outcome."""

    start: float
    latency: float
    kind: str
    ok: bool
    failsafe: bool
    status: int
    error: str = ""


@dataclass
class LoadResult:
    users: int
    seconds: float
    think: Tuple[float, float]
    samples: List[Sample] = field(default_factory=list)
    rss: Dict[str, List[Tuple[float, int]]] = field(default_factory=dict)  # name → [(t, kB)]
    load: List[Tuple[float, float]] = field(default_factory=list)  # [(t, 1-minute load average)]
    cpu_s: Dict[str, float] = field(default_factory=dict)  # name → CPU seconds used during the run
    wall_s: float = 0.0

    @property
    def requests(self) -> int:
        return len(self.samples)

    @property
    def errors(self) -> int:
        return sum(1 for s in self.samples if not s.ok)

    @property
    def failsafes(self) -> int:
        return sum(1 for s in self.samples if s.ok and s.failsafe)

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def throughput(self) -> float:
        return self.requests / self.wall_s if self.wall_s else 0.0

    def percentile(self, p: float, kind: Optional[str] = None) -> float:
        values = sorted(s.latency for s in self.samples if kind is None or s.kind == kind)
        if not values:
            return 0.0
        k = max(0, min(len(values) - 1, int(round(p / 100 * len(values) + 0.5)) - 1))
        return values[k]

    def summary(self) -> str:
        return (f"{self.users} users, {self.seconds:g} s: {self.requests} requests, "
                f"{self.errors} errors ({100 * self.error_rate:.2f} %), {self.failsafes} fail-safe, "
                f"p50 {1000 * self.percentile(50):.0f} ms, p95 {1000 * self.percentile(95):.0f} ms, "
                f"p99 {1000 * self.percentile(99):.0f} ms, {self.throughput:.1f} req/s")


# ---------------------------------------------------------------------------- memory
def rss_kb(pid: int) -> int:
    """Resident memory of a process and its children, in kB (bench/procstat.py)."""
    return mem_kb(pid)[0]


async def _sample_memory(pids: Dict[str, int], result: LoadResult, t0: float, every_s: float,
                         stop: asyncio.Event) -> None:
    while True:
        now = time.monotonic() - t0
        for name, pid in pids.items():
            result.rss.setdefault(name, []).append((now, rss_kb(pid)))
        result.load.append((now, os.getloadavg()[0]))
        try:
            await asyncio.wait_for(stop.wait(), timeout=every_s)
            break
        except asyncio.TimeoutError:
            continue
    now = time.monotonic() - t0
    for name, pid in pids.items():
        result.rss.setdefault(name, []).append((now, rss_kb(pid)))


# ---------------------------------------------------------------------------- users
def _check_loopback(url: str) -> None:
    host = urlsplit(url).hostname or ""
    if not (host == "localhost" or host.startswith("127.") or host == "::1"):
        raise ValueError(f"load tests only target loopback addresses, not {host!r}")


async def _post(client: httpx.AsyncClient, url: str, session: str, text: str, kind: str,
                t0: float, meta: Optional[dict] = None) -> Sample:
    start = time.monotonic()
    body = {"session_id": session, "message": text,
            "metadata": meta or {"channel": "web", "browser_language": "en-GB"}}
    try:
        r = await client.post(url, json=body)
        latency = time.monotonic() - start
        ok, failsafe, error = False, False, ""
        if r.status_code == 200:
            data = r.json()
            messages = data.get("messages") or []
            ok = bool(messages) and any(str(m.get("text", "")).strip() for m in messages)
            failsafe = bool(data.get("failsafe"))
            error = "" if ok else "empty reply"
        else:
            error = f"HTTP {r.status_code}"
        return Sample(start - t0, latency, kind, ok, failsafe, r.status_code, error)
    except Exception as exc:  # noqa: BLE001 - every failure is counted, none stops the run
        return Sample(start - t0, time.monotonic() - start, kind, False, False, 0,
                      type(exc).__name__)


async def _user(client: httpx.AsyncClient, url: str, deadline: float, think: Tuple[float, float],
                rng: random.Random, result: LoadResult, t0: float) -> None:
    await asyncio.sleep(rng.uniform(0, think[1]))  # users arrive spread over the first turn
    weights = [w for w, _, _ in JOURNEYS]
    while time.monotonic() < deadline:
        session = str(uuid.uuid4())
        result.samples.append(await _post(client, url, session, "", "session start", t0,
                                          {"channel": "web", "event": "session_start",
                                           "browser_language": "en-GB"}))
        for _ in range(rng.randint(2, 6)):  # a few topics per visit
            _, kind, turns = rng.choices(JOURNEYS, weights=weights)[0]
            for text in turns:
                if time.monotonic() >= deadline:
                    return
                await asyncio.sleep(min(rng.uniform(*think), max(0.0, deadline - time.monotonic())))
                if time.monotonic() >= deadline:
                    return
                result.samples.append(await _post(client, url, session, text, kind, t0))


async def run_load(gateway: str, users: int = 200, seconds: float = 300.0,
                   think: Tuple[float, float] = (3.0, 8.0), pids: Optional[Dict[str, int]] = None,
                   sample_every_s: float = 10.0, seed: int = 11,
                   request_timeout_s: float = 30.0) -> LoadResult:
    """Run ``users`` simulated users against ``gateway`` for ``seconds``; return the samples.

    Args:
        gateway: base URL of the gateway (loopback only).
        users: simultaneous users.
        seconds: how long users keep starting requests (the run ends after the last answer).
        think: (min, max) seconds a user waits before each message.
        pids: ``{name: pid}`` of processes whose RSS to sample every ``sample_every_s``.
        seed: random seed (the mix and think times are reproducible).

    Raises:
        ValueError: if ``gateway`` is not a loopback address.
    """
    _check_loopback(gateway)
    url = gateway.rstrip("/") + "/api/chat"
    result = LoadResult(users=users, seconds=seconds, think=think)
    t0 = time.monotonic()
    deadline = t0 + seconds
    stop = asyncio.Event()
    cpu_before = {name: cpu_s(pid) for name, pid in (pids or {}).items()}
    sampler = asyncio.create_task(_sample_memory(pids or {}, result, t0, sample_every_s, stop))
    limits = httpx.Limits(max_connections=users + 10, max_keepalive_connections=users + 10)
    async with httpx.AsyncClient(timeout=request_timeout_s, limits=limits) as client:
        rngs = [random.Random(seed * 100_003 + i) for i in range(users)]
        await asyncio.gather(*(_user(client, url, deadline, think, rngs[i], result, t0)
                               for i in range(users)))
    result.wall_s = time.monotonic() - t0
    stop.set()
    await sampler
    result.cpu_s = {name: cpu_s(pid) - cpu_before[name] for name, pid in (pids or {}).items()}
    return result


# ---------------------------------------------------------------------------- report
def _mb(kb: int) -> str:
    return f"{kb / 1024:.0f}"


def report(result: LoadResult, where: str = "") -> str:
    lines = ["# Load test (bench/load.py)", "",
             f"{result.users} simulated web users for {result.seconds:g} s, think time "
             f"{result.think[0]:g}–{result.think[1]:g} s between messages, against "
             f"{where or 'a gateway'}. Machine: {platform.platform()}, {os.cpu_count()} cores, "
             f"Python {platform.python_version()}.", "",
             "| figure | value |", "| --- | --- |",
             f"| requests | {result.requests} |",
             f"| errors (HTTP error, empty reply, exception) | {result.errors} "
             f"({100 * result.error_rate:.2f} %) |",
             f"| fail-safe replies (Rasa did not answer) | {result.failsafes} |",
             f"| throughput | {result.throughput:.1f} requests/s |",
             f"| latency p50 / p95 / p99 / max | {1000 * result.percentile(50):.0f} / "
             f"{1000 * result.percentile(95):.0f} / {1000 * result.percentile(99):.0f} / "
             f"{1000 * max((s.latency for s in result.samples), default=0):.0f} ms |", ""]
    if result.cpu_s:
        lines += ["CPU used during the run (user + system, process and its children): " + ", ".join(
            f"{n} {v:.0f} s ({100 * v / result.wall_s:.0f} % of one core)"
            for n, v in result.cpu_s.items()) + f"; {os.cpu_count()} cores in the machine.", ""]
    kinds = sorted({s.kind for s in result.samples})
    lines += ["By kind of message:", "", "| kind | requests | p50 ms | p95 ms | errors |",
              "| --- | --- | --- | --- | --- |"]
    for kind in kinds:
        n = sum(1 for s in result.samples if s.kind == kind)
        errors = sum(1 for s in result.samples if s.kind == kind and not s.ok)
        lines.append(f"| {kind} | {n} | {1000 * result.percentile(50, kind):.0f} | "
                     f"{1000 * result.percentile(95, kind):.0f} | {errors} |")
    errors: Dict[str, int] = {}
    for s in result.samples:
        if not s.ok:
            errors[s.error] = errors.get(s.error, 0) + 1
    if errors:
        lines += ["", "Errors: " + ", ".join(f"{k} × {v}" for k, v in sorted(errors.items()))]
    if result.rss:
        lines += ["", "Resident memory (RSS, MB, process and its children) every "
                  "sample; the first column is seconds since the start:", ""]
        names = list(result.rss)
        lines += ["| t (s) | " + " | ".join(names) + " | machine load (1 min) |",
                  "|" + " --- |" * (len(names) + 2)]
        for i in range(max(len(v) for v in result.rss.values())):
            t = next(v[i][0] for v in result.rss.values() if i < len(v))
            cells = [_mb(result.rss[n][i][1]) if i < len(result.rss[n]) else "" for n in names]
            load = f"{result.load[i][1]:.1f}" if i < len(result.load) else ""
            lines.append(f"| {t:.0f} | " + " | ".join(cells) + f" | {load} |")
        lines += ["", "Change from the first to the last sample: " + ", ".join(
            f"{n} {(v[-1][1] - v[0][1]) / 1024:+.0f} MB" for n, v in result.rss.items() if v)]
        # memory after the warm-up (first third) is what shows a leak
        settled = []
        for n, v in result.rss.items():
            third = v[len(v) // 3:]
            if len(third) >= 2:
                settled.append(f"{n} {(third[-1][1] - third[0][1]) / 1024:+.0f} MB")
        if settled:
            lines.append("After the first third of the run (warm-up excluded): " + ", ".join(settled))
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--think-min", type=float, default=3.0)
    parser.add_argument("--think-max", type=float, default=8.0)
    parser.add_argument("--gateway", default="", help="a running gateway (default: start a stack)")
    parser.add_argument("--pid", action="append", default=[], metavar="NAME=PID",
                        help="a process whose memory to sample (with --gateway)")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    think = (args.think_min, args.think_max)

    def finish(result: LoadResult, where: str) -> int:
        text = report(result, where)
        print(text)
        if not args.no_write:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(text, encoding="utf-8")
            print(f"wrote {args.out}")
        return 0 if result.requests and result.error_rate == 0 else 1

    if args.gateway:
        pids = dict(p.split("=", 1) for p in args.pid)
        result = asyncio.run(run_load(args.gateway, args.users, args.seconds, think,
                                      {k: int(v) for k, v in pids.items()}))
        return finish(result, args.gateway)
    sys.path.insert(0, str(ROOT))
    from tests.conftest import start_stack

    with tempfile.TemporaryDirectory(prefix="signpost-load-") as tmp:
        print("starting the action server, Rasa and the gateway…", flush=True)
        with start_stack(Path(tmp)) as stack:
            pids = {name: proc.pid for name, proc in stack.procs.items()}
            print(f"running {args.users} users for {args.seconds:g} s…", flush=True)
            result = asyncio.run(run_load(stack.gateway, args.users, args.seconds, think, pids))
            where = ("a stack started by the script (action server, one Rasa with the SQLite "
                     "tracker store, gateway; all on loopback)")
            return finish(result, where)


if __name__ == "__main__":
    sys.exit(main())
