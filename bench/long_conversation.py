"""Latency as a conversation grows (issue #10; rasa-notes/perf-notes: "latency grows with
conversation length"). Writes bench/results/long_conversation.md.

Usage: python bench/long_conversation.py [--turns 200] [--conversations 2] [--quick]
                                         [--model PATH] [--baseline-model PATH] [--no-baseline]

Rasa replays a conversation's whole tracker (every event since the session started) for each
message: loaded from the tracker store, turned into dialogue states by the policies (more than
once per message), written back. A Telegram chat that goes on for hours without a 60-minute
pause stays in one session, so its later messages cost more. This benchmark sends
``--turns`` messages in one conversation, one after the other (no think time, no other
traffic), straight to Rasa's REST channel, and reports the median latency per block of turns
and the number of events in the tracker at the end, for our model and for the ``rasa init``
baseline (bench/baseline_config.yml) on the same data.

The baseline model: ``--baseline-model``, else var/bench/baseline.tar.gz (bench/perf.py keeps
the one it trains there) when it is newer than the data, else it is trained here (several
minutes on 2 cores).

``--quick``: 12 turns, our model only, writes nothing (run by the test suite).
"""
from __future__ import annotations

import argparse
import datetime as dt
import itertools
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import httpx

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

import perf  # noqa: E402

BASELINE_KEPT = perf.KEPT_BASELINE
#: What a long chat looks like: questions, follow-ups, thanks, the support finder, a change
#: of language. No crisis message (its rule ends in a question and would make the blocks
#: differ); written for the benchmark.
TURNS: List[str] = [
    "hi", "how do extremists recruit teenagers online?", "tell me more", "thanks",
    "what is love bombing", "can you give me an example", "ok",
    "find help in the UK", '/choose_need{"need":"radicalisation"}', "thank you",
    "what are the warning signs that my son is being radicalised", "tell me more",
    "Was ist Love Bombing?", "danke", "how do I report a post", "ok thanks",
]
#: Blocks of turns reported (1-based, inclusive), as in perf-notes §1.2.
BLOCKS: List[Tuple[int, int]] = [(1, 10), (46, 55), (96, 105), (191, 200)]


def blocks_for(turns: int) -> List[Tuple[int, int]]:
    """The reporting blocks that fit in ``turns`` (at least the first and the last ten)."""
    out = [b for b in BLOCKS if b[1] <= turns]
    last = (max(1, turns - 9), turns)
    if not out or out[-1][1] != turns:
        out.append(last)
    return out


def one_conversation(rasa_url: str, token: str, turns: int) -> Tuple[List[float], int, int]:
    """Send ``turns`` messages as one new sender; (ms per turn, errors, events in the tracker).

    Raises:
        httpx.HTTPError: Rasa unreachable.
    """
    sender = "bench-long-" + uuid.uuid4().hex
    out, errors = [], 0
    with httpx.Client(timeout=60) as client:
        for text in itertools.islice(itertools.cycle(TURNS), turns):
            t0 = time.perf_counter()
            r = client.post(f"{rasa_url}/webhooks/rest/webhook", json={
                "sender": sender, "message": text,
                "metadata": {"channel": "web", "audience_hint": "parent"}})
            out.append((time.perf_counter() - t0) * 1000)
            if r.status_code != 200 or not r.json():
                errors += 1
        tracker = client.get(f"{rasa_url}/conversations/{sender}/tracker",
                             params={"token": token, "include_events": "ALL"})
        events = len(tracker.json().get("events", [])) if tracker.status_code == 200 else -1
    return out, errors, events


def measure(label: str, model: Path, tmp: Path, turns: int, conversations: int) -> Dict:
    """Start a stack with ``model`` and run ``conversations`` long conversations one after the
    other. Returns ``{"per_turn": [[ms...] per conversation], "errors", "events", "label"}``."""
    print(f"== {label}: {conversations} conversation(s) of {turns} turns", flush=True)
    with perf.stack_for(tmp, model) as stack:
        perf.lat.warm_up(stack, 4)
        per_turn, errors, events = [], 0, []
        for _ in range(conversations):
            ms, err, ev = one_conversation(stack.rasa, stack.env["RASA_TOKEN"], turns)
            per_turn.append(ms)
            errors += err
            events.append(ev)
    return {"label": label, "per_turn": per_turn, "errors": errors, "events": events}


def block_p50(result: Dict, block: Tuple[int, int]) -> float:
    values = [ms for conv in result["per_turn"] for ms in conv[block[0] - 1:block[1]]]
    return statistics.median(values) if values else float("nan")


