"""The services directory in SQL (SQLAlchemy 2.0-style; SQLite by default, PostgreSQL too).

Tables: ``services`` (one row per service, texts as JSON) and ``service_needs`` (which needs a
service meets, with its position in the service's list: 0 = best fit). :func:`load_into`
replaces the content from the YAML files in one transaction; :func:`find_services` answers the
support finder's question.
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Dict, List, Optional

import sqlalchemy as sa
from sqlalchemy.orm import Session, declarative_base, relationship

from bot.directory.loader import Country, load_directory


Base = declarative_base()


class ServiceRow(Base):
    __tablename__ = "services"

    id = sa.Column(sa.String(80), primary_key=True)
    country = sa.Column(sa.String(3), index=True, nullable=False)
    name = sa.Column(sa.String(200), nullable=False)
    run_by = sa.Column(sa.String(200), nullable=False)
    languages = sa.Column(sa.String(200), nullable=False)  # comma-separated codes
    audience = sa.Column(sa.String(100), nullable=False)
    phone = sa.Column(sa.String(40))
    sms = sa.Column(sa.String(120))
    web = sa.Column(sa.String(300))
    email = sa.Column(sa.String(200))
    hours_json = sa.Column(sa.Text, nullable=False)
    note_json = sa.Column(sa.Text, nullable=False)
    always_open = sa.Column(sa.Boolean, nullable=False)
    rank = sa.Column(sa.Integer, nullable=False)
    source = sa.Column(sa.Text, nullable=False)
    last_verified = sa.Column(sa.Date, nullable=False)
    needs = relationship("NeedRow", back_populates="service", cascade="all, delete-orphan")


class NeedRow(Base):
    __tablename__ = "service_needs"

    service_id = sa.Column(sa.String(80), sa.ForeignKey("services.id", ondelete="CASCADE"),
                           primary_key=True)
    need = sa.Column(sa.String(40), primary_key=True, index=True)
    position = sa.Column(sa.Integer, nullable=False)
    service = relationship("ServiceRow", back_populates="needs")


class EmergencyRow(Base):
    __tablename__ = "emergency_numbers"

    country = sa.Column(sa.String(3), primary_key=True)
    number = sa.Column(sa.String(10), nullable=False)


@dataclass(frozen=True)
class ServiceView:
    """A service as the support finder shows it, texts already in the user's language."""

    id: str
    name: str
    run_by: str
    phone: Optional[str]
    sms: Optional[str]
    web: Optional[str]
    email: Optional[str]
    hours: str
    note: str
    always_open: bool
    speaks_language: bool


def make_engine(url: str) -> sa.engine.Engine:
    """Create an engine (``future=True``) and the tables if they do not exist."""
    engine = sa.create_engine(url, future=True, pool_pre_ping=True)
    Base.metadata.create_all(engine)
    return engine


def load_into(engine: sa.engine.Engine, countries: Optional[Dict[str, Country]] = None) -> int:
    """Replace the directory tables with the YAML content; return the number of services.

    Raises:
        bot.directory.loader.DirectoryError: if a YAML file is broken (nothing is changed).
    """
    countries = countries if countries is not None else load_directory()
    with Session(engine, future=True) as session, session.begin():
        session.execute(sa.delete(NeedRow))
        session.execute(sa.delete(ServiceRow))
        session.execute(sa.delete(EmergencyRow))
        count = 0
        for country in countries.values():
            session.add(EmergencyRow(country=country.code, number=country.emergency))
            for s in country.services:
                row = ServiceRow(
                    id=s.id, country=s.country, name=s.name, run_by=s.run_by,
                    languages=",".join(s.languages), audience=",".join(s.audience),
                    phone=s.phone, sms=s.sms, web=s.web, email=s.email,
                    hours_json=json.dumps(s.hours, ensure_ascii=False),
                    note_json=json.dumps(s.note, ensure_ascii=False),
                    always_open=s.always_open, rank=s.rank, source=s.source,
                    last_verified=s.last_verified,
                )
                row.needs = [NeedRow(need=n, position=i) for i, n in enumerate(s.needs)]
                session.add(row)
                count += 1
    return count


def _localised(raw: str, language: str) -> str:
    texts = json.loads(raw or "{}")
    return texts.get(language) or texts.get("en") or ""


def find_services(engine: sa.engine.Engine, country: Optional[str], need: str,
                  language: str = "en", audience: Optional[str] = None,
                  limit: int = 3) -> List[ServiceView]:
    """Return up to ``limit`` services for a need, best first.

    Order: services that speak the user's language first, then how well the need fits the
    service (its position in ``needs``), then services for the user's audience, then ``rank``.
    When the country has none (or is unknown / ``other``), the international entries (``INT``)
    are used.

    Args:
        country: ISO code (``GB``…), ``other`` or None.
        need: one of ``bot.directory.loader.NEEDS``.
        language: the user's language code, used for ordering and for the texts.
        audience: ``teen`` or ``parent`` (None: no preference).
    """
    def query(code: str) -> List[ServiceView]:
        stmt = (
            sa.select(ServiceRow, NeedRow.position)
            .join(NeedRow, NeedRow.service_id == ServiceRow.id)
            .where(ServiceRow.country == code, NeedRow.need == need)
        )
        with Session(engine, future=True) as session:
            rows = session.execute(stmt).all()

        def key(item):
            row, position = item
            speaks = language in row.languages.split(",")
            fits_audience = audience is None or audience in row.audience.split(",") \
                or "anyone" in row.audience.split(",")
            return (not speaks, position, not fits_audience, row.rank, row.name)

        rows.sort(key=key)
        return [
            ServiceView(
                id=row.id, name=row.name, run_by=row.run_by, phone=row.phone, sms=row.sms,
                web=row.web, email=row.email, hours=_localised(row.hours_json, language),
                note=_localised(row.note_json, language), always_open=row.always_open,
                speaks_language=language in row.languages.split(","),
            )
            for row, _ in rows[:limit]
        ]

    code = (country or "").upper()
    found = query(code) if code and code != "OTHER" else []
    return found or query("INT")


def emergency_number(engine: sa.engine.Engine, country: Optional[str]) -> Optional[str]:
    """The emergency number of a country, or None when unknown."""
    if not country:
        return None
    with Session(engine, future=True) as session:
        row = session.get(EmergencyRow, country.upper())
        return row.number if row else None
