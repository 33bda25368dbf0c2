"""``make check`` / ``python -m bot check``: validate everything staff edit, in plain words.

Each problem is printed as ``file:line: what is wrong (and how to fix it)``. Errors make the
command fail (exit 1); warnings are printed but do not. Checks:

1. YAML syntax of every file under domain/, data/, i18n/, tests/nlu_heldout/;
2. Rasa's own validation (``rasa data validate``: stories, rules, domain, intents);
3. translations: every response in every language with the same buttons, every intent with
   enough examples in every language;
4. every intent that users type is answered by a rule or story;
5. the services directory: schema, phone formats per country, https links, entries whose
   ``last_verified`` is older than 6 months (warning) or 12 months (error);
6. the safety patterns compile and every pattern has examples that it matches;
7. every response fits in one Telegram message (4096 characters);
8. the generated crisis numbers are up to date with the directory.
"""
from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from bot.settings import ROOT

TELEGRAM_LIMIT = 4096


@dataclass
class Finding:
    level: str  # "error" | "warning"
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.level.upper():7} {self.where}: {self.message}"


def _line_of(path: Path, needle: str) -> int:
    try:
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if needle in line:
                return i
    except OSError:
        pass
    return 1


def check_yaml(root: Path = ROOT) -> List[Finding]:
    findings = []
    for folder in ("domain", "data", "i18n", "tests/nlu_heldout", "tests/stories"):
        for path in sorted((root / folder).rglob("*.yml")):
            try:
                YAML(typ="safe").load(path.read_text(encoding="utf-8"))
            except YAMLError as exc:
                mark = getattr(exc, "problem_mark", None)
                line = mark.line + 1 if mark else 1
                findings.append(Finding("error", f"{path.relative_to(root)}:{line}",
                                        f"not valid YAML ({getattr(exc, 'problem', exc)}). "
                                        "Check indentation and quotes on this line."))
    return findings


def check_rasa(root: Path = ROOT) -> List[Finding]:
    rasa = Path(sys.executable).parent / "rasa"
    cmd = [str(rasa), "data", "validate", "--domain", "domain", "--config", "config.yml",
           "--data", "data/nlu", "data/rules", "data/stories"]
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    findings = []
    for line in (proc.stdout + proc.stderr).splitlines():
        text = re.sub(r"\x1b\[[0-9;]*m", "", line)
        if "UserWarning:" in text:
            msg = text.split("UserWarning:", 1)[1].strip()
            if "is not used in any story or rule" in msg or "'unsupported_language'" in msg:
                continue  # responses sent by actions; the intent set by the LanguageDetector
            # anything else Rasa warns about (an intent or action missing from the domain, an
            # example under two intents, a story conflict…) is a real mistake
            findings.append(Finding("error", "rasa data validate", msg))
        elif " ERROR " in text or text.startswith("ERROR"):
            findings.append(Finding("error", "rasa data validate", text.split("ERROR", 1)[1].strip(" -")))
    if proc.returncode != 0 and not any(f.level == "error" for f in findings):
        findings.append(Finding("error", "rasa data validate", "failed:\n" + proc.stderr[-2000:]))
    return findings


def check_translations() -> List[Finding]:
    from bot import i18n

    findings = []
    for p in i18n.response_coverage():
        findings.append(Finding("error", f"{p.file}:{_line_of(ROOT / p.file, p.name + ':')}",
                                f"{p.name}: {p.message}"))
    for p in i18n.intent_coverage(i18n.domain_intents()):
        findings.append(Finding("error", p.file, f"intent {p.name}: {p.message}"))
    return findings


def check_rules_cover_intents(root: Path = ROOT) -> List[Finding]:
    from bot import i18n

    used = set()
    for path in list((root / "data" / "rules").rglob("*.yml")) + list((root / "data" / "stories").rglob("*.yml")):
        used |= set(re.findall(r"-\s*intent:\s*([A-Za-z_]+)", path.read_text(encoding="utf-8")))
    findings = []
    for intent in i18n.domain_intents(root / "domain"):
        if intent not in used:
            findings.append(Finding("error", "data/rules/", f"intent '{intent}' has no rule or story, "
                                    "so the bot would not know what to answer. Add a rule in "
                                    "data/rules/topics.yml."))
    return findings


