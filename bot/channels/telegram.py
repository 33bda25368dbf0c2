"""The Telegram channel: python-telegram-bot 22 in front of :class:`bot.conversation.Conversation`.

How an update is handled (private chats only reach Rasa):

1. group, supergroup and channel updates → the group note with a private-chat link, once per
   chat (chats are remembered by an HMAC of their id, in a bounded in-memory set); nothing is
   sent to Rasa;
2. private chats: a per-user flood limit (``RATE_LIMIT_PER_MINUTE``) → the flood note once, then
   silence until the minute is over;
3. edited messages → the "edited" note (never processed again);
4. commands ``/start`` ``/help`` ``/language`` ``/country`` ``/forget`` ``/stop``; any other
   text, unknown commands included, goes through :meth:`Conversation.prepare` (which turns
   "/restart" into "restart") and then to Rasa; forwarded text gets the "forwarded" note after
   the answer, text longer than ``MAX_MESSAGE_CHARS`` the "truncated" note;
5. photos, stickers, voice, video, files, locations, contacts, … → the text-only note; the media
   are never downloaded, forwarded or kept;
6. inline buttons: the callback data is the Rasa payload itself when it fits Telegram's 64-byte
   limit, else ``"k:" + sha256(payload)[:20]``; keys are resolved through a map built from the
   domain's payloads, so every gateway instance resolves every key. Only domain payloads and the
   gateway's own buttons are accepted; anything else gets the "expired" note.

Privacy: Rasa gets ``sender = HMAC(key, "telegram:" + user id)`` and metadata ``channel``,
``chat_type``, ``language_hint`` (the Telegram UI language) and ``language_choice`` (after
/language). Raw ids, names, usernames and phone numbers are never stored or logged, and no
message text is logged. Because python-telegram-bot logs whole updates at DEBUG and httpx logs
request URLs (which contain the bot token) at INFO, the channel raises the ``telegram`` logger
to INFO and the ``httpx`` logger to WARNING when it is created.

Texts the gateway sends by itself are in ``data/telegram.yml`` (staff-editable).
"""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
from collections import OrderedDict, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Deque, Dict, Iterable, List, Optional, Set

from ruamel.yaml import YAML
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from telegram import (
    BotCommand,
    ChatMember,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    LinkPreviewOptions,
    Update,
)
from telegram.constants import ChatAction, ChatType, MessageLimit
from telegram.error import (
    BadRequest,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
)
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationHandlerStop,
    BaseUpdateProcessor,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    TypeHandler,
    filters,
)
from telegram.request import BaseRequest

from bot import privacy
from bot.app import RateLimiter
from bot.conversation import (
    Conversation,
    clean_text,
    guess_language,
    language_tag,
    load_payloads,
)
from bot.settings import ROOT, SUPPORTED_LANGUAGES, Settings

logger = logging.getLogger(__name__)

TEXTS_PATH = ROOT / "data" / "telegram.yml"
#: Telegram's limit for one message (characters, counted in UTF-16 code units).
MAX_MESSAGE = MessageLimit.MAX_TEXT_LENGTH  # 4096
#: Telegram's limit for ``callback_data`` (bytes).
MAX_CALLBACK_BYTES = 64
#: Countries offered by /country, in this order (values of the ``country`` slot).
COUNTRIES = ("GB", "US", "DE", "FR", "IE", "CA", "AU", "other")
#: Commands in the Telegram menu, in this order; descriptions come from data/telegram.yml.
COMMANDS = ("start", "help", "language", "country", "forget", "stop")
#: Commands that are just a Rasa payload.
COMMAND_PAYLOADS = {"start": "/greet", "help": "/help_menu", "stop": "/stop"}
FORGET_YES, FORGET_NO = "forget:yes", "forget:no"
TEXT_KINDS = (
    "text_only", "edited", "forwarded", "group", "group_button", "flood", "truncated", "expired",
    "choose", "forget_question", "forget_yes", "forget_no", "forget_done", "forget_cancelled",
    "forget_failed", "language_prompt", "country_prompt",
)
_PLACEHOLDERS = {"group": "{link}", "truncated": "{max_chars}"}
#: Bytes accepted on the webhook (Telegram updates with quoted replies can exceed 16 KB).
MAX_WEBHOOK_BYTES = 1_048_576


