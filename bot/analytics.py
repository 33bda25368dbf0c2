"""Anonymous usage figures and the "what did the bot not understand" review, from the tracker.

Both read Rasa's ``events`` table (SQLAlchemy; SQLite or PostgreSQL) and never print sender ids.

- :func:`stats` counts, per day or week: conversations, user messages, languages, channels
  (from the pseudonymous id's prefix ``web-``/``telegram-``), top topics (intents), the fallback
  rate, and crisis events by type (the safeguarding audit trail: counts only, no text).
- :func:`review` collects user messages that ended in ``nlu_fallback`` or were classified with
  low confidence, masks personal details, groups similar messages and writes a Rasa NLU file
  with an empty intent per group for staff to fill in and move into ``data/nlu/``.
"""
from __future__ import annotations

import datetime as dt
import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

import sqlalchemy as sa

from bot.privacy import EVENTS, engine_for

CRISIS_INTENTS = {"crisis_self_harm": "self_harm", "crisis_danger_now": "danger_now",
                  "disclosure_abuse": "abuse", "sextortion_now": "sextortion"}


def _user_events(url: str, since: float, until: float):
    engine = engine_for(url)
    if not sa.inspect(engine).has_table("events"):
        return []
    stmt = (sa.select(EVENTS.c.sender_id, EVENTS.c.timestamp, EVENTS.c.intent_name, EVENTS.c.data)
            .where(EVENTS.c.type_name == "user", EVENTS.c.timestamp >= since,
                   EVENTS.c.timestamp < until)
            .order_by(EVENTS.c.timestamp))
    with engine.connect() as conn:
        return conn.execute(stmt).all()


@dataclass
class Period:
    label: str
    conversations: set = field(default_factory=set)
    messages: int = 0
    languages: Counter = field(default_factory=Counter)
    channels: Counter = field(default_factory=Counter)
    topics: Counter = field(default_factory=Counter)
    fallbacks: int = 0
    crisis: Counter = field(default_factory=Counter)

    @property
    def fallback_rate(self) -> float:
        return self.fallbacks / self.messages if self.messages else 0.0


def stats(url: str, days: int = 28, by: str = "day", now: Optional[float] = None) -> List[Period]:
    """Figures per period (``by`` = "day" or "week"), oldest first. Payload turns are counted as
    messages but not as topics."""
    now = now or dt.datetime.now(dt.timezone.utc).timestamp()
    periods: Dict[str, Period] = {}
    for sender, ts, intent, data in _user_events(url, now - days * 86400, now + 1):
        day = dt.datetime.fromtimestamp(ts, dt.timezone.utc).date()
        label = day.isoformat() if by == "day" else f"{day.isocalendar()[0]}-W{day.isocalendar()[1]:02d}"
        p = periods.setdefault(label, Period(label))
        p.conversations.add(sender)
        p.messages += 1
        p.channels[sender.split("-", 1)[0] if "-" in sender else "other"] += 1
        try:
            parse = (json.loads(data or "{}").get("parse_data") or {})
        except ValueError:
            parse = {}
        lang = ((parse.get("language_detection") or {}).get("language")) or "unknown"
        p.languages[lang] += 1
        if intent == "nlu_fallback":
            p.fallbacks += 1
        elif intent:
            p.topics[intent] += 1
        if intent in CRISIS_INTENTS:
            p.crisis[CRISIS_INTENTS[intent]] += 1
    return [periods[k] for k in sorted(periods)]


def format_stats(periods: List[Period]) -> str:
    """A plain-text table for the terminal."""
    lines = [f"{'period':<12}{'convs':>6}{'msgs':>6}{'fallb%':>8}  crisis (type: n)      top topics"]
    for p in periods:
        crisis = ", ".join(f"{k}: {v}" for k, v in sorted(p.crisis.items())) or "-"
        top = ", ".join(f"{k} {v}" for k, v in p.topics.most_common(3))
        lines.append(f"{p.label:<12}{len(p.conversations):>6}{p.messages:>6}"
                     f"{100 * p.fallback_rate:>7.1f}%  {crisis:<20}  {top}")
    total = Counter()
    for p in periods:
        total.update(p.languages)
    lines.append("languages: " + ", ".join(f"{k} {v}" for k, v in total.most_common()))
    channels = Counter()
    for p in periods:
        channels.update(p.channels)
    lines.append("channels: " + ", ".join(f"{k} {v}" for k, v in channels.most_common()))
    return "\n".join(lines)


