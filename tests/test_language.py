"""Language identification (rasa-notes §6 B1-B3) and the LanguageDetector component."""
import pytest
from rasa.shared.nlu.training_data.message import Message

from bot.language import LanguageIdentifier, decide, language_name, letter_words, normalise_code
from bot.nlu.language_detector import LanguageDetector

LI = LanguageIdentifier()


@pytest.mark.parametrize("text", ["", "   ", "😀", "👍👍", "123", "12:30", "?!", "ok", "yes", "no",
                                  "https://example.com", "https://youtube.com/watch?v=abc", "lol",
                                  "hi", "/start", "@someone", "#tag"])
def test_no_evidence_keeps_the_current_language(text):
    d = LI.detect(text)
    assert d.language is None and d.evidence == "none"
    assert decide(d, current="fr") == "fr"


def test_deterministic_across_calls():
    texts = ["je suis triste aujourd'hui", "Ich bin traurig heute", "estoy triste hoy mismo",
             "I feel sad today and alone"]
    for t in texts:
        assert len({LI.detect(t) for _ in range(50)}) == 1


@pytest.mark.parametrize("text,lang", [
    ("Bonjour, comment les recruteurs contactent-ils les adolescents ?", "fr"),
    ("Woran erkenne ich, dass mein Sohn radikalisiert wird?", "de"),
    ("Can we switch to English please", "en"),
    ("مرحبا، ابني يتحدث مع غرباء على الإنترنت", "ar"),
    ("شكرا", "ar"),
    ("merci", "fr"),
    ("Hallo", "de"),
    ("ok danke", "de"),
    ("how do recruiters find kids in online games", "en"),
])
def test_confident_detection(text, lang):
    d = LI.detect(text)
    assert d.language == lang and d.supported


@pytest.mark.parametrize("text,lang", [
    ("Merhaba, bana yardım edebilir misin?", "tr"),
    ("Hola, mi hijo habla con extraños en internet", "es"),
])
def test_unsupported_language(text, lang):
    d = LI.detect(text)
    assert d.language == lang and not d.supported
    assert decide(d, current="en") == "en"
    assert language_name(lang) in ("Turkish", "Spanish")


def test_explicit_choice_wins():
    d = LI.detect("how do recruiters find kids in online games")
    assert decide(d, current="de", explicit="fr") == "fr"
    assert decide(d, current="de") == "en"


def test_helpers():
    assert letter_words("see https://x.com/a 123 👍 Hello!") == ["see", "hello"]
    assert normalise_code("pt-BR") == "pt" and normalise_code(None) is None


def _run(component, text, intent="greet", entities=None, metadata=None):
    m = Message(data={"text": text, "intent": {"name": intent, "confidence": 0.9},
                      "entities": entities or [], "metadata": metadata or {}})
    component.process([m])
    return m


def test_component_sets_language_entity_only_on_evidence():
    c = LanguageDetector(LanguageDetector.get_default_config())
    assert [e["value"] for e in _run(c, "Woran erkenne ich, dass mein Sohn radikalisiert wird?").get("entities")
            if e["entity"] == "language"] == ["de"]
    assert _run(c, "ok").get("entities") == []
    assert _run(c, "👍").get("entities") == []
    # a language named in an ordinary sentence is dropped; with set_language it is kept
    named = [{"entity": "language", "value": "de", "start": 0, "end": 6}]
    m = _run(c, "my son speaks German at school", "warning_signs", named)
    assert [e["value"] for e in m.get("entities") if e["entity"] == "language"] == ["en"]
    m = _run(c, "can we speak German", "set_language", named)
    assert [e["value"] for e in m.get("entities") if e["entity"] == "language"] == ["de"]
    # the web picker's explicit choice wins over detection
    m = _run(c, "how do recruiters find kids in online games", metadata={"language_choice": "ar"})
    assert [e["value"] for e in m.get("entities") if e["entity"] == "language"] == ["ar"]
    # payloads are left alone
    assert _run(c, '/set_language{"language":"fr"}').get("entities") == []


def test_component_unsupported_language_intent():
    c = LanguageDetector(LanguageDetector.get_default_config())
    m = _run(c, "Merhaba, bana yardım edebilir misin?", "greet")
    assert m.get("intent")["name"] == "unsupported_language"
    assert {"entity": "detected_language", "value": "Turkish"}.items() <= next(
        e for e in m.get("entities") if e["entity"] == "detected_language").items()
