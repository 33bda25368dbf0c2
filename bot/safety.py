"""Deterministic crisis and disclosure patterns (the core of the SafetyGate).

Pure Python on purpose: the Rasa component (``bot/nlu/safety_gate.py``) uses it, and so does the
gateway's fail-safe when Rasa is down, so nothing here may import Rasa.

The patterns are data, kept by staff in ``data/safety/<lang>.yml`` (format in
:meth:`SafetyPatterns.load`). Every message is normalised (:func:`normalize`) and checked against
the patterns of *every* language, whatever language the conversation is in: a German speaker may
write one English sentence, and a missed crisis costs far more than a wrong one. When several
categories match, the most urgent wins: ``danger_now`` > ``self_harm`` > ``sextortion`` >
``abuse``.

Typical use::

    from bot.safety import default_patterns
    hit = default_patterns().match("i dont want to be here anymore")
    if hit:  # SafetyMatch(category='self_harm', intent='crisis_self_harm', ...)
        ...
"""
from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Pattern, Sequence, Tuple

__all__ = [
    "CATEGORY_INTENTS",
    "PRIORITY",
    "SafetyMatch",
    "SafetyPatternError",
    "SafetyPatterns",
    "default_patterns",
    "normalize",
]

#: Category -> the Rasa intent the SafetyGate forces.
CATEGORY_INTENTS: Dict[str, str] = {
    "danger_now": "crisis_danger_now",
    "self_harm": "crisis_self_harm",
    "sextortion": "sextortion_now",
    "abuse": "disclosure_abuse",
}

#: Categories, most urgent first. When a message matches several, the first one here wins.
PRIORITY: Tuple[str, ...] = ("danger_now", "self_harm", "sextortion", "abuse")

DEFAULT_DIRECTORY = Path(__file__).resolve().parent.parent / "data" / "safety"

# --------------------------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------------------------

# Invisible characters that are used (on purpose or by keyboards) inside or between words.
_ZERO_WIDTH = "\u200b\u200c\u200d\u200e\u200f\u2060\ufeff"
_BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_INVISIBLE_RUN = re.compile("[" + _ZERO_WIDTH + _BIDI + "]+")
# Always removed without a trace (never word separators).
_ALWAYS_REMOVE = dict.fromkeys(map(ord, "\u00ad\u034f\u180e\u2061\u2062\u2063\u2064\u0640"), None)

_CHAR_MAP = {
    # apostrophes become spaces, so "i'm", "i m" and "im" all reach the patterns as "i m" / "im";
    # patterns write contractions as i\s?m, don\s?t, j\s?ai.
    **dict.fromkeys(map(ord, "'\u2018\u2019\u201a\u201b\u02bc\u02bb\u0060\u00b4\u2032\uff07"), " "),
    **dict.fromkeys(map(ord, "\u201c\u201d\u201e\u201f\u00ab\u00bb\u2033"), '"'),
    **dict.fromkeys(map(ord, "\u2010\u2011\u2012\u2013\u2014\u2015\u2212"), "-"),
    # Arabic letter forms (hamza carriers are also handled by the mark stripping below)
    ord("\u0671"): "\u0627",  # alef wasla
    ord("\u0649"): "\u064a",  # alef maksura -> yeh
    ord("\u06cc"): "\u064a",  # farsi yeh -> yeh
    ord("\u06d2"): "\u064a",  # yeh barree -> yeh
    ord("\u0629"): "\u0647",  # teh marbuta -> heh
    ord("\u06a9"): "\u0643",  # keheh -> kaf
    ord("\u060c"): ",",  # arabic comma
    ord("\u061b"): ";",  # arabic semicolon
    ord("\u061f"): "?",  # arabic question mark
    # Arabic-Indic and extended Arabic-Indic digits -> ASCII (ages: "عمري ١٣")
    **{ord(chr(0x0660 + i)): str(i) for i in range(10)},
    **{ord(chr(0x06F0 + i)): str(i) for i in range(10)},
}


# Marks stripped after NFD: Latin combining accents (é -> e, ü -> u), Arabic harakat, shadda,
# sukun, hamza above/below (أ -> ا, ؤ -> و, ئ -> ي), superscript alef, Quranic annotations.
_MARKS = re.compile("[\u0300-\u036f\u064b-\u065f\u0670\u06d6-\u06ed]")
_ASCII_MAP = {ord("'"): " ", ord("`"): " "}


_LETTER = r"[^\W\d_]"
_LEET = {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "@": "a",
         "$": "s", "!": "i", "|": "l"}
_LEET_INSIDE = re.compile(r"(?<=" + _LETTER + r")[0134578@$!|](?=" + _LETTER + r")")
_LEET_END = re.compile(r"(?<=" + _LETTER + _LETTER + r")[03](?![\w])")
_LEET_START = re.compile(r"(?<![\w$@])[$@](?=" + _LETTER + r"{2})")
_LEET_ANY = re.compile(r"[0134578@$!|]")
_REPEATS = re.compile(r"(" + _LETTER + r")\1{2,}")
_SPACES = re.compile(r"\s+")


