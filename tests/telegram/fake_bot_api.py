"""A fake Telegram Bot API server for tests (python-telegram-bot reaches it through ``base_url``).

A Starlette app served by uvicorn in a background thread on a free 127.0.0.1 port. It answers
``POST /bot<token>/<method>`` for getMe, getUpdates (long polling from a queue the test feeds,
honouring ``offset``, ``limit`` and ``timeout``), sendMessage, sendChatAction,
answerCallbackQuery, setMyCommands, setWebhook, deleteWebhook and getWebhookInfo, with the
result shapes of the real Bot API, and records every call with its parameters.

Also here: builders for updates in the real Bot API JSON shapes (private text, commands,
callback queries, photos, stickers, voice, edited, group and forwarded messages).

Usage::

    api = FakeBotAPI(); api.start()
    api.add_update(text_update("hello"))
    ...
    api.calls("sendMessage")  # [{"chat_id": 42, "text": "...", "reply_markup": {...}}, ...]
    api.stop()
"""
from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from typing import Any, Callable, Dict, List, Optional
from urllib.parse import parse_qs

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

TOKEN = "123456789:AAFakeTokenForTestsOnly_abcdefghijk"
BOT_USER = {"id": 123456789, "is_bot": True, "first_name": "Signpost", "username": "SignpostTestBot",
            "can_join_groups": True, "can_read_all_group_messages": False,
            "supports_inline_queries": False, "can_connect_to_business": False,
            "has_main_web_app": False}

# Parameters that the Bot API takes as JSON (python-telegram-bot sends them JSON-encoded in a form)
_JSON_PARAMS = {"reply_markup", "allowed_updates", "commands", "scope", "entities",
                "link_preview_options", "reply_parameters"}
_INT_PARAMS = {"chat_id", "offset", "limit", "message_id", "max_connections"}
_FLOAT_PARAMS = {"timeout"}