def language_payload(code: str) -> str:
    return '/set_language{"language":"%s"}' % code


def country_payload(code: str) -> str:
    return '/inform_country{"country":"%s"}' % code


def callback_key(payload: str) -> str:
    """The short, deterministic callback data for a payload too long for Telegram."""
    return "k:" + hashlib.sha256(payload.encode("utf-8")).hexdigest()[:20]


def _units(text: str) -> int:
    """Length as Telegram counts it (UTF-16 code units)."""
    return len(text.encode("utf-16-le")) // 2


def _hard_cut(text: str, limit: int) -> List[str]:
    parts, current, size = [], [], 0
    for char in text:
        width = _units(char)
        if size + width > limit:
            parts.append("".join(current))
            current, size = [], 0
        current.append(char)
        size += width
    if current:
        parts.append("".join(current))
    return parts


def split_message(text: str, limit: int = MAX_MESSAGE) -> List[str]:
    """Split a text into parts of at most ``limit`` (UTF-16 units).

    Cuts at paragraph breaks (blank lines) first, then at line breaks, then between words, and
    only cuts inside a word that is longer than a whole message.
    """
    text = text.strip()
    if not text:
        return []
    if _units(text) <= limit:
        return [text]
    for sep in ("\n\n", "\n", " "):
        pieces = text.split(sep)
        if len(pieces) > 1:
            break
    else:
        return _hard_cut(text, limit)
    chunks: List[str] = []
    current = ""
    for piece in pieces:
        candidate = f"{current}{sep}{piece}" if current else piece
        if _units(candidate) <= limit:
            current = candidate
            continue
        if current:
            chunks.append(current)
        if _units(piece) <= limit:
            current = piece
        else:
            sub = split_message(piece, limit)
            chunks.extend(sub[:-1])
            current = sub[-1] if sub else ""
    if current:
        chunks.append(current)
    return [c.strip() for c in chunks if c.strip()]


@dataclass(frozen=True)
class TelegramTexts:
    """The contents of ``data/telegram.yml``."""

    texts: Dict[str, Dict[str, str]]
    languages: Dict[str, str]
    countries: Dict[str, Dict[str, str]]
    commands: Dict[str, Dict[str, str]]

    def get(self, kind: str, lang: str, **values: Any) -> str:
        variants = self.texts[kind]
        text = variants.get(lang) or variants["en"]
        return text.format(**values) if values else text


def load_texts(path: Path = TEXTS_PATH) -> TelegramTexts:
    """Load and check ``data/telegram.yml``.

    Raises:
        ValueError: naming the file and the problem, when a text, an English version, a
            placeholder, a language, a country or a command description is missing.
    """
    data = YAML(typ="safe").load(Path(path).read_text(encoding="utf-8")) or {}
    texts = {str(k): {str(lang): str(v) for lang, v in (langs or {}).items()}
             for k, langs in (data.get("texts") or {}).items()}
    problems = []
    for kind in TEXT_KINDS:
        variants = texts.get(kind)
        if not variants or not variants.get("en"):
            problems.append(f"text '{kind}' needs at least an English version")
            continue
        marker = _PLACEHOLDERS.get(kind)
        for lang, text in variants.items():
            if marker and marker not in text:
                problems.append(f"text '{kind}' ({lang}) must contain {marker}")
            try:
                text.format(link="x", max_chars=1)
            except (KeyError, IndexError, ValueError):
                problems.append(f"text '{kind}' ({lang}) has an unknown {{placeholder}}; "
                                "write {{ and }} for literal braces")
    languages = {str(k): str(v) for k, v in (data.get("languages") or {}).items()}
    for lang in SUPPORTED_LANGUAGES:
        if lang not in languages:
            problems.append(f"languages: '{lang}' is missing")
    countries = {str(k): {str(lang): str(v) for lang, v in (names or {}).items()}
                 for k, names in (data.get("countries") or {}).items()}
    for code in COUNTRIES:
        if not (countries.get(code) or {}).get("en"):
            problems.append(f"countries: '{code}' needs at least an English name")
    commands = {str(k): {str(lang): str(v) for lang, v in (desc or {}).items()}
                for k, desc in (data.get("commands") or {}).items()}
    for command in COMMANDS:
        descriptions = commands.get(command) or {}
        if not descriptions.get("en"):
            problems.append(f"commands: '{command}' needs at least an English description")
        for lang, text in descriptions.items():
            if not 3 <= len(text) <= 256:
                problems.append(f"commands: '{command}' ({lang}) must be 3 to 256 characters")
    if problems:
        raise ValueError(f"{path}: " + "; ".join(problems))
    return TelegramTexts(texts, languages, countries, commands)