def _invisible_to_space(text: str) -> str:
    """Replace runs of invisible characters by a space when they separate words, else drop them.

    A token such as ``i\\u200bwant\\u200bto\\u200bdie`` (several pieces of two or more letters
    glued by invisible characters) is a sentence written without visible spaces; ``d\\u200bie``
    (single letters) is a word split to dodge filters. :meth:`SafetyPatterns.match` tries both
    readings whenever invisible characters are present, so this guess only decides what
    :func:`normalize` itself returns.
    """
    if not _INVISIBLE_RUN.search(text):
        return text
    out: List[str] = []
    for token in re.split(r"(\s+)", text):
        if not _INVISIBLE_RUN.search(token):
            out.append(token)
            continue
        pieces = [p for p in _INVISIBLE_RUN.split(token) if p]
        long_pieces = sum(1 for p in pieces if len(p) >= 2)
        joiner = " " if long_pieces >= 2 else ""
        out.append(joiner.join(pieces))
    return "".join(out)


def _normalize(text: str, invisible: str) -> str:
    if not isinstance(text, str):
        raise TypeError(f"normalize() expects str, got {type(text).__name__}")
    if text.isascii():  # fast path: NFKC, NFD and the mark stripping change nothing
        t = text.lower().translate(_ASCII_MAP)
    else:
        t = unicodedata.normalize("NFKC", text)
        if invisible == "space":
            t = _INVISIBLE_RUN.sub(" ", t)
        elif invisible == "remove":
            t = _INVISIBLE_RUN.sub("", t)
        else:
            t = _invisible_to_space(t)
        t = t.translate(_ALWAYS_REMOVE)
        t = t.casefold()
        t = _MARKS.sub("", unicodedata.normalize("NFD", t))
        t = unicodedata.normalize("NFC", t)
        t = t.translate(_CHAR_MAP)
    if _LEET_ANY.search(t):
        t = _LEET_START.sub(lambda m: _LEET[m.group(0)], t)
        for _ in range(2):  # "k!11" needs two passes
            t = _LEET_INSIDE.sub(lambda m: _LEET[m.group(0)], t)
        t = _LEET_END.sub(lambda m: _LEET[m.group(0)], t)
    t = _REPEATS.sub(r"\1\1", t)
    return _SPACES.sub(" ", t).strip()


def normalize(text: str) -> str:
    """Return the form of ``text`` that the safety patterns are matched against.

    Steps, in order:

    1. Unicode NFKC (full-width and stylised letters become plain ones).
    2. Zero-width characters (U+200B-U+200F, U+2060, U+FEFF) and bidi controls (U+202A-U+202E,
       U+2066-U+2069) are removed; where they glue whole words together
       (``"i\\u200bwant\\u200bto\\u200bdie"``) they become spaces. Soft hyphens and Arabic
       tatweel are removed.
    3. ``casefold()`` (so ``ß`` becomes ``ss``).
    4. Accents and Arabic diacritics are stripped (``é``->``e``, ``ü``->``u``, harakat and shadda
       go, ``أ إ آ ٱ``->``ا``, ``ؤ``->``و``, ``ئ ى ی``->``ي``, ``ة``->``ه``); Arabic-Indic digits
       become ASCII digits.
    5. Every kind of apostrophe becomes a space (``"i'm"`` -> ``"i m"``); typographic quotes
       become ``"`` and dashes ``-``.
    6. Leetspeak inside words: ``k1ll`` -> ``kill``, ``mys3lf`` -> ``myself``, ``$uicide`` ->
       ``suicide`` (digits standing alone, such as ages, are kept).
    7. A letter repeated three or more times is cut to two (``"pleeeease"`` -> ``"pleease"``,
       ``"diiieee"`` -> ``"diiee"``); patterns use ``e+`` where doubled letters matter.
    8. Whitespace runs (including newlines) become one space; the ends are stripped.

    Args:
        text: any user message.

    Returns:
        The normalised text (possibly empty).

    Raises:
        TypeError: if ``text`` is not a ``str``.
    """
    return _normalize(text, "auto")


_SPACED_LETTERS = re.compile(r"(?<!\w)(?:" + _LETTER + r"[ .\-_*]){2,}" + _LETTER + r"(?!\w)")
_LONG_REPEAT = re.compile(r"(" + _LETTER + r")\1{2,}")
_ANY_REPEAT = re.compile(r"(" + _LETTER + r")\1+")


