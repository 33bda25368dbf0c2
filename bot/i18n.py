"""Translations: merge staged translations into the domain, and check coverage.

``merge(lang)`` reads ``i18n/<lang>/*.yml`` (format: i18n/README.md) and writes each response's
variations into the ``domain/responses/*.yml`` file that defines it, conditioned on the
``language`` slot (and on ``audience`` / ``platform`` when given), replacing that language's
earlier variations. Comments and order in the domain files are kept (ruamel round trip).

``coverage(...)`` is the check run by ``make test`` and ``make check`` (issue #7): every response
has a variation for every supported language with the same button payloads as the default, and
every intent has enough NLU examples in every language. Problems name the file and the response
or intent.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

from ruamel.yaml import YAML

from bot.settings import ROOT, SUPPORTED_LANGUAGES

DOMAIN = ROOT / "domain"
I18N = ROOT / "i18n"
NLU = ROOT / "data" / "nlu"
#: Responses deliberately in one form for everyone (see docs/content-spec.md).
LANGUAGE_NEUTRAL = {"utter_unsupported_language"}
#: Intents that are never typed: set by components or buttons only.
NO_EXAMPLES_NEEDED = {"unsupported_language", "nlu_fallback"}


def _yaml() -> YAML:
    y = YAML()
    y.preserve_quotes = True
    y.width = 4096
    return y


def _load(path: Path):
    return _yaml().load(path.read_text(encoding="utf-8"))


def _conditions(variation) -> Dict[str, object]:
    return {c["name"]: c.get("value") for c in (variation.get("condition") or [])}


def merge(lang: str, staging: Optional[Path] = None, domain: Path = DOMAIN) -> Tuple[int, List[str]]:
    """Merge ``i18n/<lang>/*.yml`` into the domain; return (responses merged, unknown names)."""
    staging = staging or (I18N / lang)
    translations: Dict[str, list] = {}
    for path in sorted(staging.glob("*.yml")):
        data = _load(path) or {}
        for name, variations in (data.get("responses") or {}).items():
            translations[name] = list(variations)
    files = {p: _load(p) for p in sorted(domain.rglob("*.yml"))}
    merged, unknown = 0, []
    for name, variations in translations.items():
        target = next((p for p, d in files.items() if name in ((d or {}).get("responses") or {})), None)
        if target is None:
            unknown.append(name)
            continue
        existing = files[target]["responses"][name]
        kept = [v for v in existing if _conditions(v).get("language") != lang]
        for v in variations:
            new = {k: v[k] for k in v if k not in ("audience", "platform")}
            condition = [{"type": "slot", "name": "language", "value": lang}]
            if "audience" in v and v["audience"]:
                condition.append({"type": "slot", "name": "audience", "value": v["audience"]})
            if "platform" in v:
                condition.append({"type": "slot", "name": "platform", "value": v["platform"]})
            new["condition"] = condition
            kept.append(new)
        existing.clear()
        existing.extend(kept)
        merged += 1
    y = _yaml()
    for path, data in files.items():
        with path.open("w", encoding="utf-8") as fh:
            y.dump(data, fh)
    return merged, unknown


@dataclass
class Problem:
    file: str
    name: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.name}: {self.message}"


def _payloads(variation) -> List[str]:
    return [str(b.get("payload")) for b in (variation.get("buttons") or [])]


def response_coverage(domain: Path = DOMAIN, languages: Iterable[str] = SUPPORTED_LANGUAGES) -> List[Problem]:
    """Every response: a default, a variation per language, same payloads as the default."""
    problems: List[Problem] = []
    languages = list(languages)
    for path in sorted(domain.rglob("*.yml")):
        data = _load(path) or {}
        for name, variations in (data.get("responses") or {}).items():
            rel = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
            defaults = [v for v in variations if not v.get("condition")]
            if not defaults:
                problems.append(Problem(rel, name, "has no variation without a condition (the default)"))
                continue
            if name in LANGUAGE_NEUTRAL:
                continue
            # the reference for each audience/platform: the English (or default) variation
            reference = {}
            for v in variations:
                cond = _conditions(v)
                if cond.get("language", "en") == "en":
                    key = tuple(sorted((k, str(x)) for k, x in cond.items() if k != "language"))
                    reference.setdefault(key, _payloads(v))
            seen = defaultdict(int)
            for v in variations:
                cond = _conditions(v)
                lang = cond.get("language", "en" if not v.get("condition") else None)
                if lang is None:
                    problems.append(Problem(rel, name, "a conditional variation has no language condition"))
                    continue
                seen[lang] += 1
                key = tuple(sorted((k, str(x)) for k, x in cond.items() if k != "language"))
                expected = reference.get(key, reference.get((), []))
                if key == (("audience", "teen"),) and key not in reference:
                    expected = reference.get((), [])
                if _payloads(v) != expected:
                    problems.append(Problem(rel, name, f"the {lang} variation {dict(key) or ''} has button "
                                            f"payloads {_payloads(v)}; English has {expected}"))
                if any(c.get("type") == "channel" for c in (v.get("condition") or [])) or "channel" in v:
                    problems.append(Problem(rel, name, "uses a channel condition (Rasa prefers it over the language)"))
            for lang in languages:
                if not seen.get(lang):
                    problems.append(Problem(rel, name, f"missing translation: no '{lang}' variation"))
    return problems


def nlu_counts(nlu_dir: Path = NLU) -> Dict[str, Dict[str, int]]:
    """``{language: {intent: number of examples}}`` from ``data/nlu/<lang>/*.yml``."""
    counts: Dict[str, Dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for lang_dir in sorted(p for p in nlu_dir.iterdir() if p.is_dir()):
        for path in sorted(lang_dir.glob("*.yml")):
            data = _load(path) or {}
            for item in data.get("nlu") or []:
                if "intent" in item:
                    lines = [l for l in str(item.get("examples") or "").splitlines() if l.strip().startswith("- ")]
                    counts[lang_dir.name][item["intent"]] += len(lines)
    return counts


def intent_coverage(domain_intents: Iterable[str], minimum: int = 20, nlu_dir: Path = NLU,
                    languages: Iterable[str] = SUPPORTED_LANGUAGES) -> List[Problem]:
    counts = nlu_counts(nlu_dir)
    problems = []
    for lang in languages:
        for intent in domain_intents:
            if intent in NO_EXAMPLES_NEEDED:
                continue
            n = counts.get(lang, {}).get(intent, 0)
            if n < minimum:
                problems.append(Problem(f"data/nlu/{lang}/", intent,
                                        f"only {n} examples in '{lang}' (at least {minimum} needed)"))
    return problems


def domain_intents(domain: Path = DOMAIN) -> List[str]:
    intents: List[str] = []
    for path in sorted(domain.rglob("*.yml")):
        for item in (_load(path) or {}).get("intents") or []:
            intents.append(item if isinstance(item, str) else next(iter(item)))
    return intents