class PerChatUpdateProcessor(BaseUpdateProcessor):
    """Processes the updates of one chat one after the other, and different chats in parallel.

    Python-telegram-bot's base class limits how many updates are *in flight* (waiting included,
    ``max_pending``); this class limits how many are *worked on* at once (``workers``), and a
    chat waiting for its own earlier update does not hold a worker slot, so one user sending many
    messages cannot stall everyone else. The per-chat locks are FIFO, so a chat's updates are
    handled in the order Telegram delivered them.
    """

    def __init__(self, workers: int, max_pending: Optional[int] = None) -> None:
        super().__init__(max_pending or max(workers * 16, 64))
        if workers < 1:
            raise ValueError("workers must be a positive integer")
        self.workers = workers
        self._work = asyncio.Semaphore(workers)
        self._locks: Dict[Any, asyncio.Lock] = {}
        self._users: Dict[Any, int] = {}

    @staticmethod
    def _chat_key(update: object) -> Any:
        if isinstance(update, Update):
            if update.effective_chat is not None:
                return ("chat", update.effective_chat.id)
            if update.effective_user is not None:
                return ("user", update.effective_user.id)
        return None

    async def do_process_update(self, update: object, coroutine) -> None:
        key = self._chat_key(update)
        if key is None:
            async with self._work:
                await coroutine
            return
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        self._users[key] = self._users.get(key, 0) + 1
        try:
            async with lock:
                async with self._work:
                    await coroutine
        finally:
            self._users[key] -= 1
            if not self._users[key]:
                del self._users[key]
                self._locks.pop(key, None)

    async def initialize(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass


class _BoundedKeys:
    """An insertion-ordered set (or map) that forgets the oldest entries beyond ``size``."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._data: "OrderedDict[str, Any]" = OrderedDict()

    def __contains__(self, key: str) -> bool:
        return key in self._data

    def get(self, key: str, default: Any = None) -> Any:
        return self._data.get(key, default)

    def put(self, key: str, value: Any = True) -> None:
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self.size:
            self._data.popitem(last=False)

    def pop(self, key: str) -> None:
        self._data.pop(key, None)

    def __len__(self) -> int:
        return len(self._data)


def protect_logs() -> None:
    """Keep python-telegram-bot's DEBUG update dumps and httpx's token-bearing URLs out of logs."""
    for name, level in (("telegram", logging.INFO), ("httpx", logging.WARNING)):
        log = logging.getLogger(name)
        if log.level < level:  # NOTSET (0) included
            log.setLevel(level)


@dataclass
class _Turn:
    """What the handlers need to know about the user of a private update."""

    chat_id: int
    sender: str
    lang: str
    metadata: Dict[str, Any]


class TelegramChannel:
    """The Telegram channel of the gateway (see the module docstring).

    Args:
        settings: gateway settings (token, API URL, webhook URL and secret, HMAC key, tracker
            store URL, flood limit).
        request: optional python-telegram-bot request object for Bot API calls (tests);
            default: an HTTPX pool of ``2 * concurrency + 4`` connections.
        get_updates_request: optional request object for getUpdates (polling only);
            default: its own pool of 2 connections.
        concurrency: how many updates are worked on at once (different chats).
        texts_path: the gateway texts (``data/telegram.yml``).
        poll_timeout_s: long-polling timeout for getUpdates.
        typing_delay_s: show "typing…" only when Rasa takes longer than this.
        send_retries: extra attempts for a message that failed with a network error.
        retry_backoff_s: first pause between those attempts (doubles each time).

    Raises:
        ValueError: without a token, or with a webhook URL but no valid secret.
    """

    def __init__(self, settings: Settings, *, request: Optional[BaseRequest] = None,
                 get_updates_request: Optional[BaseRequest] = None, concurrency: int = 16,
                 texts_path: Path = TEXTS_PATH, poll_timeout_s: float = 10.0,
                 typing_delay_s: float = 0.25, send_retries: int = 3,
                 retry_backoff_s: float = 0.5) -> None:
        if not settings.telegram_token:
            raise ValueError("TELEGRAM_BOT_TOKEN is not set")
        if settings.telegram_webhook_url:
            secret = settings.telegram_webhook_secret
            if not secret or len(secret) > 256 or not all(
                    c.isascii() and (c.isalnum() or c in "_-") for c in secret):
                raise ValueError("webhook mode needs TELEGRAM_WEBHOOK_SECRET: 1-256 characters "
                                 "of A-Z, a-z, 0-9, _ and -")
        protect_logs()
        self.settings = settings
        self.texts = load_texts(texts_path)
        self.concurrency = concurrency
        self.poll_timeout_s = poll_timeout_s
        self.typing_delay_s = typing_delay_s
        self.send_retries = send_retries
        self.retry_backoff_s = retry_backoff_s
        self._request = request
        self._get_updates_request = get_updates_request
        self._key = settings.hmac_key
        self.conversation: Optional[Conversation] = None
        self.application: Optional[Application] = None
        self._limiter = RateLimiter(settings.rate_limit_per_minute)
        self._flood_noted = RateLimiter(1)
        self._groups_seen = _BoundedKeys(10_000)
        self._language_choice = _BoundedKeys(50_000)
        self._recent_updates: Deque[int] = deque(maxlen=2000)
        self._start_task: Optional[asyncio.Task] = None
        # callback data ↔ payload
        self._accepted: Set[str] = set()
        self._by_key: Dict[str, str] = {}
        self._own_payloads = ({language_payload(c) for c in SUPPORTED_LANGUAGES}
                              | {country_payload(c) for c in COUNTRIES})
        self.register_payloads(load_payloads(ROOT / "domain") | self._own_payloads)

    # ------------------------------------------------------------------ payloads and buttons
    def register_payloads(self, payloads: Iterable[str]) -> None:
        """Accept these payloads from buttons (and resolve their short keys)."""
        for payload in payloads:
            self._accepted.add(payload)
            self._by_key[callback_key(payload)] = payload

    def callback_data(self, payload: str) -> str:
        """The ``callback_data`` for a button payload (≤ 64 bytes)."""
        if payload not in self._accepted:
            logger.warning("a button payload is not in the domain; pressing it will not work")
        if (len(payload.encode("utf-8")) <= MAX_CALLBACK_BYTES
                and not payload.startswith(("k:", "forget:"))):
            return payload
        return callback_key(payload)

    def resolve_callback(self, data: str) -> Optional[str]:
        """The payload a button's callback data stands for, or None if it is unknown."""
        if data.startswith("k:"):
            return self._by_key.get(data)
        return data if data in self._accepted else None

    def keyboard(self, buttons: List[Dict[str, Any]]) -> Optional[InlineKeyboardMarkup]:
        rows = []
        for button in buttons:
            if not isinstance(button, dict):
                continue
            title = str(button.get("title") or "").strip()
            payload = str(button.get("payload") or "").strip()
            if title and payload:
                rows.append([InlineKeyboardButton(title[:200], callback_data=self.callback_data(payload))])
        return InlineKeyboardMarkup(rows) if rows else None

    # ------------------------------------------------------------------ lifecycle
    def _build_application(self) -> Application:
        builder = (
            Application.builder()
            .token(self.settings.telegram_token)
            .base_url(f"{self.settings.telegram_api_url}/bot")
            .base_file_url(f"{self.settings.telegram_api_url}/file/bot")
            .rate_limiter(AIORateLimiter(max_retries=3))
            .concurrent_updates(PerChatUpdateProcessor(self.concurrency))
            .job_queue(None)
        )
        if self._request is not None:
            builder = builder.request(self._request)
        else:
            builder = builder.connection_pool_size(2 * self.concurrency + 4).pool_timeout(10.0)
        if self.settings.telegram_webhook_url:
            builder = builder.updater(None)
        elif self._get_updates_request is not None:
            builder = builder.get_updates_request(self._get_updates_request)
        else:
            builder = builder.get_updates_connection_pool_size(2)
        app = builder.build()
        self._add_handlers(app)
        return app

    def _add_handlers(self, app: Application) -> None:
        private = filters.ChatType.PRIVATE
        app.add_handler(TypeHandler(Update, self._gate), group=-1)
        app.add_handler(CommandHandler(list(COMMAND_PAYLOADS), self._on_payload_command, filters=private))
        app.add_handler(CommandHandler("language", self._on_language, filters=private))
        app.add_handler(CommandHandler("country", self._on_country, filters=private))
        app.add_handler(CommandHandler("forget", self._on_forget, filters=private))
        app.add_handler(CallbackQueryHandler(self._on_callback))
        app.add_handler(MessageHandler(private & filters.TEXT, self._on_text))
        app.add_handler(MessageHandler(private & filters.ATTACHMENT, self._on_media))
        app.add_error_handler(self._on_error)

    @property
    def bot(self):
        return self.application.bot

    @property
    def running(self) -> bool:
        """True once the channel receives updates (polling started or webhook registered)."""
        app = self.application
        return bool(app is not None and app.running and self._start_task is None
                    and (self.settings.telegram_webhook_url or app.updater.running))

    async def start(self, conversation: Conversation) -> None:
        """Start the channel (called from the gateway's lifespan).

        Polling when ``TELEGRAM_WEBHOOK_URL`` is empty, else registers the webhook. If Telegram
        cannot be reached, the gateway keeps running (the web chat is not affected) and the
        channel retries in the background.

        Raises:
            telegram.error.InvalidToken: the token was rejected.
        """
        self.conversation = conversation
        self.register_payloads(conversation.payloads)
        self.application = self._build_application()
        try:
            await self._bring_up()
        except InvalidToken:
            raise
        except (NetworkError, RetryAfter) as exc:
            logger.warning("Telegram not reachable at start (%s); retrying in the background",
                           type(exc).__name__)
            self._start_task = asyncio.create_task(self._retry_bring_up())

    async def _retry_bring_up(self) -> None:
        delay = 2.0
        while True:
            await asyncio.sleep(delay)
            try:
                await self._bring_up()
                logger.info("Telegram channel started after a retry")
                self._start_task = None
                return
            except InvalidToken:
                logger.error("the Telegram bot token was rejected; the Telegram channel is off")
                return
            except (NetworkError, RetryAfter) as exc:
                logger.warning("Telegram still not reachable (%s)", type(exc).__name__)
                delay = min(delay * 2, 300.0)

    async def _bring_up(self) -> None:
        app = self.application
        await app.initialize()  # getMe
        await self._set_commands()
        if not app.running:
            await app.start()
        if self.settings.telegram_webhook_url:
            await app.bot.set_webhook(
                self.settings.telegram_webhook_url,
                secret_token=self.settings.telegram_webhook_secret,
                allowed_updates=Update.ALL_TYPES,
                drop_pending_updates=False,
            )
            logger.info("Telegram channel started (webhook)")
        elif not app.updater.running:
            await app.updater.start_polling(
                poll_interval=0.0,
                timeout=self.poll_timeout_s,
                allowed_updates=Update.ALL_TYPES,
                drop_pending_updates=False,
            )
            logger.info("Telegram channel started (polling)")

    async def _set_commands(self) -> None:
        try:
            for lang in (None,) + tuple(l for l in SUPPORTED_LANGUAGES if l != "en"):
                commands = [BotCommand(name, self.texts.commands[name].get(lang or "en")
                                       or self.texts.commands[name]["en"])
                            for name in COMMANDS]
                await self.application.bot.set_my_commands(commands, language_code=lang)
        except (BadRequest, RetryAfter) as exc:  # the menu is nice to have, not essential
            logger.warning("could not set the Telegram command menu (%s)", type(exc).__name__)

    async def stop(self) -> None:
        """Stop polling and the application (the webhook stays registered for the next start)."""
        if self._start_task is not None:
            self._start_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._start_task
            self._start_task = None
        app = self.application
        if app is None:
            return
        if app.updater is not None and app.updater.running:
            await app.updater.stop()
        if app.running:
            await app.stop()
        await app.shutdown()

    # ------------------------------------------------------------------ webhook
    async def webhook_endpoint(self, request: Request) -> Response:
        """``POST /telegram``: check the secret header, queue the update, answer at once."""
        secret = self.settings.telegram_webhook_secret
        given = request.headers.get("x-telegram-bot-api-secret-token", "")
        if not secret or not hmac.compare_digest(given.encode("utf-8"), secret.encode("utf-8")):
            logger.warning("Telegram webhook call with a wrong or missing secret refused")
            return JSONResponse({"error": "forbidden"}, status_code=403)
        app = self.application
        if app is None or not app.running:
            return JSONResponse({"error": "starting"}, status_code=503)
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_WEBHOOK_BYTES:
                return JSONResponse({"error": "too_large"}, status_code=413)
        try:
            data = json.loads(body.decode("utf-8"))
            if not isinstance(data, dict) or not isinstance(data.get("update_id"), int):
                raise ValueError("not an update")
            update = Update.de_json(data, app.bot)
        except Exception as exc:  # noqa: BLE001 - anything malformed is a 400, never a 500
            logger.warning("Telegram webhook: unreadable update (%s)", type(exc).__name__)
            return JSONResponse({"error": "bad_update"}, status_code=400)
        if update.update_id in self._recent_updates:  # Telegram re-delivered it
            return JSONResponse({"ok": True})
        self._recent_updates.append(update.update_id)
        await app.update_queue.put(update)
        return JSONResponse({"ok": True})

    # ------------------------------------------------------------------ helpers
    def _turn(self, update: Update) -> _Turn:
        user = update.effective_user
        sender = privacy.sender_id(self._key, "telegram", str(user.id))
        metadata: Dict[str, Any] = {"channel": "telegram", "chat_type": "private"}
        code = language_tag(getattr(user, "language_code", None))
        if code:
            metadata["language_hint"] = code
        choice = self._language_choice.get(sender)
        if choice:
            metadata["language_choice"] = choice
        chat = update.effective_chat
        return _Turn(chat_id=chat.id if chat is not None else user.id, sender=sender,
                     lang=guess_language(metadata), metadata=metadata)

    def text(self, kind: str, lang: str, **values: Any) -> str:
        if kind in self.texts.texts:
            return self.texts.get(kind, lang, **values)
        variants = (self.conversation.failsafe_texts if self.conversation else {}).get(kind) or {}
        return variants.get(lang) or variants.get("en", "")

    async def _send(self, chat_id: int, text: str,
                    markup: Optional[InlineKeyboardMarkup] = None) -> bool:
        """Send one message (plain text); retry network errors with backoff. True if sent."""
        for attempt in range(self.send_retries + 1):
            try:
                await self.bot.send_message(
                    chat_id, text, reply_markup=markup,
                    link_preview_options=LinkPreviewOptions(is_disabled=True))
                return True
            except Forbidden:
                logger.info("Telegram: the user blocked the bot or the chat is gone")
                return False
            except BadRequest as exc:
                logger.warning("Telegram refused a message (%s)", type(exc).__name__)
                return False
            except (NetworkError, RetryAfter) as exc:
                if attempt == self.send_retries:
                    logger.warning("Telegram: message not sent after %d attempts (%s)",
                                   attempt + 1, type(exc).__name__)
                    return False
                pause = self.retry_backoff_s * 2 ** attempt
                if isinstance(exc, RetryAfter):
                    pause = max(pause, exc.retry_after.total_seconds()
                                if hasattr(exc.retry_after, "total_seconds") else float(exc.retry_after))
                await asyncio.sleep(pause)
            except TelegramError as exc:
                logger.warning("Telegram: message not sent (%s)", type(exc).__name__)
                return False
        return False

    async def _send_reply(self, chat_id: int, messages: List[Dict[str, Any]], lang: str) -> None:
        for message in messages:
            text = str(message.get("text") or "").strip()
            markup = self.keyboard(message.get("buttons") or [])
            parts = split_message(text) if text else []
            if not parts:
                if markup is None:
                    continue
                parts = [self.text("choose", lang)]
            for i, part in enumerate(parts):
                await self._send(chat_id, part, markup if i == len(parts) - 1 else None)

    @contextlib.asynccontextmanager
    async def _typing(self, chat_id: int):
        async def keep_typing() -> None:
            await asyncio.sleep(self.typing_delay_s)
            while True:
                try:
                    await self.bot.send_chat_action(chat_id, ChatAction.TYPING)
                except TelegramError as exc:
                    logger.debug("typing indicator failed (%s)", type(exc).__name__)
                await asyncio.sleep(4.5)  # Telegram shows it for about 5 seconds

        task = asyncio.create_task(keep_typing())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _converse(self, turn: _Turn, text: str) -> None:
        """Send prepared text (or an accepted payload) to Rasa and the answer to the user."""
        async with self._typing(turn.chat_id):
            reply = await self.conversation.handle(turn.sender, text, turn.metadata,
                                                   language=turn.lang)
        logger.debug("telegram: answered with %d message(s), failsafe=%s",
                     len(reply.messages), reply.failsafe)
        await self._send_reply(turn.chat_id, reply.messages, turn.lang)

    # ------------------------------------------------------------------ handlers
    async def _gate(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Runs first for every update: groups, flood limit, edits, and updates we ignore."""
        if not isinstance(update, Update):
            raise ApplicationHandlerStop
        chat = update.effective_chat
        if chat is not None and chat.type != ChatType.PRIVATE:
            await self._group_note(update)
            raise ApplicationHandlerStop
        if update.effective_user is None or (update.effective_message is None
                                             and update.callback_query is None):
            raise ApplicationHandlerStop  # e.g. the user blocked the bot: nothing to say
        if update.message is None and update.edited_message is None and update.callback_query is None:
            raise ApplicationHandlerStop  # business messages, channel posts, …
        turn = self._turn(update)
        if not self._limiter.allow(turn.sender):
            if update.callback_query is not None:
                with contextlib.suppress(TelegramError):
                    await update.callback_query.answer()
            if self._flood_noted.allow(turn.sender):
                await self._send(turn.chat_id, self.text("flood", turn.lang))
            raise ApplicationHandlerStop
        if update.edited_message is not None:
            await self._send(turn.chat_id, self.text("edited", turn.lang))
            raise ApplicationHandlerStop

    async def _group_note(self, update: Update) -> None:
        chat = update.effective_chat
        key = privacy.sender_id(self._key, "telegram-chat", str(chat.id))
        member = update.my_chat_member
        if member is not None and member.new_chat_member.status in (ChatMember.LEFT, ChatMember.BANNED):
            self._groups_seen.pop(key)  # removed: say hello again if added back
            return
        if update.effective_message is None and member is None:
            return
        if key in self._groups_seen:
            return
        self._groups_seen.put(key)
        username = self.bot.username
        link = f"https://t.me/{username}" if username else "https://t.me"
        lang = guess_language({"language_hint": getattr(update.effective_user, "language_code", None)})
        markup = None
        if username:
            markup = InlineKeyboardMarkup(
                [[InlineKeyboardButton(self.text("group_button", lang), url=link)]])
        await self._send(chat.id, self.text("group", lang, link=link), markup)

    async def _on_payload_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        command = update.effective_message.text.split()[0].lstrip("/").split("@")[0].lower()
        await self._converse(self._turn(update), COMMAND_PAYLOADS[command])

    async def _on_language(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        turn = self._turn(update)
        markup = InlineKeyboardMarkup(
            [[InlineKeyboardButton(self.texts.languages[code], callback_data=language_payload(code))]
             for code in SUPPORTED_LANGUAGES])
        await self._send(turn.chat_id, self.text("language_prompt", turn.lang), markup)

    async def _on_country(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        turn = self._turn(update)
        rows = []
        for code in COUNTRIES:
            names = self.texts.countries[code]
            rows.append([InlineKeyboardButton(names.get(turn.lang) or names["en"],
                                              callback_data=country_payload(code))])
        await self._send(turn.chat_id, self.text("country_prompt", turn.lang), InlineKeyboardMarkup(rows))

    async def _on_forget(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        turn = self._turn(update)
        markup = InlineKeyboardMarkup([
            [InlineKeyboardButton(self.text("forget_yes", turn.lang), callback_data=FORGET_YES)],
            [InlineKeyboardButton(self.text("forget_no", turn.lang), callback_data=FORGET_NO)],
        ])
        await self._send(turn.chat_id, self.text("forget_question", turn.lang), markup)

    async def _on_callback(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        try:
            await query.answer()
        except TelegramError as exc:  # too old to answer: still act on it
            logger.debug("could not answer a callback query (%s)", type(exc).__name__)
        turn = self._turn(update)
        data = query.data or ""
        if data == FORGET_YES:
            await self._forget(turn)
            return
        if data == FORGET_NO:
            await self._send(turn.chat_id, self.text("forget_cancelled", turn.lang))
            return
        payload = self.resolve_callback(data)
        if payload is None:
            await self._send(turn.chat_id, self.text("expired", turn.lang))
            return
        for code in SUPPORTED_LANGUAGES:
            if payload == language_payload(code):
                self._language_choice.put(turn.sender, code)
                turn.metadata["language_choice"] = code
                turn.lang = code
        await self._converse(turn, payload)

    async def _forget(self, turn: _Turn) -> None:
        try:
            await asyncio.to_thread(privacy.forget, self.settings.tracker_store_url, turn.sender)
        except Exception as exc:  # noqa: BLE001 - tell the user instead of failing silently
            logger.error("could not erase a Telegram conversation (%s)", type(exc).__name__)
            await self._send(turn.chat_id, self.text("forget_failed", turn.lang))
            return
        self._language_choice.pop(turn.sender)
        await self._send(turn.chat_id, self.text("forget_done", turn.lang))

    async def _on_text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        turn = self._turn(update)
        raw = message.text or ""
        text = self.conversation.prepare(raw)
        if not text:
            await self._send(turn.chat_id, self.text("empty", turn.lang))
            return
        await self._converse(turn, text)
        if message.forward_origin is not None:
            await self._send(turn.chat_id, self.text("forwarded", turn.lang))
        max_chars = self.conversation.max_chars
        if len(clean_text(raw, len(raw) + 1)) > max_chars:
            await self._send(turn.chat_id, self.text("truncated", turn.lang, max_chars=max_chars))

    async def _on_media(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        turn = self._turn(update)
        await self._send(turn.chat_id, self.text("text_only", turn.lang))
        if update.effective_message.forward_origin is not None:
            await self._send(turn.chat_id, self.text("forwarded", turn.lang))

    async def _on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Log (without user data) and, for a private update, still give the user an answer."""
        error = context.error
        if isinstance(error, (NetworkError, RetryAfter)):
            logger.warning("Telegram network problem (%s); continuing", type(error).__name__)
            return
        if isinstance(error, TelegramError):
            logger.warning("Telegram error (%s); continuing", type(error).__name__)
            return
        logger.error("error while handling a Telegram update (%s)", type(error).__name__,
                     exc_info=(type(error), error, error.__traceback__) if error else None)
        if (isinstance(update, Update) and update.effective_chat is not None
                and update.effective_chat.type == ChatType.PRIVATE and self.conversation):
            lang = guess_language({"language_hint": getattr(update.effective_user, "language_code", None)})
            await self._send(update.effective_chat.id, self.text("unavailable", lang))
