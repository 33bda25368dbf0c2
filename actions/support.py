"""The support finder: ``validate_support_form`` and ``action_find_support``.

The form asks only what it needs (``country`` unless known, then ``need``); the action returns
one to three services, best first, as ``utter_service_card`` messages between
``utter_support_intro`` and ``utter_support_outro`` (texts in domain/responses/support.yml).
"""
from __future__ import annotations

import asyncio
from typing import Any, Dict, List, Text

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.directory import engine
from bot.directory.store import ServiceView, emergency_number, find_services

COUNTRIES = ("GB", "US", "DE", "FR", "IE", "CA", "AU", "other")
NEEDS = ("radicalisation", "crisis", "child", "reporting", "exit", "sextortion")
GENERAL_EMERGENCY = "112 / 999 / 911"


def contact_line(service: ServiceView) -> str:
    """Phone, text, web and e-mail of a service on one line, with language-neutral symbols."""
    parts = []
    if service.phone:
        parts.append(f"☎ {service.phone}")
    if service.sms:
        parts.append(f"✉ {service.sms}")
    if service.web:
        parts.append(f"🌐 {service.web}")
    if service.email:
        parts.append(f"📧 {service.email}")
    return " · ".join(parts)


class ValidateSupportForm(FormValidationAction):
    def name(self) -> Text:
        return "validate_support_form"

    async def extract_country(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                              domain: Dict[Text, Any]) -> Dict[Text, Any]:
        """A country the bot has no directory for still answers the question: ``other``."""
        if tracker.get_slot("requested_slot") != "country" or tracker.get_slot("country"):
            return {}
        entity = next(tracker.get_latest_entity_values("country"), None)
        intent = (tracker.latest_message.get("intent") or {}).get("name")
        if entity is None and intent == "inform_country":
            return {"country": "other"}
        return {}

    def validate_country(self, slot_value: Any, dispatcher: CollectingDispatcher,
                         tracker: Tracker, domain: Dict[Text, Any]) -> Dict[Text, Any]:
        value = str(slot_value or "")
        value = value if value == "other" else value.upper()
        return {"country": value if value in COUNTRIES else None}

    def validate_need(self, slot_value: Any, dispatcher: CollectingDispatcher,
                      tracker: Tracker, domain: Dict[Text, Any]) -> Dict[Text, Any]:
        return {"need": slot_value if slot_value in NEEDS else None}


class ActionFindSupport(Action):
    def name(self) -> Text:
        return "action_find_support"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: Dict[Text, Any]) -> List[EventType]:
        country = tracker.get_slot("country")
        need = tracker.get_slot("need") or "radicalisation"
        language = tracker.get_slot("language") or "en"
        audience = tracker.get_slot("audience")
        db = await asyncio.to_thread(engine)
        services = await asyncio.to_thread(find_services, db, country, need, language, audience)
        emergency = await asyncio.to_thread(emergency_number, db, country) or GENERAL_EMERGENCY
        if not services:
            dispatcher.utter_message(response="utter_support_none", emergency=emergency)
            return [SlotSet("need", None)]
        dispatcher.utter_message(response="utter_support_intro")
        for s in services:
            dispatcher.utter_message(
                response="utter_service_card", name=s.name, run_by=s.run_by,
                contact=contact_line(s), hours=s.hours, note=(f"\n{s.note}" if s.note else ""),
            )
        dispatcher.utter_message(response="utter_support_outro", emergency=emergency)
        return [SlotSet("need", None)]
