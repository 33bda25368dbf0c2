"""Staff and operations commands: ``python -m bot <command>``.

    run               start Rasa, the action server and the gateway (``make run``)
    train             train a model if none exists for the current data (``make train``)
    check             validate everything staff edit (make check)
    build-responses   regenerate domain/responses/crisis_numbers.yml from data/services/
    load-directory    validate data/services/ and load it into the directory database
    purge             delete conversations older than RETENTION_DAYS (or --older-than DAYS)
    reload            train if needed, then load the model into every running Rasa instance
    forget SENDER     delete one conversation (by its pseudonymous id)
    stats             anonymous figures per day/week, and a PNG chart
    review            what users asked that the bot did not understand (masked, grouped)
    i18n-merge LANG   move staged translations (i18n/LANG/) into domain/responses/
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

from bot.settings import ROOT, VAR, Settings

TRAINING_INPUTS = ["config.yml", "domain", "data/nlu", "data/rules", "data/stories", "bot/nlu",
                   "bot/language.py", "bot/safety.py", "data/language"]
RASA_DATA = ["data/nlu", "data/rules", "data/stories"]


def venv_bin(name: str) -> str:
    """Path of a console script next to the running interpreter (the project's .venv)."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def data_fingerprint(root: Path = ROOT) -> str:
    """SHA-256 (first 12 hex digits) over every file that goes into a model."""
    digest = hashlib.sha256()
    for item in TRAINING_INPUTS:
        path = root / item
        files = sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts) \
            if path.is_dir() else [path]
        for f in files:
            digest.update(str(f.relative_to(root)).encode())
            digest.update(f.read_bytes())
    return digest.hexdigest()[:12]


def current_model(models_dir: Path = ROOT / "models") -> Path:
    return models_dir / f"signpost-{data_fingerprint()}.tar.gz"