def report(results: Sequence[Dict], turns: int, meta: Dict[str, str]) -> str:
    blocks = blocks_for(turns)
    names = [r["label"] for r in results]
    L = ["# Latency as a conversation grows", "",
         f"Date: {meta['date']} · {meta['cores']} cores ({meta['cpu']}) · rasa {meta['rasa']} · "
         f"load average at the start {meta['load_start']}, at the end {meta['load_end']}.", "",
         f"{len(results[0]['per_turn'])} conversation(s) of {turns} messages each, one message at a "
         "time, no other traffic, straight to Rasa's REST channel (SQLite tracker store, the "
         "action server running). The messages cycle through questions, follow-ups, thanks, "
         "the support finder and a German question (bench/long_conversation.py `TURNS`). Median "
         "latency per block of turns, over all conversations:", "",
         "| turns | " + " | ".join(f"{n} p50 ms" for n in names)
         + (" | ours / baseline |" if len(results) == 2 else " |"),
         "|---|" + "---|" * len(names) + ("---|" if len(results) == 2 else "")]
    for b in blocks:
        vals = [block_p50(r, b) for r in results]
        row = f"| {b[0]}–{b[1]} | " + " | ".join(f"{v:.0f}" for v in vals)
        if len(vals) == 2:
            row += f" | {perf._ratio(vals[0], vals[1])}"
        L.append(row + " |")
    first, last = blocks[0], blocks[-1]
    L.append("")
    for r in results:
        a, b = block_p50(r, first), block_p50(r, last)
        L.append(f"- {r['label']}: turns {last[0]}–{last[1]} take {perf._ratio(b, a)} the time of "
                 f"turns {first[0]}–{first[1]} ({b - a:+.0f} ms); events in the tracker after "
                 f"{turns} turns: {', '.join(str(e) for e in r['events'])}; failed replies: "
                 f"{r['errors']}.")
    L += ["", "What keeps this bounded in production: a new session starts after 60 minutes "
          "of silence (domain/core.yml `session_expiration_time`; Rasa then loads only the "
          "events of the current session, with the slots carried over), so the growth applies "
          "to one uninterrupted chat, and a real person types a few hundred messages a day at "
          "most.", ""]
    return "\n".join(L)


def newest_input() -> float:
    """mtime of the newest file the baseline is trained from (a kept model older than it is
    stale)."""
    paths = [BENCH / "baseline_config.yml"] + [
        p for d in ("domain", "data/nlu", "data/rules", "data/stories")
        for p in (ROOT / d).rglob("*.yml")]
    return max(p.stat().st_mtime for p in paths)


def baseline_model(path: Optional[str], tmp: Path) -> Path:
    if path:
        return Path(path)
    if BASELINE_KEPT.exists() and BASELINE_KEPT.stat().st_mtime > newest_input():
        return BASELINE_KEPT
    print("== baseline: training (no kept model)", flush=True)
    project = perf.snapshot_project(tmp / "project-baseline", BENCH / "baseline_config.yml")
    res = perf.rasa_train(project, "baseline", "baseline", tmp / "train-baseline.log")
    if not res.ok:
        raise RuntimeError("training the baseline failed: see " + str(tmp / "train-baseline.log"))
    BASELINE_KEPT.parent.mkdir(parents=True, exist_ok=True)
    res.model.replace(BASELINE_KEPT)
    return BASELINE_KEPT


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--conversations", type=int, default=2)
    parser.add_argument("--model", default=None, help="ours (default: the current model)")
    parser.add_argument("--baseline-model", default=None)
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(BENCH / "results" / "long_conversation.md"))
    args = parser.parse_args()
    perf.serve_like_production()
    if args.quick:
        args.turns, args.conversations, args.no_baseline = 12, 1, True
    meta = {**perf.machine(), "date": dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
            "load_start": str(perf.loadavg())}
    with tempfile.TemporaryDirectory(prefix="signpost-long-") as tmp_name:
        tmp = Path(tmp_name)
        if args.model:
            ours = Path(args.model)
        else:
            from bot.cli import train

            ours = train()
        models = [("ours", ours)]
        if not args.no_baseline:
            models.append(("baseline", baseline_model(args.baseline_model, tmp)))
        results = [measure(label, model, tmp / label, args.turns, args.conversations)
                   for label, model in models]
    meta["load_end"] = str(perf.loadavg())
    text = report(results, args.turns, meta)
    print(text)
    if not args.quick:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"wrote {args.out}")
    return 1 if any(r["errors"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
