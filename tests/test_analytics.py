"""Usage figures and the review report, from planted tracker events."""
import json
import time

import sqlalchemy as sa
from ruamel.yaml import YAML

from bot import analytics, privacy


def plant(url, rows):
    privacy.ensure_events_table(url)
    with privacy.engine_for(url).begin() as conn:
        for sender, ts, intent, text, conf, lang in rows:
            data = {"event": "user", "text": text, "parse_data": {
                "intent": {"name": intent, "confidence": conf},
                "language_detection": {"language": lang}}}
            conn.execute(sa.insert(privacy.EVENTS).values(
                sender_id=sender, type_name="user", timestamp=ts, intent_name=intent,
                data=json.dumps(data)))


def test_stats_counts_without_text(tmp_path):
    url = f"sqlite:///{tmp_path/'t.db'}"
    now = time.time()
    plant(url, [
        ("web-a", now - 10, "warning_signs", "signs?", 0.9, "en"),
        ("web-a", now - 9, "crisis_self_harm", "...", 1.0, "en"),
        ("telegram-b", now - 8, "nlu_fallback", "blah", 0.1, "de"),
        ("telegram-b", now - 7, "sextortion_now", "...", 1.0, "de"),
        ("web-c", now - 40 * 86400, "greet", "old", 0.9, "fr"),
    ])
    periods = analytics.stats(url, days=28, now=now)
    assert len(periods) == 1
    p = periods[0]
    assert len(p.conversations) == 2 and p.messages == 4
    assert p.crisis == {"self_harm": 1, "sextortion": 1}
    assert p.channels == {"web": 2, "telegram": 2}
    assert abs(p.fallback_rate - 0.25) < 1e-9
    table = analytics.format_stats(periods)
    assert "self_harm: 1" in table and "web-a" not in table and "signs?" not in table
    png = analytics.chart(periods, tmp_path / "stats.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_review_masks_and_groups(tmp_path):
    url = f"sqlite:///{tmp_path/'t.db'}"
    now = time.time()
    plant(url, [
        ("web-a", now - 5, "nlu_fallback", "how do i block someone on fortnite", 0.2, "en"),
        ("web-b", now - 4, "nlu_fallback", "how do i block someone on fortnite please", 0.2, "en"),
        ("web-c", now - 3, "greet", "can i block a person on fortnite", 0.3, "en"),
        ("web-d", now - 2, "nlu_fallback", "call me on 07700 900123 or mail jo@example.com", 0.1, "en"),
        ("web-e", now - 1, "nlu_fallback", "my name is Zelda and I live at 12 Baker Street", 0.1, "en"),
        ("web-f", now - 1, "warning_signs", "what are the signs", 0.95, "en"),
    ])
    groups = analytics.review(url, days=7, now=now)
    flat = [t for g in groups for t in g]
    assert "what are the signs" not in flat
    assert groups[0][:2] == ["how do i block someone on fortnite", "how do i block someone on fortnite please"]
    joined = " ".join(flat)
    for secret in ("07700", "jo@example.com", "Zelda", "Baker"):
        assert secret not in joined
    assert "<phone>" in joined and "<email>" in joined and "<name>" in joined and "<address>" in joined
    path = analytics.write_review(groups, tmp_path / "review.yml")
    data = YAML(typ="safe").load(path.read_text())
    assert data["nlu"][0]["intent"] == "" and "fortnite" in data["nlu"][0]["examples"]