def _variants(text: str) -> List[str]:
    """The readings of ``text`` that the patterns are matched against (normalised, deduplicated).

    Always :func:`normalize` ``(text)``. Extra readings only when the text shows a trick:

    - invisible characters: also the readings with all of them as spaces / all removed;
    - letters spelled out ("d i e", "k.i.l.l"): also with such runs joined ("die", "kill");
    - letters stretched three times or more ("mouriiir"): also with every doubled letter cut
      to one ("mourir"; patterns then need the single-letter spelling, e.g. ``kill+|kil``).
    """
    first = _normalize(text, "auto")
    out = [first]
    if not text.isascii() and _INVISIBLE_RUN.search(text):
        for mode in ("space", "remove"):
            v = _normalize(text, mode)
            if v not in out:
                out.append(v)
    for v in list(out):
        if _SPACED_LETTERS.search(v):
            joined = _SPACED_LETTERS.sub(lambda m: re.sub(r"[ .\-_*]", "", m.group(0)), v)
            if joined not in out:
                out.append(joined)
    if _LONG_REPEAT.search(text.casefold()):
        for v in list(out):
            single = _ANY_REPEAT.sub(r"\1", v)
            if single not in out:
                out.append(single)
    return out


# --------------------------------------------------------------------------------------------
# Patterns
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SafetyMatch:
    """The result of :meth:`SafetyPatterns.match`.

    Attributes:
        category: ``danger_now``, ``self_harm``, ``sextortion`` or ``abuse``.
        intent: the intent to force (:data:`CATEGORY_INTENTS`), e.g. ``crisis_self_harm``.
        pattern_id: id of the pattern that matched (e.g. ``en-self-harm-want-to-die``); safe to
            log, unlike the message text.
        language: ``language`` of the file the pattern came from (not necessarily the language
            of the conversation).
    """

    category: str
    intent: str
    pattern_id: str
    language: str


class SafetyPatternError(ValueError):
    """A pattern file is invalid. The message names the file, the pattern id and the problem."""


@dataclass(frozen=True)
class _Pattern:
    id: str
    category: str
    language: str
    file: str
    source: str  # the whole regex (list items joined with |), after defs expansion
    parts: Tuple[str, ...]  # the regex list items (or the one regex), after defs expansion
    trees: Tuple[Any, ...]  # parse trees of the parts (None if the private parser is missing)
    regexes: Tuple[Pattern[str], ...]  # the compiled parts
    examples: Tuple[str, ...]
    not_examples: Tuple[str, ...]
    is_exception: bool


_FILE_KEYS = {"language", "patterns", "exceptions", "defs", "notes"}
_PATTERN_KEYS = {"id", "category", "regex", "examples", "not_examples", "notes"}
_REQUIRED_KEYS = ("id", "category", "regex")
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
_DEF_RE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
# Text is casefolded by normalize(), and the loader rejects upper-case letters in regexes, so the
# regexes are compiled case-sensitively: the regex engine can then skip alternatives that start
# with a literal character after looking at one character, which is several times faster.
_FLAGS = 0


def _read_yaml(path: Path) -> Any:
    """Read a YAML file with ruamel.yaml (safe, YAML 1.2) or, if missing, PyYAML (safe)."""
    text = path.read_text(encoding="utf-8")
    try:
        from ruamel.yaml import YAML  # type: ignore
    except ImportError:  # pragma: no cover - the gateway image may only have PyYAML
        import yaml  # type: ignore

        return yaml.safe_load(text)
    yaml12 = YAML(typ="safe", pure=True)
    yaml12.version = (1, 2)
    return yaml12.load(text)


# --- the fast gate --------------------------------------------------------------------------
# Everything below up to SafetyPatterns is only about speed. It reads the regex parse trees with
# the standard library's (private) sre parser; if that API ever changes, the gate switches itself
# off and matching stays correct, only slower.

try:  # Python 3.11+
    from re import _compiler as _sre_compile  # type: ignore[attr-defined]
    from re import _constants as _sre_c  # type: ignore[attr-defined]
    from re import _parser as _sre_parse  # type: ignore[attr-defined]
except ImportError:  # Python 3.10 (Rasa 3.6)
    import sre_compile as _sre_compile  # type: ignore[no-redef]
    import sre_constants as _sre_c  # type: ignore[no-redef]
    import sre_parse as _sre_parse  # type: ignore[no-redef]

_WORD_START = re.compile(r"\b\w")


def _starts_with_boundary(items: Any) -> bool:
    """True if every way through the parsed regex starts with ``\\b``."""
    data = list(items)
    if not data:
        return False
    op, av = data[0]
    if op is _sre_c.AT:
        return av is _sre_c.AT_BOUNDARY
    if op is _sre_c.SUBPATTERN:
        return _starts_with_boundary(av[-1])
    if op is _sre_c.BRANCH:
        return all(_starts_with_boundary(branch) for branch in av[1])
    return False


@functools.lru_cache(maxsize=1)
def _unicode_digits() -> frozenset:
    """Every character ``\\d`` matches in str patterns: all Unicode decimal digits."""
    everything = "".join(map(chr, range(0x110000)))
    return frozenset(re.findall(r"\d", everything))


_PREFIX_LEN = 2
_PREFIX_CAP = 3000


class _Unknown(Exception):
    """Raised inside the prefix analysis when a construct is not understood."""


