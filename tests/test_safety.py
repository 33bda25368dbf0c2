"""Tests for the SafetyGate core (bot/safety.py) and its data (data/safety/*.yml).

Accuracy floors are checked on tests/safety/labelled.yml (written separately from the pattern
examples). Speed is a benchmark (bench/safety_eval.py), not a test.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path
from typing import Dict, List

import pytest

from bot import safety
from bot.safety import (
    CATEGORY_INTENTS,
    PRIORITY,
    SafetyMatch,
    SafetyPatternError,
    SafetyPatterns,
    default_patterns,
    normalize,
)

ROOT = Path(__file__).resolve().parent.parent
PATTERN_DIR = ROOT / "data" / "safety"
LABELLED = ROOT / "tests" / "safety" / "labelled.yml"
LANGUAGES = ("en", "de", "fr", "ar")

# Floors sit a little under what bench/safety_eval.py measures (see bench/results/safety.md).
RECALL_OVERALL_FLOOR = 0.98
RECALL_CATEGORY_FLOOR = {"danger_now": 0.97, "self_harm": 0.97, "sextortion": 0.97,
                         "abuse": 0.96}
RECALL_LANGUAGE_FLOOR = 0.97
PRECISION_FLOOR = 0.97  # exact category, over everything reported as a crisis
FALSE_ALARM_CEILING = 0.02  # share of the labelled negatives reported as a crisis


def _load_labelled() -> List[Dict[str, str]]:
    from ruamel.yaml import YAML

    return YAML(typ="safe", pure=True).load(LABELLED.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def patterns() -> SafetyPatterns:
    return default_patterns()


@pytest.fixture(scope="module")
def labelled() -> List[Dict[str, str]]:
    return _load_labelled()


@pytest.fixture(scope="module")
def predictions(patterns, labelled):
    out = []
    for item in labelled:
        m = patterns.match(item["text"])
        out.append((item, m.category if m else "none"))
    return out


# --------------------------------------------------------------------------- loading


def test_real_patterns_load_with_every_category_and_language(patterns):
    assert patterns.categories == PRIORITY
    assert {p.name for p in patterns.files} >= {f"{lang}.yml" for lang in LANGUAGES}
    languages = {p.language for p in patterns._patterns}  # noqa: SLF001
    assert languages == set(LANGUAGES)
    for lang in LANGUAGES:
        cats = {p.category for p in patterns._patterns if p.language == lang}  # noqa: SLF001
        assert cats == set(PRIORITY), f"{lang} lacks {set(PRIORITY) - cats}"


def test_pattern_ids_follow_the_file_language(patterns):
    for p in list(patterns._patterns) + list(patterns._exceptions):  # noqa: SLF001
        assert p.id.startswith(f"{p.language}-"), p.id
        assert Path(p.file).stem == p.language


def test_default_patterns_is_cached():
    assert default_patterns() is default_patterns()


def test_category_intents():
    assert CATEGORY_INTENTS == {"self_harm": "crisis_self_harm",
                                "danger_now": "crisis_danger_now",
                                "abuse": "disclosure_abuse",
                                "sextortion": "sextortion_now"}


def test_module_does_not_import_rasa():
    code = "import sys; import bot.safety as s; s.default_patterns(); " \
           "print(sorted(m for m in sys.modules if m == 'rasa' or m.startswith('rasa.')))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "[]"


GOOD = """\
language: xx
patterns:
  - id: xx-self-harm-die
    category: self_harm
    regex: '\\bwant\\s+to\\s+die\\b'
    examples: ["I want to die"]
    not_examples: ["dying to see you"]
  - id: xx-abuse-touch
    category: abuse
    regex:
      - '\\btouches\\s+me\\b'
      - '\\bour\\s+secret\\b'
    examples: ["he touches me", "it is our secret"]
exceptions:
  - id: xx-ex-content
    category: self_harm
    regex: '\\bwhat\\s+is\\s+want\\s+to\\s+die\\s+content\\b'
    examples: ["what is want to die content"]
