"""Language-identification benchmark on chat-style messages (perf-notes §3, rasa-notes §6 B1-B3).

Usage: python bench/langid.py [--quick] [--data tests/langid/conversations.yml] [--out bench/results/langid.md]

For every message of tests/langid/conversations.yml it computes

(a) raw langdetect: ``detect()`` with ``DetectorFactory.seed = 0``; an exception counts as wrong;
(b) Signpost without context: ``LanguageIdentifier().detect(text).language``; None counts as wrong;
(c) Signpost in conversation context, which is what the bot replies in: walk each conversation
    turn by turn with ``current = hint`` if the hint is a supported language, else None; after each
    turn ``current = decide(detection, current)``; the answer for the turn is ``current`` or "en".

and reports accuracy per language x length bucket (words = whitespace tokens containing a letter;
URLs, @mentions, #tags and /commands excluded; 0-word turns such as "👍", "15" or a link are
reported separately), flips caused by language-neutral messages in a French conversation,
verdicts on messages in unsupported languages, and the mean time per call.

``--quick`` scores every 10th message only (conversations are still walked from their first turn,
so (c) keeps its context) and writes nothing.
"""
from __future__ import annotations

import argparse
import datetime as dt
import platform
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from langdetect import DetectorFactory, detect
from langdetect.lang_detect_exception import LangDetectException
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.language import Detection, LanguageIdentifier, decide, normalise_code  # noqa: E402

DetectorFactory.seed = 0

SUPPORTED = ("en", "de", "fr", "ar")
BUCKETS = ("1–2", "3–6", "7+")
TARGETS = {"1–2": 0.95, "3–6": 0.97, "7+": 0.99}   # for (c), in conversation context
NEUTRAL_CURRENT = "fr"


def word_count(text: str) -> int:
    """Whitespace tokens that contain a letter; URLs, @mentions, #tags and /commands excluded."""
    n = 0
    for tok in text.split():
        low = tok.lower()
        if low.startswith(("http://", "https://", "www.", "@", "#", "/")) or "://" in low:
            continue
        if any(ch.isalpha() for ch in tok):
            n += 1
    return n


def bucket(n: int) -> str:
    if n == 0:
        return "0"
    return "1–2" if n <= 2 else "3–6" if n <= 6 else "7+"


def raw_langdetect(text: str) -> Optional[str]:
    try:
        return detect(text)
    except LangDetectException:
        return None


class Cache:
    """One Signpost detection per distinct text (detection is deterministic)."""

    def __init__(self, ident: LanguageIdentifier) -> None:
        self.ident = ident
        self.seen: Dict[str, Detection] = {}

    def __call__(self, text: str) -> Detection:
        if text not in self.seen:
            self.seen[text] = self.ident.detect(text)
        return self.seen[text]


def load(path: Path):
    data = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    convs = data["conversations"]
    for c in convs:
        c["turns"] = [str(t) for t in c["turns"]]
    neutral = [str(t) for t in data.get("neutral") or []]
    unsupported = [(str(u["language"]), str(u["text"])) for u in data.get("unsupported") or []]
    return convs, neutral, unsupported


def walk(conv, upto: int, det: Cache) -> str:
    """(c): the language the bot replies in after turn ``upto`` of ``conv``."""
    hint = normalise_code(conv.get("hint"))
    current = hint if hint in SUPPORTED else None
    for text in conv["turns"][: upto + 1]:
        current = decide(det(text), current)
    return current or "en"


def time_calls(fn, texts: List[str], repeat: int = 1) -> Tuple[float, float]:
    """Mean and p95 µs per call (warm: the caller has already run ``fn`` over ``texts``)."""
    samples = []
    for _ in range(repeat):
        for t in texts:
            t0 = time.perf_counter()
            fn(t)
            samples.append((time.perf_counter() - t0) * 1e6)
    samples.sort()
    return statistics.fmean(samples), samples[int(0.95 * (len(samples) - 1))]