def _in_chars(av: Any) -> Optional[frozenset]:
    """The characters a character class (IN) matches, or None if too many / not understood."""
    got: set = set()
    for iop, iav in av:
        if iop is _sre_c.LITERAL:
            got.add(chr(iav))
        elif iop is _sre_c.RANGE and iav[1] - iav[0] <= 512:
            got.update(chr(c) for c in range(iav[0], iav[1] + 1))
        elif iop is _sre_c.CATEGORY and iav is _sre_c.CATEGORY_DIGIT:
            got.update(_unicode_digits())
        else:  # NEGATE, \w, \s, big ranges ...
            return None
    return frozenset(got)


def _extend(cur: set, items: Any, k: int) -> Tuple[set, set]:
    """Follow the parsed sequence ``items`` from the open prefixes ``cur``.

    Returns ``(open, done)``: prefixes shorter than ``k`` that later items may extend, and
    finished ones (``k`` characters long, or shorter meaning "then anything"). Always errs on the
    side of more/shorter prefixes.
    """
    repeats = (_sre_c.MAX_REPEAT, _sre_c.MIN_REPEAT, getattr(_sre_c, "POSSESSIVE_REPEAT", None))
    done: set = set()
    for op, av in items:
        if not cur:
            break
        if op is _sre_c.AT or op is _sre_c.ASSERT or op is _sre_c.ASSERT_NOT:
            continue  # consumes nothing; ignoring a constraint only adds prefixes
        if op is _sre_c.LITERAL:
            chars: Optional[frozenset] = frozenset((chr(av),))
        elif op is _sre_c.IN:
            chars = _in_chars(av)
        elif op is _sre_c.SUBPATTERN:
            if av[1] & (_sre_c.SRE_FLAG_IGNORECASE | _sre_c.SRE_FLAG_LOCALE):
                raise _Unknown
            cur, d = _extend(cur, av[-1], k)
            done |= d
            continue
        elif op is _sre_c.BRANCH:
            new: set = set()
            for alt in av[1]:
                o, d = _extend(set(cur), alt, k)
                new |= o
                done |= d
            cur = new
            if len(cur) + len(done) > _PREFIX_CAP:
                raise _Unknown
            continue
        elif op in repeats:
            lo, hi, sub = av
            o, d = _extend(set(cur), sub, k)
            done |= d
            if hi != 1:  # more iterations could follow: stop these prefixes here ("then anything")
                done |= o
                o = set()
            if lo == 0:
                o |= cur
            cur = o
            continue
        else:  # ANY, NOT_LITERAL, CATEGORY, GROUPREF, ...
            chars = None
        if chars is None:
            done |= cur
            cur = set()
            break
        new = set()
        for pre in cur:
            for c in chars:
                q = pre + c
                (done if len(q) >= k else new).add(q)
        cur = new
        if len(cur) + len(done) > _PREFIX_CAP:
            raise _Unknown
    return cur, done


def _word_prefixes(tree: Any) -> Optional[frozenset]:
    """For a regex that can only match where a word starts: the possible first 1-2 characters.

    A one-character prefix means "this character, then anything". None when the regex may
    match elsewhere or the analysis gives up.
    """
    if not _starts_with_boundary(tree):
        return None
    for k in (_PREFIX_LEN, 1):
        try:
            opened, done = _extend({""}, tree, k)
        except _Unknown:
            continue
        prefixes = opened | done
        if not prefixes or "" in prefixes:
            return None
        if not all(p[0].isalnum() or p[0] == "_" for p in prefixes):
            return None  # could start with a non-word character: not only at word starts
        return frozenset(prefixes)
    return None


def _compile_part(part: str) -> Tuple[Any, Pattern[str]]:
    """Parse and compile one regex, keeping the parse tree for :class:`_PartIndex`.

    Raises:
        re.error: if the regex is invalid.
    """
    try:
        tree = _sre_parse.parse(part, _FLAGS)
        return tree, _sre_compile.compile(tree, _FLAGS)
    except re.error:
        raise
    except Exception:  # noqa: BLE001 - private API changed: no tree, plain compile
        return None, re.compile(part, _FLAGS)


def _finditer(p: _Pattern, text: str) -> List[Any]:
    """All matches of any part of ``p`` in ``text`` (non-overlapping per part), by start."""
    return sorted((m for r in p.regexes for m in r.finditer(text)), key=lambda m: m.start())


