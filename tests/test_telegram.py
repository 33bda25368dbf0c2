"""The Telegram channel (bot/channels/telegram.py) against a fake Bot API server on loopback.

Unit-level tests run python-telegram-bot for real (polling, or the webhook route of the gateway)
against tests/telegram/fake_bot_api.py, with a fake Rasa (httpx.MockTransport). The e2e tests at
the end use the real Rasa, action server and tracker store from the ``stack`` fixture.
Nothing here talks to api.telegram.org.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

import httpx
import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from bot import privacy
from bot.app import create_app
from bot.channels.telegram import (
    COMMANDS,
    COUNTRIES,
    MAX_CALLBACK_BYTES,
    PerChatUpdateProcessor,
    TelegramChannel,
    callback_key,
    load_texts,
    split_message,
)
from bot.conversation import Conversation, load_failsafe, load_payloads
from bot.rasa_client import RasaClient
from bot.settings import ROOT, SUPPORTED_LANGUAGES, Settings
from tests.telegram import fake_bot_api as fb
from tests.telegram.fake_bot_api import TOKEN, FakeBotAPI

KEY = "test-key-" + "x" * 24
FAILSAFE = load_failsafe(ROOT / "data" / "failsafe.yml")
TEXTS = load_texts()
DOMAIN_PAYLOADS = load_payloads(ROOT / "domain")
PARENT = '/set_audience{"audience":"parent"}'
LONG_PAYLOAD = '/choose_need{"need":"radicalisation","detail":"' + "x" * 60 + '"}'
SECRET = "webhook-secret_0123456789"


def note(kind: str, lang: str = "en", **values) -> str:
    return TEXTS.get(kind, lang, **values)


def sender_of(user_id: int) -> str:
    return privacy.sender_id(KEY.encode(), "telegram", str(user_id))


@pytest.fixture(autouse=True)
def hmac_key(monkeypatch):
    monkeypatch.setenv("SIGNPOST_HMAC_KEY", KEY)


@pytest.fixture(scope="session")
def bot_api():
    server = FakeBotAPI().start()
    yield server
    server.stop()


@pytest.fixture
def api(bot_api):
    bot_api.reset()
    yield bot_api
    bot_api.reset()


class FakeRasa:
    """Stands in for Rasa's REST webhook; ``reply(body)`` returns messages, a Response or raises."""

    def __init__(self, reply: Optional[Callable[[dict], Any]] = None) -> None:
        self.bodies: List[dict] = []
        self.reply = reply or (lambda body: [{"text": f"echo: {body['message']}"}])

    async def handler(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.bodies.append(body)
        result = self.reply(body)
        if asyncio.iscoroutine(result):
            result = await result
        if isinstance(result, BaseException):
            raise result
        if isinstance(result, httpx.Response):
            return result
        return httpx.Response(200, json=result)

    def client(self) -> RasaClient:
        return RasaClient(["http://rasa.test"], timeout_s=5, transport=httpx.MockTransport(self.handler))

    @property
    def messages(self) -> List[str]:
        return [b["message"] for b in self.bodies]


def make_settings(api: FakeBotAPI, tmp_path, **overrides) -> Settings:
    values = dict(rasa_urls=["http://rasa.test"], tracker_store_url=f"sqlite:///{tmp_path / 'tracker.db'}",
                  telegram_token=TOKEN, telegram_api_url=api.url, rate_limit_per_minute=1000)
    values.update(overrides)
    return Settings(**values)


@dataclass
class Running:
    channel: TelegramChannel
    rasa: FakeRasa
    conversation: Conversation
    settings: Settings


@pytest.fixture
async def telegram(api, tmp_path):
    """``await telegram(reply=..., **settings)`` starts a polling channel; all are stopped after."""
    started: List[Running] = []

    async def start(reply=None, payloads=(), channel_kwargs=None, **settings_overrides) -> Running:
        rasa = FakeRasa(reply)
        settings = make_settings(api, tmp_path, **settings_overrides)
        conversation = Conversation(rasa=rasa.client(), payloads=DOMAIN_PAYLOADS | set(payloads),
                                    failsafe_texts=FAILSAFE, max_chars=settings.max_message_chars)
        # as the gateway starts (bot/app.py on_startup): patterns loaded before the channel,
        # so the first message is not slower than settle()'s quiet window
        await asyncio.to_thread(conversation.load_safety)
        kwargs = dict(poll_timeout_s=1, typing_delay_s=0, retry_backoff_s=0.05)
        kwargs.update(channel_kwargs or {})
        channel = TelegramChannel(settings, **kwargs)
        await channel.start(conversation)
        assert channel.running, "the channel did not start against the fake Bot API"
        running = Running(channel, rasa, conversation, settings)
        started.append(running)
        return running

    yield start
    for running in started:
        await running.channel.stop()
        await running.conversation.rasa.close()


def markup_rows(call: dict) -> List[List[dict]]:
    return (call.get("reply_markup") or {}).get("inline_keyboard") or []


def plant_events(url: str, senders: Dict[str, int]) -> None:
    privacy.ensure_events_table(url)
    engine = privacy.engine_for(url)
    with engine.begin() as conn:
        for sender, count in senders.items():
            for i in range(count):
                conn.execute(sa.insert(privacy.EVENTS).values(
                    sender_id=sender, type_name="user", timestamp=time.time() - 100 + i,
                    intent_name="greet", action_name=None, data="{}"))


def count_events(url: str, sender: str) -> int:
    with privacy.engine_for(url).connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(privacy.EVENTS)
                            .where(privacy.EVENTS.c.sender_id == sender)).scalar_one()


