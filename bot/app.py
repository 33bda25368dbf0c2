"""The Signpost gateway: a Starlette app for the web chat, the Telegram webhook and health.

Routes:
    GET  /             the web chat page (bot/web/static/index.html)
    GET  /privacy      the privacy page
    GET  /static/...   page assets (same origin only)
    GET  /healthz      {"status": "ok"|"degraded", "rasa": {url: bool}}
    POST /api/chat     {"session_id": uuid, "message": str, "metadata": {...}}
                       → {"messages": [{"text", "buttons"?}], "failsafe": bool}
    POST /api/forget   {"session_id": uuid} → {"ok": true} (erases the conversation)
    POST /telegram     Telegram webhook (only when TELEGRAM_BOT_TOKEN and a secret are set)
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections import defaultdict, deque
from pathlib import Path
from typing import Any, Deque, Dict, Optional

from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from bot import privacy
from bot.conversation import (
    Conversation,
    guess_language,
    language_tag,
    load_failsafe,
    load_payloads,
)
from bot.rasa_client import RasaClient
from bot.settings import ROOT, SUPPORTED_LANGUAGES, Settings

logger = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "web" / "static"

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'; require-trusted-types-for 'script'; "
    "trusted-types 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Permissions-Policy": "geolocation=(), camera=(), microphone=()",
    "Cross-Origin-Opener-Policy": "same-origin",
}


class SecurityHeaders:
    """Adds the CSP and other security headers to every response.

    A plain ASGI middleware: Starlette's BaseHTTPMiddleware (a task group and memory streams per
    request) took ~0.7 ms of the gateway's ~1.2 ms own work per message (bench/results/perf.md).
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        api = scope["path"].startswith("/api/")

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                if api:
                    headers["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)


class RateLimiter:
    """Sliding-window limit: at most ``limit`` events per ``window_s`` seconds per key.

    In memory, per gateway process; keys are pseudonymous ids, never raw user ids.
    """

    def __init__(self, limit: int, window_s: float = 60.0, max_keys: int = 100_000) -> None:
        self.limit, self.window_s, self.max_keys = limit, window_s, max_keys
        self._events: Dict[str, Deque[float]] = defaultdict(deque)

    def allow(self, key: str, now: Optional[float] = None) -> bool:
        """Record one event for ``key``; return False if it is over the limit."""
        now = time.monotonic() if now is None else now
        if len(self._events) > self.max_keys:
            self._events.clear()  # bounded memory under a flood of new keys
        queue = self._events[key]
        while queue and queue[0] <= now - self.window_s:
            queue.popleft()
        if len(queue) >= self.limit:
            return False
        queue.append(now)
        return True


def _error(status: int, code: str, text: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": text}, status_code=status)


_HTTP_ERRORS = {
    404: ("not_found", "Sorry, there is nothing here."),
    405: ("method_not_allowed", "Sorry, this address only accepts POST requests with JSON."),
}


async def _http_error(request: Request, exc: HTTPException) -> Response:
    """404/405 under /api/ as JSON with a message (like every other API error), else plain text."""
    if request.url.path.startswith("/api/") and exc.status_code in _HTTP_ERRORS:
        code, text = _HTTP_ERRORS[exc.status_code]
        return JSONResponse({"error": code, "message": text}, status_code=exc.status_code,
                            headers=exc.headers)
    return PlainTextResponse(exc.detail, status_code=exc.status_code, headers=exc.headers)


def create_app(settings: Optional[Settings] = None, rasa: Optional[RasaClient] = None,
               telegram: Any = None) -> Starlette:
    """Build the gateway app.

    Args:
        settings: configuration (default: from the environment).
        rasa: a Rasa client (default: one for ``settings.rasa_urls``).
        telegram: an optional :class:`bot.channels.telegram.TelegramChannel`; when given, its
            webhook route and start/stop hooks are installed.
    """
    settings = settings or Settings.from_env()
    rasa = rasa or RasaClient(settings.rasa_urls, timeout_s=settings.rasa_timeout_s)
    failsafe_texts = load_failsafe(ROOT / "data" / "failsafe.yml")
    conversation = Conversation(
        rasa=rasa,
        payloads=load_payloads(ROOT / "domain"),
        failsafe_texts=failsafe_texts,
        max_chars=settings.max_message_chars,
    )
    key = settings.hmac_key
    session_limiter = RateLimiter(settings.rate_limit_per_minute)
    ip_limiter = RateLimiter(settings.rate_limit_per_minute * 4)

    def gateway_text(kind: str, lang: str) -> str:
        texts = failsafe_texts.get(kind) or {}
        return texts.get(lang) or texts.get("en", "")

    async def read_json(request: Request) -> Any:
        # Only JSON: a cross-site form or text/plain POST (no CORS preflight) is refused before
        # it reaches Rasa; the web page always sends application/json.
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            return None, _error(415, "bad_content_type",
                                "Sorry, this address only accepts JSON (application/json).")
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > settings.max_body_bytes:
            return None, _error(413, "too_large", gateway_text("too_long", "en"))
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > settings.max_body_bytes:
                return None, _error(413, "too_large", gateway_text("too_long", "en"))
        try:
            return json.loads(body.decode("utf-8")), None
        except (UnicodeDecodeError, ValueError, RecursionError):  # deep nesting: RecursionError
            return None, _error(400, "bad_json", "Sorry, that request was not valid JSON.")

    def session_sender(data: Any) -> Optional[str]:
        if not isinstance(data, dict):
            return None
        session = data.get("session_id")
        if not isinstance(session, str):
            return None
        try:
            parsed = uuid.UUID(session)
        except ValueError:
            return None
        return privacy.sender_id(key, "web", str(parsed))

    async def chat(request: Request) -> Response:
        data, error = await read_json(request)
        if error:
            return error
        sender = session_sender(data)
        if sender is None:
            return _error(400, "bad_session", "Sorry, this chat session is not valid. Please reload the page.")
        raw_meta = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
        message = data.get("message", "")
        if not isinstance(message, str):
            return _error(400, "bad_message", "Sorry, the message must be text.")
        meta: Dict[str, Any] = {"channel": "web", "audience_hint": "parent"}
        for name in ("language_choice", "browser_language"):
            value = language_tag(raw_meta.get(name))
            if value:
                meta["language_hint" if name == "browser_language" else name] = value
        if meta.get("language_choice") not in SUPPORTED_LANGUAGES:
            meta.pop("language_choice", None)
        lang = guess_language(meta)
        client_ip = request.client.host if request.client else "unknown"
        if not ip_limiter.allow(client_ip) or not session_limiter.allow(sender):
            return _error(429, "too_fast", gateway_text("too_fast", lang))
        if raw_meta.get("event") == "session_start" and not message.strip():
            text = "/greet"
        else:
            if len(message) > settings.max_message_chars * 4:
                return JSONResponse({"messages": [{"text": gateway_text("too_long", lang)}],
                                     "failsafe": False})
            text = conversation.prepare(message)
            if not text:
                return JSONResponse({"messages": [{"text": gateway_text("empty", lang)}],
                                     "failsafe": False})
        reply = await conversation.handle(sender, text, meta, language=lang)
        messages = [
            {"text": m.get("text", ""),
             **({"buttons": [{"title": str(b.get("title", "")), "payload": str(b.get("payload", ""))}
                             for b in m["buttons"] if isinstance(b, dict)]}
                if m.get("buttons") else {})}
            for m in reply.messages
        ]
        return JSONResponse({"messages": messages, "failsafe": reply.failsafe})

    async def forget(request: Request) -> Response:
        data, error = await read_json(request)
        if error:
            return error
        sender = session_sender(data)
        if sender is None:
            return _error(400, "bad_session", "Sorry, this chat session is not valid.")
        try:
            # in a thread: a busy or unreachable database must not stall every other request
            await asyncio.to_thread(privacy.forget, settings.tracker_store_url, sender)
        except Exception as exc:  # noqa: BLE001 - a clear answer, never a stack trace
            logger.error("could not erase a web conversation (%s)", type(exc).__name__)
            return _error(503, "forget_failed", "Sorry, your conversation could not be deleted "
                          "right now. Please try again in a few minutes.")
        return JSONResponse({"ok": True})

    async def healthz(request: Request) -> Response:
        status = await rasa.healthy()
        ok = any(status.values())
        return JSONResponse({"status": "ok" if ok else "degraded", "rasa": status},
                            status_code=200)

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    privacy_pages = {"de": "privacy.de.html", "fr": "privacy.fr.html", "ar": "privacy.ar.html"}

    async def privacy_page(request: Request) -> Response:
        name = privacy_pages.get(request.query_params.get("lang", ""), "privacy.html")
        return FileResponse(STATIC / name)

    routes = [
        Route("/", index),
        Route("/privacy", privacy_page),
        Route("/healthz", healthz),
        Route("/api/chat", chat, methods=["POST"]),
        Route("/api/forget", forget, methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=STATIC, check_dir=False), name="static"),
    ]
    if telegram is not None:
        routes.append(Route("/telegram", telegram.webhook_endpoint, methods=["POST"]))

    async def on_startup() -> None:
        await asyncio.to_thread(conversation.load_safety)  # not on the first user's message
        if telegram is not None:
            await telegram.start(conversation)

    async def on_shutdown() -> None:
        if telegram is not None:
            await telegram.stop()
        await rasa.close()

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await on_startup()
        try:
            yield
        finally:
            await on_shutdown()

    app = Starlette(routes=routes, middleware=[Middleware(SecurityHeaders)], lifespan=lifespan,
                    exception_handlers={HTTPException: _http_error})
    app.state.conversation = conversation
    app.state.settings = settings
    return app
