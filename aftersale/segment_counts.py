"""Per-segment counts from SQL aggregates: what ``compute-metrics`` publishes until the metrics
issue replaces it with the section-4 metrics (NPS, retention, ...).

A customer belongs to a segment through the enrollments whose stored segment it is; messages,
answers and alerts belong to the segment of the enrollment that caused them (an answer through
the survey message it answers; answers that came without one, e.g. from the shop's own tools,
are in ``all`` only). ``all`` counts each customer once however many segments they are in.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, sessionmaker

from aftersale.db.models import AlertRecord, Enrollment, Message, SurveyResponse

ALL = "all"


@dataclass(frozen=True)
class SegmentCounts:
    segment: str
    customers: int  # distinct customers enrolled and treated
    holdout: int  # distinct customers in a holdout group
    enrollments: int
    messages_sent: int
    survey_answers: int
    alerts: int

    def row(self) -> dict[str, Any]:
        return asdict(self)


def segment_counts(factory: sessionmaker[Session]) -> list[SegmentCounts]:
    """One row per segment (sorted), then ``all``."""
    segment = Enrollment.segment
    treated = Enrollment.holdout.is_(False)
    held = Enrollment.holdout.is_(True)
    measures: dict[str, Select[Any]] = {
        "customers": select(func.count(func.distinct(Enrollment.customer_id))).where(treated),
        "holdout": select(func.count(func.distinct(Enrollment.customer_id))).where(held),
        "enrollments": select(func.count(Enrollment.id)),
        "messages_sent": select(func.count(Message.id)).select_from(Message)
        .join(Enrollment, Enrollment.id == Message.enrollment_id).where(Message.status == "sent"),
        "survey_answers": select(func.count(SurveyResponse.id)).select_from(SurveyResponse)
        .join(Message, Message.id == SurveyResponse.message_id)
        .join(Enrollment, Enrollment.id == Message.enrollment_id),
        "alerts": select(func.count(AlertRecord.id)).select_from(AlertRecord)
        .join(Enrollment, Enrollment.id == AlertRecord.enrollment_id),
    }
    with factory() as session:
        by_segment = {name: _by_segment(session, query, segment) for name, query in measures.items()}
        overall = {name: session.scalar(query) or 0 for name, query in measures.items()}
        overall["survey_answers"] = session.scalar(select(func.count(SurveyResponse.id))) or 0
    names = sorted({s for counts in by_segment.values() for s in counts})
    rows = [SegmentCounts(name, **{m: by_segment[m].get(name, 0) for m in measures}) for name in names]
    rows.append(SegmentCounts(ALL, **overall))
    return rows


def _by_segment(session: Session, query: Select[Any], segment: Any) -> dict[str, int]:
    return {seg: n for n, seg in session.execute(query.add_columns(segment).group_by(segment))}


def markdown(rows: list[SegmentCounts]) -> str:
    """A small markdown table for the Prefect UI."""
    columns = list(SegmentCounts.__dataclass_fields__)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        values = [f"{v:,}" if isinstance(v, int) else str(v) for v in row.row().values()]
        lines.append("| " + " | ".join(values) + " |")
    return "\n".join(lines)
