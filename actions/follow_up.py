"""``action_follow_up``: "tell me more", "give me an example", "what should I do?".

Finds the topic of the bot's last answer (the ``utter_action`` of its last message) and sends
``utter_<topic>_more`` / ``_example`` / ``_todo`` if the domain has it, otherwise the generic
``utter_<intent>_generic``. No topic list in code: staff add a follow-up by adding a response.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType
from rasa_sdk.executor import CollectingDispatcher

KIND = {"tell_me_more": "more", "give_example": "example", "what_should_i_do": "todo"}
SUFFIXES = ("_more", "_example", "_todo")


def last_topic(tracker: Tracker, responses: Dict[str, Any]) -> Optional[str]:
    """The newest bot response name that has follow-ups, without ``utter_`` and suffix."""
    for event in reversed(tracker.events):
        if event.get("event") != "bot":
            continue
        name = ((event.get("metadata") or {}).get("utter_action") or "")
        if not name.startswith("utter_"):
            continue
        base = name
        for suffix in SUFFIXES:
            if base.endswith(suffix):
                base = base[: -len(suffix)]
        if any(f"{base}{s}" in responses for s in SUFFIXES):
            return base[len("utter_"):]
    return None


class ActionFollowUp(Action):
    def name(self) -> Text:
        return "action_follow_up"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: Dict[Text, Any]) -> List[EventType]:
        intent = (tracker.latest_message.get("intent") or {}).get("name") or "tell_me_more"
        kind = KIND.get(intent, "more")
        responses = domain.get("responses") or {}
        topic = last_topic(tracker, responses)
        if topic and f"utter_{topic}_{kind}" in responses:
            dispatcher.utter_message(response=f"utter_{topic}_{kind}")
        else:
            dispatcher.utter_message(response=f"utter_{intent}_generic")
        return []
