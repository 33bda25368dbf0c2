"""Custom actions with real rasa_sdk trackers and dispatchers."""
import json

import pytest
from rasa_sdk import Tracker
from rasa_sdk.executor import ActionExecutor, CollectingDispatcher

from actions.follow_up import ActionFollowUp
from actions.session import ActionSessionStart
from actions.support import ActionFindSupport, ValidateSupportForm


def tracker(slots=None, intent="find_support", entities=None, events=None, text="hi"):
    return Tracker(
        sender_id="web-test", slots=slots or {},
        latest_message={"text": text, "intent": {"name": intent, "confidence": 0.9},
                        "entities": entities or []},
        events=events or [], paused=False, followup_action=None,
        active_loop={}, latest_action_name="action_listen",
    )


@pytest.fixture(autouse=True)
def directory_db(tmp_path, monkeypatch):
    import actions.directory as d

    monkeypatch.setenv("DIRECTORY_DB_URL", f"sqlite:///{tmp_path / 'directory.db'}")
    monkeypatch.setattr(d, "_engine", None)


async def test_find_support_uk_radicalisation_lists_act_early_first():
    dispatcher = CollectingDispatcher()
    events = await ActionFindSupport().run(
        dispatcher, tracker({"country": "GB", "need": "radicalisation", "language": "en",
                             "audience": "parent"}), {})
    responses = [m["response"] for m in dispatcher.messages]
    assert responses[0] == "utter_support_intro" and responses[-1] == "utter_support_outro"
    cards = [m for m in dispatcher.messages if m["response"] == "utter_service_card"]
    assert 1 <= len(cards) <= 3
    assert "0800 011 3764" in cards[0]["contact"]
    assert all(c["hours"] for c in cards)
    assert dispatcher.messages[-1]["emergency"] == "999"
    json.dumps([e for e in events])  # every event is JSON-serialisable (rasa-notes B10)
    assert {"event": "slot", "name": "need", "value": None} in [
        {k: e.get(k) for k in ("event", "name", "value")} for e in events]


async def test_find_support_france_and_unknown_country():
    dispatcher = CollectingDispatcher()
    await ActionFindSupport().run(dispatcher, tracker({"country": "FR", "need": "radicalisation",
                                                       "language": "fr"}), {})
    cards = [m for m in dispatcher.messages if m["response"] == "utter_service_card"]
    assert "0 800 005 696" in cards[0]["contact"]
    dispatcher = CollectingDispatcher()
    await ActionFindSupport().run(dispatcher, tracker({"country": "other", "need": "crisis"}), {})
    assert dispatcher.messages[-1]["emergency"] == "112 / 999 / 911"
    assert any(m["response"] == "utter_service_card" for m in dispatcher.messages)


async def test_validate_form_maps_unknown_country_to_other():
    form = ValidateSupportForm()
    t = tracker({"requested_slot": "country"}, intent="inform_country")
    assert await form.extract_country(CollectingDispatcher(), t, {}) == {"country": "other"}
    t = tracker({"requested_slot": "country"}, intent="inform_country",
                entities=[{"entity": "country", "value": "GB"}])
    assert await form.extract_country(CollectingDispatcher(), t, {}) == {}
    assert form.validate_country("gb", CollectingDispatcher(), t, {}) == {"country": "GB"}
    assert form.validate_country("Narnia", CollectingDispatcher(), t, {}) == {"country": None}
    assert form.validate_need("cooking", CollectingDispatcher(), t, {}) == {"need": None}


@pytest.mark.parametrize("metadata,carried,expected_language,expected_audience", [
    ({"language_hint": "fr-FR"}, {}, "fr", "teen"),
    ({"language_hint": "fr-FR", "audience_hint": "parent"}, {}, "fr", "parent"),
    ({"language_hint": "tr"}, {}, "en", "teen"),
    ({"language_hint": "de", "audience_hint": "parent"}, {}, "de", "parent"),
    ({"language_hint": "de"}, {"language": "ar", "audience": "parent"}, "ar", "parent"),
    ({"language_choice": "fr", "language_hint": "de"}, {"language": "ar"}, "fr", "teen"),
])
async def test_session_start_precedence(metadata, carried, expected_language, expected_audience):
    slots = {"language": "en", "audience": "teen", "session_started_metadata": metadata, **carried}
    earlier = [{"event": "slot", "name": k, "value": v} for k, v in carried.items()]
    events = await ActionSessionStart().run(CollectingDispatcher(), tracker(slots, events=earlier), {})
    assert events[0]["event"] == "session_started" and events[-1]["name"] == "action_listen"
    final = {}
    for e in events:
        if e["event"] == "slot":
            final[e["name"]] = e["value"]
    assert final.get("language", carried.get("language")) == expected_language
    assert final.get("audience", carried.get("audience")) == expected_audience


async def test_follow_up_continues_last_topic():
    domain = {"responses": {"utter_warning_signs": [], "utter_warning_signs_more": [],
                            "utter_tell_me_more_generic": [], "utter_give_example_generic": []}}
    events = [{"event": "bot", "text": "...", "metadata": {"utter_action": "utter_warning_signs"}},
              {"event": "user", "text": "tell me more"}]
    dispatcher = CollectingDispatcher()
    await ActionFollowUp().run(dispatcher, tracker(intent="tell_me_more", events=events), domain)
    assert dispatcher.messages[0]["response"] == "utter_warning_signs_more"
    dispatcher = CollectingDispatcher()
    await ActionFollowUp().run(dispatcher, tracker(intent="give_example", events=events), domain)
    assert dispatcher.messages[0]["response"] == "utter_give_example_generic"
    dispatcher = CollectingDispatcher()
    await ActionFollowUp().run(dispatcher, tracker(intent="tell_me_more", events=[]), domain)
    assert dispatcher.messages[0]["response"] == "utter_tell_me_more_generic"


def test_action_names_unique_and_stateless():
    executor = ActionExecutor()
    executor.register_package("actions")
    names = list(executor.actions)
    assert len(names) == len(set(names))
    expected = {"action_session_start", "action_find_support", "action_follow_up",
                "validate_support_form"}
    assert expected <= set(names)
