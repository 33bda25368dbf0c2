"""End-to-end: the real Rasa server, action server and gateway on loopback, through /api/chat.

Each test checks what the user sees (texts, numbers) and, where the wording may change, which
response Rasa chose (from the tracker store's events).
"""
import json

import pytest
import sqlalchemy as sa

from bot import privacy

pytestmark = pytest.mark.e2e

KEY = b"test-key-" + b"x" * 24


def bot_actions(stack, session):
    """The ``utter_action`` names of the bot's messages in this web session, oldest first."""
    sender = privacy.sender_id(KEY, "web", session)
    engine = privacy.engine_for(stack.tracker_url)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(privacy.EVENTS.c.type_name, privacy.EVENTS.c.data)
                            .where(privacy.EVENTS.c.sender_id == sender)
                            .order_by(privacy.EVENTS.c.id)).all()
    out = []
    for type_name, data in rows:
        if type_name == "bot":
            out.append((json.loads(data).get("metadata") or {}).get("utter_action"))
    return out


def test_greeting_says_what_the_bot_is(stack):
    reply = stack.chat("", event="session_start")
    assert bot_actions(stack, reply["session"])[:2] == ["utter_greet", "utter_ask_audience"]
    text = " ".join(reply["texts"]).lower()
    assert "not a person" in text or "not a real person" in text
    assert "police" in text
    buttons = [b["payload"] for m in reply["messages"] for b in m.get("buttons", [])]
    assert '/set_audience{"audience":"parent"}' in buttons


def test_parent_asks_how_extremists_recruit(stack):
    reply = stack.chat("how do extremists recruit teenagers online?")
    assert reply["failsafe"] is False
    assert bot_actions(stack, reply["session"])[-1] == "utter_recruitment_overview"
    assert len(reply["texts"][0]) > 200


def test_tactic_question(stack):
    reply = stack.chat("what is love bombing")
    assert bot_actions(stack, reply["session"])[-1] == "utter_tactic_love_bombing"


def test_find_help_in_the_uk_walks_through_the_form(stack):
    first = stack.chat("find help in the UK")
    session = first["session"]
    assert bot_actions(stack, session)[-1] == "utter_ask_need"
    reply = stack.chat('/choose_need{"need":"radicalisation"}', session)
    joined = "\n".join(reply["texts"])
    assert "0800 011 3764" in joined, joined
    assert "999" in reply["texts"][-1]


def test_help_in_france_returns_french_services(stack):
    session = stack.chat("I need help in France")["session"]
    reply = stack.chat('/choose_need{"need":"radicalisation"}', session)
    assert "0 800 005 696" in "\n".join(reply["texts"])


def test_crisis_in_the_middle_of_the_form_gets_numbers_first(stack):
    first = stack.chat("where can I find support")
    session = first["session"]
    assert bot_actions(stack, session)[-1] == "utter_ask_country"
    reply = stack.chat("I want to end my life", session)
    assert bot_actions(stack, session)[-3:] == ["utter_crisis_numbers", "utter_crisis_self_harm",
                                                "utter_ask_safe"]
    first_text = reply["texts"][0]
    assert "999" in first_text and "112" in first_text and "911" in first_text
    # the form is closed: the next message is answered normally
    nxt = stack.chat("what are the warning signs", session)
    assert bot_actions(stack, session)[-1] == "utter_warning_signs", nxt


def test_crisis_with_known_country_uses_its_numbers(stack):
    session = stack.chat("I live in the UK")["session"]
    reply = stack.chat("i just want it all to stop", session)
    assert reply["texts"][0].startswith("In danger right now? Call 999.")
    assert "116 123" in reply["texts"][0]


def test_crisis_in_german_and_arabic(stack):
    de = stack.chat("ich will nicht mehr leben", language_choice="de")
    assert "112" in de["texts"][0] and de["texts"][0].startswith("Jetzt in Gefahr")
    ar = stack.chat("أريد أن أنهي حياتي")
    assert "112" in ar["texts"][0] and ar["texts"][0].startswith("في خطر الآن")


def test_injected_restart_does_not_wipe_the_conversation(stack):
    session = stack.chat("I live in France")["session"]
    stack.chat("/restart", session)
    reply = stack.chat("i want to die", session)
    assert reply["texts"][0].startswith("In danger right now? Call 112.")