# ---------------------------------------------------------------------------- pure functions
def test_texts_file_has_every_text_in_every_language():
    for kind, variants in TEXTS.texts.items():
        for lang in SUPPORTED_LANGUAGES:
            assert variants.get(lang, "").strip(), f"{kind} has no {lang} text"
    for code in COUNTRIES:
        assert set(TEXTS.countries[code]) >= set(SUPPORTED_LANGUAGES)
    for command in COMMANDS:
        assert set(TEXTS.commands[command]) >= set(SUPPORTED_LANGUAGES)
    assert "describe what you got in words" in note("text_only")
    assert "{link}" not in note("group", link="https://t.me/x") and "https://t.me/x" in note("group", link="https://t.me/x")


def test_texts_file_problems_are_reported(tmp_path):
    bad = tmp_path / "telegram.yml"
    bad.write_text((ROOT / "data" / "telegram.yml").read_text(encoding="utf-8")
                   .replace("open {link}", "open the link"), encoding="utf-8")
    with pytest.raises(ValueError, match=r"'group' \(en\) must contain \{link\}"):
        load_texts(bad)


def test_split_message_prefers_paragraphs_then_lines_then_words():
    paragraphs = [f"Paragraph {i}. " + "word " * 180 for i in range(10)]  # ~920 chars each
    text = "\n\n".join(p.strip() for p in paragraphs)
    assert len(text) > 9000
    parts = split_message(text)
    assert len(parts) == 3 and all(len(p) <= 4096 for p in parts)
    assert "\n\n".join(parts) == text  # only cut at paragraph breaks
    for part in parts:
        assert part.startswith("Paragraph ")
    # one huge paragraph of lines → cut at line breaks
    lines = "\n".join("line %d " % i + "y" * 90 for i in range(100))
    parts = split_message(lines, 1000)
    assert all(len(p) <= 1000 for p in parts) and "\n".join(parts) == lines
    # one huge line of words → cut between words; a monster word is cut hard
    words = " ".join(["word"] * 600)
    parts = split_message(words, 100)
    assert all(len(p) <= 100 for p in parts) and " ".join(parts) == words
    assert split_message("z" * 250, 100) == ["z" * 100, "z" * 100, "z" * 50]
    # Telegram counts UTF-16 units: emoji outside the BMP count twice
    parts = split_message("😀" * 100, 50)
    assert len(parts) == 4 and all(len(p) == 25 for p in parts)
    assert split_message("   ") == [] and split_message("hi") == ["hi"]


def test_callback_data_fits_and_long_payloads_map_to_short_keys(api, tmp_path):
    channel = TelegramChannel(make_settings(api, tmp_path))
    for payload in DOMAIN_PAYLOADS:
        data = channel.callback_data(payload)
        assert len(data.encode()) <= MAX_CALLBACK_BYTES
        assert data == payload and channel.resolve_callback(data) == payload
    assert len(LONG_PAYLOAD.encode()) > MAX_CALLBACK_BYTES
    channel.register_payloads({LONG_PAYLOAD})
    key = channel.callback_data(LONG_PAYLOAD)
    assert key == "k:" + hashlib.sha256(LONG_PAYLOAD.encode()).hexdigest()[:20] == callback_key(LONG_PAYLOAD)
    assert len(key.encode()) <= MAX_CALLBACK_BYTES
    assert channel.resolve_callback(key) == LONG_PAYLOAD
    # another gateway instance with the same payloads resolves the same key
    other = TelegramChannel(make_settings(api, tmp_path))
    assert other.resolve_callback(key) is None
    other.register_payloads({LONG_PAYLOAD})
    assert other.resolve_callback(key) == LONG_PAYLOAD
    # anything else is refused
    assert channel.resolve_callback("/crisis_self_harm") is None
    assert channel.resolve_callback("k:" + "0" * 20) is None
    assert channel.resolve_callback('/inform_country{"country":"IE"}') == '/inform_country{"country":"IE"}'


def test_webhook_mode_needs_a_valid_secret(api, tmp_path):
    for secret in ("", "has space", "x" * 257, "ümlaut"):
        with pytest.raises(ValueError, match="TELEGRAM_WEBHOOK_SECRET"):
            TelegramChannel(make_settings(api, tmp_path, telegram_webhook_url="https://example.test/telegram",
                                          telegram_webhook_secret=secret))
    with pytest.raises(ValueError, match="TELEGRAM_BOT_TOKEN"):
        TelegramChannel(make_settings(api, tmp_path, telegram_token=""))


