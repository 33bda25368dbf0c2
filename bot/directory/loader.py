"""Load and validate the services directory (``data/services/<CC>.yml``).

File format: see docs/content-spec.md ("Services directory"). Every problem is reported as a
:class:`DirectoryError` naming the file, the entry and the field, e.g.
``data/services/GB.yml: entry 'childline-gb': field 'web': must start with https://``.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

from ruamel.yaml import YAML

from bot.settings import ROOT, SUPPORTED_LANGUAGES

SERVICES_DIR = ROOT / "data" / "services"
NEEDS = ("radicalisation", "exit", "crisis", "child", "reporting", "sextortion")
AUDIENCES = ("teen", "parent", "anyone")
CONFIDENCE = ("high", "medium")
_ID = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_PHONE = re.compile(r"^\+?[0-9][0-9 ()\-]{1,24}[0-9]$")
#: Plausible digit counts of a phone number per country (short codes included).
PHONE_DIGITS = {
    "GB": (3, 11), "US": (3, 11), "DE": (3, 13), "FR": (3, 10), "IE": (3, 11),
    "CA": (3, 11), "AU": (3, 10), "INT": (3, 12),
}


class DirectoryError(ValueError):
    """A services file is broken; the message names file, entry and field."""


@dataclass(frozen=True)
class Service:
    """One service. Texts (``hours``, ``note``) are dicts keyed by language code."""

    id: str
    country: str
    name: str
    run_by: str
    needs: Tuple[str, ...]
    audience: Tuple[str, ...]
    languages: Tuple[str, ...]
    phone: Optional[str]
    sms: Optional[str]
    web: Optional[str]
    email: Optional[str]
    hours: Dict[str, str]
    note: Dict[str, str]
    always_open: bool
    rank: int
    confidence: str
    source: str
    last_verified: dt.date
    source_date: Optional[dt.date] = None

    def text(self, field_name: str, language: str) -> str:
        """A localised text field (``hours`` or ``note``), falling back to English."""
        texts = getattr(self, field_name) or {}
        return texts.get(language) or texts.get("en") or ""


@dataclass
class Country:
    """A country file: its emergency number and services (``code`` is ISO or ``INT``)."""

    code: str
    emergency: str
    services: List[Service] = field(default_factory=list)
    path: Optional[Path] = None


def _fail(path: Path, entry: str, field_name: str, problem: str) -> DirectoryError:
    where = f"entry '{entry}'" if entry else "file"
    return DirectoryError(f"{path}: {where}: field '{field_name}': {problem}")


def _texts(path: Path, sid: str, name: str, value, required: bool) -> Dict[str, str]:
    if value is None:
        if required:
            raise _fail(path, sid, name, "is required (a dict with at least 'en')")
        return {}
    if isinstance(value, str):
        return {"en": value}
    if not isinstance(value, dict) or "en" not in value:
        raise _fail(path, sid, name, "must be a dict of language → text with at least 'en'")
    unknown = set(value) - set(SUPPORTED_LANGUAGES)
    if unknown:
        raise _fail(path, sid, name, f"unknown language(s) {sorted(unknown)}")
    return {str(k): str(v) for k, v in value.items()}


def _list(path: Path, sid: str, name: str, value, allowed: Optional[Iterable[str]] = None) -> Tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise _fail(path, sid, name, "must be a non-empty list")
    items = tuple(str(v) for v in value)
    if allowed is not None:
        bad = [v for v in items if v not in allowed]
        if bad:
            raise _fail(path, sid, name, f"unknown value(s) {bad}; allowed: {list(allowed)}")
    return items


def parse_service(path: Path, country: str, raw: dict) -> Service:
    """Validate one entry; raise :class:`DirectoryError` on the first problem."""
    if not isinstance(raw, dict):
        raise _fail(path, "?", "services", "each service must be a mapping")
    sid = raw.get("id")
    if not isinstance(sid, str) or not _ID.match(sid):
        raise _fail(path, str(sid), "id", "must be lowercase letters, digits and dashes")
    for required in ("name", "run_by", "source"):
        if not isinstance(raw.get(required), str) or not raw[required].strip():
            raise _fail(path, sid, required, "is required")
    phone = raw.get("phone")
    if phone is not None:
        phone = str(phone)
        digits = re.sub(r"\D", "", phone)
        low, high = PHONE_DIGITS.get(country, (3, 15))
        if not _PHONE.match(phone) or not (low <= len(digits) <= high):
            raise _fail(path, sid, "phone", f"'{phone}' is not a phone number for {country} "
                        f"({low}-{high} digits; digits, spaces, + - ( ) only)")
    web = raw.get("web")
    if web is not None and not str(web).startswith("https://"):
        raise _fail(path, sid, "web", "must start with https://")
    if not any(raw.get(k) for k in ("phone", "sms", "web", "email")):
        raise _fail(path, sid, "phone", "a service needs at least one of phone, sms, web, email")
    for src in str(raw["source"]).split(" ; "):
        if not src.strip().startswith(("http://", "https://")):
            raise _fail(path, sid, "source", f"'{src.strip()}' is not a URL")
    confidence = raw.get("confidence")
    if confidence not in CONFIDENCE:
        raise _fail(path, sid, "confidence", f"must be one of {list(CONFIDENCE)} (low rows are not shipped)")
    verified = raw.get("last_verified")
    if isinstance(verified, str):
        try:
            verified = dt.date.fromisoformat(verified)
        except ValueError:
            verified = None
    if not isinstance(verified, dt.date):
        raise _fail(path, sid, "last_verified", "must be a date YYYY-MM-DD")
    source_date = raw.get("source_date")
    if isinstance(source_date, str):
        try:
            source_date = dt.date.fromisoformat(source_date)
        except ValueError:
            raise _fail(path, sid, "source_date", "must be a date YYYY-MM-DD") from None
    if source_date is not None and not isinstance(source_date, dt.date):
        raise _fail(path, sid, "source_date", "must be a date YYYY-MM-DD")
    rank = raw.get("rank", 50)
    if not isinstance(rank, int):
        raise _fail(path, sid, "rank", "must be a whole number")
    return Service(
        id=sid, country=country, name=raw["name"].strip(), run_by=raw["run_by"].strip(),
        needs=_list(path, sid, "needs", raw.get("needs"), NEEDS),
        audience=_list(path, sid, "audience", raw.get("audience"), AUDIENCES),
        languages=_list(path, sid, "languages", raw.get("languages")),
        phone=phone, sms=(str(raw["sms"]) if raw.get("sms") else None),
        web=(str(web) if web else None), email=(str(raw["email"]) if raw.get("email") else None),
        hours=_texts(path, sid, "hours", raw.get("hours"), required=True),
        note=_texts(path, sid, "note", raw.get("note"), required=False),
        always_open=bool(raw.get("always_open", False)), rank=rank,
        confidence=confidence, source=str(raw["source"]), last_verified=verified,
        source_date=source_date,
    )


def load_file(path: Path) -> Country:
    """Load and validate one country file."""
    path = Path(path)
    try:
        data = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    except Exception as exc:  # ruamel raises several error types
        raise DirectoryError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise _fail(path, "", "country", "the file must be a mapping with country, emergency, services")
    code = data.get("country")
    if not isinstance(code, str) or not re.fullmatch(r"[A-Z]{2}|INT", code):
        raise _fail(path, "", "country", "must be an ISO code like GB, or INT")
    if path.stem != code:
        raise _fail(path, "", "country", f"'{code}' does not match the file name {path.name}")
    emergency = str(data.get("emergency") or "")
    if not re.fullmatch(r"[0-9]{2,4}", emergency):
        raise _fail(path, "", "emergency", "must be the emergency number, e.g. 999 or 112")
    services = data.get("services")
    if not isinstance(services, list) or not services:
        raise _fail(path, "", "services", "must be a non-empty list")
    parsed = [parse_service(path, code, raw) for raw in services]
    seen = set()
    for s in parsed:
        if s.id in seen:
            raise _fail(path, s.id, "id", "is used twice")
        seen.add(s.id)
    return Country(code=code, emergency=emergency, services=parsed, path=path)


def load_directory(directory: Path = SERVICES_DIR) -> Dict[str, Country]:
    """Load every ``*.yml`` in ``directory``; ids must be unique across files.

    Raises:
        DirectoryError: on the first broken file, entry or field, or when there are no files.
    """
    countries: Dict[str, Country] = {}
    ids: Dict[str, Path] = {}
    files = sorted(Path(directory).glob("*.yml"))
    if not files:
        raise DirectoryError(f"{directory}: no services files (*.yml)")
    for path in files:
        country = load_file(path)
        for s in country.services:
            if s.id in ids:
                raise _fail(path, s.id, "id", f"is already used in {ids[s.id]}")
            ids[s.id] = path
        countries[country.code] = country
    return countries


def old_sources(countries: Dict[str, Country], today: Optional[dt.date] = None,
                max_days: int = 730) -> List[Tuple[Service, int]]:
    """Services whose source page is dated more than ``max_days`` (2 years) ago."""
    today = today or dt.date.today()
    return [(s, (today - s.source_date).days) for c in countries.values() for s in c.services
            if s.source_date and (today - s.source_date).days > max_days]


def stale_entries(countries: Dict[str, Country], today: Optional[dt.date] = None,
                  warn_days: int = 183, error_days: int = 365):
    """Return ``(warnings, errors)``: lists of (service, age_days) past 6 and 12 months."""
    today = today or dt.date.today()
    warnings, errors = [], []
    for country in countries.values():
        for s in country.services:
            age = (today - s.last_verified).days
            if age > error_days:
                errors.append((s, age))
            elif age > warn_days:
                warnings.append((s, age))
    return warnings, errors
