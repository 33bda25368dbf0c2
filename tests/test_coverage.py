"""Translation coverage (issue #7): every response and intent in every language."""
import shutil

from ruamel.yaml import YAML

from bot import i18n
from bot.settings import ROOT, SUPPORTED_LANGUAGES


def test_languages_come_from_the_domain():
    assert SUPPORTED_LANGUAGES == ("en", "de", "fr", "ar")


def test_every_response_has_every_language_and_same_buttons():
    problems = i18n.response_coverage()
    assert not problems, "\n".join(map(str, problems[:30]))


def test_every_intent_has_examples_in_every_language():
    problems = i18n.intent_coverage(i18n.domain_intents(), minimum=20)
    assert not problems, "\n".join(map(str, problems[:30]))


def test_missing_translation_is_reported_with_file_and_name(tmp_path):
    domain = tmp_path / "domain"
    (domain / "responses").mkdir(parents=True)
    (domain / "responses" / "x.yml").write_text(
        'version: "3.1"\nresponses:\n  utter_x:\n  - text: hi\n    buttons:\n'
        '    - {title: A, payload: /a}\n  - text: hallo\n    condition:\n'
        '    - {type: slot, name: language, value: de}\n    buttons:\n    - {title: A, payload: /b}\n')
    problems = [str(p) for p in i18n.response_coverage(domain, ["en", "de", "fr"])]
    assert any("utter_x" in p and "no 'fr' variation" in p for p in problems)
    assert any("utter_x" in p and "payloads" in p for p in problems)


def test_a_fifth_language_is_a_data_change_only(tmp_path):
    """Copy the data, add 'xx' to the data only, and the coverage check passes for it."""
    domain = tmp_path / "domain"
    nlu = tmp_path / "nlu"
    shutil.copytree(ROOT / "domain", domain)
    shutil.copytree(ROOT / "data" / "nlu", nlu)
    yaml = YAML()
    # before: the new language is missing everywhere
    assert i18n.response_coverage(domain, list(SUPPORTED_LANGUAGES) + ["xx"])
    # add an xx variation for each response (copying English) and xx NLU examples
    for path in domain.rglob("*.yml"):
        data = yaml.load(path.read_text())
        for name, variations in (data.get("responses") or {}).items():
            default = next(v for v in variations if not v.get("condition"))
            new = dict(default)
            new["text"] = "xx " + str(default.get("text", ""))
            new["condition"] = [{"type": "slot", "name": "language", "value": "xx"}]
            variations.append(new)
        if path.name == "core.yml":
            data["slots"]["language"]["values"].append("xx")
        with path.open("w") as fh:
            yaml.dump(data, fh)
    (nlu / "xx").mkdir()
    shutil.copy(ROOT / "data" / "nlu" / "en" / "chitchat.yml", nlu / "xx" / "chitchat.yml")
    langs = list(SUPPORTED_LANGUAGES) + ["xx"]
    assert not [p for p in i18n.response_coverage(domain, langs) if "'xx'" in str(p)]
    counts = i18n.nlu_counts(nlu)
    assert counts["xx"]["greet"] >= 20
    core = YAML(typ="safe").load((domain / "core.yml").read_text())
    assert "xx" in core["slots"]["language"]["values"]
