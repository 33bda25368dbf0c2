"""Held-out NLU quality floors (issue #4, #7): a regression in the data or the pipeline fails.

Runs the trained model (no servers) over tests/nlu_heldout/ — examples never used in training.
Floors are a little under what bench/nlu_eval.py measured (bench/results/nlu.md), so noise does
not fail the suite but a real drop does.
"""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

pytestmark = pytest.mark.e2e  # needs the trained model

FLOORS = {"en": 0.90, "de": 0.89, "fr": 0.86, "ar": 0.88}


@pytest.fixture(scope="module")
def results(model_path):
    from nlu_eval import evaluate

    return evaluate(model_path)


@pytest.mark.parametrize("language", sorted(FLOORS))
def test_heldout_macro_f1_floor(results, language):
    r = results[language]
    assert r["n"] >= 200, f"held-out set for {language} is too small: {r['n']}"
    assert r["macro_f1"] >= FLOORS[language], (language, r["macro_f1"], r["confusions"])


def test_crisis_heldout_never_misrouted_to_a_topic(results):
    """Crisis held-out examples may land in any crisis intent, never in an ordinary topic."""
    for language, r in results.items():
        bad = [(a, b) for (a, b), _ in r["confusions"]
               if a in {"crisis_self_harm", "crisis_danger_now", "disclosure_abuse", "sextortion_now"}
               and b not in {"crisis_self_harm", "crisis_danger_now", "disclosure_abuse",
                             "sextortion_now", "not_safe"}]
        assert len(bad) <= 2, (language, bad)
