"""``make bench``: run every benchmark and write bench/RESULTS.md (machine, date, figures).

Each benchmark also writes its own page under bench/results/. ``--quick`` runs each once in a
tiny mode (used by the test suite so the scripts keep working) and writes nothing. ``--only
SCRIPT...`` re-runs some and rebuilds RESULTS.md from all the pages (each page carries its own
date and load average).
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHES = [
    ("Language identification", "langid.py", "langid.md"),
    ("Safety patterns (crisis recall/precision)", "safety_eval.py", "safety.md"),
    ("Held-out intent F1", "nlu_eval.py", "nlu.md"),
    ("Shared example cases (../shared/eval)", "eval_shared.py", "eval_shared.md"),
    # trains both models from scratch and starts several stacks: ~30-60 min on 2 cores;
    # --quick: 20 messages through one stack, nothing written
    ("Performance vs plain Rasa (latency, throughput, memory, training)", "perf.py", "perf.md"),
    # after perf.py, which keeps its baseline model in var/bench/ for this one
    ("Latency as a conversation grows", "long_conversation.py", "long_conversation.md"),
]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", nargs="+", metavar="SCRIPT",
                        help="run only these (e.g. long_conversation.py), then write RESULTS.md "
                             "from every page, the others' as they are")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SQLALCHEMY_SILENCE_UBER_WARNING": "1",
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    failures = 0
    for title, script, _ in BENCHES:
        if args.quick and script == "eval_shared.py":
            continue  # starts the whole stack: covered by the end-to-end tests
        if args.only and script not in args.only:
            continue
        cmd = [sys.executable, str(ROOT / "bench" / script)] + (["--quick"] if args.quick else [])
        if args.quick and script == "safety_eval.py":
            cmd.append("--no-write")
        print(f"== {title}: {' '.join(cmd[1:])}", flush=True)
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=args.quick, text=True)
        if proc.returncode != 0:
            failures += 1
            print(f"   FAILED ({proc.returncode})", (proc.stderr or "")[-1500:] if args.quick else "")
    if args.quick:
        return 1 if failures else 0
    cpu = ""
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    lines = ["# Signpost benchmark results", "",
             f"Date: {dt.date.today().isoformat()} · Machine: {platform.platform()}, {os.cpu_count()} cores"
             + (f" ({cpu})" if cpu else "") + f", Python {platform.python_version()}", ""]
    perf_page = ROOT / "bench" / "results" / "perf.md"
    if perf_page.exists():  # the targets first, as measured in the perf.py run
        text = perf_page.read_text(encoding="utf-8")
        start = text.find("## Targets")
        end = text.find("\n## ", start + 1)
        if start >= 0:
            lines += ["## Summary: the targets of issue #10 (from the performance run below)", "",
                      text[start:end if end > 0 else None].split("\n", 1)[1].strip(), ""]
    for title, _, page in BENCHES:
        path = ROOT / "bench" / "results" / page
        lines += [f"## {title}", "", path.read_text(encoding="utf-8") if path.exists() else "(not run)", ""]
    (ROOT / "bench" / "RESULTS.md").write_text("\n".join(lines), encoding="utf-8")
    print("wrote bench/RESULTS.md")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
