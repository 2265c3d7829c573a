"""Assembling a :class:`MetricsReport` for a period, and reading the period from the command line.

Period (``aftersale metrics`` / ``aftersale report``):

- ``--from`` and ``--to`` take a date ``YYYY-MM-DD`` (a UTC calendar day) or an ISO date-time
  with an offset such as ``2026-03-31T18:00+03:00`` (a date-time without one is read as UTC).
- ``--from DATE`` starts at 00:00 UTC of that day; without ``--from`` the period has no start.
- ``--to DATE`` includes the whole day: it ends at 23:59:59.999999 UTC of that day, so
  ``--to 2026-03-31`` covers March 31st. Without ``--to`` the period ends now. The end is the
  report time of DESIGN.md section 4 (retention windows must have passed by then).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, time

from sqlalchemy import case, distinct, extract, func, select
from sqlalchemy.orm import Session

from aftersale.clock import as_utc
from aftersale.db.models import Enrollment, SurveyResponse
from aftersale.metrics.cohorts import cohorts
from aftersale.metrics.journeys import funnel, journey_lifts
from aftersale.metrics.model import MetricsReport, Nps
from aftersale.metrics.present import MonthNps
from aftersale.metrics.segments import segment_metrics

_FORMATS = "a date such as 2026-03-31 or a date-time with an offset such as 2026-03-31T18:00+03:00"


class PeriodError(ValueError):
    """A --from/--to the user has to fix; the message is one line that names the option."""


def parse_period(from_text: str | None, to_text: str | None, now: datetime
                 ) -> tuple[datetime | None, datetime]:
    """(start or None, end), aware UTC; see the module docstring for what each form means."""
    start = _parse_bound(from_text, "--from", end_of_day=False) if from_text else None
    end = _parse_bound(to_text, "--to", end_of_day=True) if to_text else as_utc(now)
    if start is not None and start > end:
        raise PeriodError(f"--from {from_text} is after --to "
                          f"{to_text or 'now (' + end.isoformat(timespec='seconds') + ')'}")
    return start, end


def _parse_bound(text: str, option: str, end_of_day: bool) -> datetime:
    text = text.strip()
    try:
        if len(text) == 10:  # YYYY-MM-DD: a whole UTC day
            day = date.fromisoformat(text)
            if end_of_day:
                return datetime.combine(day, time.max, UTC)
            return datetime.combine(day, time.min, UTC)
        return as_utc(datetime.fromisoformat(text))
    except ValueError:
        raise PeriodError(f"{option} '{text}' is not {_FORMATS}") from None


def compute(session: Session, start: datetime | None, end: datetime, survey_kinds: Mapping[str, str],
            segments: Sequence[str] | None = None, as_of: datetime | None = None) -> MetricsReport:
    """Every section-4 metric for the period; ``segments`` None means every segment and all."""
    return MetricsReport(
        as_of=as_utc(as_of) if as_of else datetime.now(UTC),
        from_=start.date() if start else None,
        to=end.date(),
        segments=segment_metrics(session, start, end, survey_kinds, segments),
        journeys=journey_lifts(session, start, end),
        funnel=funnel(session, start, end),
        cohorts=cohorts(session, start, end),
    )


def known_segments(session: Session) -> list[str]:
    """Segments some customer was enrolled in (the segment is stored at enrollment)."""
    return sorted(session.scalars(select(distinct(Enrollment.segment))))


def nps_by_month(session: Session, start: datetime | None, end: datetime) -> list[MonthNps]:
    """NPS per month of answer over all NPS answers (not the latest per customer: a trend should
    move when customers change their minds), one aggregate query, oldest month first."""
    when = SurveyResponse.responded_at
    if session.get_bind().dialect.name == "postgresql":
        # timestamptz is split into months in the session's zone; section 4 months are UTC
        when = func.timezone("UTC", when)
    year, month = extract("year", when), extract("month", when)
    query = (select(year, month,
                    func.sum(case((SurveyResponse.score >= 9, 1), else_=0)),
                    func.sum(case((SurveyResponse.score.between(7, 8), 1), else_=0)),
                    func.sum(case((SurveyResponse.score <= 6, 1), else_=0)))
             .where(SurveyResponse.kind == "nps", SurveyResponse.responded_at <= end)
             .group_by(year, month).order_by(year, month))
    if start is not None:
        query = query.where(SurveyResponse.responded_at >= start)
    return [MonthNps(f"{int(y):04d}-{int(m):02d}", Nps.of(int(p), int(a), int(d)))
            for y, m, p, a, d in session.execute(query)]