def chart(periods: List[Period], path: Path) -> Path:
    """Write a PNG chart (messages, conversations and crisis events per period)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [p.label for p in periods]
    fig, ax = plt.subplots(figsize=(max(6, len(labels) * 0.5), 4))
    ax.plot(labels, [p.messages for p in periods], marker="o", label="messages")
    ax.plot(labels, [len(p.conversations) for p in periods], marker="s", label="conversations")
    ax.bar(labels, [sum(p.crisis.values()) for p in periods], alpha=0.4, label="crisis events")
    ax.set_title("Signpost usage (anonymous counts)")
    ax.legend()
    fig.autofmt_xdate()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


# --- review -------------------------------------------------------------------------------

_MASKS: List[Tuple[re.Pattern, str]] = [
    (re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+"), "<email>"),
    (re.compile(r"(https?://\S+|www\.\S+|\b[\w-]+\.(com|org|net|uk|de|fr|io|gov)\b\S*)", re.I), "<url>"),
    (re.compile(r"(?<!\w)@\w{3,}"), "<username>"),
    (re.compile(r"\+?\d[\d ()\-]{6,}\d"), "<phone>"),
    (re.compile(r"\b\d{1,4}\s+\w+\s+(street|st|road|rd|avenue|ave|lane|straße|strasse|rue|weg)\b", re.I), "<address>"),
    (re.compile(r"\b(my name is|i am called|i'm called|ich heiße|ich heisse|je m'appelle|اسمي)\s+\S+", re.I),
     r"\1 <name>"),
    (re.compile(r"\b\d{5}\b"), "<postcode>"),
    (re.compile(r"\b[A-Z]{1,2}\d[A-Z\d]?\s*\d[A-Z]{2}\b"), "<postcode>"),
]


def mask(text: str) -> str:
    """Replace phone numbers, e-mails, URLs, @usernames, names after "my name is" and street
    addresses/postcodes with placeholders such as ``<phone>``."""
    for pattern, repl in _MASKS:
        text = pattern.sub(repl, text)
    return text


def _tokens(text: str) -> frozenset:
    return frozenset(w for w in re.findall(r"<\w+>|[^\W\d_]+", text.casefold()) if len(w) > 2)


def group(texts: Iterable[str], threshold: float = 0.5) -> List[List[str]]:
    """Greedy grouping by word overlap (Jaccard ≥ ``threshold``), biggest groups first."""
    groups: List[Tuple[frozenset, List[str]]] = []
    for text in texts:
        toks = _tokens(text)
        for i, (rep, members) in enumerate(groups):
            union = rep | toks
            if union and len(rep & toks) / len(union) >= threshold:
                members.append(text)
                break
        else:
            groups.append((toks, [text]))
    return sorted((m for _, m in groups), key=len, reverse=True)


def review(url: str, days: int = 7, min_confidence: float = 0.4,
           now: Optional[float] = None) -> List[List[str]]:
    """Masked, grouped messages from the last ``days`` that the bot did not understand."""
    now = now or dt.datetime.now(dt.timezone.utc).timestamp()
    texts = []
    for _, _, intent, data in _user_events(url, now - days * 86400, now + 1):
        try:
            event = json.loads(data or "{}")
        except ValueError:
            continue
        text = event.get("text") or ""
        if not text or text.startswith("/"):
            continue
        confidence = ((event.get("parse_data") or {}).get("intent") or {}).get("confidence") or 0
        if intent == "nlu_fallback" or confidence < min_confidence:
            texts.append(mask(text))
    return group(texts)


def write_review(groups: List[List[str]], path: Path) -> Path:
    """Write the groups as a Rasa NLU file with an empty intent per group."""
    lines = ["# Messages Signpost did not understand, personal details masked, similar ones grouped.",
             "# For each group: type the intent name between the quotes (see docs/content-spec.md),",
             "# delete examples that do not fit, and move the block into data/nlu/<language>/.",
             'version: "3.1"', "nlu:"]
    for i, members in enumerate(groups, 1):
        counts = Counter(members)
        repeated = ", ".join(f"{n}x: {t[:40]}" for t, n in counts.most_common() if n > 1)
        lines.append(f"# group {i}: {len(members)} message(s)" + (f" (repeated {repeated})" if repeated else ""))
        lines.append('- intent: ""')
        lines.append("  examples: |")
        for text in counts:
            lines.append("    - " + " ".join(text.split()))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
