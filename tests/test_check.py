"""make check: passes on the real data and finds each kind of planted mistake."""
import shutil
from pathlib import Path

import pytest

from bot import check
from bot.settings import ROOT


@pytest.fixture
def project(tmp_path):
    """A copy of everything staff edit, to plant mistakes in."""
    for item in ("domain", "data", "config.yml"):
        src = ROOT / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / item)
    return tmp_path


def errors(findings):
    return [f for f in findings if f.level == "error"]


def test_real_data_has_no_errors():
    assert errors(check.check_yaml()) == []
    assert errors(check.check_rules_cover_intents()) == []
    assert errors(check.check_services()) == []
    assert errors(check.check_safety()) == []
    assert errors(check.check_lengths()) == []
    assert errors(check.check_generated()) == []
    assert errors(check.check_translations()) == []


@pytest.mark.e2e  # runs `rasa data validate` (about 20 s)
def test_rasa_validation_passes_and_finds_an_undefined_intent(project):
    assert errors(check.check_rasa()) == []
    (project / "data" / "stories" / "planted.yml").write_text(
        'version: "3.1"\nstories:\n  - story: planted\n    steps:\n'
        '      - intent: no_such_intent\n      - action: utter_greet\n')
    found = check.check_rasa(project)
    assert errors(found), found
    assert any("no_such_intent" in f.message for f in found)


def test_broken_yaml_is_reported_with_file_and_line(project):
    path = project / "data" / "nlu" / "en" / "chitchat.yml"
    lines = path.read_text().splitlines()
    lines[3] = lines[3] + ' "unclosed'
    path.write_text("\n".join(lines))
    found = errors(check.check_yaml(project))
    assert found and found[0].where.startswith("data/nlu/en/chitchat.yml:")


def test_intent_without_rule(project):
    core = project / "domain" / "core.yml"
    text = core.read_text()
    assert "\n- greet\n" in text
    core.write_text(text.replace("\n- greet\n", "\n- greet\n- planted_topic\n", 1))
    found = errors(check.check_rules_cover_intents(project))
    assert any("planted_topic" in f.message for f in found)


def test_response_too_long_for_telegram(project):
    (project / "domain" / "responses" / "planted.yml").write_text(
        'version: "3.1"\nresponses:\n  utter_planted:\n  - text: "' + "x" * 5000 + '"\n')
    found = errors(check.check_lengths(project))
    assert any("utter_planted" in f.message and "4096" in f.message for f in found)


def test_stale_service_is_an_error(monkeypatch):
    import datetime as dt

    found = check.check_services(today=dt.date(2028, 1, 1))
    assert errors(found) and "last verified" in errors(found)[0].message
    found = check.check_services(today=dt.date(2027, 7, 1))
    assert not errors(found) and any("last verified" in f.message for f in found)