def pct(x: float) -> str:
    return f"{x:.3f}"


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="every 10th message, write nothing")
    ap.add_argument("--data", type=Path, default=ROOT / "tests" / "langid" / "conversations.yml")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "langid.md")
    args = ap.parse_args(argv)
    step = 10 if args.quick else 1

    convs, neutral, unsupported = load(args.data)
    ident = LanguageIdentifier(supported=SUPPORTED)
    det = Cache(ident)

    # flat list of conversation turns, then the every-10th selection for --quick
    turns = [(ci, ti) for ci, c in enumerate(convs) for ti in range(len(c["turns"]))][::step]
    neutral = neutral[::step]
    unsupported = unsupported[::step]

    # ---------------------------------------------------------------- accuracy per cell
    hits: Dict[Tuple[str, str], List[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])  # n, a, b, b_wrong, c
    errors_c, errors_b = [], []
    for ci, ti in turns:
        conv = convs[ci]
        lang, text = conv["language"], conv["turns"][ti]
        cell = hits[(lang, bucket(word_count(text)))]
        a = raw_langdetect(text)
        d = det(text)
        c = walk(conv, ti, det)
        cell[0] += 1
        cell[1] += a == lang
        cell[2] += d.language == lang
        cell[3] += d.language is not None and d.language != lang
        cell[4] += c == lang
        if c != lang:
            errors_c.append((conv["id"], ti + 1, conv.get("hint"), text, c, d.language, d.evidence))
        if d.language is not None and d.language != lang:
            errors_b.append((conv["id"], ti + 1, text, d.language, d.evidence, round(d.confidence, 3)))

    # ---------------------------------------------------------------- neutral messages
    neutral_rows = []
    flips = [0, 0, 0]
    for text in neutral:
        a = raw_langdetect(text)
        d = det(text)
        c = decide(d, NEUTRAL_CURRENT)
        fa = a is not None and a != NEUTRAL_CURRENT
        fb = d.language is not None and d.language != NEUTRAL_CURRENT
        fc = c != NEUTRAL_CURRENT
        flips[0] += fa
        flips[1] += fb
        flips[2] += fc
        if fa or fb or fc:
            neutral_rows.append((text, a, d.language, c))

    # ---------------------------------------------------------------- unsupported languages
    uns = {"a_right": 0, "b_right": 0, "b_supported": 0, "b_none": 0, "b_other": 0}
    uns_rows = []
    for lang, text in unsupported:
        a = raw_langdetect(text)
        d = det(text)
        uns["a_right"] += a == lang
        if d.language == lang:
            uns["b_right"] += 1
        elif d.language in SUPPORTED:
            uns["b_supported"] += 1
        elif d.language is None:
            uns["b_none"] += 1
        else:
            uns["b_other"] += 1
        if d.language != lang:
            uns_rows.append((lang, text, a, d.language, d.evidence))

    # ---------------------------------------------------------------- speed (warm)
    all_texts = [convs[ci]["turns"][ti] for ci, ti in turns] + neutral + [t for _, t in unsupported]
    for t in all_texts:                     # warm both paths (profiles, YAML, regexes)
        raw_langdetect(t)
        ident.detect(t)
    ld_mean, ld_p95 = time_calls(raw_langdetect, all_texts)
    sp_mean, sp_p95 = time_calls(ident.detect, all_texts)

    # ---------------------------------------------------------------- report
    out: List[str] = []
    w = out.append
    now = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    w("# Language identification on chat messages" + (" (--quick: every 10th message)" if args.quick else ""))
    w("")
    w(f"Run {now} on `{platform.platform()}`, Python {platform.python_version()}; "
      f"data `{args.data.relative_to(ROOT) if args.data.is_relative_to(ROOT) else args.data}`; "
      f"`python bench/langid.py`.")
    w("")
    n_conv_turns = len(turns)
    w(f"{len(convs)} conversations, {n_conv_turns} turns scored; {len(neutral)} neutral and "
      f"{len(unsupported)} unsupported-language messages.")
    w("")
    w("- (a) raw `langdetect.detect()`, seed 0, all 55 languages; an exception counts as wrong.")
    w("- (b) Signpost `LanguageIdentifier().detect()` without context; `None` (no evidence) counts as "
      "wrong. *wrong lang* = it named another language (these are the answers that switch a conversation).")
    w("- (c) Signpost in conversation context: `current` starts at the hint if supported, then "
      "`current = decide(detection, current)` after each turn; the reply language is `current` or en. "
      "This is what the user sees.")
    w("- Words = whitespace tokens containing a letter (emoji, digits, URLs not counted). "
      "Targets apply to (c).")
    w("")
    w("## Accuracy per language and length")
    w("")
    w("| language | words | n | (a) langdetect | (b) Signpost | (b) wrong lang | (c) in context | target (c) |")
    w("|---|---|---|---|---|---|---|---|")
    misses = []
    for lang in SUPPORTED:
        for b in ("0",) + BUCKETS:
            n, a, bb, bw, c = hits.get((lang, b), [0, 0, 0, 0, 0])
            if not n:
                continue
            tgt = TARGETS.get(b)
            ok = "" if tgt is None else (" ✔" if c / n >= tgt else " ✘")
            if tgt is not None and c / n < tgt:
                misses.append(f"{lang} {b}")
            w(f"| {lang} | {b} | {n} | {pct(a / n)} | {pct(bb / n)} | {pct(bw / n)} | "
              f"**{pct(c / n)}**{ok} | {'≥ ' + str(tgt) if tgt else '–'} |")
    w("")
    w("Pooled over the four languages:")
    w("")
    w("| words | n | (a) langdetect | (b) Signpost | (b) wrong lang | (c) in context | target (c) |")
    w("|---|---|---|---|---|---|---|")
    tot = [0, 0, 0, 0, 0]
    for b in ("0",) + BUCKETS:
        cells = [hits.get((lang, b), [0] * 5) for lang in SUPPORTED]
        n, a, bb, bw, c = (sum(x[i] for x in cells) for i in range(5))
        tot = [t + v for t, v in zip(tot, (n, a, bb, bw, c))]
        if not n:
            continue
        tgt = TARGETS.get(b)
        ok = "" if tgt is None else (" ✔" if c / n >= tgt else " ✘")
        w(f"| {b} | {n} | {pct(a / n)} | {pct(bb / n)} | {pct(bw / n)} | **{pct(c / n)}**{ok} | "
          f"{'≥ ' + str(tgt) if tgt else '–'} |")
    n, a, bb, bw, c = tot
    if n:
        w(f"| all | {n} | {pct(a / n)} | {pct(bb / n)} | {pct(bw / n)} | **{pct(c / n)}** | |")
    w("")
    w(f"## Neutral messages in a conversation whose language is {NEUTRAL_CURRENT}")
    w("")
    nn = max(len(neutral), 1)
    w("A flip is: (a) langdetect names any language other than fr; (b) `detect()` names any language "
      "other than fr (an unsupported one would trigger the unsupported-language reply); "
      "(c) `decide(detection, 'fr')` is not fr. Target: 0 flips.")
    w("")
    w("| method | flips | rate | target |")
    w("|---|---|---|---|")
    for name, f in zip(("(a) langdetect", "(b) Signpost", "(c) in context"), flips):
        w(f"| {name} | {f} / {len(neutral)} | {pct(f / nn)} | 0 {'✔' if f == 0 else '✘'} |")
    w("")
    if neutral_rows:
        w("<details><summary>neutral messages that flip at least one method</summary>")
        w("")
        w("| text | (a) | (b) | (c) |")
        w("|---|---|---|---|")
        for text, a, b_, c in neutral_rows:
            w(f"| `{text}` | {a} | {b_} | {c} |")
        w("")
        w("</details>")
        w("")
    w("## Messages in languages the bot does not speak (5+ words)")
    w("")
    nu = max(len(unsupported), 1)
    w("| verdict of (b) Signpost | count | rate |")
    w("|---|---|---|")
    w(f"| the right unsupported language (bot says it does not speak it) | {uns['b_right']} / {len(unsupported)} | {pct(uns['b_right'] / nu)} |")
    w(f"| wrongly a supported language (bot answers in it) | {uns['b_supported']} / {len(unsupported)} | {pct(uns['b_supported'] / nu)} |")
    w(f"| no verdict (conversation keeps its language) | {uns['b_none']} / {len(unsupported)} | {pct(uns['b_none'] / nu)} |")
    w(f"| another unsupported language | {uns['b_other']} / {len(unsupported)} | {pct(uns['b_other'] / nu)} |")
    w(f"| for reference, (a) langdetect right | {uns['a_right']} / {len(unsupported)} | {pct(uns['a_right'] / nu)} |")
    w("")
    if uns_rows:
        w("| true | text | (a) | (b) | evidence |")
        w("|---|---|---|---|---|")
        for lang, text, a, b_, ev in uns_rows:
            w(f"| {lang} | {text} | {a} | {b_} | {ev} |")
        w("")
    w("## Speed (warm, one thread, per call)")
    w("")
    w(f"Over {len(all_texts)} messages (conversation turns, neutral and unsupported), `time.perf_counter` per call.")
    w("")
    w("| detector | mean µs | p95 µs |")
    w("|---|---|---|")
    w(f"| langdetect `detect()` | {ld_mean:,.0f} | {ld_p95:,.0f} |")
    w(f"| Signpost `LanguageIdentifier.detect()` | {sp_mean:,.0f} | {sp_p95:,.0f} |")
    w("")
    w("## Remaining errors")
    w("")
    w(f"(c) in context, {len(errors_c)} turns answered in the wrong language "
      "(conversation, turn, hint, text → reply language; Signpost's own verdict on the turn):")
    w("")
    if errors_c:
        w("| conv | turn | hint | text | reply in | detect() | evidence |")
        w("|---|---|---|---|---|---|---|")
        for cid, t, hint, text, c, dl, ev in errors_c:
            w(f"| {cid} | {t} | {hint} | {text} | {c} | {dl} | {ev} |")
        w("")
    w(f"(b) without context, {len(errors_b)} turns where Signpost named a wrong language:")
    w("")
    if errors_b:
        w("| conv | turn | text | detect() | evidence | confidence |")
        w("|---|---|---|---|---|---|")
        for cid, t, text, dl, ev, conf in errors_b:
            w(f"| {cid} | {t} | {text} | {dl} | {ev} | {conf} |")
        w("")
    summary = "all targets met" if not misses and flips[2] == 0 else (
        "targets missed: " + ", ".join(misses + ([f"{flips[2]} neutral flips"] if flips[2] else [])))
    w(f"**Summary:** {summary}.")
    text = "\n".join(out) + "\n"
    print(text)
    if not args.quick:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
        print(f"written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