# ---------------------------------------------------------------------------- polling
async def test_start_registers_commands_and_greets_with_metadata(api, telegram):
    running = await telegram(reply=lambda b: [{"text": "Hi, I'm Signpost."}])
    commands = api.calls("setMyCommands")
    assert sorted(c.get("language_code") or "" for c in commands) == ["", "ar", "de", "fr"]
    default = next(c for c in commands if not c.get("language_code"))
    assert [c["command"] for c in default["commands"]] == list(COMMANDS)
    german = next(c for c in commands if c.get("language_code") == "de")
    assert german["commands"][0]["description"] == TEXTS.commands["start"]["de"]
    gets = await api.await_for(lambda c: bool(c), method="getUpdates")
    assert set(gets[0]["allowed_updates"]) >= {"message", "edited_message", "callback_query", "my_chat_member"}

    alex = fb.user(language_code="de")
    api.add_update(fb.command_update("/start", alex))
    sent = await api.await_for(lambda c: len(c) >= 1, method="sendMessage")
    assert sent[0]["chat_id"] == alex["id"] and sent[0]["text"] == "Hi, I'm Signpost."
    assert "parse_mode" not in sent[0]
    assert running.rasa.bodies == [{
        "sender": sender_of(alex["id"]), "message": "/greet",
        "metadata": {"channel": "telegram", "chat_type": "private", "language_hint": "de"}}]


async def test_help_and_stop_commands_send_their_payloads(api, telegram):
    running = await telegram()
    api.add_update(fb.command_update("/help"))
    await api.await_for(lambda c: len(c) == 1, method="sendMessage")
    api.add_update(fb.command_update("/stop@SignpostTestBot"))
    await api.await_for(lambda c: len(c) == 2, method="sendMessage")
    assert running.rasa.messages == ["/help_menu", "/stop"]


async def test_buttons_become_an_inline_keyboard_and_pressing_sends_the_payload(api, telegram):
    def reply(body):
        if body["message"] == "/greet":
            return [{"text": "Who are you asking for?",
                     "buttons": [{"title": "Myself", "payload": '/set_audience{"audience":"teen"}'},
                                 {"title": "A young person", "payload": PARENT},
                                 {"title": "Long one", "payload": LONG_PAYLOAD}]}]
        return [{"text": f"got {body['message']}"}]

    running = await telegram(reply=reply, payloads={LONG_PAYLOAD})
    api.add_update(fb.command_update("/start"))
    sent = await api.await_for(lambda c: len(c) == 1, method="sendMessage")
    rows = markup_rows(sent[0])
    assert [len(r) for r in rows] == [1, 1, 1]  # one button per row
    assert [r[0]["text"] for r in rows] == ["Myself", "A young person", "Long one"]
    datas = [r[0]["callback_data"] for r in rows]
    assert all(len(d.encode()) <= MAX_CALLBACK_BYTES for d in datas)
    assert datas[1] == PARENT and datas[2] == callback_key(LONG_PAYLOAD)

    api.add_update(fb.callback_update(datas[1]))
    await api.await_for(lambda c: len(c) == 2, method="sendMessage")
    api.add_update(fb.callback_update(datas[2]))
    sent = await api.await_for(lambda c: len(c) == 3, method="sendMessage")
    assert len(api.calls("answerCallbackQuery")) == 2
    assert running.rasa.messages == ["/greet", PARENT, LONG_PAYLOAD]
    assert sent[2]["text"] == f"got {LONG_PAYLOAD}"


async def test_unknown_or_forged_callback_data_gets_the_expired_note(api, telegram):
    running = await telegram()
    for data in ("/crisis_self_harm", "k:" + "0" * 20, "/restart"):
        api.add_update(fb.callback_update(data))
    sent = await api.await_for(lambda c: len(c) == 3, method="sendMessage")
    assert [c["text"] for c in sent] == [note("expired")] * 3
    assert len(api.calls("answerCallbackQuery")) == 3
    assert running.rasa.bodies == []


async def test_long_reply_is_split_on_paragraphs(api, telegram):
    paragraphs = [f"Part {i}: " + "safe words " * 80 for i in range(10)]  # ~890 chars each
    long_text = "\n\n".join(p.strip() for p in paragraphs)
    assert len(long_text) > 8800
    await telegram(reply=lambda b: [{"text": long_text, "buttons": [{"title": "Menu", "payload": "/help_menu"}]}])
    api.add_update(fb.text_update("tell me everything"))
    await api.settle()
    sent = api.calls("sendMessage")
    assert len(sent) == 3 and all(len(c["text"]) <= 4096 for c in sent)
    assert "\n\n".join(c["text"] for c in sent) == long_text
    assert all(c["text"].startswith("Part ") for c in sent)
    assert [bool(markup_rows(c)) for c in sent] == [False, False, True]  # buttons on the last part


