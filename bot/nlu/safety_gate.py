"""Rasa NLU component: forces a crisis intent when the safety patterns match.

Runs after the intent classifier (and before the FallbackClassifier). The patterns are data
(``data/safety/<lang>.yml``), compiled and checked against their own examples when the model
loads (:class:`bot.safety.SafetyPatterns`); every language's patterns are applied to every
message, whatever language was detected. On a match the intent becomes ``crisis_self_harm``,
``crisis_danger_now``, ``disclosure_abuse`` or ``sextortion_now`` with confidence 1.0, and the
message gets a ``safety`` property ``{"category", "pattern_id"}`` (no text) for the audit counts.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Text

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.shared.nlu.constants import INTENT, INTENT_RANKING_KEY, TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from bot.safety import SafetyPatterns
from bot.settings import ROOT


@DefaultV1Recipe.register(
    [DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER], is_trainable=False
)
class SafetyGate(GraphComponent):
    """See module docstring. Config: ``patterns_dir`` (relative to the project root)."""

    @staticmethod
    def get_default_config() -> Dict[Text, Any]:
        return {"patterns_dir": "data/safety"}

    def __init__(self, config: Dict[Text, Any]) -> None:
        directory = Path(config["patterns_dir"])
        if not directory.is_absolute():
            directory = ROOT / directory
        self.patterns = SafetyPatterns.load(directory)

    @classmethod
    def create(cls, config: Dict[Text, Any], model_storage: ModelStorage, resource: Resource,
               execution_context: ExecutionContext) -> "SafetyGate":
        return cls(config)

    def process_training_data(self, training_data: TrainingData) -> TrainingData:
        return training_data

    def process(self, messages: List[Message]) -> List[Message]:
        for message in messages:
            text = message.get(TEXT) or ""
            if not text or text.startswith("/"):
                continue
            match = self.patterns.match(text)
            if match is None:
                continue
            intent = {"name": match.intent, "confidence": 1.0}
            message.set(INTENT, intent, add_to_output=True)
            # The crisis intent alone: with the classifier's ranking behind it, the
            # FallbackClassifier's ambiguity check (top two within 0.02) could turn a crisis
            # into nlu_fallback when the classifier was also very sure of another intent.
            message.set(INTENT_RANKING_KEY, [intent], add_to_output=True)
            message.set("safety", {"category": match.category, "pattern_id": match.pattern_id},
                        add_to_output=True)
        return messages
