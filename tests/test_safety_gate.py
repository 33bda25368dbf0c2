"""The SafetyGate forces the crisis intent, and the FallbackClassifier after it cannot undo it."""
from rasa.nlu.classifiers.fallback_classifier import FallbackClassifier
from rasa.shared.nlu.training_data.message import Message

from bot.nlu.safety_gate import SafetyGate


def parsed(text, intent="doxxing", confidence=0.99):
    ranking = [{"name": intent, "confidence": confidence}, {"name": "greet", "confidence": 0.01}]
    return Message(data={"text": text, "intent": ranking[0], "intent_ranking": ranking})


def test_crisis_survives_the_fallback_ambiguity_check():
    gate = SafetyGate(SafetyGate.get_default_config())
    fallback = FallbackClassifier({**FallbackClassifier.get_default_config(),
                                   "threshold": 0.12, "ambiguity_threshold": 0.02})
    message = parsed("someone is outside my house right now and i'm scared")
    gate.process([message])
    fallback.process([message])
    assert message.get("intent")["name"] == "crisis_danger_now"
    assert message.get("safety")["category"] == "danger_now"
    assert [r["name"] for r in message.get("intent_ranking")] == ["crisis_danger_now"]


def test_no_match_leaves_the_classifier_alone():
    gate = SafetyGate(SafetyGate.get_default_config())
    message = parsed("what is doxxing")
    gate.process([message])
    assert message.get("intent")["name"] == "doxxing" and message.get("safety") is None


def test_payloads_are_not_checked():
    gate = SafetyGate(SafetyGate.get_default_config())
    message = parsed('/inform_country{"country":"GB"}', "inform_country", 1.0)
    gate.process([message])
    assert message.get("intent")["name"] == "inform_country"
