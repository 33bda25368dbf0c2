"""Held-out intent evaluation: macro-F1 per language on tests/nlu_heldout/*.yml.

Usage: python bench/nlu_eval.py [--model PATH] [--out bench/results/nlu.md] [--quick]

The held-out files are never used for training. Loads the trained model with Rasa's Agent and
parses every example (the full pipeline: classifier, LanguageDetector, SafetyGate, fallback).
Reports macro-F1, accuracy, the most frequent confusion pairs and ms per message.
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Dict, List, Tuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def load_heldout(folder: Path = ROOT / "tests" / "nlu_heldout") -> Dict[str, List[Tuple[str, str]]]:
    """``{language: [(text, intent), ...]}``; the language is the file name's prefix."""
    from rasa.shared.nlu.training_data.loading import load_data

    out: Dict[str, List[Tuple[str, str]]] = defaultdict(list)
    for path in sorted(folder.glob("*.yml")):
        lang = path.stem.split("_")[0]
        for ex in load_data(str(path)).intent_examples:
            out[lang].append((ex.get("text"), ex.get("intent")))
    return out


def evaluate(model: Path, quick: bool = False):
    from rasa.core.agent import Agent
    from sklearn.metrics import f1_score

    agent = Agent.load(str(model))
    data = load_heldout()
    results = {}
    for lang, items in data.items():
        if quick:
            items = items[::10]
        y_true, y_pred, start = [], [], time.perf_counter()
        for text, intent in items:
            parsed = asyncio.run(agent.parse_message(text))
            y_true.append(intent)
            y_pred.append(parsed["intent"]["name"])
        elapsed = (time.perf_counter() - start) / max(len(items), 1) * 1000
        labels = sorted(set(y_true))
        f1 = f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)
        acc = sum(a == b for a, b in zip(y_true, y_pred)) / max(len(items), 1)
        confusions = Counter((a, b) for a, b in zip(y_true, y_pred) if a != b).most_common(8)
        results[lang] = {"n": len(items), "macro_f1": f1, "accuracy": acc, "ms": elapsed,
                         "confusions": confusions}
    return results


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "nlu.md"))
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.model:
        model = Path(args.model)
    else:
        from bot.cli import current_model

        model = current_model()
    results = evaluate(model, args.quick)
    lines = ["# Held-out intent evaluation", "", f"Model: `{model.name}`", "",
             "| language | examples | macro-F1 | accuracy | ms/message |", "|---|---|---|---|---|"]
    for lang, r in sorted(results.items()):
        lines.append(f"| {lang} | {r['n']} | {r['macro_f1']:.3f} | {r['accuracy']:.3f} | {r['ms']:.1f} |")
    lines += ["", "Most frequent confusions (true → predicted, count):", ""]
    for lang, r in sorted(results.items()):
        pairs = ", ".join(f"{a} → {b} ({n})" for (a, b), n in r["confusions"])
        lines.append(f"- {lang}: {pairs or 'none'}")
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.quick:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
