"""End-to-end latency of one message, through the gateway and straight to Rasa (issue #10).

Usage: python bench/latency.py [--messages 500] [--concurrency 1 10 50] [--quick]

Starts a stack (action server, Rasa with the current model, gateway; the same code as the
end-to-end tests), then sends a realistic mix of conversations (see ``SCRIPTS``: tactics
questions in four languages, support-finder turns that hit the action server, greetings, a
crisis message) with 1, 10 and 50 conversations in flight, first through the gateway
(``POST /api/chat``) and then straight to Rasa's REST channel, and prints p50/p95/p99.
Every conversation has a fresh sender id; every run is bounded (a message budget, or a
deadline in closed-loop throughput mode). It also times the gateway's own work with a fake,
instant Rasa (``httpx.MockTransport`` in :class:`bot.rasa_client.RasaClient`, requests made
in-process through ``httpx.ASGITransport``), so the overhead is measured without Rasa noise.

``bench/perf.py`` uses the functions here for the full comparison with plain Rasa and writes
bench/results/perf.md; this script alone only prints (``--quick``: 20 messages, 1 conversation
at a time).
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# --- The message mix ---------------------------------------------------------------------
# Each script is one conversation (a fresh sender). Turns are (kind, text); kinds group the
# figures: "greet", "question" (tactics/topic questions, 4 languages), "follow" (follow-ups),
# "support" (support finder: the form's validation and action_find_support run on the action
# server), "crisis". Every first message of a conversation also runs action_session_start on
# the action server. Texts are written for the benchmark, not copied from the training data.
QUESTIONS_EN = [
    "how do extremists recruit teenagers online?",
    "what is love bombing",
    "what are the warning signs that my son is being radicalised",
    "why do extremist groups post cute videos",
    "someone keeps sending my daughter gifts in a game, should I worry",
    "they told him to keep it secret from us, is that a red flag?",
    "what is an echo chamber",
    "how do I talk to my child about extremist content",
    "how do I report a post",
]
SCRIPTS: List[Tuple[int, List[Tuple[str, str]]]] = [
    # (weight, turns); "{q}" is replaced by the next English question of the pool
    (3, [("greet", "hi"), ("question", "{q}"), ("follow", "tell me more")]),
    (2, [("question", "{q}"), ("follow", "thanks")]),
    (2, [("support", "find help in the UK"), ("support", '/choose_need{"need":"radicalisation"}')]),
    (1, [("greet", "Hallo"), ("question", "Was ist Love Bombing?")]),
    (1, [("greet", "Bonjour"), ("question", "comment parler à mon fils de la propagande extrémiste ?")]),
    (1, [("greet", "مرحبا"), ("question", "ما هي علامات التطرف؟")]),
    (1, [("crisis", "I want to kill myself"), ("crisis", "/safe_now")]),
]


def conversations(seed: int = 10) -> Iterator[List[Tuple[str, str]]]:
    """An endless, reproducible stream of conversations drawn from ``SCRIPTS`` by weight."""
    rng = random.Random(seed)
    deck = [turns for weight, turns in SCRIPTS for _ in range(weight)]
    questions = itertools.cycle(QUESTIONS_EN)
    while True:
        rng.shuffle(deck)
        for turns in deck:
            yield [(kind, text.replace("{q}", next(questions)) if "{q}" in text else text)
                   for kind, text in turns]


def take_messages(n: int, seed: int = 10) -> List[List[Tuple[str, str]]]:
    """Whole conversations from the stream until they hold at least ``n`` messages."""
    out, total = [], 0
    for conv in conversations(seed):
        if total >= n:
            break
        out.append(conv)
        total += len(conv)
    return out


# --- Load generator ----------------------------------------------------------------------
@dataclass
class Sample:
    kind: str
    ms: float
    ok: bool
    first: bool  # first message of its conversation (runs action_session_start)


@dataclass
class RunResult:
    target: str
    concurrency: int
    samples: List[Sample] = field(default_factory=list)
    elapsed_s: float = 0.0
    errors: Dict[str, int] = field(default_factory=dict)
    loadavg_start: Tuple[float, float, float] = (0.0, 0.0, 0.0)
    loadavg_end: Tuple[float, float, float] = (0.0, 0.0, 0.0)
    think_s: Optional[Tuple[float, float]] = None  # think time between a conversation's turns

    @property
    def ok_ms(self) -> List[float]:
        return [s.ms for s in self.samples if s.ok]

    @property
    def n(self) -> int:
        return len(self.samples)

    @property
    def n_errors(self) -> int:
        return sum(self.errors.values())

    @property
    def throughput(self) -> float:
        return len(self.ok_ms) / self.elapsed_s if self.elapsed_s else 0.0

    def pct(self, q: float, kind: Optional[str] = None) -> float:
        values = [s.ms for s in self.samples if s.ok and (kind is None or s.kind == kind)]
        return percentile(values, q)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    v = sorted(values)
    if len(v) == 1:
        return v[0]
    pos = (len(v) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def _request(target: str, base: str, sender: str, text: str) -> Tuple[str, dict]:
    if target == "gateway":
        return base + "/api/chat", {"session_id": sender, "message": text, "metadata": {}}
    # What the gateway sends to Rasa for a web message (bot/app.py)
    return base + "/webhooks/rest/webhook", {
        "sender": sender, "message": text,
        "metadata": {"channel": "web", "audience_hint": "parent"}}


def _reply_ok(target: str, response: httpx.Response) -> Optional[str]:
    """None when the reply is a real bot answer, else a short error label."""
    if response.status_code != 200:
        return f"HTTP {response.status_code}"
    data = response.json()
    if target == "gateway":
        if data.get("failsafe"):
            return "failsafe reply"
        messages = data.get("messages") or []
    else:
        messages = data if isinstance(data, list) else []
    return None if messages else "empty reply"


async def run_load(target: str, base: str, concurrency: int, *,
                   convs: Optional[List[List[Tuple[str, str]]]] = None,
                   duration_s: Optional[float] = None, seed: int = 10,
                   timeout_s: float = 60.0,
                   think_s: Optional[Tuple[float, float]] = None) -> RunResult:
    """Closed loop: ``concurrency`` conversations in flight, each sends its next turn when
    the previous reply has arrived (after a think time drawn uniformly from ``think_s``, if
    given, before every message but a conversation's first; none by default: saturation).

    Bounded either by ``convs`` (a fixed list of conversations) or by ``duration_s`` (no new
    conversation or turn is started after the deadline; the elapsed time ends when the last
    reply arrives).

    Args:
        target: "gateway" (``base`` is the gateway) or "rasa" (``base`` is Rasa's REST API).
    """
    if (convs is None) == (duration_s is None):
        raise ValueError("give exactly one of convs and duration_s")
    source = iter(convs) if convs is not None else conversations(seed)
    result = RunResult(target, concurrency, loadavg_start=os.getloadavg())
    result.think_s = think_s
    rng = random.Random(seed)
    limits = httpx.Limits(max_connections=concurrency + 5, max_keepalive_connections=concurrency + 5)
    start = time.perf_counter()
    deadline = start + duration_s if duration_s is not None else None

    async with httpx.AsyncClient(timeout=timeout_s, limits=limits) as client:
        async def worker() -> None:
            while True:
                if deadline is not None and time.perf_counter() >= deadline:
                    return
                conv = next(source, None)
                if conv is None:
                    return
                # the gateway wants a UUID session id; Rasa any non-empty sender
                sender = str(uuid.uuid4()) if target == "gateway" else "bench-" + uuid.uuid4().hex
                for i, (kind, text) in enumerate(conv):
                    if think_s and i > 0:
                        await asyncio.sleep(rng.uniform(*think_s))
                    if deadline is not None and time.perf_counter() >= deadline:
                        return
                    url, body = _request(target, base, sender, text)
                    t0 = time.perf_counter()
                    try:
                        response = await client.post(url, json=body)
                        error = _reply_ok(target, response)
                    except (httpx.HTTPError, ValueError) as exc:
                        error = type(exc).__name__
                    ms = (time.perf_counter() - t0) * 1000
                    result.samples.append(Sample(kind, ms, error is None, i == 0))
                    if error:
                        result.errors[error] = result.errors.get(error, 0) + 1
                        break  # the rest of this conversation would not make sense

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.elapsed_s = time.perf_counter() - start
    result.loadavg_end = os.getloadavg()
    return result


# --- The gateway's own work, with an instant fake Rasa ------------------------------------
FAKE_REPLY = [
    {"text": "People who groom or recruit online use the same tricks, whatever the ideology. "
             "They find someone who feels lonely or angry, give them attention and a sense of "
             "belonging, then slowly pull them into private chats and more extreme content."},
    {"text": "Would you like a made-up example, or what to do if you spot these?",
     "buttons": [{"title": "Show me an example", "payload": "/give_example"},
                 {"title": "What should I do?", "payload": "/what_should_i_do"}]},
]


async def gateway_overhead(n: int = 2000, fake_reply: Optional[list] = None) -> Dict[str, float]:
    """Time ``POST /api/chat`` in-process with a fake Rasa that answers instantly.

    The app is the real gateway (bot.app.create_app) with a RasaClient on
    ``httpx.MockTransport``; requests go through ``httpx.ASGITransport`` (no sockets). The
    harness cost (the same client calling a trivial ASGI app) is measured too and subtracted.
    Messages cycle through the benchmark mix, so the gateway's safety net runs as in real use.

    Returns:
        ``{"p50", "p95", "p99", "mean", "harness_p50", "net_p50", "net_p95", "n"}`` in ms.
    """
    os.environ.setdefault("SIGNPOST_HMAC_KEY", "bench-key-" + "x" * 24)
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from bot.app import create_app
    from bot.rasa_client import RasaClient
    from bot.settings import Settings

    reply = fake_reply or FAKE_REPLY

    crisis_texts = {text for _, turns in SCRIPTS for kind, text in turns if kind == "crisis"}
    crisis_reply = [{"text": "In danger right now? Call 999.", "custom": {"signpost": "crisis"}}] + reply

    def fake_rasa(request: httpx.Request) -> httpx.Response:
        # like Rasa, a crisis message gets the crisis answer (so the safety net stays quiet)
        message = json.loads(request.content)["message"]
        return httpx.Response(200, json=crisis_reply if message in crisis_texts else reply)

    settings = Settings(rasa_urls=["http://rasa.invalid"], rate_limit_per_minute=10 ** 9)
    rasa = RasaClient(settings.rasa_urls, transport=httpx.MockTransport(fake_rasa))
    app = create_app(settings, rasa=rasa)

    async def trivial(request):
        await request.body()
        return JSONResponse({"messages": reply, "failsafe": False})

    null_app = Starlette(routes=[Route("/api/chat", trivial, methods=["POST"])])
    texts = [text for conv in take_messages(200) for _, text in conv]

    async def timed(client: httpx.AsyncClient, count: int) -> List[float]:
        out = []
        for i in range(count):
            body = {"session_id": str(uuid.uuid4()), "message": texts[i % len(texts)], "metadata": {}}
            t0 = time.perf_counter()
            r = await client.post("/api/chat", json=body)
            out.append((time.perf_counter() - t0) * 1000)
            if r.status_code != 200 or r.json().get("failsafe") is None:
                raise RuntimeError(f"gateway answered {r.status_code}: {r.text[:200]}")
        return out

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
        await timed(c, 50)  # warm-up (loads the safety patterns)
        gw = await timed(c, n)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=null_app), base_url="http://gw") as c:
        await timed(c, 50)
        null = await timed(c, n)
    await rasa.close()
    harness = percentile(null, 50)
    return {"n": n, "p50": percentile(gw, 50), "p95": percentile(gw, 95),
            "p99": percentile(gw, 99), "mean": statistics.fmean(gw), "harness_p50": harness,
            "net_p50": percentile(gw, 50) - harness, "net_p95": percentile(gw, 95) - harness}


def measure_latency(stack, messages: int, levels: Sequence[int], seed: int = 10,
                    targets: Sequence[str] = ("gateway", "rasa"),
                    think_s: Optional[Tuple[float, float]] = None) -> List[RunResult]:
    """For each level, the same conversations through each target (fresh senders each time)."""
    results = []
    for c in levels:
        convs = take_messages(messages, seed + c)
        for target in targets:
            base = stack.gateway if target == "gateway" else stack.rasa
            results.append(asyncio.run(run_load(target, base, c, convs=convs, think_s=think_s)))
    return results


def warm_up(stack, n_convs: int = 10) -> None:
    """A few conversations through both paths so first-message costs are not measured."""
    convs = take_messages(n_convs * 2, seed=999)
    asyncio.run(run_load("gateway", stack.gateway, 2, convs=convs))
    asyncio.run(run_load("rasa", stack.rasa, 2, convs=convs))


def format_runs(results: Sequence[RunResult]) -> List[str]:
    lines = ["| path | concurrent conversations | messages | errors | p50 ms | p95 ms | p99 ms "
             "| msg/s | load avg (1 min) start → end |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        path = "gateway → Rasa" if r.target == "gateway" else "Rasa REST directly"
        if r.think_s:
            path += f" (think time {r.think_s[0]:g}-{r.think_s[1]:g} s)"
        lines.append(f"| {path} | {r.concurrency} | {r.n} | {r.n_errors} | {r.pct(50):.0f} "
                     f"| {r.pct(95):.0f} | {r.pct(99):.0f} | {r.throughput:.1f} "
                     f"| {r.loadavg_start[0]:.2f} → {r.loadavg_end[0]:.2f} |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--quick", action="store_true", help="20 messages, 1 conversation at a time")
    parser.add_argument("--model", default=None)
    args = parser.parse_args()
    if args.quick:
        args.messages, args.concurrency = 20, [1]
    from tests.conftest import start_stack

    overhead = asyncio.run(gateway_overhead(200 if args.quick else 2000))
    print(f"gateway's own work (fake instant Rasa, in-process): p50 {overhead['p50']:.2f} ms, "
          f"p95 {overhead['p95']:.2f} ms (harness {overhead['harness_p50']:.2f} ms)")
    with tempfile.TemporaryDirectory(prefix="signpost-latency-") as tmp:
        with start_stack(Path(tmp), Path(args.model) if args.model else None) as stack:
            warm_up(stack, 2 if args.quick else 10)
            results = measure_latency(stack, args.messages, args.concurrency)
    print("\n".join(format_runs(results)))
    bad = [r for r in results if r.n_errors]
    for r in bad:
        print(f"errors ({r.target}, {r.concurrency}): {r.errors}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