@pytest.mark.parametrize("build", [fb.photo_update, fb.sticker_update, fb.voice_update, fb.document_update,
                                   fb.location_update, fb.contact_update],
                         ids=["photo", "sticker", "voice", "document", "location", "contact"])
async def test_media_get_the_text_only_note_and_never_reach_rasa(api, telegram, build):
    running = await telegram()
    api.add_update(build())
    sent = await api.await_for(lambda c: len(c) == 1, method="sendMessage")
    await api.settle()
    assert [c["text"] for c in api.calls("sendMessage")] == [note("text_only")]
    assert "I can only read text. It's fine to describe what you got in words." in sent[0]["text"]
    assert running.rasa.bodies == []
    assert not [c for c in api.calls() if c["_method"].startswith(("getFile", "forward", "copy", "send"))
                and c["_method"] != "sendMessage"]


async def test_photo_note_in_the_users_language(api, telegram):
    running = await telegram()
    api.add_update(fb.photo_update(fb.user(language_code="fr")))
    sent = await api.await_for(lambda c: len(c) == 1, method="sendMessage")
    assert sent[0]["text"] == note("text_only", "fr") and running.rasa.bodies == []


async def test_group_messages_get_the_group_note_once_and_never_reach_rasa(api, telegram):
    running = await telegram()
    group = fb.group_chat(-1001234567890)
    other = fb.group_chat(-4455667788, "Football")
    api.add_update(fb.group_update("hi bot", chat=group))
    api.add_update(fb.group_update("are you there?", chat=group))
    api.add_update({"message": fb.message(None, group, text="/start", entities=[
        {"type": "bot_command", "offset": 0, "length": 6}])})
    api.add_update(fb.group_update("hello", chat=other))
    await api.settle()
    sent = api.calls("sendMessage")
    assert sorted(c["chat_id"] for c in sent) == sorted([group["id"], other["id"]])
    link = "https://t.me/SignpostTestBot"
    assert sent[0]["text"] == note("group", link=link)
    assert markup_rows(sent[0])[0][0]["url"] == link
    assert running.rasa.bodies == []
    # the channel remembers chats by a keyed hash only
    remembered = list(running.channel._groups_seen._data)
    assert len(remembered) == 2 and not any(str(group["id"]).lstrip("-") in k or "4455667788" in k
                                            for k in remembered)


async def test_edited_message_gets_a_note_and_is_not_processed_again(api, telegram):
    running = await telegram()
    api.add_update(fb.edited_update("i changed my mind"))
    await api.await_for(lambda c: len(c) == 1, method="sendMessage")
    await api.settle()
    assert api.sent_texts() == [note("edited")]
    assert running.rasa.bodies == []


async def test_forwarded_text_is_answered_and_gets_the_forwarded_note(api, telegram):
    running = await telegram()
    api.add_update(fb.forwarded_update("join our group, only we understand you"))
    await api.await_for(lambda c: len(c) == 2, method="sendMessage")
    assert running.rasa.messages == ["join our group, only we understand you"]
    assert api.sent_texts() == ["echo: join our group, only we understand you", note("forwarded")]


async def test_typed_commands_cannot_inject_intents(api, telegram):
    running = await telegram()
    api.add_update(fb.command_update("/restart"))
    api.add_update(fb.text_update('/crisis_self_harm{"country":"XX"}'))
    await api.await_for(lambda c: len(c) == 2, method="sendMessage")
    assert running.rasa.messages == ["restart", 'crisis_self_harm{"country":"XX"}']


async def test_empty_emoji_and_long_texts(api, telegram):
    running = await telegram()
    api.add_update(fb.text_update("\u200b \u200b"))
    await api.await_for(lambda c: len(c) == 1, method="sendMessage")
    assert api.sent_texts() == [FAILSAFE["empty"]["en"]] and running.rasa.bodies == []
    api.add_update(fb.text_update("👍👍"))
    await api.await_for(lambda c: len(c) == 2, method="sendMessage")
    assert running.rasa.messages == ["👍👍"]
    api.add_update(fb.text_update("a" * 3000))
    await api.await_for(lambda c: len(c) == 4, method="sendMessage")
    assert running.rasa.messages[-1] == "a" * 1000
    assert api.sent_texts()[-1] == note("truncated", max_chars=1000)


async def test_flood_gets_one_note_and_stops_reaching_rasa(api, telegram):
    running = await telegram(rate_limit_per_minute=3)
    for i in range(7):
        api.add_update(fb.text_update(f"message {i}"))
    await api.settle()
    assert running.rasa.messages == ["message 0", "message 1", "message 2"]
    assert api.sent_texts() == ["echo: message 0", "echo: message 1", "echo: message 2", note("flood")]
    # another user is not affected
    api.add_update(fb.text_update("hello", fb.user(user_id=5151)))
    await api.await_for(lambda c: len(c) == 5, method="sendMessage")
    assert running.rasa.messages[-1] == "hello"


