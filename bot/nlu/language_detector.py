"""Rasa NLU component: sets the ``language`` entity only on confident evidence.

Runs after the intent classifier and the entity extractors. For each message it:

1. leaves button payloads (text starting with ``/``) alone;
2. keeps a ``language`` entity from the lookup tables only when the intent is ``set_language``
   ("can we speak German"): that is an explicit choice;
3. otherwise uses the web picker's ``metadata.language_choice`` (explicit) if present;
4. otherwise runs :class:`bot.language.LanguageIdentifier`; a confident supported language
   becomes the ``language`` entity (the slot mapping then switches the conversation); a
   confident unsupported language sets the intent ``unsupported_language`` and the entity
   ``detected_language`` (its English name); no evidence adds nothing, so the slot keeps the
   conversation's language.

The session hint (Telegram ``language_code``, browser language) is applied once per session by
``action_session_start``; see docs/languages.md for the precedence and thresholds.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Text

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.shared.nlu.constants import ENTITIES, INTENT, INTENT_RANKING_KEY, TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from bot.language import LanguageIdentifier, language_name

EXTRACTOR = "LanguageDetector"


@DefaultV1Recipe.register(
    [DefaultV1Recipe.ComponentType.ENTITY_EXTRACTOR], is_trainable=False
)
class LanguageDetector(GraphComponent):
    """See module docstring. Config: ``supported_languages``, ``min_words``, ``threshold``,
    ``unsupported_threshold``."""

    @staticmethod
    def get_default_config() -> Dict[Text, Any]:
        return {
            "supported_languages": ["en", "de", "fr", "ar"],
            "min_words": 3,
            "threshold": 0.90,
            "unsupported_threshold": 0.99,
        }

    @staticmethod
    def required_packages() -> List[Text]:
        return ["langdetect"]

    def __init__(self, config: Dict[Text, Any]) -> None:
        self.config = config
        self.supported = list(config["supported_languages"])
        self.identifier = LanguageIdentifier(
            supported=self.supported, min_words=config["min_words"],
            threshold=config["threshold"], unsupported_threshold=config["unsupported_threshold"],
        )

    @classmethod
    def create(cls, config: Dict[Text, Any], model_storage: ModelStorage, resource: Resource,
               execution_context: ExecutionContext) -> "LanguageDetector":
        return cls(config)

    def process_training_data(self, training_data: TrainingData) -> TrainingData:
        return training_data

    def _entity(self, name: str, value: str, text: str, confidence: float) -> Dict[str, Any]:
        return {"entity": name, "value": value, "start": 0, "end": len(text),
                "confidence": confidence, "extractor": EXTRACTOR}

    def process(self, messages: List[Message]) -> List[Message]:
        for message in messages:
            self._process_one(message)
        return messages

    def _process_one(self, message: Message) -> None:
        text = message.get(TEXT) or ""
        if text.startswith("/"):
            return
        entities = [e for e in (message.get(ENTITIES) or [])]
        intent = (message.get(INTENT) or {}).get("name")
        explicit = [e for e in entities if e.get("entity") == "language"]
        # a language named in an ordinary sentence is not a request to switch
        entities = [e for e in entities if e.get("entity") != "language"]
        if intent == "set_language" and explicit:
            value = str(explicit[-1].get("value"))
            if value in self.supported:
                entities.append(self._entity("language", value, text, 1.0))
            message.set(ENTITIES, entities, add_to_output=True)
            return
        metadata = message.get("metadata") or {}
        choice = metadata.get("language_choice") if isinstance(metadata, dict) else None
        detection = self.identifier.detect(text)
        message.set("language_detection", {
            "language": detection.language, "confidence": round(detection.confidence, 4),
            "evidence": detection.evidence, "words": detection.words,
        }, add_to_output=True)
        if choice in self.supported:
            entities.append(self._entity("language", choice, text, 1.0))
        elif detection.language and detection.supported:
            entities.append(self._entity("language", detection.language, text, detection.confidence))
        elif detection.language and not detection.supported:
            entities.append(self._entity("detected_language", language_name(detection.language),
                                         text, detection.confidence))
            unsupported = {"name": "unsupported_language", "confidence": 1.0}
            message.set(INTENT, unsupported, add_to_output=True)
            # alone in the ranking, so the FallbackClassifier's ambiguity check cannot undo it
            message.set(INTENT_RANKING_KEY, [unsupported], add_to_output=True)
        message.set(ENTITIES, entities, add_to_output=True)
