"""Language identification for short chat messages: langdetect plus evidence and priors.

Pure Python (no Rasa import) so the gateway, the benchmark and the NLU component share it.
langdetect alone is unreliable on short text and nondeterministic unless seeded
(rasa-notes §6 B1-B3); here it is seeded, restricted, and only trusted with enough letters.
Digits, emoji, URLs, @mentions and punctuation are never evidence.
"""
from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from langdetect import DetectorFactory, detect_langs
from langdetect.lang_detect_exception import LangDetectException
from ruamel.yaml import YAML

DetectorFactory.seed = 0

ROOT = Path(__file__).resolve().parent.parent
MARKERS_FILE = ROOT / "data" / "language" / "markers.yml"

_URL = re.compile(r"(https?://\S+|www\.\S+|\b\S+\.(com|org|net|de|fr|uk|gov|io)\S*)", re.I)
_MENTION = re.compile(r"[@#]\w+")
_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)?", re.UNICODE)


@dataclass(frozen=True)
class Detection:
    """Result of :func:`LanguageIdentifier.detect`.

    Attributes:
        language: ISO 639-1 code, or None when there is not enough evidence.
        confidence: 0..1, how sure the identifier is (1.0 for script and word-list evidence).
        supported: whether ``language`` is one the bot speaks.
        evidence: "none", "script", "markers", "function_words" or "langdetect".
        words: number of letter-only words in the message.
    """

    language: Optional[str]
    confidence: float
    supported: bool
    evidence: str
    words: int


def letter_words(text: str) -> List[str]:
    """The words of ``text`` made of letters, lower-cased; URLs, mentions, digits, emoji dropped."""
    text = _URL.sub(" ", text)
    text = _MENTION.sub(" ", text)
    text = unicodedata.normalize("NFC", text)
    return [w.casefold().replace("’", "'") for w in _WORD.findall(text)]


def _is_arabic(ch: str) -> bool:
    return "\u0600" <= ch <= "\u06ff" or "\u0750" <= ch <= "\u077f" or "\ufb50" <= ch <= "\ufdff" \
        or "\ufe70" <= ch <= "\ufeff"


@functools.lru_cache(maxsize=4)
def _load_markers(path: str) -> Tuple[Dict[str, frozenset], Dict[str, frozenset]]:
    data = YAML(typ="safe").load(Path(path).read_text(encoding="utf-8")) or {}
    markers = {str(k): frozenset(str(w).casefold() for w in v or []) for k, v in (data.get("markers") or {}).items()}
    function = {str(k): frozenset(str(w).casefold() for w in v or [])
                for k, v in (data.get("function_words") or {}).items()}
    return markers, function


class LanguageIdentifier:
    """Decide a message's language from its own evidence (no conversation context).

    Args:
        supported: languages the bot speaks (default en, de, fr, ar).
        min_words: fewest letter words for langdetect to count (default 3).
        threshold: langdetect probability needed among supported languages (default 0.90).
        unsupported_threshold: langdetect probability needed to call a message a language the
            bot does not speak (default 0.99, with ≥ 4 words and no function word of ours).
        markers_file: YAML with ``markers`` and ``function_words`` per language.
    """

    def __init__(self, supported: Sequence[str] = ("en", "de", "fr", "ar"), min_words: int = 3,
                 threshold: float = 0.90, unsupported_threshold: float = 0.99,
                 markers_file: Path = MARKERS_FILE) -> None:
        self.supported = tuple(supported)
        self.min_words = min_words
        self.threshold = threshold
        self.unsupported_threshold = unsupported_threshold
        self.markers, self.function_words = _load_markers(str(markers_file))

    def _votes(self, words: Iterable[str], table: Dict[str, frozenset]) -> Dict[str, int]:
        votes: Dict[str, int] = {}
        for w in words:
            for lang, vocab in table.items():
                if w in vocab:
                    votes[lang] = votes.get(lang, 0) + 1
        return votes

    def detect(self, text: str) -> Detection:
        """Identify the language of one message (see :class:`Detection`). Never raises."""
        words = letter_words(text or "")
        n = len(words)
        if n == 0:
            return Detection(None, 0.0, False, "none", 0)
        letters = [ch for w in words for ch in w]
        arabic = sum(1 for ch in letters if _is_arabic(ch))
        if "ar" in self.supported and arabic / max(len(letters), 1) >= 0.6:
            return Detection("ar", 1.0, True, "script", n)
        joined = " ".join(words)
        if n <= 2:
            for lang, vocab in self.markers.items():
                if joined in vocab:
                    return Detection(lang, 1.0, lang in self.supported, "markers", n)
            votes = self._votes(words, self.markers)
            if len(votes) == 1:
                lang = next(iter(votes))
                return Detection(lang, 1.0, lang in self.supported, "markers", n)
            return Detection(None, 0.0, False, "none", n)
        fw = self._votes(words, self.function_words)
        try:
            probs = {p.lang: p.prob for p in detect_langs(joined)}
        except LangDetectException:
            probs = {}
        ours = {k: v for k, v in probs.items() if k in self.supported}
        total = sum(ours.values())
        if fw:
            best = max(fw, key=fw.get)
            others = sum(v for k, v in fw.items() if k != best)
            if fw[best] >= 2 and fw[best] >= 2 * others:
                lang_prob = ours.get(best, 0.0) / total if total else 0.0
                return Detection(best, max(0.9, lang_prob), best in self.supported, "function_words", n)
        if n >= self.min_words and total > 0:
            best = max(ours, key=ours.get)
            share = ours[best] / total
            if share >= self.threshold and (total >= 0.5 or n >= 5):
                return Detection(best, share, True, "langdetect", n)
        if n >= 5 and not fw and probs:
            top = max(probs, key=probs.get)
            if top not in self.supported and probs[top] >= self.unsupported_threshold:
                return Detection(top, probs[top], False, "langdetect", n)
        return Detection(None, 0.0, False, "none", n)


def normalise_code(tag: Optional[str]) -> Optional[str]:
    """``"pt-BR"`` → ``"pt"``; None or empty → None."""
    if not tag:
        return None
    return str(tag).replace("_", "-").split("-")[0].strip().lower() or None


def language_name(code: str, in_language: str = "en") -> str:
    """English (or other) display name of a language code, e.g. ``"tr"`` → ``"Turkish"``."""
    try:
        from babel import Locale

        return Locale.parse(code).get_display_name(in_language) or code
    except Exception:  # noqa: BLE001 - unknown codes just show the code
        return code


def decide(detection: Detection, current: Optional[str], explicit: Optional[str] = None) -> Optional[str]:
    """The conversation's language after this message (precedence of issue #7).

    explicit choice > confident detection of a supported language > current language.
    Returns None when nothing is known (the caller then uses the hint or English).
    """
    if explicit:
        return explicit
    if detection.language and detection.supported:
        return detection.language
    return current