class _PartIndex:
    """The regex parts of one category, indexed so that a message is scanned quickly.

    Most parts start with ``\\b`` and a word (``\\b(?:want|wanna|wish)...``): they can only
    match where a word starts, and only if the text there starts with one of a few two-letter
    prefixes ("wa", "wi"). For each word of the message only the parts whose prefixes fit are
    tried (``regex.match(text, pos)``) instead of every part at every position; the few other
    parts (``^``-anchored, or able to start anywhere) are searched normally. If the analysis of
    the regexes fails (it reads the standard library's private parse trees), every part is
    simply searched normally: slower, same result.
    """

    def __init__(self, trees: Sequence[Any], regexes: Sequence[Pattern[str]],
                 sources: Sequence[str]) -> None:
        self.regexes: List[Pattern[str]] = list(regexes)
        self.rest: List[int] = []  # parts searched normally
        by2: Dict[str, List[int]] = {}
        by1: Dict[str, List[int]] = {}
        for i, tree in enumerate(trees):
            prefixes = None
            if tree is not None:
                try:
                    prefixes = _word_prefixes(tree)
                except Exception:  # noqa: BLE001 - private API changed: plain search
                    prefixes = None
            if prefixes is None:
                self.rest.append(i)
                continue
            for p in prefixes:
                (by2 if len(p) == 2 else by1).setdefault(p, []).append(i)
        rx = self.regexes
        # one regex for "does any of the normally-searched parts match at all?" (usually not)
        self.rest_any: Optional[Pattern[str]] = None
        if len(self.rest) > 1:
            self.rest_any = re.compile("|".join(f"(?:{sources[i]})" for i in self.rest), _FLAGS)
        self.by2: Dict[str, Tuple[Tuple[int, Pattern[str]], ...]] = {
            k: tuple((i, rx[i]) for i in sorted(set(v) | set(by1.get(k[0], ()))))
            for k, v in by2.items()}
        self.by1: Dict[str, Tuple[Tuple[int, Pattern[str]], ...]] = {
            k: tuple((i, rx[i]) for i in sorted(set(v))) for k, v in by1.items()}

    def leftmost(self, text: str, starts: Sequence[int],
                 vetoed: Sequence[Tuple[int, int]] = ()) -> Optional[int]:
        """Index of the part with the leftmost match not overlapping a ``vetoed`` span.

        Ties (same start) go to the lower index. ``starts`` are the word starts of ``text``.
        """
        best: Optional[Tuple[int, int]] = None
        rest = self.rest
        if self.rest_any is not None and self.rest_any.search(text) is None:
            rest = []
        for i in rest:
            rx = self.regexes[i]
            at = 0
            while True:
                m = rx.search(text, at)
                if m is None or (best is not None and m.start() > best[0]):
                    break
                if not vetoed or not any(_spans_overlap(m.span(), v) for v in vetoed):
                    if best is None or (m.start(), i) < best:
                        best = (m.start(), i)
                    break
                at = m.start() + 1
        by2, by1 = self.by2, self.by1
        for pos in starts:
            if best is not None and pos > best[0]:
                break
            cands = by2.get(text[pos:pos + 2]) or by1.get(text[pos])
            if not cands:
                continue
            for i, rx in cands:
                m = rx.match(text, pos)
                if m is None:
                    continue
                if vetoed and any(_spans_overlap(m.span(), v) for v in vetoed):
                    continue
                if best is None or (pos, i) < best:
                    best = (pos, i)
                break
        return None if best is None else best[1]


def _word_starts(text: str) -> List[int]:
    return [m.start() for m in _WORD_START.finditer(text)]


def _spans_overlap(a: Tuple[int, int], b: Tuple[int, int]) -> bool:
    if a[0] == a[1]:  # empty match: inside or at the edge of b
        return b[0] <= a[0] <= b[1]
    return a[0] < b[1] and b[0] < a[1]


class _CategoryMatcher:
    """The patterns and exceptions of one category (see :class:`_PartIndex`)."""

    def __init__(self, category: str, patterns: Sequence[_Pattern],
                 exceptions: Sequence[_Pattern]) -> None:
        self.category = category
        self.patterns = list(patterns)
        self.exceptions = list(exceptions)
        self._owner: List[_Pattern] = [p for p in self.patterns for _ in p.parts]
        self.index = _PartIndex([t for p in self.patterns for t in p.trees],
                                [r for p in self.patterns for r in p.regexes],
                                [s for p in self.patterns for s in p.parts])
        self.exceptions_any: Optional[Pattern[str]] = (
            re.compile("|".join(f"(?:{e.source})" for e in self.exceptions), _FLAGS)
            if self.exceptions else None)

    def match(self, text: str, starts: Sequence[int]) -> Optional[_Pattern]:
        """The pattern with the leftmost match in ``text`` that no exception overlaps."""
        vetoed: List[Tuple[int, int]] = []
        if self.exceptions_any is not None and self.exceptions_any.search(text):
            vetoed = [m.span() for e in self.exceptions for m in _finditer(e, text)]
        i = self.index.leftmost(text, starts, vetoed)
        return None if i is None else self._owner[i]

    def all_matches(self, text: str) -> List[Tuple[_Pattern, bool]]:
        """Every pattern matching ``text``, each with whether an exception vetoes it."""
        vetoed = [em.span() for e in self.exceptions for em in _finditer(e, text)]
        out = []
        for p in self.patterns:
            spans = [pm.span() for pm in _finditer(p, text)]
            if spans:
                ok = any(not any(_spans_overlap(s, v) for v in vetoed) for s in spans)
                out.append((p, not ok))
        return out