"""


def _write(tmp_path: Path, text: str, name: str = "xx.yml") -> Path:
    (tmp_path / name).write_text(textwrap.dedent(text), encoding="utf-8")
    return tmp_path


def test_small_valid_directory_loads(tmp_path):
    p = SafetyPatterns.load(_write(tmp_path, GOOD))
    assert p.categories == ("self_harm", "abuse")
    hit = p.match("i want to die")
    assert hit == SafetyMatch("self_harm", "crisis_self_harm", "xx-self-harm-die", "xx")
    assert p.match("what is want to die content") is None  # the exception vetoes it
    assert p.match("what is want to die content? i want to die").category == "self_harm"
    assert p.match("it is our secret").pattern_id == "xx-abuse-touch"


@pytest.mark.parametrize("old,new,expected", [
    # broken regex
    ("regex: '\\bwant\\s+to\\s+die\\b'", "regex: '\\bwant(\\s+to\\s+die\\b'",
     ["xx.yml", "xx-self-harm-die", "does not compile"]),
    # example that does not match its pattern
    ('examples: ["I want to die"]', 'examples: ["I want to die", "i wish i was gone"]',
     ["xx.yml", "xx-self-harm-die", "i wish i was gone", "does not match"]),
    # not_example that matches
    ('not_examples: ["dying to see you"]', 'not_examples: ["want to die"]',
     ["xx.yml", "xx-self-harm-die", "not_example", "want to die"]),
    # missing category
    ("    category: self_harm\n    regex: '\\bwant", "    regex: '\\bwant",
     ["xx.yml", "xx-self-harm-die", "missing 'category'"]),
    # unknown category
    ("category: abuse", "category: grooming",
     ["xx.yml", "xx-abuse-touch", "unknown category 'grooming'"]),
    # a typo in a key
    ('not_examples: ["dying', 'not_exemples: ["dying',
     ["xx.yml", "xx-self-harm-die", "unknown key", "not_exemples"]),
    # no examples
    ('    examples: ["he touches me", "it is our secret"]\n', "",
     ["xx.yml", "xx-abuse-touch", "at least one example"]),
    # upper case or accents in a regex never match the normalised text
    ("'\\btouches\\s+me\\b'", "'\\bTouches\\s+me\\b'", ["xx.yml", "xx-abuse-touch", "'T'"]),
    ("'\\bour\\s+secret\\b'", "'\\bnotre\\s+secrét\\b'", ["xx.yml", "xx-abuse-touch", "'é'"]),
    # named groups break the combined regexes
    ("'\\btouches\\s+me\\b'", "'\\b(?P<x>touches)\\s+me\\b'",
     ["xx.yml", "xx-abuse-touch", "named groups"]),
    # an exception that does not veto its own example
    ("regex: '\\bwhat\\s+is\\s+want\\s+to\\s+die\\s+content\\b'",
     "regex: '\\bwhat\\s+is\\b'", ["xx.yml", "xx-ex-content", "still reported"]),
    # undefined {{name}}
    ("'\\bour\\s+secret\\b'", "'\\bour\\s+{{secretword}}\\b'",
     ["xx.yml", "xx-abuse-touch", "undefined {{secretword}}"]),
    # language not a code (YAML 1.2 keeps `no` a string, but it must still be quoted codes)
    ("language: xx", "language: 12", ["xx.yml", "'language'"]),
])
def test_planted_errors_name_file_id_and_problem(tmp_path, old, new, expected):
    assert old in GOOD, old
    _write(tmp_path, GOOD.replace(old, new))
    with pytest.raises(SafetyPatternError) as err:
        SafetyPatterns.load(tmp_path)
    message = str(err.value)
    for part in expected:
        assert part in message, (part, message)


def test_yaml_syntax_error_names_the_file(tmp_path):
    _write(tmp_path, GOOD + "  - id: [unclosed\n")
    with pytest.raises(SafetyPatternError, match=r"xx\.yml: YAML error"):
        SafetyPatterns.load(tmp_path)


def test_duplicate_id_across_files(tmp_path):
    _write(tmp_path, GOOD, "xx.yml")
    _write(tmp_path, GOOD.replace("language: xx", "language: yy")
           .replace("xx-ex-content", "yy-ex-content").replace("xx-abuse", "yy-abuse"), "yy.yml")
    with pytest.raises(SafetyPatternError, match=r"yy\.yml: pattern xx-self-harm-die: "
                                                 r"duplicate id \(also in .*xx\.yml\)"):
        SafetyPatterns.load(tmp_path)


def test_empty_or_missing_directory(tmp_path):
    with pytest.raises(SafetyPatternError, match="no \\*.yml"):
        SafetyPatterns.load(tmp_path)
    with pytest.raises(SafetyPatternError, match="does not exist"):
        SafetyPatterns.load(tmp_path / "nope")


def test_safety_pattern_error_is_a_value_error():
    assert issubclass(SafetyPatternError, ValueError)


def test_pyyaml_fallback_loads_the_same(tmp_path, monkeypatch):
    _write(tmp_path, GOOD)
    monkeypatch.setitem(sys.modules, "ruamel.yaml", None)  # "import ruamel.yaml" now fails
    p = SafetyPatterns.load(tmp_path)
    assert p.match("i want to die").pattern_id == "xx-self-harm-die"


# --------------------------------------------------------------------------- normalize


@pytest.mark.parametrize("raw,expected", [
    ("i\u200bwant\u200bto\u200bdie", "i want to die"),
    ("i\u2060want\ufefftoo\u200edie", "i want too die"),
    ("k\u200bi\u200bl\u200bl", "kill"),  # letters glued back together
    ("\u202eI want\u202c to \u2066die\u2069", "i want to die"),
    ("I'M  Going\tTO\n\nDIE", "i m going to die"),
    ("don’t", "don t"),
    ("Ich möchte nicht mehr leben, Straße", "ich mochte nicht mehr leben, strasse"),
    ("je ne veux plus être là, ça", "je ne veux plus etre la, ca"),
    ("ＦＵＬＬ ｗｉｄｔｈ", "full width"),
    ("k1ll mys3lf, su1c1d3, $uicide", "kill myself, suicide, suicide"),
    ("im 13 and hes 30", "im 13 and hes 30"),  # standalone digits stay
    ("pleeeeease diiiie", "pleease diie"),
    ("أريد أن أموت", "اريد ان اموت"),
    ("إنه آتٍ", "انه ات"),
    ("سأنتحـــــر", "سانتحر"),  # tatweel
    ("مُؤْلِمَة", "مولمه"),  # harakat, hamza on waw, teh marbuta
    ("على مستشفى", "علي مستشفي"),  # alef maksura
    ("عمري ١٣", "عمري 13"),
    ("  ", ""),
])
def test_normalize(raw, expected):
    assert normalize(raw) == expected


def test_normalize_rejects_non_strings():
    with pytest.raises(TypeError):
        normalize(None)  # type: ignore[arg-type]


def test_zero_width_and_bidi_do_not_hide_a_crisis(patterns):
    for text in ("i\u200bwant\u200bto\u200bdie", "i want to d\u200bi\u200be",
                 "i want to \u202edie\u202c", "\u2066i\u2069 \u2066want\u2069 to die",
                 "i wa\u00adnt to die", "i wanna d i e", "i want to diiiiieeee"):
        hit = patterns.match(text)
        assert hit is not None and hit.category == "self_harm", text


# --------------------------------------------------------------------------- matching


def test_match_basics(patterns):
    assert patterns.match("") is None
    assert patterns.match("   ") is None
    assert patterns.match("hello, what is grooming?") is None
    with pytest.raises(TypeError):
        patterns.match(None)  # type: ignore[arg-type]
    hit = patterns.match("I want to die")
    assert hit.category == "self_harm" and hit.intent == "crisis_self_harm"
    assert hit.language == "en" and hit.pattern_id.startswith("en-")


def test_priority_danger_over_self_harm_over_sextortion_over_abuse(patterns):
    assert patterns.match(
        "he has my nudes and says he will post them unless i pay").category == "sextortion"
    assert patterns.match(
        "he has my nudes and says he will post them unless i pay, i want to die"
    ).category == "self_harm"
    assert patterns.match(
        "i want to die. he is outside my house right now").category == "danger_now"
    assert patterns.match("im 13 and my boyfriend is 30").category == "abuse"
    assert patterns.match(
        "im 13 and my boyfriend is 30 and he has my nudes and wants money"
    ).category == "sextortion"


def test_all_languages_are_checked_whatever_the_text(patterns):
    mixed = {"ok so basically ich will nicht mehr leben": "de",
             "hey je veux mourir": "fr",
             "hello بدي موت": "ar",
             "hallo, i want to kill myself": "en"}
    for text, lang in mixed.items():
        hit = patterns.match(text)
        assert hit is not None and hit.category == "self_harm" and hit.language == lang, text


def test_exception_vetoes_only_the_overlapping_match(patterns):
    assert patterns.match("what is self-harm content?") is None
    assert patterns.match("what is self-harm content? i self harm every day").category \
        == "self_harm"
    assert patterns.match("what should i do if my child talks about suicide") is None
    assert patterns.match("my child talks about suicide every day").category == "self_harm"


def test_match_is_deterministic(patterns, labelled):
    texts = [i["text"] for i in labelled]
    first = [patterns.match(t) for t in texts]
    for _ in range(3):
        assert [patterns.match(t) for t in texts] == first
    assert [patterns.match(t) for t in reversed(texts)] == list(reversed(first))
    fresh = SafetyPatterns.load(PATTERN_DIR)  # a second, independent load
    assert [fresh.match(t) for t in texts] == first


def test_fast_index_agrees_with_plain_search(patterns, labelled):
    """The word-prefix index (an optimisation) must give exactly what plain searching gives."""
    texts = [i["text"] for i in labelled]
    for p in list(patterns._patterns) + list(patterns._exceptions):  # noqa: SLF001
        texts += list(p.examples) + list(p.not_examples)
    texts += ["", "a", "1234", "i i i i", "im im im 13 13", "ال ال", "?!", "\u200b"]
    for cat in PRIORITY:
        matcher = patterns._matchers[cat]  # noqa: SLF001
        fast = matcher.index
        plain = safety._PartIndex([None] * len(fast.regexes), fast.regexes,  # noqa: SLF001
                                  [p for pat in matcher.patterns for p in pat.parts])
        assert not plain.by2 and not plain.by1
        assert len(fast.rest) < len(fast.regexes) / 4, "most parts should be indexed"
        for text in texts:
            for v in safety._variants(text):  # noqa: SLF001
                starts = safety._word_starts(v)  # noqa: SLF001
                assert fast.leftmost(v, starts) == plain.leftmost(v, starts), (cat, v)


def test_explain_lists_matching_patterns(patterns):
    rows = patterns.explain("what is self-harm content? i want to die")
    ids = {r["id"] for r in rows}
    assert "en-self-harm-want-to-die" in ids and "en-ex-asking-about-content" in ids


# --------------------------------------------------------------------------- labelled set


def test_labelled_set_shape(labelled, patterns):
    assert len(labelled) >= 260
    for item in labelled:
        assert set(item) == {"text", "category", "language"}, item
        assert item["category"] in PRIORITY + ("none",)
        assert item["language"] in LANGUAGES
    texts = [i["text"] for i in labelled]
    assert len(texts) == len(set(texts)), [t for t, n in Counter(texts).items() if n > 1]
    by_cat = Counter(i["category"] for i in labelled)
    for cat in PRIORITY:
        assert by_cat[cat] >= 40, cat
    assert by_cat["none"] >= 90
    pos_by_lang = Counter(i["language"] for i in labelled if i["category"] != "none")
    for lang in LANGUAGES:
        assert pos_by_lang[lang] >= 10, lang
    # the labelled set must measure generalisation, not recite the pattern examples
    every = list(patterns._patterns) + list(patterns._exceptions)  # noqa: SLF001
    examples = {normalize(e) for p in every for e in p.examples}
    positives = [i for i in labelled if i["category"] != "none"]
    unseen = [i for i in positives if normalize(i["text"]) not in examples]
    assert len(unseen) / len(positives) >= 0.70


def _recall(rows, keep) -> float:
    sel = [(item, pred) for item, pred in rows if item["category"] != "none" and keep(item)]
    return sum(1 for item, pred in sel if pred == item["category"]) / len(sel)


def test_recall_overall(predictions):
    assert _recall(predictions, lambda i: True) >= RECALL_OVERALL_FLOOR


@pytest.mark.parametrize("category", PRIORITY)
def test_recall_per_category(predictions, category):
    assert _recall(predictions, lambda i: i["category"] == category) \
        >= RECALL_CATEGORY_FLOOR[category]


@pytest.mark.parametrize("language", LANGUAGES)
def test_recall_per_language(predictions, language):
    assert _recall(predictions, lambda i: i["language"] == language) >= RECALL_LANGUAGE_FLOOR


def test_precision_and_false_alarms(predictions):
    flagged = [(item, pred) for item, pred in predictions if pred != "none"]
    correct = sum(1 for item, pred in flagged if pred == item["category"])
    assert correct / len(flagged) >= PRECISION_FLOOR
    negatives = [(item, pred) for item, pred in predictions if item["category"] == "none"]
    alarms = [item["text"] for item, pred in negatives if pred != "none"]
    assert len(alarms) / len(negatives) <= FALSE_ALARM_CEILING, alarms


@pytest.mark.parametrize("text", [
    # the publicly reported failures (domain research §5.3), phrased without keywords
    "he makes me do stuff, i'm 12",
    "i'm 13 and i'm going on a trip with a 31 year old man, we're keeping it from my parents",
    "i won't be around much longer",
    "he says i have until midnight to pay or he sends the video to everyone",
])
def test_reported_failure_cases_are_caught(patterns, text):
    assert patterns.match(text) is not None, text
