"""``aftersale report``: one self-contained HTML file a marketer can open anywhere, offline.

Charts are drawn with matplotlib and inlined as SVG; the page has no script, no web font and
no external reference, and its Content-Security-Policy forbids loading anything, so it opens
from a mail attachment or a shared drive exactly as it was written. Every chart has its numbers
in a table next to it (``<details>``) for screen readers and for copying into a spreadsheet.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy
from jinja2 import Environment
from markupsafe import Markup
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from aftersale.metrics import experiments as exp
from aftersale.metrics.experiments import ExperimentResult, ExperimentsReport
from aftersale.metrics.model import (
    Cohort,
    FunnelStep,
    JourneyLift,
    LoyaltyByDelivery,
    MetricsReport,
    SegmentMetrics,
)
from aftersale.metrics.present import (
    ALL_SEGMENT,
    NULL,
    MonthNps,
    format_lift,
    format_metric,
    has_data,
    loyalty_of,
    period_text,
)
from aftersale.metrics.snapshots import delivery_lines

TITLE = "Customer success report"
# Okabe-Ito: tells the series apart for colour-blind readers too
BLUE, ORANGE, GREEN, GREY, VERMILION = "#0072B2", "#E69F00", "#009E73", "#999999", "#D55E00"
_FUNNEL_STAGES = ("sent", "delivered", "opened", "clicked")


@dataclass(frozen=True)
class Chart:
    key: str  # also the prefix of every id inside its SVG (ids must be unique in the page)
    title: str
    summary: str  # one sentence under the title: what to look at
    svg: Markup
    headers: Sequence[str]
    rows: Sequence[Sequence[object]]


def render_report(report: MetricsReport, nps_trend: Sequence[MonthNps] = (),
                  experiments: ExperimentsReport | None = None) -> str:
    builders: list[Callable[[], Chart | None]] = [
        lambda: _satisfaction(report.segments),
        lambda: _nps_trend(nps_trend),
        lambda: _cohorts(report.cohorts),
        lambda: _funnel(report.funnel),
        lambda: _lift(report.journeys),
        lambda: _delivery(report.segments),
    ]
    charts = [chart for build in builders if (chart := build()) is not None]
    return _TEMPLATE.render(title=TITLE, report=report, period=period_text(report),
                            as_of=report.as_of.strftime("%Y-%m-%d %H:%M UTC"),
                            has_data=has_data(report) or bool(charts),
                            verdicts=verdicts(report), charts=charts,
                            experiments=[_experiment(i, e) for i, e in
                                         enumerate(experiments.experiments if experiments else ())])


def write_report(path: Path, report: MetricsReport, nps_trend: Sequence[MonthNps] = (),
                 experiments: ExperimentsReport | None = None) -> Path:
    """``experiments``: the Experiments section (left out when None)."""
    path.write_text(render_report(report, nps_trend, experiments), encoding="utf-8")
    return path


def verdicts(report: MetricsReport) -> list[str]:
    """The headline in plain words: how customers feel, whether they come back, what works."""
    lines: list[str] = []
    overall = next((s for s in report.segments if s.segment == ALL_SEGMENT), None)
    if overall is not None and overall.customers:
        nps, csat = overall.metrics.get("nps"), overall.metrics.get("csat")
        repeat, retention = overall.metrics.get("repeat_purchase_rate"), overall.metrics.get("retention_90d")
        lines.append(f"{overall.customers} customers. NPS {format_metric(nps)}, "
                     f"CSAT {format_metric(csat)}.")
        lines.append(f"Repeat purchase {format_metric(repeat)}; "
                     f"90-day retention {format_metric(retention)}.")
    scored = [(s.segment, value) for s in report.segments
              if s.segment != ALL_SEGMENT and (value := _value(s, "nps")) is not None]
    if len(scored) >= 2:
        best, worst = max(scored, key=lambda p: p[1]), min(scored, key=lambda p: p[1])
        lines.append(f"Happiest segment: {best[0]} (NPS {best[1]:+.0f}); "
                     f"least happy: {worst[0]} (NPS {worst[1]:+.0f}).")
    if overall is not None:
        lines += delivery_lines(overall)
    for journey in report.journeys:
        lift = journey.repeat_purchase_lift
        measured = f" (repeat purchase lift {format_lift(lift)})" if lift.difference is not None else ""
        lines.append(f"Journey {journey.journey}: {journey.verdict}{measured}.")
    return lines


def _value(segment: SegmentMetrics, key: str) -> float | None:
    metric = segment.metrics.get(key)
    return None if metric is None or isinstance(metric, LoyaltyByDelivery) else metric.value


def _text(label: str) -> str:
    """A name as matplotlib text: '$' would otherwise start mathtext."""
    return label.replace("$", r"\$")


def _satisfaction(segments: Sequence[SegmentMetrics]) -> Chart | None:
    shown = [s for s in segments if s.customers]
    if not any(_value(s, "nps") is not None or _value(s, "csat") is not None for s in shown):
        return None
    names = [_text(s.segment) for s in shown]
    fig = Figure(figsize=(8, 0.5 + 0.45 * len(shown) + 1.2), layout="constrained")
    left, right = fig.subplots(1, 2, sharey=True)
    for ax, key, color, limits, label in ((left, "nps", BLUE, (-100, 100), "NPS (-100 to +100)"),
                                          (right, "csat", GREEN, (0, 100), "CSAT (% scoring 4-5)")):
        values = [_value(s, key) for s in shown]
        ax.barh(names, [v or 0 for v in values], color=color)
        for y, value in enumerate(values):
            text = "no answers" if value is None else f"{value:+.0f}" if key == "nps" else f"{value:.0f}%"
            ax.annotate(text, (value or 0, y), xytext=(3 if (value or 0) >= 0 else -3, 0),
                        textcoords="offset points", va="center",
                        ha="left" if (value or 0) >= 0 else "right", fontsize=9,
                        color=GREY if value is None else "black")
        ax.set_xlim(*limits)
        ax.axvline(0, color=GREY, linewidth=0.8)
        ax.set_title(label, fontsize=10)
        _tidy(ax)
    left.invert_yaxis()  # shared: the first segment on top, as in the table
    rows = [(s.segment, s.customers, format_metric(s.metrics.get("nps")),
             format_metric(s.metrics.get("csat")), format_metric(s.metrics.get("ces"))) for s in shown]
    return Chart("satisfaction", "NPS and CSAT by segment",
                 "Longer bars are happier customers; NPS counts each customer's latest answer.",
                 _svg(fig, "satisfaction", "Bar charts of NPS and CSAT per segment"),
                 ("segment", "customers", "NPS", "CSAT", "CES"), rows)


def _nps_trend(trend: Sequence[MonthNps]) -> Chart | None:
    points = [m for m in trend if m.nps.value is not None]
    if not points:
        return None
    fig = Figure(figsize=(8, 2.6), layout="constrained")
    ax = fig.subplots()
    months, values = [m.month for m in points], [m.nps.value or 0 for m in points]
    ax.plot(months, values, marker="o", color=BLUE)
    for x, month in enumerate(points):
        ax.annotate(f"{month.nps.value:+.0f}\nn={month.nps.n}", (x, month.nps.value or 0),
                    xytext=(0, 6), textcoords="offset points", ha="center", fontsize=8)
    ax.axhline(0, color=GREY, linewidth=0.8)
    ax.set_ylim(-100, 115)
    ax.set_ylabel("NPS")
    _tidy(ax)
    rows = [(m.month, format_metric(m.nps), m.nps.promoters, m.nps.passives, m.nps.detractors)
            for m in trend]
    return Chart("nps-trend", "NPS over time",
                 "NPS of all answers given each month (UTC); n is the number of answers.",
                 _svg(fig, "nps-trend", "Line chart of NPS by month"),
                 ("month", "NPS", "promoters", "passives", "detractors"), rows)


def _cohorts(cohorts: Sequence[Cohort]) -> Chart | None:
    shown = [c for c in cohorts if c.customers]
    width = max((len(c.retained) for c in shown), default=0)
    if not shown or width == 0:
        return None
    grid = [[(c.retained[k].value if k < len(c.retained) else None) for k in range(width)] for c in shown]
    fig = Figure(figsize=(8, 1.2 + 0.4 * len(shown)), layout="constrained")
    ax = fig.subplots()
    # vector cells (pcolormesh), not a raster image: sharp at any zoom, and blank where immature
    cells = numpy.ma.masked_invalid(numpy.array(grid, dtype=float))
    top = max(max((v for row in grid for v in row if v is not None), default=0), 1)
    # every cell is labelled with its percentage, so no colour bar (matplotlib draws that as a PNG)
    ax.pcolormesh(cells, cmap="Blues", vmin=0, vmax=top, edgecolors="white", linewidth=1)
    ax.invert_yaxis()
    for y, row in enumerate(grid):
        for x, value in enumerate(row):
            if value is not None:
                ax.text(x + 0.5, y + 0.5, f"{value:.0f}%", ha="center", va="center", fontsize=8,
                        color="white" if value > 0.6 * top else "black")
    ax.set_xticks([k + 0.5 for k in range(width)], [f"+{k + 1} mo" for k in range(width)])
    ax.set_yticks([y + 0.5 for y in range(len(shown))], [f"{c.month} ({c.customers})" for c in shown])
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    rows = [(c.month, c.customers, *(format_metric(r) for r in c.retained),
             *([NULL] * (width - len(c.retained)))) for c in shown]
    return Chart("cohorts", "Cohort retention",
                 "Each row is the month of the first order: the share who ordered again within "
                 "1, 2, 3… months. Months not yet over are left blank.",
                 _svg(fig, "cohorts", "Heatmap of retention by cohort month"),
                 ("cohort", "customers", *(f"+{k + 1} mo" for k in range(width))), rows)


def _funnel(steps: Sequence[FunnelStep]) -> Chart | None:
    totals: dict[str, dict[str, int]] = {}
    for step in steps:
        journey = totals.setdefault(step.journey, dict.fromkeys(_FUNNEL_STAGES, 0))
        for stage in _FUNNEL_STAGES:
            journey[stage] += getattr(step, stage)
    totals = {name: counts for name, counts in totals.items() if counts["sent"]}
    if not totals:
        return None
    columns = min(len(totals), 2)
    lines = -(-len(totals) // columns)
    fig = Figure(figsize=(8, 2.1 * lines), layout="constrained")
    axes = fig.subplots(lines, columns, squeeze=False).flatten()
    for ax, (name, counts) in zip(axes, sorted(totals.items()), strict=False):
        values = [counts[stage] for stage in _FUNNEL_STAGES]
        ax.barh(list(_FUNNEL_STAGES), values, color=[BLUE, GREEN, ORANGE, VERMILION])
        ax.invert_yaxis()
        ax.set_xlim(0, counts["sent"] * 1.35)
        for y, value in enumerate(values):
            ax.annotate(f"{value} ({100 * value / counts['sent']:.0f}%)", (value, y), xytext=(3, 0),
                        textcoords="offset points", va="center", fontsize=8)
        ax.set_title(_text(name), fontsize=10)
        _tidy(ax)
    for ax in axes[len(totals):]:
        ax.set_visible(False)
    rows = [(s.journey, s.step, s.template, s.channel, s.sent, s.delivered, s.opened, s.clicked,
             s.machine_opened, s.suspect_clicked, s.bounced, s.failed, s.unsubscribed)
            for s in steps]
    return Chart("funnel", "Message funnel by journey",
                 "Messages sent, then how many were delivered, opened and clicked by people "
                 "(percent of sent). Beside them: opens by Apple Mail Privacy Protection and "
                 "clicks most likely by a mail scanner, counted in neither.",
                 _svg(fig, "funnel", "Bar charts of the message funnel per journey"),
                 ("journey", "step", "template", "channel", "sent", "delivered", "opened",
                  "clicked", "machine opens", "scanner clicks", "bounced", "failed",
                  "unsubscribed"), rows)


def _lift(journeys: Sequence[JourneyLift]) -> Chart | None:
    measured = [j for j in journeys if j.repeat_purchase_lift.difference is not None]
    if not measured:
        return None
    fig = Figure(figsize=(8, 0.9 + 0.5 * len(measured)), layout="constrained")
    ax = fig.subplots()
    for y, journey in enumerate(measured):
        lift = journey.repeat_purchase_lift
        low = lift.ci_low if lift.ci_low is not None else lift.difference
        high = lift.ci_high if lift.ci_high is not None else lift.difference
        assert lift.difference is not None and low is not None and high is not None
        # a journey whose interval excludes 0 has a detectable effect: colour says which way
        color = GREEN if low > 0 else VERMILION if high < 0 else GREY
        ax.errorbar([lift.difference], [y], xerr=[[lift.difference - low], [high - lift.difference]],
                    fmt="o", color=color, capsize=4)
        ax.annotate(f"{lift.difference:+.1f} pp", (lift.difference, y), xytext=(0, 7),
                    textcoords="offset points", ha="center", fontsize=8)
    ax.axvline(0, color=GREY, linewidth=0.8, linestyle="--")
    ax.set_yticks(range(len(measured)), [_text(j.journey) for j in measured])
    ax.set_ylim(len(measured) - 0.5, -0.7)
    ax.set_xlabel("repeat purchase: treated − holdout (percentage points, 95% interval)")
    _tidy(ax)
    rows = [(j.journey, format_metric(j.treated.repeat_purchase_rate),
             format_metric(j.holdout.repeat_purchase_rate), format_lift(j.repeat_purchase_lift),
             format_lift(j.nps_lift), j.verdict) for j in journeys]
    return Chart("lift", "Holdout lift per journey",
                 "Right of the dashed line: customers who got the journey bought again more often "
                 "than the holdout group, who got nothing. A line crossing it means no clear effect yet.",
                 _svg(fig, "lift", "Lift points with 95% intervals per journey"),
                 ("journey", "treated repeat", "holdout repeat", "lift", "NPS lift", "verdict"), rows)


def _delivery(segments: Sequence[SegmentMetrics]) -> Chart | None:
    shown = [(s, loyalty) for s in segments
             if (loyalty := loyalty_of(s)) is not None
             and (loyalty.on_time.customers or loyalty.problem.customers)]
    if not shown:
        return None
    fig = Figure(figsize=(8, 0.9 + 0.7 * len(shown) + 1.0), layout="constrained")
    left, right = fig.subplots(1, 2, sharey=True)
    height = 0.38
    for ax, key, limits, label in ((left, "nps", (-100, 100), "NPS (-100 to +100)"),
                                   (right, "repeat_purchase_rate", (0, 100), "Repeat purchase (%)")):
        for offset, group, color, name in ((-height / 2, "on_time", BLUE, "delivered on time"),
                                           (height / 2, "problem", VERMILION, "had a problem")):
            values = [getattr(getattr(loyalty, group), key).value for _, loyalty in shown]
            ys = [y + offset for y in range(len(shown))]
            ax.barh(ys, [v or 0 for v in values], height=height, color=color, label=name)
            for y, value in zip(ys, values, strict=True):
                text = "no data" if value is None else f"{value:+.0f}" if key == "nps" else f"{value:.0f}%"
                ax.annotate(text, (value or 0, y), xytext=(3 if (value or 0) >= 0 else -3, 0),
                            textcoords="offset points", va="center", fontsize=8,
                            ha="left" if (value or 0) >= 0 else "right",
                            color=GREY if value is None else "black")
        ax.set_xlim(*limits)
        ax.axvline(0, color=GREY, linewidth=0.8)
        ax.set_title(label, fontsize=10)
        _tidy(ax)
    left.set_yticks(range(len(shown)), [_text(s.segment) for s, _ in shown])
    left.invert_yaxis()
    right.legend(loc="lower right", fontsize=8, frameon=False)
    rows = [(s.segment, format_metric(s.metrics.get("on_time_delivery_rate")),
             format_metric(s.metrics.get("delivery_problem_rate")),
             format_metric(s.metrics.get("median_days_to_deliver")),
             format_metric(loyalty.on_time.nps), format_metric(loyalty.problem.nps),
             format_lift(loyalty.difference.nps, "pts"),
             format_metric(loyalty.on_time.repeat_purchase_rate),
             format_metric(loyalty.problem.repeat_purchase_rate),
             format_lift(loyalty.difference.repeat_purchase_rate)) for s, loyalty in shown]
    return Chart("delivery", "Delivery and loyalty",
                 "Customers whose first order in the segment was delivered on time (blue) "
                 "against those whose order had a delivery problem (orange-red): how they "
                 "answered NPS afterwards and whether they bought again. The table gives the "
                 "difference (problem − on time) with its 95% interval.",
                 _svg(fig, "delivery", "Bar charts of NPS and repeat purchase after an on-time "
                                       "delivery and after a delivery problem, per segment"),
                 ("segment", "on time (parcels)", "problem (orders)", "median days to deliver",
                  "NPS on time", "NPS problem", "NPS difference", "repeat on time",
                  "repeat problem", "repeat difference"), rows)


def _experiment(index: int, result: ExperimentResult) -> Chart:
    """The goal per variant: a point for each, and for the others the control's value plus the
    always-valid 95% interval of their difference (where that variant may truly stand)."""
    key = f"experiment-{index}"
    variants = result.variants
    fig = Figure(figsize=(8, 0.9 + 0.5 * len(variants)), layout="constrained")
    ax = fig.subplots()
    control = variants[0].goal.value if variants else None
    for y, variant in enumerate(variants):
        value = variant.goal.value
        if value is None:
            ax.annotate("no data yet", (0, y), va="center", fontsize=8, color=GREY)
            continue
        d = variant.vs_control
        if d is not None and control is not None:
            low, high = control + d.ci_low, control + d.ci_high
            color = GREEN if d.ci_low > 0 else VERMILION if d.ci_high < 0 else GREY
            ax.plot([low, high], [y, y], color=color, linewidth=2, solid_capstyle="butt")
            ax.plot([low, high], [y, y], "|", color=color, markersize=10)
        ax.plot([value], [y], "o", color=BLUE if variant.control else ORANGE)
        ax.annotate(f"{value:+.1f}" if result.goal_kind == "nps" else f"{value:.1f}%",
                    (value, y), xytext=(0, 7), textcoords="offset points", ha="center",
                    fontsize=8)
    if control is not None:
        ax.axvline(control, color=GREY, linewidth=0.8, linestyle="--")
    ax.set_yticks(range(len(variants)),
                  [_text(v.name + (" (control)" if v.control else "")) for v in variants])
    ax.set_ylim(len(variants) - 0.5, -0.7)
    unit = "NPS points" if result.goal_kind == "nps" else "%"
    ax.set_xlabel(_text(f"{result.goal} ({unit}); bars: control + the 95% interval of the "
                        "difference"))
    _tidy(ax)
    return Chart(key, exp.title(result), f"Verdict: {result.verdict}",
                 _svg(fig, key, f"The goal per variant of experiment {result.experiment}"),
                 exp.COLUMNS, exp.rows(result))


def _tidy(ax: Axes) -> None:
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


_DROP = re.compile(r"<\?xml.*?\?>|<!DOCTYPE.*?>|<metadata>.*?</metadata>|\s*xmlns(:xlink)?=\"[^\"]*\"",
                   re.DOTALL)


def _svg(fig: Figure, key: str, label: str) -> Markup:
    """The figure as SVG markup to inline: text as text (selectable, small), no XML prolog or
    metadata (the latter names web addresses), ids prefixed so charts cannot share one."""
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": key,
                                "font.family": "sans-serif"}):
        fig.savefig(buffer, format="svg")
    svg = _DROP.sub("", buffer.getvalue()).strip()
    svg = svg.replace('id="', f'id="{key}-').replace('href="#', f'href="#{key}-')
    svg = svg.replace("url(#", f"url(#{key}-")
    # the page sizes it (CSS); inline SVG in HTML needs no namespace declaration
    svg = re.sub(r'<svg\b[^>]*?(viewBox="[^"]*")[^>]*>',
                 lambda m: f'<svg {m.group(1)} role="img" aria-label="{Markup.escape(label)}">',
                 svg, count=1)
    return Markup(svg)  # matplotlib escapes every text it writes


_TEMPLATE = Environment(autoescape=True).from_string("""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>{{ title }} · {{ period }}</title>
<style>
  :root { color-scheme: light; --ink: #1d2430; --muted: #5b6473; --line: #d9dee6; }
  body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
         margin: 0 auto; padding: 1.5rem; max-width: 60rem; background: #fff; }
  header { border-bottom: 2px solid var(--line); margin-bottom: 1.5rem; }
  h1 { font-size: 1.6rem; margin: 0 0 .25rem; }
  h2 { font-size: 1.2rem; margin: 0 0 .25rem; }
  .meta { color: var(--muted); margin: 0 0 1rem; }
  .verdicts { background: #f3f6fa; border-left: 4px solid #0072B2; padding: .75rem 1rem 1rem 2rem; }
  .empty { background: #fff8e6; border-left: 4px solid #E69F00; padding: 1rem; }
  section { margin: 2rem 0; }
  section p { color: var(--muted); margin: 0 0 .5rem; }
  figure { margin: 0; }
  figure svg { display: block; width: 100%; height: auto; }
  details { margin-top: .5rem; }
  summary { cursor: pointer; color: #0072B2; }
  table { border-collapse: collapse; margin-top: .5rem; font-size: .9rem; }
  th, td { border-bottom: 1px solid var(--line); padding: .25rem .6rem; text-align: right; }
  th:first-child, td:first-child { text-align: left; }
  footer { color: var(--muted); font-size: .85rem; border-top: 1px solid var(--line); padding-top: .5rem; }
</style>
</head>
<body>
<header>
  <h1>{{ title }}</h1>
  <p class="meta">Period: {{ period }} · as of {{ as_of }}</p>
  {% if verdicts %}
  <ul class="verdicts" aria-label="Summary">
    {% for line in verdicts %}<li>{{ line }}</li>{% endfor %}
  </ul>
  {% endif %}
</header>
<main>
{% if not has_data %}
  <section class="empty" role="status">
    <h2>No data yet</h2>
    <p>No customer has entered a journey in this period. Import orders with
    <code>aftersale ingest</code>, run the journeys with <code>aftersale run</code>, or try
    <code>aftersale demo</code>; then write this report again.</p>
  </section>
{% endif %}
{% macro numbers(chart) %}
      <table>
        <caption class="meta">{{ chart.title }}</caption>
        <thead><tr>{% for h in chart.headers %}<th scope="col">{{ h }}</th>{% endfor %}</tr></thead>
        <tbody>
        {% for row in chart.rows %}<tr>
          {%- for cell in row %}{% if loop.first %}<th scope="row">{{ cell }}</th>
          {%- else %}<td>{{ cell }}</td>{% endif %}{% endfor -%}
        </tr>
        {% endfor %}
        </tbody>
      </table>
{% endmacro %}
{% for chart in charts %}
  <section id="{{ chart.key }}" aria-labelledby="{{ chart.key }}-heading">
    <h2 id="{{ chart.key }}-heading">{{ chart.title }}</h2>
    <p>{{ chart.summary }}</p>
    <figure>{{ chart.svg }}</figure>
    <details>
      <summary>The numbers</summary>
      {{ numbers(chart) }}
    </details>
  </section>
{% endfor %}
{% if experiments %}
  <section id="experiments" aria-labelledby="experiments-heading">
    <h2 id="experiments-heading">Experiments</h2>
    <p>Each variant against the first one (the control), on the experiment's goal. The
    intervals are always valid: they may be looked at every day without inflating false
    winners.</p>
  {% for chart in experiments %}
    <article id="{{ chart.key }}" aria-labelledby="{{ chart.key }}-heading">
      <h3 id="{{ chart.key }}-heading">{{ chart.title }}</h3>
      <p><strong>{{ chart.summary }}</strong></p>
      <figure>{{ chart.svg }}</figure>
      {{ numbers(chart) }}
    </article>
  {% endfor %}
  </section>
{% endif %}
</main>
<footer>Written by aftersale. Rates show numerator/denominator; “{{ null }}” means no data (never 0).
Metric definitions: the “Metrics” section of aftersale's README (each key with its numerator and
denominator).</footer>
</body>
</html>
""", globals={"null": NULL})
