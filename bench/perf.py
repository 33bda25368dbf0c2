"""Performance of Signpost side by side with plain Rasa (issue #10): writes bench/results/perf.md.

Usage: python bench/perf.py [--quick] [--out bench/results/perf.md] [--messages 500]
                            [--throughput-seconds 40] [--skip-baseline] [--skip-scale]

Everything runs on this machine, on loopback, in one go, for two models trained here from the
same snapshot of config/domain/data:

- **ours**: config.yml (TF-IDF + logistic regression, our language and safety components,
  Memoization + Rule policies);
- **baseline**: bench/baseline_config.yml, what ``rasa init`` trains (DIET, ResponseSelector,
  TED, UnexpecTED...), on OUR data and domain.

Measured for each: full training from scratch (temporary project copy, empty Rasa cache), then
retraining after a response-text-only change (which components Rasa retrained, from its log)
and loading that model into the running server (``PUT /model``: "ready to serve"); held-out
macro-F1 per language (bench/nlu_eval.py); latency p50/p95/p99 through the gateway and straight
to Rasa with 1, 10 and 50 conversations in flight (bench/latency.py); throughput at saturation
(closed loop, 50 conversations); RSS / peak RSS of every process idle and under load; CPU
seconds per process; where the time goes inside Rasa (bench/rasa_profile.py). For ours also
two Rasa instances (PostgreSQL tracker store in a throwaway database, Redis lock store with a
random key prefix; both removed afterwards) against one instance with the same stores.

The machine may be shared: ``os.getloadavg()`` is recorded at the start and end of every
measurement. Ratios to the baseline measured in the same run are the robust figures.

``--quick``: 20 messages, 1 conversation at a time, the current model, no training, no
baseline, no scale-out; writes nothing (the test suite runs it through run_all.py --quick).
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import httpx

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

import latency as lat  # noqa: E402
from procstat import cpu_s, mem_kb  # noqa: E402

PG_ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/3")
KEPT_BASELINE = ROOT / "var" / "bench" / "baseline.tar.gz"  # the trained baseline, kept
THINK_S = (1.0, 3.0)  # think time between a conversation's messages in the "realistic" run
TARGETS = {  # issue #10
    "gateway_overhead_ms": 3.0, "p95_c10_ms": 150.0, "throughput_ratio": 2.0,
    "memory_gb": 1.5, "full_train_s": 300.0, "response_ready_s": 60.0,
}
CHILD_ENV = {"PYTHONPATH": str(ROOT), "SQLALCHEMY_SILENCE_UBER_WARNING": "1",
             "TF_CPP_MIN_LOG_LEVEL": "2", "RASA_TELEMETRY_ENABLED": "false"}


def serve_like_production() -> None:
    """Servers started by tests.conftest.start_stack inherit this process's environment: give
    them the settings ``python -m bot run`` gives its processes (bot.cli.child_env), e.g. the
    Sanic keep-alive timeout."""
    from bot.cli import child_env

    for key, value in child_env().items():
        os.environ.setdefault(key, value)


def loadavg() -> Tuple[float, float, float]:
    return tuple(round(x, 2) for x in os.getloadavg())  # type: ignore[return-value]


def machine() -> Dict[str, str]:
    cpu = ""
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem_gb = ""
    try:
        kb = int(next(l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal")))
        mem_gb = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    import importlib.metadata as md

    return {"platform": platform.platform(), "cores": str(os.cpu_count()), "cpu": cpu,
            "memory": mem_gb, "python": platform.python_version(),
            "rasa": md.version("rasa"), "rasa_sdk": md.version("rasa-sdk")}


# --- Processes: memory and CPU from /proc -------------------------------------------------
def stack_pids(stack) -> Dict[str, int]:
    return {name: proc.pid for name, proc in stack.procs.items() if proc.poll() is None}


def memory_snapshot(stack) -> Dict[str, Dict[str, float]]:
    out = {}
    for name, pid in stack_pids(stack).items():
        rss, hwm = mem_kb(pid)
        out[name] = {"rss_mb": rss / 1024, "hwm_mb": hwm / 1024}
    return out


class Sampler:
    """Samples the RSS of every stack process every ``period_s`` in a thread; keeps the max."""

    def __init__(self, stack, period_s: float = 0.5) -> None:
        self.pids = stack_pids(stack)
        self.period_s = period_s
        self.max_rss: Dict[str, float] = {n: 0.0 for n in self.pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.cpu0 = {n: cpu_s(p) for n, p in self.pids.items()}
        self.self0 = resource.getrusage(resource.RUSAGE_SELF)
        self.t0 = time.perf_counter()
        self.cpu: Dict[str, float] = {}

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            for name, pid in self.pids.items():
                self.max_rss[name] = max(self.max_rss[name], mem_kb(pid)[0] / 1024)

    def __enter__(self) -> "Sampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        wall = time.perf_counter() - self.t0
        self.cpu = {n: cpu_s(p) - self.cpu0[n] for n, p in self.pids.items()}
        ru = resource.getrusage(resource.RUSAGE_SELF)
        self.cpu["load generator (this process)"] = (ru.ru_utime - self.self0.ru_utime) + \
            (ru.ru_stime - self.self0.ru_stime)
        self.wall_s = wall


# --- Training -----------------------------------------------------------------------------
@dataclass
class TrainResult:
    label: str
    seconds: float
    peak_rss_mb: float
    ok: bool
    trained: List[str] = field(default_factory=list)
    restored: List[str] = field(default_factory=list)
    durations: Dict[str, float] = field(default_factory=dict)
    model: Optional[Path] = None
    load_start: Tuple[float, float, float] = (0, 0, 0)
    load_end: Tuple[float, float, float] = (0, 0, 0)


def snapshot_project(dest: Path, config: Path) -> Path:
    """Copy config, domain and Rasa data into ``dest`` (a fresh Rasa project)."""
    dest.mkdir(parents=True)
    shutil.copy(config, dest / "config.yml")
    shutil.copytree(ROOT / "domain", dest / "domain")
    for name in ("nlu", "rules", "stories"):
        shutil.copytree(ROOT / "data" / name, dest / "data" / name)
    return dest


def edit_one_response(project: Path) -> str:
    """Change the English text of ``utter_thanks`` (a response-text-only change)."""
    path = project / "domain" / "responses" / "chitchat.yml"
    text = path.read_text(encoding="utf-8")
    old = "You're welcome."
    if old not in text:
        raise RuntimeError(f"{path}: the text to edit ({old!r}) is not there any more")
    path.write_text(text.replace(old, "You're very welcome.", 1), encoding="utf-8")
    return "utter_thanks (English variation) in domain/responses/chitchat.yml"


_TS = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)")


def parse_training_log(log: str) -> Tuple[List[str], List[str], Dict[str, float]]:
    """Components Rasa trained and restored from its cache, and seconds per trained component
    (from the log's one-second timestamps)."""
    trained, restored, started, durations = [], [], {}, {}
    for line in re.sub(r"\x1b\[[0-9;]*m", "", log).splitlines():
        m = re.search(r"Starting to train component '([^']+)'", line)
        ts = _TS.match(line)
        stamp = dt.datetime.strptime(ts.group(1), "%Y-%m-%d %H:%M:%S") if ts else None
        if m:
            trained.append(m.group(1))
            if stamp:
                started[m.group(1)] = stamp
        m = re.search(r"Finished training component '([^']+)'", line)
        if m and stamp and m.group(1) in started:
            durations[m.group(1)] = (stamp - started[m.group(1)]).total_seconds()
        m = re.search(r"Restored component '([^']+)' from cache", line)
        if m:
            restored.append(m.group(1))
    return trained, restored, durations


def rasa_train(project: Path, name: str, label: str, log_path: Path) -> TrainResult:
    """``rasa train`` in ``project`` with the project's own (initially empty) cache."""
    env = {**os.environ, **CHILD_ENV, "RASA_CACHE_DIRECTORY": str(project / ".rasa" / "cache")}
    cmd = [str(Path(sys.executable).parent / "rasa"), "train", "--domain", "domain",
           "--config", "config.yml", "--data", "data/nlu", "data/rules", "data/stories",
           "--out", "models", "--fixed-model-name", name]
    start_load = loadavg()
    t0 = time.perf_counter()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=project, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - t0
    text = log_path.read_text(errors="replace")
    trained, restored, durations = parse_training_log(text)
    model = project / "models" / f"{name}.tar.gz"
    return TrainResult(label, seconds, usage.ru_maxrss / 1024, proc.returncode == 0 and model.exists(),
                       trained, restored, durations, model, start_load, loadavg())


def heldout_f1(model: Path) -> Dict[str, Any]:
    """bench/nlu_eval.py's evaluate(model) in a child process (the model's memory stays there)."""
    code = ("import json, sys; sys.path.insert(0, 'bench'); from nlu_eval import evaluate; "
            "r = evaluate(__import__('pathlib').Path(sys.argv[1])); "
            "print('JSON' + json.dumps({k: {'n': v['n'], 'macro_f1': v['macro_f1'], "
            "'accuracy': v['accuracy'], 'ms': v['ms']} for k, v in r.items()}))")
    proc = subprocess.run([sys.executable, "-c", code, str(model)], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, **CHILD_ENV}, timeout=3600)
    line = next((l for l in proc.stdout.splitlines() if l.startswith("JSON")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"nlu_eval failed for {model}: {proc.stderr[-2000:]}")
    return json.loads(line[4:])


# --- Stacks -------------------------------------------------------------------------------
@contextmanager
def stack_for(tmp: Path, model: Optional[Path], **kwargs) -> Iterator[Any]:
    """tests.conftest.start_stack, with the gateway's rate limit raised for load generation
    (the load comes from one address, far above a real user's 30 messages a minute)."""
    from tests.conftest import start_stack

    tmp.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with start_stack(tmp, model, **kwargs) as stack:
        stack.started_s = time.perf_counter() - t0
        stack.stop("gateway")
        stack.env["RATE_LIMIT_PER_MINUTE"] = "10000000"
        stack.start_gateway()
        yield stack


def hot_reload(stack, model: Path) -> Dict[str, Any]:
    """Load ``model`` into the running Rasa (``PUT /model``, what ``python -m bot reload``
    does) and time it until Rasa answers a message with it."""
    t0 = time.perf_counter()
    r = httpx.put(f"{stack.rasa}/model", params={"token": stack.env["RASA_TOKEN"]},
                  json={"model_file": str(model)}, timeout=600)
    load_s = time.perf_counter() - t0
    reply = httpx.post(f"{stack.rasa}/webhooks/rest/webhook", timeout=60,
                       json={"sender": "reload-" + uuid.uuid4().hex, "message": "thanks"})
    first_s = time.perf_counter() - t0
    texts = [m.get("text", "") for m in reply.json()] if reply.status_code == 200 else []
    return {"status": r.status_code, "load_s": load_s, "first_reply_s": first_s,
            "new_text_served": any("very welcome" in t for t in texts)}


def profile_rasa(stack, model: Path, tmp: Path, messages: int) -> Dict[str, Any]:
    """bench/rasa_profile.py in a child process, with the stack's action server and a fresh
    SQLite tracker store (WAL, like the stack's)."""
    from bot.cli import write_endpoints
    from bot.settings import Settings

    endpoints = write_endpoints(Settings(tracker_store_url=f"sqlite:///{tmp / 'profile.db'}"),
                                stack.ports["actions"], tmp / "profile-endpoints.yml", redis_url="")
    out = tmp / "profile.json"
    proc = subprocess.run([sys.executable, str(BENCH / "rasa_profile.py"), "--model", str(model),
                           "--endpoints", str(endpoints), "--messages", str(messages),
                           "--out", str(out)], cwd=ROOT, env={**os.environ, **CHILD_ENV},
                          capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0 or not out.exists():
        return {"error": proc.stderr[-1500:]}
    return json.loads(out.read_text())


def throughput(stack, seconds: float, concurrency: int = 50) -> Dict[str, Any]:
    with Sampler(stack) as sampler:
        run = asyncio.run(lat.run_load("gateway", stack.gateway, concurrency, duration_s=seconds))
    return {"run": run, "max_rss_mb": sampler.max_rss, "cpu_s": sampler.cpu,
            "wall_s": sampler.wall_s, "hwm": memory_snapshot(stack)}


@dataclass
class StackResult:
    label: str
    started_s: float = 0.0
    idle: Dict[str, Dict[str, float]] = field(default_factory=dict)
    latency: List[lat.RunResult] = field(default_factory=list)
    load: Dict[str, Any] = field(default_factory=dict)
    profile: Dict[str, Any] = field(default_factory=dict)
    reload: Dict[str, Any] = field(default_factory=dict)
    kinds_c1: Dict[str, float] = field(default_factory=dict)
    think: Optional[lat.RunResult] = None  # 10 conversations with think time, gateway


def measure_stack(label: str, model: Path, tmp: Path, args, reload_model: Optional[Path]) -> StackResult:
    res = StackResult(label)
    print(f"== {label}: starting the stack", flush=True)
    with stack_for(tmp, model) as stack:
        res.started_s = stack.started_s
        time.sleep(3)
        res.idle = memory_snapshot(stack)
        lat.warm_up(stack, 10)
        print(f"== {label}: latency", flush=True)
        res.latency = lat.measure_latency(stack, args.messages, args.concurrency)
        print("\n".join(lat.format_runs(res.latency)), flush=True)
        c1 = next(r for r in res.latency if r.target == "gateway" and r.concurrency == 1)
        res.kinds_c1 = {k: c1.pct(50, k) for k in ("greet", "question", "follow", "support", "crisis")}
        if 10 in args.concurrency:
            print(f"== {label}: 10 conversations with think time {THINK_S} s", flush=True)
            res.think = lat.measure_latency(stack, args.messages, [10], targets=("gateway",),
                                            think_s=THINK_S)[0]
            print("\n".join(lat.format_runs([res.think])[2:]), flush=True)
        print(f"== {label}: throughput, {args.throughput_seconds:.0f} s", flush=True)
        res.load = throughput(stack, args.throughput_seconds)
        print(f"   {res.load['run'].throughput:.1f} msg/s, errors {res.load['run'].errors}", flush=True)
        if args.profile_messages:
            print(f"== {label}: profile", flush=True)
            res.profile = profile_rasa(stack, model, tmp, args.profile_messages)
        if reload_model is not None:
            print(f"== {label}: hot reload of the response-changed model", flush=True)
            res.reload = hot_reload(stack, reload_model)
    return res


@contextmanager
def throwaway_stores() -> Iterator[Tuple[str, str, str]]:
    """(tracker_url, redis_url, key_prefix): a new PostgreSQL database and a random Redis key
    prefix; both removed afterwards."""
    import redis
    import sqlalchemy as sa

    name = f"signpost_perf_{uuid.uuid4().hex[:12]}"
    prefix = "signpostperf" + uuid.uuid4().hex[:10]
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", future=True)
    client = redis.Redis.from_url(REDIS_URL)
    client.ping()
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield url, REDIS_URL, prefix
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
        keys = list(client.scan_iter(match=f"{prefix}*", count=500))
        if keys:
            client.delete(*keys)
        client.close()


def measure_scale(model: Path, tmp: Path, args) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    with throwaway_stores() as (tracker_url, redis_url, prefix):
        for n in (1, 2):
            print(f"== ours, {n} Rasa instance(s), PostgreSQL + Redis", flush=True)
            with stack_for(tmp / f"scale{n}", model, rasa_instances=n, tracker_url=tracker_url,
                           redis_url=redis_url, redis_key_prefix=prefix) as stack:
                lat.warm_up(stack, 10)
                runs = lat.measure_latency(stack, args.messages // 2, [10], targets=("gateway",))
                load = throughput(stack, args.throughput_seconds)
                print(f"   {load['run'].throughput:.1f} msg/s, errors {load['run'].errors}", flush=True)
                out[n] = {"c10": runs[0], "load": load}
    return out


# --- Report -------------------------------------------------------------------------------
def _f(x: float, digits: int = 0) -> str:
    return "—" if x != x else f"{x:.{digits}f}"  # NaN → dash


def _ratio(ours: float, base: float, digits: int = 2) -> str:
    return "—" if not base or ours != ours or base != base else f"{ours / base:.{digits}f}×"


def _run(res: StackResult, target: str, c: int) -> lat.RunResult:
    return next(r for r in res.latency if r.target == target and r.concurrency == c)


def _mem_total(mem: Dict[str, Dict[str, float]], key: str) -> float:
    return sum(v[key] for v in mem.values())


def _met(ok: Optional[bool]) -> str:
    return "—" if ok is None else ("**met**" if ok else "**not met**")


LOAD_TEXT = ("The load average (1 minute) is given next to every measurement; at the start of "
             "this script it includes the benchmarks `make bench` ran just before it. The load "
             "generator shares the 2 cores with the servers, so saturation figures are lower "
             "bounds. The ratios between Signpost and plain Rasa, measured back to back in the "
             "same run, are the robust figures.")


def report(meta, trains, f1, stacks, scale, overhead, args, changes: str) -> str:
    ours, base = stacks.get("ours"), stacks.get("baseline")
    L: List[str] = ["# Performance: Signpost vs plain Rasa", ""]
    L += [f"Date: {meta['date']} · Machine: {meta['platform']}, {meta['cores']} cores "
          f"({meta['cpu']}), {meta['memory']} RAM · Python {meta['python']}, rasa {meta['rasa']}, "
          f"rasa-sdk {meta['rasa_sdk']}",
          f"Load average (1/5/15 min) at the start: {meta['load_start']}; at the end: "
          f"{meta['load_end']}. Run time {meta['minutes']:.0f} min. Command: `python bench/perf.py` "
          f"({args.messages} messages per latency run, {args.throughput_seconds:.0f} s per "
          "throughput run).", "",
          LOAD_TEXT, "",
          "- **ours** = config.yml (TF-IDF + logistic regression intent classifier, lookup-table "
          "entities, LanguageDetector, SafetyGate, FallbackClassifier; MemoizationPolicy + "
          "RulePolicy).",
          "- **baseline** = bench/baseline_config.yml: what `rasa init` trains (DIET 100 epochs, "
          "ResponseSelector, TED and UnexpecTED 100 epochs...), on the same data and domain.",
          "- Both served the same way: gateway → Rasa REST channel (one `rasa run`, SQLite "
          "tracker store, in-memory lock store) → the same action server; fresh sender per "
          "conversation; loopback only; load generator (asyncio + httpx) on the same 2 cores.",
          "- Message mix (bench/latency.py `SCRIPTS`): greetings and tactics questions in "
          "en/de/fr/ar, follow-ups, support-finder turns (\"find help in the UK\" then "
          "`/choose_need{\"need\":\"radicalisation\"}`: form validation and action_find_support "
          "on the action server), a crisis message; every conversation's first message also "
          "runs action_session_start on the action server.", ""]

    # Summary against targets
    L += ["## Targets (issue #10)", "",
          "| target | figure | status |", "|---|---|---|"]
    if overhead:
        own_ok = overhead["net_p50"] <= TARGETS["gateway_overhead_ms"]
        hop = (_run(ours, "gateway", 1).pct(50) - _run(ours, "rasa", 1).pct(50)
               if ours and 1 in args.concurrency else None)
        status = _met(own_ok)
        if hop is not None and own_ok and hop > TARGETS["gateway_overhead_ms"]:
            status = ("**met** for the gateway's own work; **not met** with the extra loopback "
                      "HTTP hop")
        L.append(f"| gateway overhead ≤ 3 ms p50 | own work (fake instant Rasa, in-process) "
                 f"p50 **{overhead['net_p50']:.2f} ms** (p95 {overhead['net_p95']:.2f} ms); "
                 + (f"gateway − direct p50 at 1 conversation (own work + one more HTTP hop: "
                    f"uvicorn in, aiohttp out): **{hop:+.1f} ms**" if hop is not None else "")
                 + " | " + status + " |")
    if ours and 10 in args.concurrency:
        p95 = _run(ours, "gateway", 10).pct(95)
        x = _run(ours, "gateway", 10).throughput
        L.append(f"| end-to-end p95 ≤ 150 ms, 10 conversations, closed loop without think time "
                 f"(saturation: by Little's law the mean alone is 10 / {x:.0f} msg/s = "
                 f"{10 / x * 1000 if x else float('nan'):.0f} ms) | **{_f(p95)} ms** (through the "
                 f"gateway) | {_met(p95 <= TARGETS['p95_c10_ms'])} |")
        if ours.think is not None:
            p95t = ours.think.pct(95)
            L.append(f"| end-to-end p95 ≤ 150 ms, 10 conversations with {THINK_S[0]:g}-"
                     f"{THINK_S[1]:g} s think time ({ours.think.throughput:.1f} msg/s offered) | "
                     f"**{_f(p95t)} ms** (p50 {_f(ours.think.pct(50))} ms) | "
                     f"{_met(p95t <= TARGETS['p95_c10_ms'])} |")
    if ours and base:
        to, tb = ours.load["run"].throughput, base.load["run"].throughput
        f1_ok = None
        if f1.get("ours") and f1.get("baseline"):
            f1_ok = all(f1["ours"][l]["macro_f1"] >= f1["baseline"][l]["macro_f1"] for l in f1["ours"])
        L.append(f"| throughput ≥ 2× baseline at ≥ held-out F1 | {to:.1f} vs {tb:.1f} msg/s = "
                 f"**{_ratio(to, tb)}**; F1 ours ≥ baseline in every language: "
                 f"{'yes' if f1_ok else 'no' if f1_ok is not None else '—'} | "
                 f"{_met(to >= TARGETS['throughput_ratio'] * tb and bool(f1_ok))} |")
    if ours:
        total = sum(ours.load["max_rss_mb"].values()) / 1024
        L.append(f"| memory of the whole set ≤ 1.5 GB RSS under load | **{total:.2f} GB** (sum of "
                 f"each process's highest sampled RSS) | {_met(total <= TARGETS['memory_gb'])} |")
    t_full = trains.get("ours_full")
    if t_full:
        L.append(f"| full training ≤ 5 min | **{t_full.seconds:.0f} s** | "
                 f"{_met(t_full.ok and t_full.seconds <= TARGETS['full_train_s'])} |")
    t_resp = trains.get("ours_response")
    if t_resp and ours and ours.reload:
        ready = t_resp.seconds + ours.reload["load_s"]
        L.append(f"| response-text change ready to serve ≤ 60 s | retrain {t_resp.seconds:.0f} s + "
                 f"model load {ours.reload['load_s']:.1f} s = **{ready:.0f} s** | "
                 f"{_met(ready <= TARGETS['response_ready_s'])} |")
    L.append("")

    # Ratios
    if ours and base:
        L += ["## Signpost / plain Rasa (same run)", "",
              "Below 1 is better for latency, memory and time; above 1 is better for throughput.", "",
              "| measure | ours | baseline | ours / baseline |", "|---|---|---|---|"]
        for c in args.concurrency:
            for q in (50, 95):
                a, b = _run(ours, "gateway", c).pct(q), _run(base, "gateway", c).pct(q)
                L.append(f"| latency p{q}, {c} conversation(s), through the gateway (ms) | {_f(a)} "
                         f"| {_f(b)} | {_ratio(a, b)} |")
            a, b = _run(ours, "rasa", c).pct(50), _run(base, "rasa", c).pct(50)
            L.append(f"| latency p50, {c} conversation(s), Rasa directly (ms) | {_f(a)} | {_f(b)} "
                     f"| {_ratio(a, b)} |")
        if ours.think is not None and base.think is not None:
            for q in (50, 95):
                a, b = ours.think.pct(q), base.think.pct(q)
                L.append(f"| latency p{q}, 10 conversations with {THINK_S[0]:g}-{THINK_S[1]:g} s "
                         f"think time, through the gateway (ms) | {_f(a)} | {_f(b)} | {_ratio(a, b)} |")
        a, b = ours.load["run"].throughput, base.load["run"].throughput
        L.append(f"| throughput at saturation, 50 conversations (msg/s) | {a:.1f} | {b:.1f} | "
                 f"{_ratio(a, b)} |")
        a, b = ours.load["max_rss_mb"].get("rasa", 0), base.load["max_rss_mb"].get("rasa", 0)
        L.append(f"| Rasa server RSS under load (MB) | {a:.0f} | {b:.0f} | {_ratio(a, b)} |")
        a, b = sum(ours.load["max_rss_mb"].values()), sum(base.load["max_rss_mb"].values())
        L.append(f"| whole set RSS under load (MB) | {a:.0f} | {b:.0f} | {_ratio(a, b)} |")
        for key, label in (("full", "full training from scratch (s)"),
                           ("response", "retraining after a response-text change (s)")):
            a_t, b_t = trains.get(f"ours_{key}"), trains.get(f"baseline_{key}")
            if a_t and b_t:
                L.append(f"| {label} | {a_t.seconds:.0f} | {b_t.seconds:.0f} | "
                         f"{_ratio(a_t.seconds, b_t.seconds)} |")
                if key == "full":
                    L.append(f"| peak RSS of full training (MB) | {a_t.peak_rss_mb:.0f} | "
                             f"{b_t.peak_rss_mb:.0f} | {_ratio(a_t.peak_rss_mb, b_t.peak_rss_mb)} |")
        if ours.reload and base.reload:
            a, b = ours.reload["load_s"], base.reload["load_s"]
            L.append(f"| loading a model into the running server (s) | {a:.1f} | {b:.1f} | "
                     f"{_ratio(a, b)} |")
        if f1.get("ours") and f1.get("baseline"):
            for lang in sorted(f1["ours"]):
                a, b = f1["ours"][lang]["macro_f1"], f1["baseline"][lang]["macro_f1"]
                L.append(f"| held-out macro-F1, {lang} ({f1['ours'][lang]['n']} examples) | "
                         f"{a:.3f} | {b:.3f} | {a - b:+.3f} (difference) |")
        L.append("")

    # Latency detail
    L += ["## Latency of one message", "",
          "Closed loop: each of N conversations sends its next message when the previous reply "
          "has arrived. The same conversations go through the gateway (`POST /api/chat`) and "
          "then straight to Rasa's REST channel (`POST /webhooks/rest/webhook`, the body the "
          "gateway sends). Failed or fail-safe replies count as errors and are left out of the "
          "percentiles.", ""]
    for label, res in stacks.items():
        runs = res.latency + ([res.think] if res.think is not None else [])
        L += [f"### {label}", ""] + lat.format_runs(runs) + [""]
        if res.kinds_c1:
            L.append("p50 by kind of message (gateway, 1 conversation): " + ", ".join(
                f"{k} {_f(v)} ms" for k, v in res.kinds_c1.items()) + ".")
            L.append("")
        diffs = [f"{c}: {_run(res, 'gateway', c).pct(50) - _run(res, 'rasa', c).pct(50):+.1f} ms"
                 for c in args.concurrency]
        L += [f"Gateway − direct p50 by number of conversations: {', '.join(diffs)} (at 10 and "
              "50 conversations both paths queue for the same CPU, so this difference is noise "
              "around the gateway's own cost).", ""]
    if overhead:
        L += ["### The gateway's own work", "",
              f"`POST /api/chat` on the real gateway app in-process, with a fake Rasa that answers "
              f"instantly (`httpx.MockTransport` in `RasaClient`; requests through "
              f"`httpx.ASGITransport`, no sockets), {overhead['n']} messages of the mix: p50 "
              f"{overhead['p50']:.2f} ms, p95 {overhead['p95']:.2f} ms, p99 {overhead['p99']:.2f} ms; "
              f"the same client against a trivial ASGI app costs {overhead['harness_p50']:.2f} ms "
              f"p50, so the gateway's own work is **{overhead['net_p50']:.2f} ms p50** "
              f"({overhead['net_p95']:.2f} ms p95): JSON, session pseudonymisation (HMAC), rate "
              "limits, text cleaning, the safety-net patterns on every message, security headers. "
              "The real gateway adds one loopback HTTP hop (uvicorn in, aiohttp out) on top: the "
              "gateway − direct difference at 1 conversation above.", ""]

    # Throughput
    L += ["## Throughput at saturation", "",
          f"Closed loop, 50 conversations in flight through the gateway for "
          f"{args.throughput_seconds:.0f} s (no think time), new conversations as others end.", "",
          "| set-up | msg/s | messages | errors | p50 ms | p95 ms | load avg start → end |",
          "|---|---|---|---|---|---|---|"]

    def tp_row(label: str, load: Dict[str, Any]) -> str:
        r = load["run"]
        return (f"| {label} | **{r.throughput:.1f}** | {r.n} | {r.n_errors} | {_f(r.pct(50))} | "
                f"{_f(r.pct(95))} | {r.loadavg_start[0]:.2f} → {r.loadavg_end[0]:.2f} |")

    for label, res in stacks.items():
        L.append(tp_row(f"{label}: 1 Rasa, SQLite tracker, in-memory lock", res.load))
    for n, s in (scale or {}).items():
        L.append(tp_row(f"ours: {n} Rasa instance(s), PostgreSQL tracker, Redis lock", s["load"]))
    L.append("")
    if scale and 1 in scale and 2 in scale:
        a, b = scale[2]["load"]["run"].throughput, scale[1]["load"]["run"].throughput
        L += [f"Two instances vs one (same PostgreSQL + Redis stores): {_ratio(a, b)} the "
              f"throughput; p95 with 10 conversations {_f(scale[1]['c10'].pct(95))} ms (1 "
              f"instance) vs {_f(scale[2]['c10'].pct(95))} ms (2). On 2 cores the second "
              "instance can only use what the first one, the gateway, the action server, the "
              "databases and the load generator leave free (CPU seconds below).", ""]
    L += ["CPU seconds used by each process during the throughput run (wall time in brackets):", ""]
    for label, load in [(k, v.load) for k, v in stacks.items()] + \
            [(f"ours, {n} instance(s), PostgreSQL", s["load"]) for n, s in (scale or {}).items()]:
        L.append(f"- {label} ({load['wall_s']:.0f} s): " + ", ".join(
            f"{n} {v:.0f}" for n, v in sorted(load["cpu_s"].items(), key=lambda kv: -kv[1])))
    L.append("")

    # Memory
    L += ["## Memory (RSS, MB)", "",
          "From /proc/<pid>/status: VmRSS (current) and VmHWM (peak), per process (with any "
          "child processes). Idle = 3 s after the stack answered, before any message; under "
          "load = highest RSS sampled every 0.5 s during the throughput run, and VmHWM after it.", "",
          "| set-up | process | idle RSS | idle peak (HWM) | RSS under load (max) | peak (HWM) after load |",
          "|---|---|---|---|---|---|"]
    sets = [(k, v.idle, v.load) for k, v in stacks.items()] + \
        [(f"ours, {n} instance(s), PostgreSQL", {}, s["load"]) for n, s in (scale or {}).items()]
    for label, idle, load in sets:
        names = list(load["max_rss_mb"])
        for name in names:
            i = idle.get(name, {})
            L.append(f"| {label} | {name} | {_f(i.get('rss_mb', float('nan')))} | "
                     f"{_f(i.get('hwm_mb', float('nan')))} | {load['max_rss_mb'][name]:.0f} | "
                     f"{load['hwm'].get(name, {}).get('hwm_mb', float('nan')):.0f} |")
        L.append(f"| {label} | **total** | {_f(_mem_total(idle, 'rss_mb') if idle else float('nan'))} "
                 f"| {_f(_mem_total(idle, 'hwm_mb') if idle else float('nan'))} | "
                 f"**{sum(load['max_rss_mb'].values()):.0f}** | {_mem_total(load['hwm'], 'hwm_mb'):.0f} |")
    L.append("")

    # Training
    if trains:
        L += ["## Training", "",
              "`rasa train` on a copy of config, domain and data in a temporary folder, with "
              "`RASA_CACHE_DIRECTORY` pointing into it (empty at the start), timed from launch "
              "to exit (includes about 10-20 s of imports and validation). Then one response "
              f"text was changed ({meta.get('edited', '')}) and the same command run again with "
              "the same cache. \"Ready to serve\" = that retraining + loading the new model into "
              "the running Rasa server with `PUT /model` (what `python -m bot reload` does) until "
              "it answers.", "",
              "| run | wall time | peak RSS | components trained | restored from cache | load avg start → end |",
              "|---|---|---|---|---|---|"]
        for key, t in trains.items():
            trained = ", ".join(f"{c} ({t.durations[c]:.0f} s)" if c in t.durations else c
                                for c in t.trained) or "none"
            L.append(f"| {t.label} | **{t.seconds:.0f} s**{'' if t.ok else ' (FAILED)'} | "
                     f"{t.peak_rss_mb:.0f} MB | {trained} | {len(t.restored)}"
                     f"{': ' + ', '.join(t.restored) if t.restored and len(t.restored) <= 8 else ''} | "
                     f"{t.load_start[0]:.2f} → {t.load_end[0]:.2f} |")
        L.append("")
        for label, res in stacks.items():
            if res.reload:
                r = res.reload
                L.append(f"- {label}: `PUT /model` with the response-changed model took "
                         f"{r['load_s']:.1f} s (first reply after {r['first_reply_s']:.1f} s; new "
                         f"text served: {'yes' if r['new_text_served'] else 'no'}); cold start of "
                         f"the whole stack (action server, `rasa run`, gateway) took "
                         f"{res.started_s:.0f} s.")
        L.append("")

    # Accuracy
    if f1:
        L += ["## Held-out accuracy", "",
              "bench/nlu_eval.py's `evaluate(model)` on tests/nlu_heldout/ (never trained on), for "
              "both models trained above.", "",
              "| language | examples | ours macro-F1 | baseline macro-F1 | ours accuracy | "
              "baseline accuracy | ours ms/msg | baseline ms/msg |", "|---|---|---|---|---|---|---|---|"]
        o, b = f1.get("ours", {}), f1.get("baseline", {})
        for lang in sorted(o or b):
            oo, bb = o.get(lang, {}), b.get(lang, {})
            L.append(f"| {lang} | {(oo or bb).get('n', '')} | {oo.get('macro_f1', float('nan')):.3f} | "
                     f"{bb.get('macro_f1', float('nan')):.3f} | {oo.get('accuracy', float('nan')):.3f} | "
                     f"{bb.get('accuracy', float('nan')):.3f} | {oo.get('ms', float('nan')):.1f} | "
                     f"{bb.get('ms', float('nan')):.1f} |")
        L.append("")

    # Profile
    L += ["## Where the time goes in Rasa", "",
          "bench/rasa_profile.py loads the model as `rasa run` does (same endpoints: SQLite "
          "tracker store, the stack's action server) and handles the message mix one message at "
          "a time in-process (`Agent.handle_message`), with wall-clock timers around Rasa's "
          "stages (exclusive times, ms per message, averaged over all messages) and then "
          "cProfile over a second pass.", ""]
    for label, res in stacks.items():
        p = res.profile
        if not p or "breakdown_ms" not in p:
            if p:
                L += [f"{label}: profiling failed: `{p.get('error', '')[-300:]}`", ""]
            continue
        L += [f"### {label}: {p['ms_per_message']:.1f} ms per message in-process "
              f"({p['messages']} messages)", "", "| stage | ms per message |", "|---|---|"]
        for k, v in p["breakdown_ms"].items():
            L.append(f"| {k} | {v:.1f} |")
        L += ["", "Graph components (ms per message; calls per message):", ""]
        L.append(", ".join(f"{k.replace('run_', '')} {v['ms_per_message']:.1f} ({v['calls_per_message']:.1f})"
                           for k, v in list(p["graph_nodes"].items())[:12]) + ".")
        L += ["", "<details><summary>cProfile, top functions by own time</summary>", "", "```",
              p["cprofile"]["tottime"].strip()[:6000], "```", "", "</details>", ""]
    L += [changes, ""]
    return "\n".join(L)


CHANGES = """## Findings and what was changed

Profiling ours before any change (bench/rasa_profile.py, 150 messages, load average 4-8 from
other jobs): **155 ms per message in-process** (wall). The largest items, and what was done:

1. **Rasa validates every action-server reply with `jsonschema.validate`**, which re-checks the
   (constant) response schema against the JSON-Schema meta-schema and builds a new validator
   each time: 57-64 ms of CPU per custom-action call here (1.1 ms with a reused validator),
   ~45 ms per message on average over the mix; the largest single cost. **Changed**:
   bot/rasa_speedups.py (applied when our NLU components load; Rasa 3.6 only;
   `SIGNPOST_RASA_SPEEDUPS=0` turns it off) checks the schema once and reuses the validator:
   same validation, same error message. The baseline (plain Rasa, no custom component) does
   not get it.
2. **The tracker store reconnected and fsynced for every message**: Rasa's SQLTrackerStore on
   SQLite opens and closes a connection per read and per write (SQLAlchemy 1.4 `NullPool`) and
   commits in rollback-journal mode; ~35 ms per message, on Rasa's event loop, so every
   conversation waited for the disk (Rasa's process was only ~35 % busy at saturation).
   **Changed**: bot/tracker_store.py, Rasa's class with, for SQLite only, a kept-open
   connection in WAL mode with `synchronous=NORMAL` (`SQLITE_SYNCHRONOUS` to change); a
   read + write of a conversation went from 25.6 to 0.9 ms p50 (interleaved micro-benchmark).
   Trade-off: after a power cut or kernel crash (not a crash of Rasa) the last few messages may
   be lost; the file is never corrupted. `write_endpoints` (bot/cli.py) uses it when
   TRACKER_STORE_URL is SQLite; PostgreSQL keeps Rasa's `type: SQL`. (WAL alone, without the
   kept-open connection, was slower: 16.3 vs 13.2 ms, because closing the last connection
   checkpoints the log.)
3. **The whole domain was sent with every custom-action call**: 911 KB of JSON (every response
   in every language): 7-17 ms to encode in Rasa plus 7-15 ms for the action server to read,
   against ~1 ms without it. **Changed**: `enable_selective_domain: true` on the action
   endpoint (bot/cli.py `write_endpoints`, endpoints.yml, deploy/endpoints.compose.yml);
   `action_follow_up` declares `send_domain: true` (it looks up response names);
   `validate_support_form` gets it anyway (Rasa always sends it to `validate_*`);
   `action_session_start` reads the language list from the action server's copy of
   domain/core.yml (bot.settings.SUPPORTED_LANGUAGES), the same values.
4. **TF-IDF classifier**: `predict_proba` copied the (intents × n-grams, then 51 × 57,356)
   weight matrix, transposed, six times per message (numpy `ravel`). **Changed**:
   bot/nlu/classifier.py keeps `coef_` in Fortran order, so the transposed matrix is already
   contiguous: 14.5 → 3.1 ms per message over the 1,059 held-out messages, probabilities
   bit-for-bit identical.
5. **Gateway**: Starlette's `BaseHTTPMiddleware` (security headers) was ~0.7 ms of the
   gateway's ~1.2 ms own work per message. **Changed**: bot/app.py `SecurityHeaders` is a plain
   ASGI middleware (same headers on every response): own work ~0.5 ms p50.
6. **Keep-alive race** (found by the throughput run; reliability, not speed): Sanic (Rasa,
   action server) closes idle keep-alive connections after 5 s while Rasa's aiohttp client
   reuses them for up to 15 s (the gateway's httpx for 5 s); a request written to a connection
   the server was closing failed ("Cannot write to closing transport") and the user got the
   fail-safe reply. **Changed**: bot/cli.py `child_env` sets `SANIC_KEEP_ALIVE_TIMEOUT=75` for
   the processes of `python -m bot run`; this benchmark starts its servers with the same
   environment; docker-compose.yml and deploy/k8s set it for Rasa and the action server.

7. **Stored events turned back into events** (found by bench/long_conversation.py: a
   message's latency grew from 18 ms at turn 1-10 to 106 ms at turn 191-200 of one
   conversation): for every event of the tracker Rasa's `Event.resolve_by_type` walks all ~30
   event classes again (recursively, with `inspect.isabstract`): 30.6 ms for a 1,400-event
   tracker. **Changed**: bot/rasa_speedups.py remembers the class found for each type name
   (unknown names still go through Rasa's code): 2.0 ms for the same tracker; turn 191-200
   p50 106 → 68 ms (bench/results/long_conversation.md). What still grows is Rasa's policies
   replaying the whole session for each prediction (RulePolicy, MemoizationPolicy
   `past_states`) and JSON decoding of the events: not changed (Rasa's design; a new session
   after 60 minutes of silence bounds it).
8. **Gateway → Rasa client**: httpx's pure-Python HTTP/1.1 client cost ~1 ms more per request
   than aiohttp's on loopback (Rasa's `GET /`: 0.94 vs 0.27 ms p50; a chat message 13.6 vs
   12.4 ms), and with the extra hop the gateway − direct difference was 3.4 ms p50 (first run
   of this page, 2026-11-30 11:45). **Changed**: bot/rasa_client.py sends through aiohttp
   (installed with Rasa; idle connections kept 4 s, under Sanic's default 5 s keep-alive),
   httpx only for the transports tests inject. Measured back to back on a quiet machine, 300
   messages: gateway − direct p50 2.9 → 1.4 ms; the own work of the gateway is unchanged.

Before/after, measured back to back (2026-11-30 09:55-09:59, load average 3-7, the same model,
two stacks side by side, runs interleaved, 300 messages at 1 conversation, 400 at 10, two 25 s
saturation runs each; "before" = this tree with changes 1-6 reverted):

| | before | after | after / before |
|---|---|---|---|
| p50 / p95, 1 conversation, through the gateway | 74 / 162 ms | 36 / 61 ms | 0.49 / 0.38 |
| p50, 1 conversation, Rasa directly | 62 ms | 28 ms | 0.45 |
| p50 / p95, 10 conversations (no think time), gateway | 667 / 2304 ms | 249 / 681 ms | 0.37 / 0.30 |
| throughput, 50 conversations | 17.4, 20.4 msg/s | 31.3, 26.8 msg/s | ~1.5 |
| CPU per message: Rasa / action server / gateway | 46 / 6.9 / 6.4 ms | 25 / 3.4 / 5.1 ms | 0.54 / 0.49 / 0.79 |

Not changed: langdetect in the LanguageDetector (~4-7 ms per message of 3+ words: the answer
would change if it were replaced), Rasa's RulePolicy/MemoizationPolicy (~4-6 ms per message,
2.4 predictions per message), training of the logistic regression (lbfgs, most of the training
time: a faster solver would change the model).
"""


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(BENCH / "results" / "perf.md"))
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--throughput-seconds", type=float, default=40.0)
    parser.add_argument("--profile-messages", type=int, default=200)
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--skip-training", action="store_true",
                        help="serve the current model; no training figures")
    args = parser.parse_args()
    serve_like_production()
    if args.quick:
        return quick()
    t_start = time.perf_counter()
    meta = {**machine(), "date": dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
            "load_start": loadavg()}
    print(f"machine: {meta}", flush=True)
    overhead = asyncio.run(lat.gateway_overhead(2000))
    print(f"gateway own work p50 {overhead['net_p50']:.2f} ms", flush=True)
    trains: Dict[str, TrainResult] = {}
    f1: Dict[str, Any] = {}
    stacks: Dict[str, StackResult] = {}
    scale: Dict[int, Any] = {}
    with tempfile.TemporaryDirectory(prefix="signpost-perf-") as tmp_name:
        tmp = Path(tmp_name)
        models: Dict[str, Tuple[Path, Optional[Path]]] = {}
        configs = [("ours", ROOT / "config.yml")]
        if not args.skip_baseline:
            configs.append(("baseline", BENCH / "baseline_config.yml"))
        for label, config in configs:
            if args.skip_training:
                from bot.cli import train

                models[label] = (train(), None)  # the current model, trained if missing
                continue
            project = snapshot_project(tmp / f"project-{label}", config)
            print(f"== {label}: full training", flush=True)
            full = rasa_train(project, label, f"{label}: full training, empty cache",
                              tmp / f"train-{label}-full.log")
            print(f"   {full.seconds:.0f} s, trained {full.trained}", flush=True)
            if not full.ok:
                raise RuntimeError(f"training {label} failed: see {tmp}/train-{label}-full.log\n"
                                   + (tmp / f"train-{label}-full.log").read_text()[-3000:])
            meta["edited"] = edit_one_response(project)
            print(f"== {label}: retraining after a response-text change", flush=True)
            resp = rasa_train(project, f"{label}-response", f"{label}: after a response-text change",
                              tmp / f"train-{label}-response.log")
            print(f"   {resp.seconds:.0f} s, trained {resp.trained}", flush=True)
            trains[f"{label}_full"], trains[f"{label}_response"] = full, resp
            if label == "baseline":  # kept for bench/long_conversation.py (var/ is not in git)
                KEPT_BASELINE.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(full.model, KEPT_BASELINE)
            models[label] = (full.model, resp.model if resp.ok else None)
        for label, (model, _) in models.items():
            print(f"== {label}: held-out F1", flush=True)
            f1[label] = heldout_f1(model)
        for label, (model, reload_model) in models.items():
            stacks[label] = measure_stack(label, model, tmp / f"stack-{label}", args, reload_model)
        if not args.skip_scale:
            scale = measure_scale(models["ours"][0], tmp, args)
    meta["load_end"] = loadavg()
    meta["minutes"] = (time.perf_counter() - t_start) / 60
    text = report(meta, trains, f1, stacks, scale, overhead, args, CHANGES)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text, encoding="utf-8")
    print(text)
    print(f"wrote {args.out}")
    errors = sum(r.n_errors for s in stacks.values() for r in s.latency)
    return 1 if errors else 0


def quick() -> int:
    """20 messages, 1 conversation at a time, through the gateway and directly; the gateway's
    own work; memory of the set. Writes nothing."""
    overhead = asyncio.run(lat.gateway_overhead(200))
    print(f"gateway own work: p50 {overhead['net_p50']:.2f} ms", flush=True)
    with tempfile.TemporaryDirectory(prefix="signpost-perf-quick-") as tmp:
        with stack_for(Path(tmp), None) as stack:  # the current model (trained if missing)
            lat.warm_up(stack, 2)
            runs = lat.measure_latency(stack, 20, [1])
            mem = memory_snapshot(stack)
    print("\n".join(lat.format_runs(runs)))
    print("RSS MB: " + ", ".join(f"{k} {v['rss_mb']:.0f}" for k, v in mem.items()))
    errors = sum(r.n_errors for r in runs)
    if errors:
        print(f"errors: {[r.errors for r in runs]}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