def train(force: bool = False, extra: Optional[List[str]] = None) -> Path:
    """Train a model unless one exists for the current data; return its path.

    Rasa's own fingerprinting (graph cache in .rasa/) then retrains only the components whose
    inputs changed: a change to response text alone repackages the model without retraining.

    Raises:
        subprocess.CalledProcessError: if ``rasa train`` fails.
    """
    from bot import responses_builder

    if responses_builder.write():
        print("Updated domain/responses/crisis_numbers.yml from the services directory.")
    model = current_model()
    if model.exists() and not force:
        print(f"Model is up to date: {model.relative_to(ROOT)}")
        return model
    start = time.monotonic()
    # --skip-validation: `make check` / `make validate` run Rasa's validation (and more); doing it
    # again here took ~45 s of a response-only retrain on 2 busy cores.
    cmd = [venv_bin("rasa"), "train", "--domain", "domain", "--config", "config.yml",
           "--data", *RASA_DATA, "--out", "models", "--fixed-model-name", model.name[:-7],
           "--skip-validation"]
    cmd += extra or []
    print("Training:", " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True, env=child_env())
    print(f"Training took {time.monotonic() - start:.1f} s → {model.relative_to(ROOT)}")
    return model


def child_env(settings: Optional[Settings] = None) -> dict:
    env = dict(os.environ)
    env.setdefault("SQLALCHEMY_SILENCE_UBER_WARNING", "1")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.setdefault("PYTHONPATH", str(ROOT))
    env.setdefault("RASA_TELEMETRY_ENABLED", "false")
    # Sanic (Rasa, action server) closes idle keep-alive connections after 5 s, while Rasa's
    # aiohttp client reuses them for 15 s (the gateway's, bot/rasa_client.py, for 4 s): a
    # request sent on a connection the server is closing fails ("Cannot write to closing
    # transport", seen under load in bench/perf.py) and the user gets the fail-safe reply.
    # Servers keep idle connections longer than any client, so the client always closes first.
    env.setdefault("SANIC_KEEP_ALIVE_TIMEOUT", "75")
    return env


def write_endpoints(settings: Settings, action_port: int, path: Path,
                    redis_url: Optional[str] = None, key_prefix: Optional[str] = None) -> Path:
    """Write the endpoints file Rasa uses, from the environment (see README, Configuration).

    Args:
        redis_url: ``redis://[:password@]host:port/db`` of the lock store; default ``REDIS_URL``
            (unset: in-memory lock store, one Rasa process only).
        key_prefix: Redis key prefix, alphanumeric (Rasa ignores any other); default
            ``REDIS_KEY_PREFIX`` or ``signpost``.

    The Redis lock store is :class:`bot.lock_store.AtomicRedisLockStore` (Rasa's own
    ``type: redis`` loses tickets across instances, rasa#9213); ``LOCK_STORE_TYPE=redis``
    selects Rasa's class instead.

    Raises:
        ValueError: if the key prefix is not alphanumeric.
    """
    lines = [
        "# Generated by `python -m bot run` from the environment; see endpoints.yml.",
        "action_endpoint:",
        f"  url: http://127.0.0.1:{action_port}/webhook",
        # Send the domain (900 KB of JSON: every response in every language) only to the
        # actions that need it (``send_domain`` in domain/core.yml, and validate_* actions):
        # it cost 15-30 ms per custom action call (issue #10, bench/results/perf.md).
        "  enable_selective_domain: true",
        "tracker_store:",
        # SQLite: Rasa's SQL store with a kept-open connection in WAL mode (bot/tracker_store.py:
        # Rasa's own reconnected and fsynced on every message); other databases: Rasa's SQL.
        "  type: " + ("bot.tracker_store.SQLTrackerStore"
                      if settings.tracker_store_url.startswith("sqlite") else "SQL"),
        f"  url: \"{settings.tracker_store_url}\"",
    ]
    redis_url = redis_url if redis_url is not None else os.environ.get("REDIS_URL")
    if redis_url:
        from urllib.parse import urlsplit

        prefix = key_prefix or os.environ.get("REDIS_KEY_PREFIX") or "signpost"
        if not prefix.isalnum():
            raise ValueError(f"REDIS_KEY_PREFIX must be alphanumeric (Rasa ignores it otherwise): "
                             f"{prefix!r}")
        parts = urlsplit(redis_url)
        store_type = os.environ.get("LOCK_STORE_TYPE") or "bot.lock_store.AtomicRedisLockStore"
        lines += ["lock_store:", f"  type: {store_type}",
                  f"  url: {parts.hostname or '127.0.0.1'}", f"  port: {parts.port or 6379}",
                  f"  db: {(parts.path or '/1').lstrip('/') or 1}", f"  key_prefix: {prefix}"]
        if parts.password:
            lines.append(f"  password: \"{parts.password}\"")
    else:
        lines += ["lock_store:", "  type: in_memory"]
    path.write_text("\n".join(lines) + "\n")
    return path


def rasa_token() -> str:
    """The token of Rasa's HTTP API: ``RASA_TOKEN``, or a random one kept in var/rasa.token."""
    token = os.environ.get("RASA_TOKEN")
    if token:
        return token
    path = VAR / "rasa.token"
    if not path.exists():
        import secrets

        VAR.mkdir(exist_ok=True)
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


def reload_models(urls: List[str], model: Path, timeout_s: float = 300,
                  token: Optional[str] = None) -> Dict[str, float]:
    """Load ``model`` into every running Rasa instance (``PUT /model``), one after the other.

    Each instance keeps answering with its old model while it loads the new one, and the
    instances are reloaded one at a time, so conversations are not dropped.

    Returns:
        ``{url: seconds taken}``.

    Raises:
        RuntimeError: if an instance refuses (wrong token, missing file) or times out.
    """
    import httpx

    taken = {}
    for url in urls:
        start = time.monotonic()
        r = httpx.put(f"{url}/model", params={"token": token or rasa_token()},
                      json={"model_file": str(model.resolve())}, timeout=timeout_s)
        if r.status_code != 204:
            raise RuntimeError(f"{url} refused the new model: HTTP {r.status_code} {r.text[:300]}")
        taken[url] = time.monotonic() - start
    return taken


def wait_http(url: str, timeout_s: float, proc: Optional[subprocess.Popen] = None) -> bool:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    return False


def run(args: argparse.Namespace) -> int:
    """Start the action server, N Rasa servers and the gateway; stop all on Ctrl-C."""
    from bot.preflight import PreflightError, check_all

    settings = Settings.from_env()
    VAR.mkdir(exist_ok=True)
    rasa_port = int(os.environ.get("RASA_PORT", "5005"))
    action_port = int(os.environ.get("ACTION_PORT", "5055"))
    instances = int(os.environ.get("RASA_INSTANCES", str(args.instances)))
    if instances > 1 and not os.environ.get("REDIS_URL"):
        print("Several Rasa instances need a shared lock store: set REDIS_URL "
              "(and TRACKER_STORE_URL to PostgreSQL).", file=sys.stderr)
        return 2
    try:
        # Rasa would retry an unreachable tracker database forever (rasa-notes B12): fail fast,
        # with a message that names host and port (never the password).
        check_all(settings.tracker_store_url, os.environ.get("REDIS_URL") or None)
    except PreflightError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    model = train()
    endpoints = write_endpoints(settings, action_port, VAR / "endpoints.yml")
    env = child_env(settings)
    env["SANIC_HOST"] = "127.0.0.1"
    log_dir = VAR / "logs"
    log_dir.mkdir(exist_ok=True)
    procs: List[subprocess.Popen] = []

    def start(name: str, cmd: List[str], extra_env: Optional[dict] = None) -> subprocess.Popen:
        log = open(log_dir / f"{name}.log", "ab")
        p = subprocess.Popen(cmd, cwd=ROOT, env={**env, **(extra_env or {})}, stdout=log,
                             stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(p)
        print(f"  started {name} (pid {p.pid}, log var/logs/{name}.log)")
        return p

    import signal

    def stop_on_signal(signum, frame):  # SIGTERM/SIGHUP stop everything, like Ctrl-C
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, stop_on_signal) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        print("Starting Signpost…")
        actions = start("actions", [sys.executable, "-m", "rasa_sdk", "--actions", "actions",
                                    "-p", str(action_port)])
        urls = []
        for i in range(instances):
            port = rasa_port + i
            cmd = [venv_bin("rasa"), "run", "-m", str(model), "--endpoints", str(endpoints),
                   "--credentials", "credentials.yml", "-i", "127.0.0.1", "-p", str(port),
                   "--enable-api", "--auth-token", rasa_token()]
            start(f"rasa-{i + 1}", cmd)
            urls.append(f"http://127.0.0.1:{port}")
        gateway_env = {"RASA_URLS": ",".join(urls)}
        (VAR / "instances.json").write_text(json.dumps({"rasa_urls": urls}))
        gateway = start("gateway", [sys.executable, "-m", "bot.gateway"], gateway_env)
        deadline = float(os.environ.get("STARTUP_TIMEOUT", "180"))
        for url in urls:
            if not wait_http(url + "/", deadline):
                print(f"Rasa at {url} did not start within {deadline:.0f} s: see var/logs/. "
                      "If the tracker database is unreachable, check TRACKER_STORE_URL.",
                      file=sys.stderr)
                return 1
        if not wait_http(f"http://127.0.0.1:{action_port}/health", 60, actions):
            print("The action server did not start: see var/logs/actions.log", file=sys.stderr)
            return 1
        page = f"http://{settings.gateway_host}:{settings.gateway_port}/"
        if not wait_http(page + "healthz", 60, gateway):
            print("The gateway did not start: see var/logs/gateway.log", file=sys.stderr)
            return 1
        print(f"\nSignpost is running. Open the web chat: {page}")
        if settings.telegram_token:
            print("Telegram: on (polling)" if not settings.telegram_webhook_url else
                  f"Telegram: webhook {settings.telegram_webhook_url}")
        print("Press Ctrl-C to stop.\n")
        while all(p.poll() is None for p in procs):
            time.sleep(1)
        print("A process stopped unexpectedly: see var/logs/.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nStopping…")
        return 0
    finally:
        stop_all(procs)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def stop_all(procs: List[subprocess.Popen], grace_s: float = 10.0) -> None:
    import signal

    for p in procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + grace_s
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)