class SafetyPatterns:
    """A validated, compiled set of safety patterns. Build it with :meth:`load`.

    Instances are immutable after loading and safe to share between threads.
    """

    def __init__(self, patterns: Sequence[_Pattern], exceptions: Sequence[_Pattern],
                 files: Sequence[Path]) -> None:
        """Internal: use :meth:`load` or :func:`default_patterns`."""
        self._patterns = tuple(patterns)
        self._exceptions = tuple(exceptions)
        self.files: Tuple[Path, ...] = tuple(files)
        self._matchers = {
            cat: _CategoryMatcher(cat, [p for p in patterns if p.category == cat],
                                  [e for e in exceptions if e.category == cat])
            for cat in PRIORITY
        }

    # ---- loading ----------------------------------------------------------------------------

    @classmethod
    def load(cls, directory: Path) -> "SafetyPatterns":
        """Read, compile and check every ``*.yml`` file in ``directory``.

        File format (one file per language, e.g. ``data/safety/en.yml``)::

            language: en                 # required, 2-3 lowercase letters (quote "no" etc.)
            defs:                        # optional named fragments, used as {{name}} in regexes
              myself: '(?:my\\s?self|myslef|meself)'
            patterns:                    # required, may be empty
              - id: en-self-harm-want-to-die      # unique across all files: [a-z0-9_.-]
                category: self_harm      # danger_now | self_harm | sextortion | abuse
                regex: '\\b(?:want|wanna)\\s+to\\s+die\\b'   # or a list of regexes (any)
                examples: ["i want to die"]          # required, >= 1; each must match
                not_examples: ["dying to see him"]   # optional; none may match
                notes: free text         # optional
            exceptions:                  # optional negative patterns (same keys)
              - id: en-ex-asking-about-content
                category: self_harm      # the category this exception vetoes
                regex: '\\bwhat\\s+is\\s+self[- ]harm\\s+content\\b'
                examples: ["what is self-harm content"]

        Regexes are searched (``re.search``, case-sensitive) in :func:`normalize` output and in
        the extra readings :meth:`match` tries (invisible characters, spelled-out or stretched
        letters), so they are written in lower case (upper-case letters are rejected), without
        accents or Arabic diacritics, with ``ss`` for ``ß``, ``ا`` for every alef form, ``ي`` for
        ``ى``, ``ه`` for ``ة``, and with a space (or ``\\s?``) where an apostrophe was. Named
        groups, back-references and global inline flags (``(?i)``) are not allowed. A ``regex``
        given as a list means "any of these"; each item is indexed separately, and items that
        start with ``\\b`` and a word are matched fastest.

        An exception vetoes a match of its category when the two matched spans overlap, so
        "what is self-harm content? i want to die" still matches.

        Checks, each raising :class:`SafetyPatternError` whose message names the file, the id and
        the problem: the directory exists and holds at least one ``*.yml``; YAML syntax; known
        keys; required keys; known category; unique ids; strings where strings are expected;
        undefined ``{{name}}``; regex compile errors and forbidden constructs; letters that
        :func:`normalize` would change (such as ``é`` or ``أ``); every example matches its
        pattern (after normalisation) and is recognised by the whole set as that category or a
        more urgent one (i.e. no exception swallows it); no ``not_example`` matches its pattern;
        every exception example matches its exception and is not reported as the vetoed
        category.

        Args:
            directory: folder with the ``*.yml`` pattern files.

        Returns:
            The loaded :class:`SafetyPatterns`.

        Raises:
            SafetyPatternError: on any problem listed above.
        """
        directory = Path(directory)
        if not directory.is_dir():
            raise SafetyPatternError(f"{directory}: safety pattern directory does not exist")
        files = sorted(directory.glob("*.yml"))
        if not files:
            raise SafetyPatternError(f"{directory}: no *.yml safety pattern files")
        patterns: List[_Pattern] = []
        exceptions: List[_Pattern] = []
        seen: Dict[str, str] = {}
        for path in files:
            ps, es = _load_file(path, seen)
            patterns.extend(ps)
            exceptions.extend(es)
        result = cls(patterns, exceptions, files)
        result._check_examples_end_to_end()
        return result

    def _check_examples_end_to_end(self) -> None:
        rank = {c: i for i, c in enumerate(PRIORITY)}
        for p in self._patterns:
            for ex in p.examples:
                got = self.match(ex)
                if got is None or rank[got.category] > rank[p.category]:
                    what = "nothing" if got is None else f"{got.category} ({got.pattern_id})"
                    raise SafetyPatternError(
                        f"{p.file}: pattern {p.id}: example {ex!r} matches the pattern but the "
                        f"whole set reports {what} (an exception vetoes it?)")
        for e in self._exceptions:
            for ex in e.examples:
                got = self.match(ex)
                if got is not None and got.category == e.category:
                    raise SafetyPatternError(
                        f"{e.file}: exception {e.id}: example {ex!r} is still reported as "
                        f"{e.category} by pattern {got.pattern_id}")

    # ---- matching ---------------------------------------------------------------------------

    @property
    def categories(self) -> Tuple[str, ...]:
        """Categories that have at least one pattern, most urgent first."""
        return tuple(c for c in PRIORITY if self._matchers[c].patterns)

    @property
    def pattern_ids(self) -> Tuple[str, ...]:
        """Ids of all patterns (not exceptions), in file order."""
        return tuple(p.id for p in self._patterns)

    def __len__(self) -> int:
        return len(self._patterns)

    def match(self, text: str) -> Optional[SafetyMatch]:
        """Return the most urgent crisis category that ``text`` matches, or ``None``.

        Every language's patterns are tried, whatever the language of ``text``. Matching is
        deterministic: the same text always gives the same result (categories in
        :data:`PRIORITY` order; within a category, the leftmost match, ties going to the
        pattern that comes first in the files, which are read in name order).

        Args:
            text: the raw user message (it is normalised here).

        Returns:
            A :class:`SafetyMatch`, or ``None`` when nothing matches (or ``text`` is empty).

        Raises:
            TypeError: if ``text`` is not a ``str``.
        """
        if not isinstance(text, str):
            raise TypeError(f"match() expects str, got {type(text).__name__}")
        if not text.strip():
            return None
        variants = [(v, _word_starts(v)) for v in _variants(text)]
        for category in PRIORITY:
            matcher = self._matchers[category]
            for v, starts in variants:
                p = matcher.match(v, starts)
                if p is not None:
                    return SafetyMatch(category, CATEGORY_INTENTS[category], p.id, p.language)
        return None

    def explain(self, text: str) -> List[Dict[str, Any]]:
        """Every pattern that matches ``text`` (for staff debugging and the evaluation script).

        Returns:
            A list of ``{"id", "category", "language", "vetoed"}`` dicts, one per matching
            pattern, in :data:`PRIORITY` order; ``vetoed`` is True when an exception overlaps
            every match of that pattern. Exceptions that match are listed with
            ``"exception": True``.
        """
        out: List[Dict[str, Any]] = []
        for v in _variants(text):
            for category in PRIORITY:
                matcher = self._matchers[category]
                for p, vetoed in matcher.all_matches(v):
                    out.append({"id": p.id, "category": category, "language": p.language,
                                "vetoed": vetoed})
                for e in matcher.exceptions:
                    if any(r.search(v) for r in e.regexes):
                        out.append({"id": e.id, "category": category, "language": e.language,
                                    "exception": True})
        seen = set()
        unique = []
        for item in out:
            key = tuple(sorted(item.items()))
            if key not in seen:
                seen.add(key)
                unique.append(item)
        return unique