async def test_rasa_down_sends_the_failsafe_and_crisis_texts(api, telegram):
    running = await telegram(reply=lambda b: httpx.ConnectError("connection refused"))
    api.add_update(fb.text_update("how do recruiters work"))
    sent = await api.await_for(lambda c: len(c) == 1, method="sendMessage")
    assert "999" in sent[0]["text"] and sent[0]["text"] == FAILSAFE["unavailable"]["en"]
    api.add_update(fb.text_update("i want to die"))
    sent = await api.await_for(lambda c: len(c) == 2, method="sendMessage")
    assert sent[1]["text"] == FAILSAFE["crisis"]["en"] and "999" in sent[1]["text"]
    api.add_update(fb.text_update("ich will nicht mehr leben", fb.user(user_id=777, language_code="de")))
    sent = await api.await_for(lambda c: len(c) == 3, method="sendMessage")
    assert sent[2]["text"] == FAILSAFE["crisis"]["de"] and "112" in sent[2]["text"]
    assert len(running.rasa.bodies) >= 3


async def test_empty_rasa_answer_gets_the_failsafe(api, telegram):
    await telegram(reply=lambda b: [])
    api.add_update(fb.text_update("hello"))
    sent = await api.await_for(lambda c: len(c) == 1, method="sendMessage")
    assert sent[0]["text"] == FAILSAFE["unavailable"]["en"]


async def test_a_crash_in_handling_is_logged_and_the_user_still_gets_an_answer(api, telegram, caplog):
    calls = {"n": 0}

    def reply(body):
        calls["n"] += 1
        if calls["n"] == 1:
            return RuntimeError("bug in the gateway")
        return [{"text": "fine again"}]

    await telegram(reply=reply)
    with caplog.at_level(logging.ERROR, logger="bot.channels.telegram"):
        api.add_update(fb.text_update("first"))
        sent = await api.await_for(lambda c: len(c) == 1, method="sendMessage")
    assert sent[0]["text"] == FAILSAFE["unavailable"]["en"]
    assert any("RuntimeError" in r.getMessage() for r in caplog.records)
    api.add_update(fb.text_update("second"))
    sent = await api.await_for(lambda c: len(c) == 2, method="sendMessage")
    assert sent[1]["text"] == "fine again"


async def test_send_errors_are_retried(api, telegram):
    await telegram()
    api.fail("sendMessage", times=2, status=502, description="Bad Gateway")
    api.add_update(fb.text_update("one"))
    await api.await_for(lambda c: any(x.get("text") == "echo: one" for x in c) and len(c) == 3,
                        method="sendMessage")
    api.reset()
    api.fail("sendMessage", times=1, status=429, description="Too Many Requests: retry after 1",
             retry_after=1)
    api.add_update(fb.text_update("two"))
    sent = await api.await_for(lambda c: len(c) == 2, method="sendMessage", timeout=15)
    assert [c["text"] for c in sent] == ["echo: two", "echo: two"]  # first refused, then delivered
    assert sent[1]["_time"] - sent[0]["_time"] >= 0.9


async def test_typing_is_shown_while_rasa_works(api, telegram):
    async def slow(body):
        await asyncio.sleep(0.4)
        return [{"text": "done"}]

    await telegram(reply=slow)
    api.add_update(fb.text_update("hello"))
    await api.await_for(lambda c: len(c) == 1, method="sendMessage")
    typing = api.calls("sendChatAction")
    sent = api.calls("sendMessage")
    assert typing and typing[0]["action"] == "typing" and typing[0]["chat_id"] == fb.user()["id"]
    assert typing[0]["_time"] < sent[0]["_time"]


async def test_same_chat_in_order_different_chats_in_parallel(api, telegram):
    async def reply(body):
        if body["message"].startswith("slow"):
            await asyncio.sleep(0.6)
        return [{"text": f"re: {body['message']}"}]

    running = await telegram(reply=reply)
    a, b = fb.user(user_id=1001), fb.user(user_id=2002)
    api.add_update(fb.text_update("slow a1", a))
    api.add_update(fb.text_update("fast a2", a))
    api.add_update(fb.text_update("fast b1", b))
    await api.await_for(lambda c: len(c) == 3, method="sendMessage")
    texts = api.sent_texts()
    assert texts.index("re: slow a1") < texts.index("re: fast a2")  # same chat: in order
    assert texts.index("re: fast b1") < texts.index("re: slow a1")  # other chat: not blocked
    assert isinstance(running.channel.application.update_processor, PerChatUpdateProcessor)


async def test_pools_are_sized_for_the_concurrency(api, telegram):
    running = await telegram(channel_kwargs={"concurrency": 8})
    app = running.channel.application
    general, get_updates = app.bot._request[1], app.bot._request[0]
    assert general is not get_updates
    assert general._client_kwargs["limits"].max_connections >= 8
    assert get_updates._client_kwargs["limits"].max_connections >= 2
    assert app.update_processor.workers == 8