def check_services(today: Optional[dt.date] = None) -> List[Finding]:
    from bot.directory.loader import DirectoryError, load_directory, old_sources, stale_entries

    try:
        countries = load_directory()
    except DirectoryError as exc:
        return [Finding("error", "data/services", str(exc))]
    warnings, errors = stale_entries(countries, today=today)
    findings = []
    for s, age in old_sources(countries, today=today):
        path = ROOT / "data" / "services" / f"{s.country}.yml"
        findings.append(Finding("warning", f"{path.relative_to(ROOT)}:{_line_of(path, 'id: ' + s.id)}",
                                f"'{s.id}': its source is dated {s.source_date} ({age // 365} years "
                                "old). Re-check the number and hours on the service's own site."))
    for level, items in (("warning", warnings), ("error", errors)):
        for s, age in items:
            path = ROOT / "data" / "services" / f"{s.country}.yml"
            findings.append(Finding(level, f"{path.relative_to(ROOT)}:{_line_of(path, 'id: ' + s.id)}",
                                    f"'{s.id}' was last verified {age} days ago ({s.last_verified}). "
                                    "Check it against its source and update last_verified."))
    return findings


def check_safety() -> List[Finding]:
    from bot.safety import SafetyPatternError, SafetyPatterns

    try:
        SafetyPatterns.load(ROOT / "data" / "safety")
    except SafetyPatternError as exc:
        return [Finding("error", "data/safety", str(exc))]
    return []


def check_lengths(root: Path = ROOT) -> List[Finding]:
    findings = []
    for path in sorted((root / "domain").rglob("*.yml")):
        data = YAML(typ="safe").load(path.read_text(encoding="utf-8")) or {}
        for name, variations in (data.get("responses") or {}).items():
            for v in variations or []:
                n = len(str(v.get("text") or ""))
                if n > TELEGRAM_LIMIT:
                    findings.append(Finding("error", f"{path.relative_to(root)}:{_line_of(path, name + ':')}",
                                            f"{name}: a variation has {n} characters; Telegram "
                                            f"allows {TELEGRAM_LIMIT}. Shorten it or split it."))
    return findings


def check_generated() -> List[Finding]:
    from bot import responses_builder

    if not responses_builder.is_current():
        return [Finding("error", "domain/responses/crisis_numbers.yml",
                        "is out of date with data/services. Run: python -m bot build-responses")]
    return []


CHECKS = [("YAML syntax", check_yaml), ("Rasa validation", check_rasa),
          ("translations", check_translations), ("rules for every intent", check_rules_cover_intents),
          ("services directory", check_services), ("safety patterns", check_safety),
          ("message length", check_lengths), ("generated crisis numbers", check_generated)]


def run_all(skip_rasa: bool = False) -> List[Finding]:
    findings: List[Finding] = []
    for title, func in CHECKS:
        if skip_rasa and func is check_rasa:
            continue
        if func is not check_yaml and any(f.level == "error" for f in findings):
            print(f"[{title}] skipped: fix the YAML error(s) above first, then run make check again")
            continue
        try:
            found = func()
        except Exception as exc:  # noqa: BLE001 - a check must explain, not crash
            found = [Finding("error", title, f"could not run this check ({type(exc).__name__}: "
                             f"{str(exc)[:300]}). Fix the problems above first.")]
        status = "ok" if not found else f"{sum(f.level == 'error' for f in found)} error(s), " \
                                         f"{sum(f.level == 'warning' for f in found)} warning(s)"
        print(f"[{title}] {status}")
        for f in found:
            print("   ", f)
        findings += found
    return findings


def main(skip_rasa: bool = False) -> int:
    findings = run_all(skip_rasa)
    errors = sum(f.level == "error" for f in findings)
    print(f"\n{errors} error(s), {len(findings) - errors} warning(s).")
    return 1 if errors else 0