def _as_str_list(value: Any, path: Path, pid: str, key: str) -> Tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SafetyPatternError(
            f"{path}: pattern {pid}: '{key}' must be a list of strings (quote values such as "
            f"yes/no/on)")
    return tuple(value)


def _expand_defs(source: str, defs: Mapping[str, str], path: Path, pid: str) -> str:
    for _ in range(6):
        missing = [n for n in _DEF_RE.findall(source) if n not in defs]
        if missing:
            raise SafetyPatternError(
                f"{path}: pattern {pid}: undefined {{{{{missing[0]}}}}} (add it under 'defs:')")
        new = _DEF_RE.sub(lambda m: defs[m.group(1)], source)
        if new == source:
            return source
        source = new
    raise SafetyPatternError(f"{path}: pattern {pid}: 'defs' nest too deeply (a loop?)")


_FORBIDDEN = [
    (re.compile(r"\(\?P<"), "named groups (?P<...>) are not allowed; use (?:...)"),
    (re.compile(r"\(\?P="), "named back-references are not allowed"),
    (re.compile(r"(?<!\\)(?:\\\\)*\\[1-9]"), "numbered back-references are not allowed"),
    (re.compile(r"\(\?[aiLmsux]+\)"), "global inline flags such as (?i) are not allowed"),
]


def _check_letters(source: str, path: Path, pid: str) -> None:
    """Reject letters that normalize() would change, since such a regex could never match."""
    stripped = re.sub(r"\\.", "", source)
    stripped = re.sub(r"\(\?[a-zA-Z]*[:=!<]", "", stripped)  # (?:  (?=  (?<!  (?i:
    for ch in set(stripped):
        if not ch.isalpha():
            continue
        norm = _normalize(ch, "auto")
        if norm != ch:
            raise SafetyPatternError(
                f"{path}: pattern {pid}: the regex contains {ch!r} (U+{ord(ch):04X}), which "
                f"normalize() turns into {norm!r}; write {norm!r} instead")