class FakeBotAPI:
    """The server. Thread-safe: tests feed updates and read calls from their own thread."""

    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self._lock = threading.Lock()
        self._calls: List[Dict[str, Any]] = []
        self._updates: List[Dict[str, Any]] = []
        self._update_ids = itertools.count(1000)
        self._message_ids = itertools.count(1)
        self._failures: Dict[str, List[Dict[str, Any]]] = {}
        self.webhook: Dict[str, Any] = {"url": ""}
        self._server: Optional[uvicorn.Server] = None
        self._thread: Optional[threading.Thread] = None
        self.port = 0
        self.app = Starlette(routes=[
            Route("/bot{token}/{method}", self._endpoint, methods=["GET", "POST"]),
            Route("/file/bot{token}/{path:path}", self._file, methods=["GET"]),
        ])

    # ------------------------------------------------------------------ server lifecycle
    @property
    def url(self) -> str:
        """What the gateway's ``TELEGRAM_API_URL`` should be."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "FakeBotAPI":
        from tests.conftest import serve_in_thread

        self._server, self._thread, self.port = serve_in_thread(self.app, "fake-bot-api")
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._thread.join(10)
            self._server = None

    def reset(self) -> None:
        """Forget calls, queued updates, failures and the webhook (between tests)."""
        with self._lock:
            self._calls.clear()
            self._updates.clear()
            self._failures.clear()
            self.webhook = {"url": ""}

    # ------------------------------------------------------------------ test API
    def add_update(self, update: Dict[str, Any]) -> Dict[str, Any]:
        """Queue an update for getUpdates; gives it the next ``update_id`` if it has none."""
        with self._lock:
            update = dict(update)
            update.setdefault("update_id", next(self._update_ids))
            self._updates.append(update)
        return update

    def next_update_id(self) -> int:
        with self._lock:
            return next(self._update_ids)

    def pending_updates(self) -> int:
        with self._lock:
            return len(self._updates)

    def fail(self, method: str, times: int = 1, status: int = 500,
             description: str = "Internal Server Error", retry_after: Optional[int] = None) -> None:
        """Make the next ``times`` calls of ``method`` fail with this Bot API error."""
        error: Dict[str, Any] = {"ok": False, "error_code": status, "description": description}
        if retry_after is not None:
            error["parameters"] = {"retry_after": retry_after}
        with self._lock:
            self._failures.setdefault(method, []).extend([{"status": status, "body": error}] * times)

    def calls(self, method: Optional[str] = None) -> List[Dict[str, Any]]:
        """Recorded calls (their parameters), oldest first; all methods if ``method`` is None.

        Each dict has the parameters plus ``_method`` and ``_time`` (monotonic seconds).
        """
        with self._lock:
            return [dict(c) for c in self._calls if method is None or c["_method"] == method]

    def sent_texts(self, chat_id: Optional[int] = None) -> List[str]:
        return [c["text"] for c in self.calls("sendMessage")
                if chat_id is None or c.get("chat_id") == chat_id]

    def wait_for(self, predicate: Callable[[List[Dict[str, Any]]], bool], timeout: float = 10.0,
                 method: Optional[str] = None) -> List[Dict[str, Any]]:
        """Block until ``predicate(calls(method))`` is true; return those calls.

        Raises:
            AssertionError: on timeout, listing the calls seen.
        """
        deadline = time.monotonic() + timeout
        while True:
            calls = self.calls(method)
            if predicate(calls):
                return calls
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting; calls seen: "
                                     f"{[(c['_method'], c.get('text', '')[:60]) for c in self.calls()]}")
            time.sleep(0.02)

    async def await_for(self, predicate: Callable[[List[Dict[str, Any]]], bool],
                        timeout: float = 10.0, method: Optional[str] = None) -> List[Dict[str, Any]]:
        """Like :meth:`wait_for`, for async tests (does not block the event loop)."""
        deadline = time.monotonic() + timeout
        while True:
            calls = self.calls(method)
            if predicate(calls):
                return calls
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting; calls seen: "
                                     f"{[(c['_method'], c.get('text', '')[:60]) for c in self.calls()]}")
            await asyncio.sleep(0.02)

    async def settle(self, quiet: float = 0.4, timeout: float = 10.0) -> None:
        """Wait until the queue is drained and no call arrived for ``quiet`` seconds."""
        deadline = time.monotonic() + timeout
        last_count, last_change = -1, time.monotonic()
        while time.monotonic() < deadline:
            count = len([c for c in self.calls() if c["_method"] != "getUpdates"])
            if count != last_count:
                last_count, last_change = count, time.monotonic()
            elif self.pending_updates() == 0 and time.monotonic() - last_change >= quiet:
                return
            await asyncio.sleep(0.02)

    # ------------------------------------------------------------------ HTTP
    @staticmethod
    def _decode(raw: Dict[str, Any]) -> Dict[str, Any]:
        params: Dict[str, Any] = {}
        for name, value in raw.items():
            if isinstance(value, str) and name in _JSON_PARAMS:
                try:
                    value = json.loads(value)
                except ValueError:
                    pass
            elif isinstance(value, str) and name in _INT_PARAMS and value.lstrip("-").isdigit():
                value = int(value)
            elif isinstance(value, str) and name in _FLOAT_PARAMS:
                try:
                    value = float(value)
                except ValueError:
                    pass
            params[name] = value
        return params

    async def _file(self, request: Request) -> JSONResponse:
        return JSONResponse({"ok": False, "error_code": 404, "description": "Not Found"}, 404)

    async def _endpoint(self, request: Request) -> JSONResponse:
        if request.path_params["token"] != self.token:
            return JSONResponse({"ok": False, "error_code": 401, "description": "Unauthorized"}, 401)
        method = request.path_params["method"]
        body = await request.body()
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("application/json"):
            raw = json.loads(body or b"{}")
        elif content_type.startswith("multipart/"):
            return JSONResponse({"ok": False, "error_code": 400,
                                 "description": "Bad Request: uploads are not supported here"}, 400)
        else:  # application/x-www-form-urlencoded (what python-telegram-bot sends)
            raw = {k: v[-1] for k, v in parse_qs(body.decode("utf-8"), keep_blank_values=True).items()}
        params = self._decode(raw or {})
        with self._lock:
            self._calls.append({**params, "_method": method, "_time": time.monotonic()})
            failures = self._failures.get(method)
            failure = failures.pop(0) if failures else None
        if failure is not None:
            return JSONResponse(failure["body"], status_code=failure["status"])
        handler = getattr(self, "_m_" + method, None)
        if handler is None:
            return JSONResponse({"ok": False, "error_code": 404, "description": "Not Found: method not found"}, 404)
        result = handler(params)
        if asyncio.iscoroutine(result):
            result = await result
        return JSONResponse({"ok": True, "result": result})

    # ------------------------------------------------------------------ methods
    def _m_getMe(self, params):
        return BOT_USER

    async def _m_getUpdates(self, params):
        offset = int(params.get("offset") or 0)
        limit = int(params.get("limit") or 100)
        timeout = min(float(params.get("timeout") or 0), 50.0)
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if offset:
                    # confirms every update with a smaller id (like Telegram)
                    self._updates = [u for u in self._updates if u["update_id"] >= offset]
                pending = [u for u in self._updates if u["update_id"] >= offset][:limit]
            if pending or time.monotonic() >= deadline or self._server is None or self._server.should_exit:
                return pending
            await asyncio.sleep(0.02)

    def _chat(self, chat_id: Any) -> Dict[str, Any]:
        chat_id = int(chat_id)
        if chat_id > 0:
            return {"id": chat_id, "type": "private", "first_name": "User"}
        kind = "supergroup" if str(chat_id).startswith("-100") else "group"
        return {"id": chat_id, "type": kind, "title": "Group"}

    def _m_sendMessage(self, params):
        message = {"message_id": next(self._message_ids), "date": int(time.time()),
                   "chat": self._chat(params["chat_id"]), "from": BOT_USER,
                   "text": params.get("text", "")}
        if isinstance(params.get("reply_markup"), dict):
            message["reply_markup"] = params["reply_markup"]
        return message

    def _m_sendChatAction(self, params):
        return True

    def _m_answerCallbackQuery(self, params):
        return True

    def _m_setMyCommands(self, params):
        return True

    def _m_deleteMyCommands(self, params):
        return True

    def _m_setWebhook(self, params):
        self.webhook = {"url": params.get("url", ""), "secret_token": params.get("secret_token"),
                        "allowed_updates": params.get("allowed_updates")}
        return True

    def _m_deleteWebhook(self, params):
        self.webhook = {"url": ""}
        return True

    def _m_getWebhookInfo(self, params):
        return {"url": self.webhook.get("url", ""), "has_custom_certificate": False,
                "pending_update_count": self.pending_updates(), "max_connections": 40}

    def _m_close(self, params):
        return True

    def _m_logOut(self, params):
        return True


# ---------------------------------------------------------------------------- update builders
_message_ids = itertools.count(5000)


def user(user_id: int = 424242, first_name: str = "Alex", username: Optional[str] = "alex_test",
         language_code: Optional[str] = "en", **extra) -> Dict[str, Any]:
    data = {"id": user_id, "is_bot": False, "first_name": first_name, **extra}
    if username:
        data["username"] = username
    if language_code:
        data["language_code"] = language_code
    return data


def private_chat(u: Dict[str, Any]) -> Dict[str, Any]:
    chat = {"id": u["id"], "type": "private", "first_name": u["first_name"]}
    if u.get("username"):
        chat["username"] = u["username"]
    return chat


def message(u: Optional[Dict[str, Any]] = None, chat: Optional[Dict[str, Any]] = None,
            **content) -> Dict[str, Any]:
    """A Message dict (``message_id``, ``date``, ``chat``, ``from`` + content fields)."""
    u = u or user()
    return {"message_id": next(_message_ids), "date": int(time.time()), "from": u,
            "chat": chat or private_chat(u), **content}


def text_update(text: str, u: Optional[Dict[str, Any]] = None, **extra) -> Dict[str, Any]:
    return {"message": message(u, text=text, **extra)}


def command_update(command: str, u: Optional[Dict[str, Any]] = None,
                   chat: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """``/start`` etc. with the ``bot_command`` entity Telegram adds."""
    name = command.split()[0]
    return {"message": message(u, chat, text=command, entities=[
        {"type": "bot_command", "offset": 0, "length": len(name)}])}


def callback_update(data: str, u: Optional[Dict[str, Any]] = None,
                    on_message_text: str = "Choose:") -> Dict[str, Any]:
    u = u or user()
    bot_message = {"message_id": next(_message_ids), "date": int(time.time()),
                   "chat": private_chat(u), "from": BOT_USER, "text": on_message_text}
    return {"callback_query": {"id": str(next(_message_ids) * 7919), "from": u,
                               "message": bot_message, "chat_instance": "-8836476293746",
                               "data": data}}


def photo_update(u: Optional[Dict[str, Any]] = None, caption: Optional[str] = None) -> Dict[str, Any]:
    sizes = [{"file_id": "AgACAgQAAxkBAAIBQ2Z" + s, "file_unique_id": "AQAD" + s,
              "file_size": size, "width": w, "height": h}
             for s, size, w, h in (("a", 1234, 90, 60), ("b", 45678, 800, 533))]
    extra = {"caption": caption} if caption else {}
    return {"message": message(u, photo=sizes, **extra)}


def sticker_update(u: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    return {"message": message(u, sticker={
        "file_id": "CAACAgIAAxkBAAIBRGZsticker", "file_unique_id": "AgADsticker", "type": "regular",
        "width": 512, "height": 512, "is_animated": False, "is_video": False, "emoji": "😀",
        "set_name": "SomeStickers", "file_size": 23456})}


def voice_update(u: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    return {"message": message(u, voice={
        "file_id": "AwACAgQAAxkBAAIBRWZvoice", "file_unique_id": "AgADvoice", "duration": 4,
        "mime_type": "audio/ogg", "file_size": 12345})}


def document_update(u: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    return {"message": message(u, document={
        "file_id": "BQACAgQAAxkBAAIBRmZdoc", "file_unique_id": "AgADdoc", "file_name": "a.pdf",
        "mime_type": "application/pdf", "file_size": 34567})}


def location_update(u: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    return {"message": message(u, location={"latitude": 51.5007, "longitude": -0.1246})}


def contact_update(u: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    return {"message": message(u, contact={"phone_number": "+447700900123", "first_name": "Sam",
                                           "user_id": 5550001})}


def edited_update(text: str, u: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    msg = message(u, text=text)
    msg["edit_date"] = msg["date"] + 5
    return {"edited_message": msg}


def group_chat(chat_id: int = -1001234567890, title: str = "Class 9b") -> Dict[str, Any]:
    return {"id": chat_id, "type": "supergroup" if str(chat_id).startswith("-100") else "group",
            "title": title}


def group_update(text: str, u: Optional[Dict[str, Any]] = None,
                 chat: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    return {"message": message(u, chat or group_chat(), text=text)}


def forwarded_update(text: str, u: Optional[Dict[str, Any]] = None,
                     origin_name: str = "Stranger") -> Dict[str, Any]:
    origin = {"type": "user", "date": int(time.time()) - 3600,
              "sender_user": {"id": 777000111, "is_bot": False, "first_name": origin_name}}
    return {"message": message(u, text=text, forward_origin=origin)}
