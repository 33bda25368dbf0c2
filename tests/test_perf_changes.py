"""The performance changes of issue #10 keep behaviour (bench/results/perf.md, "Findings")."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest

from bot.settings import ROOT


def test_action_result_validation_is_unchanged():
    import jsonschema

    from bot import rasa_speedups
    from rasa.core.actions.action import RemoteAction

    rasa_speedups.apply()
    patched = RemoteAction._validate_action_result
    original = getattr(patched, "__wrapped__", None)
    assert original is not None, "the speed-up was not applied (Rasa version changed?)"
    action = RemoteAction("action_x", None)
    valid = {"events": [{"event": "slot", "name": "language", "value": "de"}],
             "responses": [{"response": "utter_greet"}]}
    assert patched(action, valid) is True and original(action, valid) is True
    for invalid in ({"events": [{"event": 3}]}, {"events": "x"}, {"responses": 1},
                    {"events": [{"event": "slot"}], "responses": [{"text": 5}]}):
        messages = []
        for validate in (patched, original):
            with pytest.raises(jsonschema.ValidationError) as info:
                validate(action, invalid)
            messages.append(info.value.message)
        assert messages[0] == messages[1]


def test_endpoints_select_the_domain_and_the_sqlite_store(tmp_path):
    from ruamel.yaml import YAML

    from bot.cli import write_endpoints
    from bot.settings import Settings

    sqlite = YAML(typ="safe").load(write_endpoints(
        Settings(tracker_store_url=f"sqlite:///{tmp_path / 't.db'}"), 5055, tmp_path / "a.yml",
        redis_url="").read_text())
    assert sqlite["action_endpoint"]["enable_selective_domain"] is True
    assert sqlite["tracker_store"]["type"] == "bot.tracker_store.SQLTrackerStore"
    pg = YAML(typ="safe").load(write_endpoints(
        Settings(tracker_store_url="postgresql://u@db:5432/rasa"), 5055, tmp_path / "b.yml",
        redis_url="").read_text())
    assert pg["tracker_store"]["type"] == "SQL"


def test_sqlite_tracker_store_keeps_one_connection_in_wal_mode(tmp_path):
    from rasa.core.tracker_store import TrackerStore
    from rasa.core.utils import AvailableEndpoints
    from rasa.shared.core.domain import Domain
    from rasa.shared.core.events import ActionExecuted, UserUttered

    from bot.cli import write_endpoints
    from bot.settings import Settings
    from bot.tracker_store import SQLTrackerStore

    path = write_endpoints(Settings(tracker_store_url=f"sqlite:///{tmp_path / 'tracker.db'}"),
                           5055, tmp_path / "endpoints.yml", redis_url="")
    domain = Domain.load(str(ROOT / "domain"))
    store = TrackerStore.create(AvailableEndpoints.read_endpoints(str(path)).tracker_store, domain)
    inner = getattr(store, "_tracker_store", store)
    assert isinstance(inner, SQLTrackerStore)
    with inner.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL

    async def round_trip():
        tracker = await store.get_or_create_tracker("someone")
        tracker.update(UserUttered("hello", {"name": "greet", "confidence": 1.0}))
        tracker.update(ActionExecuted("utter_greet"))
        await store.save(tracker)
        tracker.update(UserUttered("thanks", {"name": "thanks", "confidence": 1.0}))
        await store.save(tracker)
        return await store.retrieve("someone")

    again = asyncio.run(round_trip())
    texts = [e.text for e in again.events if isinstance(e, UserUttered)]
    assert texts == ["hello", "thanks"]  # each stored once


def test_fortran_layout_gives_identical_probabilities():
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    from bot.nlu.classifier import _fast_layout

    texts = ["what is love bombing", "hello there", "find help in the uk", "i feel unsafe",
             "was ist love bombing", "bonjour", "trouver de l'aide", "thanks a lot"] * 3
    labels = ["tactic", "greet", "support", "crisis"] * 6
    pipeline = Pipeline([("features", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4))),
                         ("clf", LogisticRegression(C=10, max_iter=500))]).fit(texts, labels)
    probe = ["love bombing?", "hi", "help in germany", "unsafe now"]
    before = pipeline.predict_proba(probe)
    _fast_layout(pipeline)
    assert pipeline.named_steps["clf"].coef_.flags["F_CONTIGUOUS"]
    assert np.array_equal(before, pipeline.predict_proba(probe))


def test_session_start_languages_and_follow_up_domain():
    from rasa.shared.core.domain import Domain

    from actions.session import SUPPORTED

    domain = Domain.load(str(ROOT / "domain"))
    assert list(SUPPORTED) == list(domain.as_dict()["slots"]["language"]["values"])
    # with enable_selective_domain, the actions that read the domain must ask for it
    assert domain.does_custom_action_explicitly_need_domain("action_follow_up")
    assert domain.does_custom_action_explicitly_need_domain("validate_support_form")


def test_event_type_lookup_gives_rasa_answers():
    from rasa.shared.core import events as ev
    from rasa.shared.utils.common import all_subclasses

    from bot import rasa_speedups

    rasa_speedups.apply()
    patched = ev.Event.resolve_by_type
    original = getattr(patched, "__wrapped__", None)
    assert original is not None, "the speed-up was not applied (Rasa version changed?)"
    names = {cls.type_name for cls in all_subclasses(ev.Event)}
    assert {"user", "action", "slot", "bot", "session_started", "active_loop"} <= names
    for name in sorted(names) * 2:  # the second round is answered from memory
        assert patched(name) is original(name)
    assert patched("topic") is None and original("topic") is None
    assert patched("no_such_event", ev.UserUttered) is ev.UserUttered
    with pytest.raises(ValueError, match="Unknown event name 'no_such_event'"):
        patched("no_such_event")
    # a whole tracker's events come back as the same events
    stored = [ev.UserUttered("hi", {"name": "greet", "confidence": 1.0}).as_dict(),
              ev.SlotSet("language", "de").as_dict(), ev.ActionExecuted("utter_greet").as_dict(),
              ev.BotUttered("Hallo").as_dict(), ev.ActiveLoop(None).as_dict()]
    assert [e.as_dict() for e in ev.deserialise_events(stored)] == stored