async def test_language_picker(api, telegram):
    running = await telegram()
    api.add_update(fb.command_update("/language"))
    sent = await api.await_for(lambda c: len(c) == 1, method="sendMessage")
    assert sent[0]["text"] == note("language_prompt")
    rows = markup_rows(sent[0])
    assert [r[0]["text"] for r in rows] == ["English", "Deutsch", "Français", "العربية"]
    assert rows[1][0]["callback_data"] == '/set_language{"language":"de"}'
    api.add_update(fb.callback_update(rows[1][0]["callback_data"]))
    await api.await_for(lambda c: len(c) == 2, method="sendMessage")
    assert running.rasa.bodies[-1]["message"] == '/set_language{"language":"de"}'
    assert running.rasa.bodies[-1]["metadata"]["language_choice"] == "de"
    api.add_update(fb.sticker_update())  # gateway notes now come in German
    sent = await api.await_for(lambda c: len(c) == 3, method="sendMessage")
    assert sent[2]["text"] == note("text_only", "de")
    assert len(running.rasa.bodies) == 1  # /language itself is answered by the gateway


async def test_country_picker(api, telegram):
    running = await telegram()
    api.add_update(fb.command_update("/country"))
    sent = await api.await_for(lambda c: len(c) == 1, method="sendMessage")
    rows = markup_rows(sent[0])
    assert [r[0]["callback_data"] for r in rows] == [
        '/inform_country{"country":"%s"}' % c for c in ("GB", "US", "DE", "FR", "IE", "CA", "AU", "other")]
    assert rows[0][0]["text"] == "United Kingdom"
    api.add_update(fb.callback_update(rows[4][0]["callback_data"]))
    await api.await_for(lambda c: len(c) == 2, method="sendMessage")
    assert running.rasa.messages == ['/inform_country{"country":"IE"}']


async def test_forget_confirmed_erases_only_that_users_events(api, telegram, tmp_path):
    running = await telegram()
    url = running.settings.tracker_store_url
    me, someone = sender_of(fb.user()["id"]), sender_of(99)
    plant_events(url, {me: 5, someone: 3})
    api.add_update(fb.command_update("/forget"))
    sent = await api.await_for(lambda c: len(c) == 1, method="sendMessage")
    assert sent[0]["text"] == note("forget_question")
    datas = [r[0]["callback_data"] for r in markup_rows(sent[0])]
    assert count_events(url, me) == 5  # nothing deleted before the confirmation
    api.add_update(fb.callback_update(datas[0]))
    sent = await api.await_for(lambda c: len(c) == 2, method="sendMessage")
    assert sent[1]["text"] == note("forget_done")
    assert count_events(url, me) == 0 and count_events(url, someone) == 3
    assert running.rasa.bodies == []


async def test_forget_cancelled_keeps_everything(api, telegram):
    running = await telegram()
    url = running.settings.tracker_store_url
    me = sender_of(fb.user()["id"])
    plant_events(url, {me: 4})
    api.add_update(fb.command_update("/forget"))
    sent = await api.await_for(lambda c: len(c) == 1, method="sendMessage")
    api.add_update(fb.callback_update(markup_rows(sent[0])[1][0]["callback_data"]))
    sent = await api.await_for(lambda c: len(c) == 2, method="sendMessage")
    assert sent[1]["text"] == note("forget_cancelled") and count_events(url, me) == 4


async def test_no_ids_or_names_reach_rasa_or_the_logs(api, telegram, caplog):
    caplog.set_level(logging.DEBUG)
    zelda = fb.user(user_id=987654321, first_name="Zelda", username="zelda_test", language_code="en")
    running = await telegram(reply=lambda b: [{"text": "hello", "buttons": [{"title": "A young person",
                                                                              "payload": PARENT}]}])
    for update in (fb.command_update("/start", zelda), fb.text_update("someone wants my snapchat", zelda),
                   fb.callback_update(PARENT, zelda), fb.photo_update(zelda, caption="look"),
                   fb.forwarded_update("secret message", zelda, origin_name="Zorro"),
                   fb.edited_update("edited text", zelda), fb.command_update("/forget", zelda),
                   fb.callback_update("forget:yes", zelda)):
        api.add_update(update)
    await api.await_for(lambda c: any(x["text"] == note("forget_done") for x in c), method="sendMessage")
    await api.settle()
    assert {c["chat_id"] for c in api.calls("sendMessage")} == {987654321}  # it really ran
    assert len(running.rasa.bodies) == 4
    dumped = json.dumps(running.rasa.bodies)
    for secret in ("987654321", "Zelda", "zelda", "Zorro", "777000111"):
        assert secret not in dumped
    assert {b["sender"] for b in running.rasa.bodies} == {sender_of(987654321)}
    logged = caplog.text + "\n".join(str(r.args) for r in caplog.records)
    assert caplog.records  # logging was captured at all
    for secret in ("987654321", "Zelda", "zelda", "Zorro", "someone wants my snapchat", "secret message",
                   TOKEN):
        assert secret not in logged, secret


