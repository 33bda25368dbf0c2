"""``action_session_start``: carry slots over and apply the channel's hints once per session.

Precedence for ``language`` (issue #7): explicit choice (``metadata.language_choice``) > the
conversation's language carried over from the last session > the channel hint
(``metadata.language_hint``: Telegram ``language_code`` or the browser language) > English.
``audience`` likewise: carried over > ``metadata.audience_hint`` (web → parent) > teen.
"""
from __future__ import annotations

from typing import Any, Dict, List, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import ActionExecuted, EventType, SessionStarted, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from bot.settings import SUPPORTED_LANGUAGES

# The language slot's values from domain/core.yml. Rasa sends this action no domain
# (enable_selective_domain), so the action server reads its own copy of the domain.
SUPPORTED = SUPPORTED_LANGUAGES
CARRY_OVER = ("language", "audience", "country")


def _code(tag: Any) -> str:
    return str(tag or "").replace("_", "-").split("-")[0].strip().lower()


class ActionSessionStart(Action):
    def name(self) -> Text:
        return "action_session_start"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: Dict[Text, Any]) -> List[EventType]:
        metadata = tracker.get_slot("session_started_metadata") or {}
        if not isinstance(metadata, dict):
            metadata = {}
        events: List[EventType] = [SessionStarted()]
        # Slots keep their initial values (language "en", audience "teen") until something sets
        # them, so "carried over" means: set by an event in an earlier session.
        was_set = {e.get("name") for e in tracker.events
                   if e.get("event") == "slot" and e.get("value") is not None}
        carried = {k: tracker.get_slot(k) for k in CARRY_OVER
                   if k in was_set and tracker.get_slot(k) is not None}
        for key, value in carried.items():
            events.append(SlotSet(key, value))

        supported = tuple(((domain.get("slots") or {}).get("language") or {}).get("values") or SUPPORTED)
        choice, hint = _code(metadata.get("language_choice")), _code(metadata.get("language_hint"))
        if choice in supported:
            language = choice
        elif carried.get("language") in supported:
            language = carried["language"]
        elif hint in supported:
            language = hint
        else:
            language = "en"
        if language != carried.get("language"):
            events.append(SlotSet("language", language))

        if "audience" not in carried:
            audience = metadata.get("audience_hint")
            events.append(SlotSet("audience", audience if audience in ("teen", "parent") else "teen"))
        events.append(ActionExecuted("action_listen"))
        return events