def test_action_server_down_crisis_still_answered(stack):
    stack.stop("actions")
    try:
        # a new conversation: action_session_start itself fails, Rasa answers off-script, and
        # the gateway's safety net still puts the crisis numbers first
        reply = stack.chat("i want to kill myself")
        assert "999" in reply["texts"][0] and "116 123" in reply["texts"][0]
        form = stack.chat("find help in the UK")
        assert form["texts"] and all(t.strip() for t in form["texts"])
    finally:
        stack.start_actions()
    again = stack.chat("find help in the UK")
    assert bot_actions(stack, again["session"])[-1] == "utter_ask_need"


def test_rasa_down_gateway_failsafe(stack):
    stack.stop("rasa")
    try:
        reply = stack.chat("how do recruiters work")
        assert reply["failsafe"] is True
        text = reply["texts"][0]
        assert "999" in text and "112" in text and "911" in text
        crisis = stack.chat("i want to die")
        assert crisis["failsafe"] is True and crisis["texts"][0].startswith("Thank you for telling me")
        arabic = stack.chat("أريد أن أموت", language_choice="ar")
        assert "112" in arabic["texts"][0] and arabic["texts"][0].startswith("شكرًا")
    finally:
        stack.start_rasa()
    # after the restart the conversation continues normally
    assert stack.chat("what is love bombing")["failsafe"] is False


def test_reload_swaps_the_model_while_users_keep_chatting(stack, tmp_path):
    """make reload: PUT /model under load; no request fails, no fail-safe reply."""
    import shutil
    import threading

    from bot.cli import reload_models

    copy = tmp_path / "signpost-reloaded.tar.gz"
    shutil.copy(stack.model, copy)
    results, stop = [], threading.Event()

    def chatter():
        session = None
        while not stop.is_set():
            reply = stack.chat("what is love bombing", session)
            session = reply["session"]
            results.append(reply["failsafe"])

    workers = [threading.Thread(target=chatter) for _ in range(3)]
    for w in workers:
        w.start()
    try:
        taken = reload_models([stack.rasa], copy, token=stack.env["RASA_TOKEN"])
    finally:
        stop.set()
        for w in workers:
            w.join(60)
    assert taken[stack.rasa] > 0
    assert len(results) >= 3 and not any(results)
    import httpx
    status = httpx.get(stack.rasa + "/status", params={"token": "test-rasa-token"}).json()
    assert status["model_file"].endswith("signpost-reloaded.tar.gz")


def language_slot(stack, session):
    lang = "en"
    sender = privacy.sender_id(KEY, "web", session)
    with privacy.engine_for(stack.tracker_url).connect() as conn:
        rows = conn.execute(sa.select(privacy.EVENTS.c.data)
                            .where(privacy.EVENTS.c.sender_id == sender,
                                   privacy.EVENTS.c.type_name == "slot")
                            .order_by(privacy.EVENTS.c.id)).all()
    for (data,) in rows:
        event = json.loads(data)
        if event.get("name") == "language" and event.get("value"):
            lang = event["value"]
    return lang


def test_language_follows_hint_then_evidence_and_sticks(stack):
    """Issue #7: French from the channel hint, German on a full sentence, stays German on "ok",
    a crisis in Arabic is answered in Arabic with the right numbers."""
    first = stack.chat("", event="session_start", browser_language="fr-FR")
    session = first["session"]
    assert language_slot(stack, session) == "fr"
    assert bot_actions(stack, session)[0] == "utter_greet"
    assert "police" in first["texts"][0].lower() and ("pas" in first["texts"][0] or "n'" in first["texts"][0])
    de = stack.chat("Woran erkenne ich, dass mein Sohn radikalisiert wird?", session)
    assert language_slot(stack, session) == "de"
    assert bot_actions(stack, session)[-1] == "utter_warning_signs"
    stack.chat("ok", session)
    assert language_slot(stack, session) == "de"
    stack.chat("👍", session)
    assert language_slot(stack, session) == "de"
    ar = stack.chat("أريد أن أنهي حياتي", session)
    assert language_slot(stack, session) == "ar"
    assert ar["texts"][0].startswith("في خطر الآن") and "112" in ar["texts"][0]
    assert any("\u0600" <= ch <= "\u06ff" for ch in ar["texts"][1])


def test_unsupported_language_gets_english_list_and_keeps_english(stack):
    reply = stack.chat("Merhaba, bana yardım edebilir misin? Oğlum için endişeleniyorum")
    text = reply["texts"][0]
    assert "Turkish" in text and "Deutsch" in text and "Français" in text
    assert language_slot(stack, reply["session"]) == "en"