# ---------------------------------------------------------------------------- webhook
def _webhook_app(api, tmp_path, rasa: FakeRasa):
    settings = make_settings(api, tmp_path, telegram_webhook_url="https://bot.example.test/telegram",
                             telegram_webhook_secret=SECRET)
    channel = TelegramChannel(settings, typing_delay_s=0)
    return create_app(settings, rasa=rasa.client(), telegram=channel), channel


def test_webhook_refuses_a_wrong_or_missing_secret(api, tmp_path):
    rasa = FakeRasa()
    app, channel = _webhook_app(api, tmp_path, rasa)
    with TestClient(app) as client:
        assert api.webhook["url"] == "https://bot.example.test/telegram"
        update = {"update_id": 1, **fb.text_update("hello")}
        for headers in ({}, {"X-Telegram-Bot-Api-Secret-Token": "wrong"},
                        {"X-Telegram-Bot-Api-Secret-Token": SECRET + "x"},
                        {"X-Telegram-Bot-Api-Secret-Token": ""}):
            r = client.post("/telegram", json=update, headers=headers)
            assert r.status_code == 403 and r.json() == {"error": "forbidden"}
        time.sleep(0.5)
    assert rasa.bodies == [] and api.calls("sendMessage") == []
    assert api.calls("getUpdates") == []  # webhook mode never polls


def test_webhook_with_the_right_secret_is_processed(api, tmp_path):
    rasa = FakeRasa()
    app, channel = _webhook_app(api, tmp_path, rasa)
    with TestClient(app) as client:
        hook = api.calls("setWebhook")
        assert len(hook) == 1 and hook[0]["secret_token"] == SECRET
        assert "callback_query" in hook[0]["allowed_updates"]
        headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
        update = {"update_id": 77, **fb.text_update("hello there", fb.user(language_code="ar"))}
        started = time.monotonic()
        r = client.post("/telegram", json=update, headers=headers)
        assert r.status_code == 200 and r.json() == {"ok": True}
        assert time.monotonic() - started < 2
        api.wait_for(lambda c: len(c) == 1, method="sendMessage")
        assert client.post("/telegram", json=update, headers=headers).status_code == 200  # redelivery
        assert client.post("/telegram", content=b"{not json", headers=headers).status_code == 400
        assert client.post("/telegram", json=[1, 2], headers=headers).status_code == 400
        time.sleep(0.5)
    assert rasa.messages == ["hello there"]  # the redelivered update was not processed twice
    assert rasa.bodies[0]["metadata"] == {"channel": "telegram", "chat_type": "private", "language_hint": "ar"}
    assert api.sent_texts() == ["echo: hello there"]
    assert api.calls("deleteWebhook") == []  # stopping keeps the webhook for the next start


# ---------------------------------------------------------------------------- e2e
def _bot_actions(tracker_url: str, sender: str) -> List[str]:
    with privacy.engine_for(tracker_url).connect() as conn:
        rows = conn.execute(sa.select(privacy.EVENTS.c.type_name, privacy.EVENTS.c.data)
                            .where(privacy.EVENTS.c.sender_id == sender)
                            .order_by(privacy.EVENTS.c.id)).all()
    return [(json.loads(d).get("metadata") or {}).get("utter_action") for t, d in rows if t == "bot"]


def _events(tracker_url: str, sender: str) -> List[tuple]:
    """(timestamp, user text or None) of every stored event of a sender, oldest first.

    Compared by content and time, not by id: SQLite reuses the ids of deleted rows.
    """
    with privacy.engine_for(tracker_url).connect() as conn:
        rows = conn.execute(
            sa.select(privacy.EVENTS.c.timestamp, privacy.EVENTS.c.type_name, privacy.EVENTS.c.data)
            .where(privacy.EVENTS.c.sender_id == sender).order_by(privacy.EVENTS.c.id)).all()
    return [(ts, json.loads(data or "{}").get("text") if type_name == "user" else None)
            for ts, type_name, data in rows]


@pytest.fixture
async def live(api, stack):
    """A polling TelegramChannel against the fake Bot API and the real Rasa of ``stack``."""
    settings = Settings(rasa_urls=[stack.rasa], rasa_timeout_s=30, tracker_store_url=stack.tracker_url,
                        telegram_token=TOKEN, telegram_api_url=api.url, rate_limit_per_minute=1000)
    conversation = Conversation(rasa=RasaClient([stack.rasa], timeout_s=30), payloads=DOMAIN_PAYLOADS,
                                failsafe_texts=FAILSAFE, max_chars=settings.max_message_chars)
    channel = TelegramChannel(settings, poll_timeout_s=1)
    await channel.start(conversation)
    assert channel.running
    yield channel
    await channel.stop()
    await conversation.rasa.close()


