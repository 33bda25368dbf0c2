"""Where the time goes for one message inside Rasa (used by bench/perf.py; issue #10).

Usage: python bench/rasa_profile.py --model M --endpoints E [--messages 300] [--out x.json]

Loads the model exactly as ``rasa run`` does (``rasa.core.agent.load_agent`` with the same
endpoints file: SQL tracker store, lock store, the running action server), then handles the
benchmark's message mix one message at a time (``Agent.handle_message`` with a collecting
channel, what the REST channel calls), fresh sender per conversation, and reports:

1. a wall-clock breakdown per message: NLU graph (and each NLU component), policy
   prediction (and each policy), tracker store reads and writes (SQL + event
   (de)serialisation), the action server hop (request building, JSON, HTTP, rasa_sdk), response
   templating (NLG), and the rest (exclusive times: nested categories are not counted twice);
2. cProfile's top functions (own time and cumulative) over a second pass.

Only the in-process part of a turn is seen here; the HTTP layer (Sanic, REST channel) is the
difference between this and the direct REST latency measured by bench/latency.py.
"""
from __future__ import annotations

import argparse
import asyncio
import cProfile
import functools
import inspect
import io
import json
import os
import pstats
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any, Dict, List

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from latency import take_messages  # noqa: E402

_stack: List[List[Any]] = []  # [category, start, paused_total]
_totals: Dict[str, float] = defaultdict(float)
_nodes: Dict[str, float] = defaultdict(float)
_node_calls: Dict[str, int] = defaultdict(int)


def _enter(category: str) -> None:
    now = time.perf_counter()
    if _stack:
        outer = _stack[-1]
        _totals[outer[0]] += now - outer[1]
    _stack.append([category, now])


def _leave() -> None:
    now = time.perf_counter()
    category, start = _stack.pop()
    _totals[category] += now - start
    if _stack:
        _stack[-1][1] = now  # resume the outer category's clock


def _wrap(owner: Any, name: str, category: str) -> None:
    original = getattr(owner, name)
    if inspect.iscoroutinefunction(original):
        @functools.wraps(original)
        async def wrapper(*args, **kwargs):
            _enter(category)
            try:
                return await original(*args, **kwargs)
            finally:
                _leave()
    else:
        @functools.wraps(original)
        def wrapper(*args, **kwargs):
            _enter(category)
            try:
                return original(*args, **kwargs)
            finally:
                _leave()
    setattr(owner, name, wrapper)


def _instrument() -> None:
    """Exclusive wall-clock accounting (valid because messages are handled one at a time)."""
    from rasa.core import processor as processor_mod
    from rasa.core.actions.action import RemoteAction
    from rasa.core.nlg.response import TemplatedNaturalLanguageGenerator
    from rasa.core.tracker_store import SQLTrackerStore
    from rasa.engine.graph import GraphNode
    from rasa.shared.core.trackers import DialogueStateTracker
    from rasa.utils.endpoints import EndpointConfig

    MP = processor_mod.MessageProcessor
    original_handle = MP.handle_message

    @functools.wraps(original_handle)
    async def handle_message(*args, **kwargs):  # inclusive time, outside the exclusive stack
        t0 = time.perf_counter()
        try:
            return await original_handle(*args, **kwargs)
        finally:
            _totals["total"] += time.perf_counter() - t0

    MP.handle_message = handle_message
    _wrap(MP, "_parse_message_with_graph", "NLU graph (our/plain components)")
    _wrap(MP, "_predict_next_with_tracker", "policy prediction graph")
    _wrap(SQLTrackerStore, "_retrieve", "tracker store read (SQL + events → tracker)")
    _wrap(SQLTrackerStore, "save", "tracker store write (SQL + events → JSON)")
    _wrap(RemoteAction, "run", "action server hop: rest of RemoteAction.run")
    _wrap(RemoteAction, "_action_call_format", "action server hop: build request (tracker state, domain)")
    _wrap(EndpointConfig, "request", "action server hop: HTTP round trip (JSON encode, rasa_sdk, decode)")
    _wrap(DialogueStateTracker, "current_state", "tracker.current_state (serialise)")
    _wrap(TemplatedNaturalLanguageGenerator, "generate", "response templating (NLG)")

    original_call = GraphNode.__call__

    def node_call(self, *inputs):
        t0 = time.perf_counter()
        try:
            return original_call(self, *inputs)
        finally:
            _nodes[self._node_name] += time.perf_counter() - t0
            _node_calls[self._node_name] += 1

    GraphNode.__call__ = node_call


async def _run(agent, convs) -> int:
    from rasa.core.channels.channel import CollectingOutputChannel, UserMessage

    n = 0
    for conv in convs:
        sender = "profile-" + uuid.uuid4().hex
        for _, text in conv:
            out = CollectingOutputChannel()
            await agent.handle_message(UserMessage(
                text, out, sender, input_channel="rest",
                metadata={"channel": "web", "audience_hint": "parent"}))
            n += 1
    return n


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--endpoints", required=True)
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    # logging as `rasa run` sets it up (INFO), so log calls cost what they cost there
    from rasa.utils.common import configure_logging_and_warnings
    from rasa.utils.log_utils import configure_structlog

    configure_logging_and_warnings(None, None, warn_only_once=True, filter_repeated_logs=True)
    configure_structlog(None)
    from rasa.core.agent import load_agent
    from rasa.core.utils import AvailableEndpoints

    endpoints = AvailableEndpoints.read_endpoints(args.endpoints)
    t0 = time.perf_counter()
    agent = asyncio.run(load_agent(model_path=args.model, endpoints=endpoints))
    load_s = time.perf_counter() - t0

    loop = asyncio.new_event_loop()
    loop.run_until_complete(_run(agent, take_messages(30, seed=7)))  # warm-up
    _instrument()
    t0 = time.perf_counter()
    n = loop.run_until_complete(_run(agent, take_messages(args.messages, seed=11)))
    wall = time.perf_counter() - t0
    totals = dict(_totals)
    total = totals.pop("total", 0.0)
    breakdown = {k: v / n * 1000 for k, v in sorted(totals.items(), key=lambda kv: -kv[1])}
    breakdown["rest of handle_message (events, slots, rules glue, lock)"] = \
        (total - sum(totals.values())) / n * 1000
    nodes = {k: {"ms_per_message": v / n * 1000, "calls_per_message": _node_calls[k] / n}
             for k, v in sorted(_nodes.items(), key=lambda kv: -kv[1])}

    profiler = cProfile.Profile()
    convs = take_messages(args.messages, seed=12)
    profiler.enable()
    n2 = loop.run_until_complete(_run(agent, convs))
    profiler.disable()
    stats = pstats.Stats(profiler)
    tables = {}
    for key in ("tottime", "cumulative"):
        buf = io.StringIO()
        pstats.Stats(profiler, stream=buf).sort_stats(key).print_stats(25)
        tables[key] = buf.getvalue().split("\n", 4)[-1]  # drop pstats' header lines
    del stats
    result = {"model": os.path.basename(args.model), "load_s": load_s, "messages": n,
              "ms_per_message": total / n * 1000, "wall_ms_per_message": wall / n * 1000,
              "breakdown_ms": breakdown, "graph_nodes": nodes, "cprofile_messages": n2,
              "cprofile": tables}
    text = json.dumps(result, indent=1)
    if args.out:
        Path(args.out).write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