def _load_file(path: Path, seen: Dict[str, str]) -> Tuple[List[_Pattern], List[_Pattern]]:
    try:
        doc = _read_yaml(path)
    except Exception as exc:  # noqa: BLE001 - any parser error becomes a SafetyPatternError
        raise SafetyPatternError(f"{path}: YAML error: {exc}") from exc
    if not isinstance(doc, dict):
        raise SafetyPatternError(f"{path}: top level must be a mapping with 'language' and "
                                 f"'patterns'")
    unknown = set(doc) - _FILE_KEYS
    if unknown:
        raise SafetyPatternError(f"{path}: unknown top-level key(s): {sorted(unknown)}")
    language = doc.get("language")
    if not isinstance(language, str) or not re.fullmatch(r"[a-z]{2,3}", language):
        raise SafetyPatternError(f"{path}: 'language' must be a 2-3 letter code in quotes, got "
                                 f"{language!r}")
    defs_raw = doc.get("defs") or {}
    if not isinstance(defs_raw, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in defs_raw.items()):
        raise SafetyPatternError(f"{path}: 'defs' must map names to regex strings")
    defs: Dict[str, str] = dict(defs_raw)
    raw_patterns = doc.get("patterns")
    if raw_patterns is None:
        raw_patterns = []
    raw_exceptions = doc.get("exceptions") or []
    if not isinstance(raw_patterns, list) or not isinstance(raw_exceptions, list):
        raise SafetyPatternError(f"{path}: 'patterns' and 'exceptions' must be lists")
    out: Dict[bool, List[_Pattern]] = {False: [], True: []}
    for is_exc, items in ((False, raw_patterns), (True, raw_exceptions)):
        kind = "exception" if is_exc else "pattern"
        for n, item in enumerate(items, 1):
            if not isinstance(item, dict):
                raise SafetyPatternError(f"{path}: {kind} #{n} must be a mapping")
            pid = item.get("id")
            if not isinstance(pid, str) or not _ID_RE.match(pid):
                raise SafetyPatternError(
                    f"{path}: {kind} #{n}: missing or invalid 'id' {pid!r} (lowercase letters, "
                    f"digits, '-', '_', '.')")
            unknown = set(item) - _PATTERN_KEYS
            if unknown:
                raise SafetyPatternError(
                    f"{path}: {kind} {pid}: unknown key(s) {sorted(unknown)}; allowed: "
                    f"{sorted(_PATTERN_KEYS)}")
            for key in _REQUIRED_KEYS:
                if key not in item or item[key] in (None, ""):
                    raise SafetyPatternError(f"{path}: {kind} {pid}: missing '{key}'")
            if pid in seen:
                raise SafetyPatternError(
                    f"{path}: {kind} {pid}: duplicate id (also in {seen[pid]})")
            seen[pid] = str(path)
            category = item["category"]
            if category not in CATEGORY_INTENTS:
                raise SafetyPatternError(
                    f"{path}: {kind} {pid}: unknown category {category!r}; use one of "
                    f"{list(PRIORITY)}")
            raw = item["regex"]
            if isinstance(raw, list) and raw and all(isinstance(r, str) and r for r in raw):
                raw = "|".join(f"(?:{r})" for r in raw)  # a list means "any of these"
            if not isinstance(raw, str):
                raise SafetyPatternError(
                    f"{path}: {kind} {pid}: 'regex' must be a string or a list of strings")
            source = _expand_defs(raw, defs, path, pid)
            for bad, why in _FORBIDDEN:
                if bad.search(source):
                    raise SafetyPatternError(f"{path}: {kind} {pid}: {why}")
            _check_letters(source, path, pid)
            parts = tuple(_expand_defs(r, defs, path, pid) for r in item["regex"]) \
                if isinstance(item["regex"], list) else (source,)
            trees, regexes = [], []
            for part in parts:
                try:
                    tree, regex = _compile_part(part)
                except re.error as exc:
                    raise SafetyPatternError(
                        f"{path}: {kind} {pid}: regex does not compile: {exc} in {part!r}"
                    ) from exc
                if regex.search(""):
                    raise SafetyPatternError(f"{path}: {kind} {pid}: regex matches empty text")
                trees.append(tree)
                regexes.append(regex)
            examples = _as_str_list(item.get("examples"), path, pid, "examples")
            not_examples = _as_str_list(item.get("not_examples"), path, pid, "not_examples")
            if not examples:
                raise SafetyPatternError(
                    f"{path}: {kind} {pid}: needs at least one example in 'examples'")
            for ex in examples:
                if not any(r.search(v) for v in _variants(ex) for r in regexes):
                    raise SafetyPatternError(
                        f"{path}: {kind} {pid}: example {ex!r} does not match (normalised: "
                        f"{normalize(ex)!r})")
            for ex in not_examples:
                if any(r.search(v) for v in _variants(ex) for r in regexes):
                    raise SafetyPatternError(
                        f"{path}: {kind} {pid}: not_example {ex!r} matches (normalised: "
                        f"{normalize(ex)!r})")
            out[is_exc].append(_Pattern(pid, category, language, str(path), source, parts,
                                        tuple(trees), tuple(regexes), examples, not_examples,
                                        is_exc))
    return out[False], out[True]


@functools.lru_cache(maxsize=1)
def default_patterns() -> SafetyPatterns:
    """The project's patterns (``data/safety/`` next to this package), loaded once and cached.

    Raises:
        SafetyPatternError: if the shipped files are invalid (a test keeps them valid).
    """
    return SafetyPatterns.load(DEFAULT_DIRECTORY)