@pytest.mark.e2e
async def test_e2e_greeting_buttons_and_audience(api, live, stack):
    teen = fb.user(user_id=31000001)
    api.add_update(fb.command_update("/start", teen))
    await api.await_for(lambda c: any(markup_rows(x) for x in c), method="sendMessage", timeout=60)
    await api.settle(quiet=1.0)
    sent = api.calls("sendMessage")
    assert "not a person" in " ".join(c["text"] for c in sent).lower()
    datas = [b[0]["callback_data"] for c in sent for b in markup_rows(c)]
    assert PARENT in datas
    n = len(sent)
    api.add_update(fb.callback_update(PARENT, teen))
    await api.await_for(lambda c: len(c) > n, method="sendMessage", timeout=60)
    await api.settle(quiet=1.0)
    assert api.calls("answerCallbackQuery")
    assert _bot_actions(stack.tracker_url, sender_of(teen["id"]))[-1] == "utter_set_audience"


@pytest.mark.e2e
async def test_e2e_tactic_question(api, live, stack):
    u = fb.user(user_id=31000002)
    api.add_update(fb.text_update("what is love bombing", u))
    await api.await_for(lambda c: len(c) >= 1, method="sendMessage", timeout=60)
    await api.settle(quiet=1.0)
    assert _bot_actions(stack.tracker_url, sender_of(u["id"]))[-1] == "utter_tactic_love_bombing"


@pytest.mark.e2e
async def test_e2e_crisis_numbers_come_first(api, live, stack):
    u = fb.user(user_id=31000003)
    api.add_update(fb.text_update("i want to kill myself", u))
    sent = await api.await_for(lambda c: len(c) >= 1, method="sendMessage", timeout=60)
    assert "999" in sent[0]["text"] or "112" in sent[0]["text"]


@pytest.mark.e2e
async def test_e2e_forget_erases_the_earlier_conversation(api, live, stack):
    u = fb.user(user_id=31000004)
    sender = sender_of(u["id"])
    api.add_update(fb.text_update("what are the warning signs", u))
    await api.await_for(lambda c: len(c) >= 1, method="sendMessage", timeout=60)
    await api.settle(quiet=1.0)
    before = _events(stack.tracker_url, sender)
    assert "what are the warning signs" in [text for _, text in before]
    api.add_update(fb.command_update("/forget", u))
    await api.await_for(lambda c: any(x["text"] == note("forget_question") for x in c), method="sendMessage")
    api.add_update(fb.callback_update("forget:yes", u))
    await api.await_for(lambda c: any(x["text"] == note("forget_done") for x in c), method="sendMessage")
    forgotten_at = time.time()
    assert _events(stack.tracker_url, sender) == []
    api.add_update(fb.text_update("hello", u))
    n = len(api.calls("sendMessage"))
    await api.await_for(lambda c: len(c) > n, method="sendMessage", timeout=60)
    await api.settle(quiet=1.0)
    after = _events(stack.tracker_url, sender)
    assert after  # the new conversation is stored…
    assert all(ts >= forgotten_at - 1 for ts, _ in after)  # …and nothing from before /forget
    assert [text for _, text in after if text] == ["hello"]


@pytest.mark.e2e
async def test_e2e_photo_and_group(api, live, stack):
    api.add_update(fb.photo_update(fb.user(user_id=31000005)))
    api.add_update(fb.group_update("hello bot", fb.user(user_id=31000006), fb.group_chat(-1009988776655)))
    await api.settle(quiet=1.0)
    texts = api.sent_texts()
    assert note("text_only") in texts
    assert note("group", link="https://t.me/SignpostTestBot") in texts
    assert not _events(stack.tracker_url, sender_of(31000005))
    assert not _events(stack.tracker_url, sender_of(31000006))


@pytest.mark.e2e
def test_e2e_webhook_wrong_secret(api, stack, tmp_path):
    settings = Settings(rasa_urls=[stack.rasa], tracker_store_url=stack.tracker_url, telegram_token=TOKEN,
                        telegram_api_url=api.url, telegram_webhook_url="https://bot.example.test/telegram",
                        telegram_webhook_secret=SECRET)
    app = create_app(settings, telegram=TelegramChannel(settings))
    u = fb.user(user_id=31000007)
    with TestClient(app) as client:
        r = client.post("/telegram", json={"update_id": 5, **fb.text_update("hello", u)},
                        headers={"X-Telegram-Bot-Api-Secret-Token": "nope"})
        assert r.status_code == 403
        r = client.post("/telegram", json={"update_id": 6, **fb.text_update("what is love bombing", u)},
                        headers={"X-Telegram-Bot-Api-Secret-Token": SECRET})
        assert r.status_code == 200
        api.wait_for(lambda c: len(c) >= 1, method="sendMessage", timeout=60)
    actions = _bot_actions(stack.tracker_url, sender_of(u["id"]))
    assert actions and actions[-1] == "utter_tactic_love_bombing"
