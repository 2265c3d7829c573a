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
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, time

from sqlalchemy import Engine, SQLColumnExpression, case, distinct, extract, func, select, text
from sqlalchemy.orm import Session

from aftersale.core.clock import as_utc
from aftersale.core.survey_scales import NPS_DETRACTOR_MAX, NPS_PASSIVE_MIN, NPS_PROMOTER_MIN
from aftersale.db.models import Enrollment, SurveyResponse
from aftersale.metrics.anchors import anchor_table
from aftersale.metrics.by_segment import segment_metrics
from aftersale.metrics.cohorts import cohorts
from aftersale.metrics.journeys import funnel, journey_lifts
from aftersale.metrics.model import (
    Cohort,
    FunnelStep,
    JourneyLift,
    MetricsReport,
    Nps,
    SegmentMetrics,
)
from aftersale.metrics.present import MonthNps

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
            segments: Sequence[str] | None = None, as_of: datetime | None = None,
            *, parallel: bool = False) -> MetricsReport:
    """Every section-4 metric for the period; ``segments`` None means every segment and all.

    The segment metrics and the cohorts share one anchor table on ``session``. With
    ``parallel`` the journey lifts and the funnel run meanwhile on a second connection of the
    same engine, in a thread: SQLite and PostgreSQL both release the GIL while a query runs,
    so a report takes the time of its longer half on two cores. The second connection sees
    committed rows only, so pass ``parallel`` only with nothing uncommitted in ``session``.
    Each connection reads what is committed when its query runs; every figure is bounded by
    ``end``, so only rows committed during the computation and dated before ``end`` could
    make the two halves disagree. An in-memory SQLite database has no second connection and
    is computed in turn."""
    other = _second_session(session) if parallel else None
    for each in (session, other):
        if each is not None:
            tune_for_reports(each, beside_another=other is not None)
    if other is None:
        lifts, steps = _journey_metrics(session, start, end)
        per_segment, retention = _anchored_metrics(session, start, end, survey_kinds, segments)
    else:
        with other, ThreadPoolExecutor(max_workers=1, thread_name_prefix="metrics") as pool:
            journeys_done = pool.submit(_journey_metrics, other, start, end)
            per_segment, retention = _anchored_metrics(session, start, end, survey_kinds,
                                                       segments)
            lifts, steps = journeys_done.result()
    return MetricsReport(
        as_of=as_utc(as_of) if as_of else datetime.now(UTC),
        from_=start.date() if start else None,
        to=end.date(),
        segments=per_segment,
        journeys=lifts,
        funnel=steps,
        cohorts=retention,
    )


def tune_for_reports(session: Session, *, beside_another: bool = False) -> None:
    """PostgreSQL settings for the rest of the session's transaction that suit a few large
    aggregate queries: no JIT (compiling them took over 1.5 s of a 5 s query, and they run
    once), and room to sort and hash the anchors in memory instead of on disk. SQLite has
    nothing to tune here.

    ``beside_another``: a second connection computes the other half of the report at the
    same time. The two halves already keep two cores busy, and each query's own parallel
    workers then only compete with them: on 2 cores the report took 10.6 s with the default
    two workers per query, 9.9 s with one and 8.3 s with none. A database on many more cores
    would do better with some; a report on one connection keeps PostgreSQL's default."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL jit = off"))
        session.execute(text("SET LOCAL work_mem = '64MB'"))
        if beside_another:
            session.execute(text("SET LOCAL max_parallel_workers_per_gather = 0"))


def _anchored_metrics(session: Session, start: datetime | None, end: datetime,
                      survey_kinds: Mapping[str, str], segments: Sequence[str] | None
                      ) -> tuple[list[SegmentMetrics], list[Cohort]]:
    with anchor_table(session, start, end) as anchors:
        return (segment_metrics(session, start, end, survey_kinds, segments, anchors),
                cohorts(session, start, end, anchors))


def _journey_metrics(session: Session, start: datetime | None, end: datetime
                     ) -> tuple[list[JourneyLift], list[FunnelStep]]:
    return journey_lifts(session, start, end), funnel(session, start, end)


def _second_session(session: Session) -> Session | None:
    """A new session on the same engine, or None when there can be no second connection to
    the same data (a connection-bound session, an in-memory SQLite database)."""
    bind = session.get_bind()
    if not isinstance(bind, Engine):
        return None
    url = bind.url
    if url.get_backend_name() == "sqlite" and (
            url.database in (None, "", ":memory:") or "mode=memory" in str(url)):
        return None
    return Session(bind)


def known_segments(session: Session) -> list[str]:
    """Segments some customer was enrolled in (the segment is stored at enrollment)."""
    return sorted(session.scalars(select(distinct(Enrollment.segment))))


def nps_by_month(session: Session, start: datetime | None, end: datetime) -> list[MonthNps]:
    """NPS per month of answer over all NPS answers (not the latest per customer: a trend should
    move when customers change their minds), one aggregate query, oldest month first."""
    when: SQLColumnExpression[datetime] = SurveyResponse.responded_at
    if session.get_bind().dialect.name == "postgresql":
        # timestamptz is split into months in the session's zone; section 4 months are UTC
        when = func.timezone("UTC", when)
    year, month = extract("year", when), extract("month", when)
    query = (select(year, month,
                    func.sum(case((SurveyResponse.score >= NPS_PROMOTER_MIN, 1), else_=0)),
                    func.sum(case((SurveyResponse.score.between(NPS_PASSIVE_MIN,
                                                                NPS_PROMOTER_MIN - 1), 1),
                                  else_=0)),
                    func.sum(case((SurveyResponse.score <= NPS_DETRACTOR_MAX, 1), else_=0)))
             .where(SurveyResponse.kind == "nps", SurveyResponse.responded_at <= end)
             .group_by(year, month).order_by(year, month))
    if start is not None:
        query = query.where(SurveyResponse.responded_at >= start)
    return [MonthNps(f"{int(y):04d}-{int(m):02d}", Nps.of(int(p), int(a), int(d)))
            for y, m, p, a, d in session.execute(query)]

