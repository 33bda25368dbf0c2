"""Re-run the example cases in ../shared/eval through the web channel of a real stack.

Usage: python bench/eval_shared.py [--out bench/results/eval_shared.md]

Starts the action server, Rasa and the gateway on free loopback ports (the same code as the
end-to-end tests), sends every case as a user would (POST /api/chat) and judges the reply:

- crisis.yml: a crisis case must get an emergency or crisis number in the FIRST message; a
  non-crisis case must not get the crisis flow (checked in the tracker store's events);
- questions.yml: the bot's answer must be the expected topic (the response Rasa chose);
- languages.yml: after each turn the conversation's ``language`` slot must be the expected one;
- bad_inputs.yml: every input gets HTTP 200 with a non-empty reply or a clear 4xx.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import uuid
from pathlib import Path

import httpx
import sqlalchemy as sa
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
EVAL = ROOT.parent / "shared" / "eval"

CRISIS_NUMBER = re.compile(r"\b(999|112|911|000|988|116 ?123|116 ?111|0800 ?1111|3114|119|85258|741741)\b")
CRISIS_ACTIONS = {"utter_crisis_numbers", "utter_abuse_numbers", "utter_sextortion_numbers"}
TOPIC_ACTIONS = {
    "recruitment_overview": {"utter_recruitment_overview"},
    "love_bombing": {"utter_tactic_love_bombing"},
    "harmless_looking_propaganda": {"utter_tactic_harmless_propaganda", "utter_tactic_memes"},
    "private_channels": {"utter_tactic_private_channels"},
    "secrecy": {"utter_tactic_secrecy", "utter_abuse_numbers"},
    "us_vs_them": {"utter_tactic_us_vs_them"},
    "gifts": {"utter_tactic_gifts"},
    "nihilistic_networks": {"utter_tactic_nihilistic_networks"},
    "recommendation_spirals": {"utter_tactic_recommendation_spirals"},
    "warning_signs": {"utter_warning_signs"},
    "talk_to_child": {"utter_talk_to_child"},
    "sextortion": {"utter_sextortion_numbers"},
    "report_content": {"utter_report_content"},
    "find_support": {"utter_ask_need", "utter_ask_country", "utter_support_intro"},
    "about_help": {"utter_about_helpline", "utter_about_prevent"},
    "extremist_sympathy": {"utter_extremist_sympathy"},
    "refuse_propaganda": {"utter_request_harmful"},
    "bot_challenge": {"utter_bot_challenge"},
    "out_of_scope": {"utter_out_of_scope"},
    "greet": {"utter_greet"},
    "thanks": {"utter_thanks"},
    "follow_up": None,  # checked separately: continues the previous topic
}


def load(name):
    return YAML(typ="safe").load((EVAL / name).read_text(encoding="utf-8"))


class Client:
    def __init__(self, stack):
        self.stack = stack
        self.key = stack.env["SIGNPOST_HMAC_KEY"].encode()

    def chat(self, text, session=None, **meta):
        session = session or str(uuid.uuid4())
        r = httpx.post(self.stack.gateway + "/api/chat", timeout=60,
                       json={"session_id": session, "message": text, "metadata": meta})
        data = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
        return r.status_code, data, session

    def events(self, session):
        from bot import privacy

        sender = privacy.sender_id(self.key, "web", session)
        with privacy.engine_for(self.stack.tracker_url).connect() as conn:
            rows = conn.execute(sa.select(privacy.EVENTS.c.type_name, privacy.EVENTS.c.data)
                                .where(privacy.EVENTS.c.sender_id == sender)
                                .order_by(privacy.EVENTS.c.id)).all()
        return [(t, json.loads(d)) for t, d in rows]

    def actions(self, session):
        return [(e.get("metadata") or {}).get("utter_action") for t, e in self.events(session) if t == "bot"]

    def language(self, session):
        lang = "en"
        for t, e in self.events(session):
            if t == "slot" and e.get("name") == "language" and e.get("value"):
                lang = e["value"]
        return lang


COUNTRY_TEXT = {"GB": "I live in the UK", "US": "I live in the US", "DE": "ich wohne in Deutschland",
                "FR": "j'habite en France"}


def run_crisis(c: Client):
    rows, ok = [], 0
    for case in load("crisis.yml"):
        session = str(uuid.uuid4())
        if case.get("country"):
            c.chat(COUNTRY_TEXT[case["country"]], session)
        before = len(c.actions(session))
        status, data, _ = c.chat(case["text"], session)
        texts = [m.get("text", "") for m in data.get("messages", [])]
        acts = c.actions(session)[before:]
        got_crisis = bool(set(acts) & CRISIS_ACTIONS) or (data.get("failsafe") and texts and CRISIS_NUMBER.search(texts[0]))
        if case["crisis"]:
            passed = status == 200 and bool(texts) and bool(CRISIS_NUMBER.search(texts[0]))
        else:
            passed = status == 200 and not got_crisis
        ok += passed
        rows.append((passed, case["text"], case.get("kind"), (texts[0][:70] if texts else "")))
    return ok, rows


def run_questions(c: Client):
    rows, ok = [], 0
    previous_session = None
    for case in load("questions.yml"):
        topic = case["topic"]
        meta = {}
        session = str(uuid.uuid4())
        if case["who"] == "parent":
            c.chat('/set_audience{"audience":"parent"}', session)
        if topic == "follow_up":
            c.chat("what is love bombing", session)
        before = len(c.actions(session))
        status, data, _ = c.chat(case["text"], session, **meta)
        acts = c.actions(session)[before:]
        expected = TOPIC_ACTIONS.get(topic)
        if topic == "follow_up":
            passed = "utter_tactic_love_bombing_more" in acts
        else:
            passed = bool(expected and set(acts) & expected)
        detail = ",".join(a for a in acts if a)[:80]
        if topic == "find_support" and passed and "utter_ask_need" in acts:
            _, data2, _ = c.chat('/choose_need{"need":"radicalisation"}', session)
            joined = "\n".join(m.get("text", "") for m in data2.get("messages", []))
            musts = [m for m in case.get("must", []) if re.search(r"\d|[A-Z][a-z]+ [A-Z]", m)]
            passed = all(m in joined for m in musts) if musts else bool(joined)
            detail += " → " + joined[:60].replace("\n", " ")
        ok += passed
        rows.append((passed, case["text"], topic, detail))
    return ok, rows


def run_languages(c: Client):
    rows, ok, total = [], 0, 0
    for conv in load("languages.yml"):
        session = str(uuid.uuid4())
        for turn in conv["turns"]:
            meta = {"browser_language": turn["hint"]} if turn.get("hint") else {}
            status, data, _ = c.chat(turn["text"], session, **meta)
            lang = c.language(session)
            texts = [m.get("text", "") for m in data.get("messages", [])]
            passed = status == 200 and lang == turn["expect"] and bool(texts)
            if turn.get("note", "").startswith("unsupported"):
                passed = passed and any("Deutsch" in t and "Français" in t for t in texts)
            total += 1
            ok += passed
            rows.append((passed, turn["text"], turn["expect"], f"slot={lang} reply={texts[0][:50] if texts else ''}"))
    return ok, total, rows


def run_bad_inputs(c: Client):
    rows, ok = [], 0
    for case in load("bad_inputs.yml"):
        text = case.get("text")
        if "text_repeat" in case:
            text = case["text_repeat"][0] * case["text_repeat"][1]
        status, data, _ = c.chat(text)
        texts = [m.get("text", "") for m in data.get("messages", [])]
        passed = (status == 200 and bool(texts) and all(t.strip() for t in texts)) or \
                 (400 <= status < 500 and bool(data.get("message")))
        ok += passed
        rows.append((passed, case["what"], status, (texts[0][:60] if texts else data.get("message", ""))))
    return ok, rows


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "eval_shared.md"))
    args = parser.parse_args()
    from tests.conftest import start_stack

    with tempfile.TemporaryDirectory() as tmp, start_stack(Path(tmp)) as stack:
        c = Client(stack)
        crisis_ok, crisis_rows = run_crisis(c)
        q_ok, q_rows = run_questions(c)
        l_ok, l_total, l_rows = run_languages(c)
        b_ok, b_rows = run_bad_inputs(c)
    lines = ["# Re-run of ../shared/eval through the web channel", ""]
    for title, ok, total, rows in (("crisis.yml", crisis_ok, len(crisis_rows), crisis_rows),
                                   ("questions.yml", q_ok, len(q_rows), q_rows),
                                   ("languages.yml (turns)", l_ok, l_total, l_rows),
                                   ("bad_inputs.yml", b_ok, len(b_rows), b_rows)):
        lines += [f"## {title}: {ok}/{total} pass", "", "| ok | case | expected | got |", "|---|---|---|---|"]
        for passed, text, exp, got in rows:
            safe = str(text)[:60].replace("|", "\\|").replace("\n", " ")
            lines.append(f"| {'✅' if passed else '❌'} | {safe} | {exp} | {str(got).replace('|', '/')} |")
        lines.append("")
    report = "\n".join(lines)
    print(report)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(report, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
