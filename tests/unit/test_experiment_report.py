"""Where marketers see experiments: the HTML report's section (a chart per experiment, its
table and verdict) and the compute-metrics artifact's markdown, from results built here."""

from __future__ import annotations

from datetime import UTC, date, datetime

from aftersale.metrics.experiments import (
    DecisionResult,
    Difference,
    ExperimentResult,
    ExperimentsReport,
    GoalFigure,
    VariantResult,
    markdown,
)
from aftersale.metrics.model import MetricsReport
from aftersale.metrics.report import render_report

AS_OF = datetime(2026, 6, 30, 12, 0, tzinfo=UTC)
EMPTY = MetricsReport(as_of=AS_OF, from_=None, to=date(2026, 6, 30), segments=[], journeys=[],
                      funnel=[], cohorts=[])


def _variant(name: str, numerator: int, denominator: int, control: bool = False,
             vs: Difference | None = None, promoters: int | None = None) -> VariantResult:
    return VariantResult(
        name=name, weight=50.0, control=control, assigned=denominator + 20, sent=denominator + 15,
        opened=40, clicked=12, vs_control=vs,
        goal=GoalFigure(value=round(100 * numerator / denominator, 1), numerator=numerator,
                        denominator=denominator, promoters=promoters,
                        detractors=None if promoters is None else promoters - numerator))


def _result(name: str, goal_kind: str, variants: list[VariantResult], verdict: str,
            decision: DecisionResult | None = None) -> ExperimentResult:
    return ExperimentResult(
        journey="onboarding", experiment=name, version="a1b2c3", kind="message", step_key="3",
        goal=f"{goal_kind} within 30 days", goal_kind=goal_kind, within_days=30,
        min_per_variant=300, max_days=120, rule="auto", first_assigned_at=AS_OF,
        horizon_at=AS_OF, state="winner" if decision else "running", leader="b",
        winner="b" if decision else None, verdict=verdict, evaluation_verdict=verdict,
        decision=decision, ended_by_marketer=None, variants=variants)


DECISION = DecisionResult(decided_at=AS_OF, outcome="winner", variant="guide_and_offer",
                          version="a1b2c3", verdict="guide_and_offer wins", figures={})
REPORT = ExperimentsReport(as_of=AS_OF, experiments=[
    _result("tutorial_offer", "repeat_purchase", [
        _variant("guide", 30, 300, control=True),
        _variant("guide_and_offer", 45, 300, vs=Difference(difference=5.0, ci_low=1.2, ci_high=8.8)),
    ], "decided 2026-06-30: guide_and_offer wins: +5.0 points of repeat purchase "
       "(95% CI +1.2 to +8.8); guide_and_offer for everyone new", DECISION),
    _result("nps_timing", "nps", [
        _variant("day7", 10, 50, control=True, promoters=25),
        _variant("day21", 5, 50, vs=Difference(difference=-10.0, ci_low=-40.0, ci_high=20.0),
                 promoters=20),
    ], "day7 leads; no decision yet: 50 of 300 needed"),
])


def _section(html: str, key: str) -> str:
    part = html[html.index(f'<article id="{key}"'):]
    return part[:part.index("</article>")]


def test_the_report_has_an_experiments_section_with_a_chart_table_and_verdict_per_experiment() -> None:
    html = render_report(EMPTY, (), REPORT)
    section = html[html.index('<section id="experiments"'):]
    assert '<h2 id="experiments-heading">Experiments</h2>' in section
    first, second = _section(html, "experiment-0"), _section(html, "experiment-1")
    assert "onboarding / tutorial_offer (version a1b2c3" in first
    assert "<svg " in first and 'role="img"' in first and "<svg " in second
    assert "Verdict: decided 2026-06-30: guide_and_offer wins: +5.0 points" in first
    for cell in ("50%", "320", "15.0% (45/300)", "+5.0 (+1.2 to +8.8)", "control"):
        assert f"<td>{cell}</td>" in first, cell
    assert '<th scope="row">guide_and_offer</th>' in first
    assert "<td>NPS +10.0 (n=50)</td>" in second and "<td>-10.0 (-40.0 to +20.0)</td>" in second
    assert "Verdict: day7 leads; no decision yet: 50 of 300 needed" in second
    # the SVG ids of the two charts cannot collide
    assert 'id="experiment-0-' in first and 'id="experiment-1-' in second


def test_without_experiments_the_report_has_no_section() -> None:
    assert 'id="experiments"' not in render_report(EMPTY)
    assert 'id="experiments"' not in render_report(EMPTY, (), ExperimentsReport(as_of=AS_OF,
                                                                                experiments=[]))


def test_the_artifact_gives_each_experiment_its_table_and_verdict() -> None:
    text = markdown(REPORT)
    assert text.startswith("# Experiments as of 2026-06-30 12:00 UTC")
    assert "## onboarding / tutorial_offer (version a1b2c3, repeat_purchase within 30 days, " \
           "winner: auto)" in text
    assert ("| guide_and_offer | 50% | 320 | 315 | 40 | 12 | 15.0% (45/300) | +5.0 (+1.2 to +8.8) |"
            in text)
    assert "| guide | 50% | 320 | 315 | 40 | 12 | 10.0% (30/300) | control |" in text
    assert "**Verdict:** day7 leads; no decision yet: 50 of 300 needed" in text
    assert markdown(ExperimentsReport(as_of=AS_OF, experiments=[])).endswith(
        "No experiment in the current journeys.")