def main(argv: Optional[List[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(prog="python -m bot", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="start everything")
    p_run.add_argument("--instances", type=int, default=1)
    p_train = sub.add_parser("train", help="train if the data changed")
    p_train.add_argument("--force", action="store_true")
    p_train.add_argument("--finetune", action="store_true")
    sub.add_parser("build-responses", help="regenerate crisis number responses")
    p_check = sub.add_parser("check", help="validate everything staff edit")
    p_check.add_argument("--skip-rasa", action="store_true")
    sub.add_parser("load-directory", help="load data/services into the directory DB")
    p_purge = sub.add_parser("purge", help="delete old conversations")
    p_purge.add_argument("--older-than", type=float, default=None, help="days")
    p_stats = sub.add_parser("stats", help="anonymous usage figures")
    p_stats.add_argument("--days", type=int, default=28)
    p_stats.add_argument("--by", choices=["day", "week"], default="day")
    p_stats.add_argument("--chart", default="var/stats.png")
    p_review = sub.add_parser("review", help="what users asked that the bot did not understand")
    p_review.add_argument("--days", type=int, default=7)
    p_review.add_argument("--out", default="var/review.yml")
    p_merge = sub.add_parser("i18n-merge", help="merge i18n/<lang>/*.yml into domain/responses")
    p_merge.add_argument("language")
    sub.add_parser("reload", help="train if needed and load the model into every running Rasa")
    p_forget = sub.add_parser("forget", help="delete one conversation")
    p_forget.add_argument("sender")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    if args.command == "run":
        return run(args)
    if args.command == "train":
        train(force=args.force, extra=["--finetune"] if args.finetune else None)
        return 0
    if args.command == "check":
        from bot import check

        return check.main(skip_rasa=args.skip_rasa)
    if args.command == "build-responses":
        from bot import responses_builder

        changed = responses_builder.write()
        print("updated" if changed else "already up to date")
        return 0
    if args.command == "load-directory":
        from bot.directory.store import load_into, make_engine

        n = load_into(make_engine(settings.directory_db_url))
        print(f"loaded {n} services")
        return 0
    if args.command == "purge":
        from bot.privacy import purge

        days = args.older_than if args.older_than is not None else settings.retention_days
        result = purge(settings.tracker_store_url, days)
        print(f"purged {result.conversations} conversations ({result.events} events) "
              f"older than {days:g} days")
        return 0
    if args.command == "stats":
        from bot import analytics

        periods = analytics.stats(settings.tracker_store_url, args.days, args.by)
        print(analytics.format_stats(periods))
        if periods:
            print(f"chart: {analytics.chart(periods, ROOT / args.chart)}")
        return 0
    if args.command == "review":
        from bot import analytics

        groups = analytics.review(settings.tracker_store_url, args.days)
        path = analytics.write_review(groups, ROOT / args.out)
        print(f"{sum(map(len, groups))} message(s) in {len(groups)} group(s) → {path}")
        return 0
    if args.command == "i18n-merge":
        from bot import i18n

        merged, unknown = i18n.merge(args.language)
        print(f"merged {merged} responses for '{args.language}'")
        for name in unknown:
            print(f"  unknown response (not in domain/responses): {name}")
        return 1 if unknown else 0
    if args.command == "reload":
        model = train()
        urls = [u for u in os.environ.get("RASA_URLS", "").split(",") if u]
        if not urls and (VAR / "instances.json").exists():
            urls = json.loads((VAR / "instances.json").read_text())["rasa_urls"]
        if not urls:
            print("No running Rasa instances found (start them with make run, or set RASA_URLS).")
            return 1
        for url, seconds in reload_models(urls, model).items():
            print(f"{url}: now serving {model.name} (loaded in {seconds:.1f} s)")
        return 0
    if args.command == "forget":
        from bot.privacy import forget

        print(f"deleted {forget(settings.tracker_store_url, args.sender)} events")
        return 0
    return 2
