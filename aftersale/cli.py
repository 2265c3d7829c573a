"""The ``aftersale`` command line (DESIGN.md section 3)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from aftersale.config import Settings, load_settings
from aftersale.core.clock import SimulatedClock, as_utc
from aftersale.core.durations import parse_duration
from aftersale.core.errors import ConfigError, DefinitionError

if TYPE_CHECKING:
    from aftersale.pipeline.runtime import Runtime

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Post-purchase journeys, surveys and retention metrics.")
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
app.add_typer(db_app, name="db")
review_app = typer.Typer(help="Work that waits for an operator: sends whose outcome is "
                              "unknown, events that failed.", no_args_is_help=True)
app.add_typer(review_app, name="review")
# Tables need about 100 columns; a pipe or CI log gets that instead of rich's default 80.
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 120)
err = Console(stderr=True, soft_wrap=True)


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        err.print(f"configuration error: {exc}", highlight=False)
        raise typer.Exit(2) from None


def _parse_time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"'{text}' is not an ISO date or time such as 2026-06-01 "
                                 "or 2026-06-01T09:00+03:00") from None
    return as_utc(value)


@app.command()
def validate() -> None:
    """Check journeys, segments and content; print every problem as path:line."""
    from aftersale.pipeline.definitions import check_definitions
    from aftersale.surveys.sms_answers import check_reply_texts
    from aftersale.web.surveys import check_page_texts

    settings = _settings()
    definitions, problems = check_definitions(settings.journeys_dir, settings.content_dir,
                                              settings.default_locale)
    problems = [*problems, *check_page_texts(settings.content_dir),
                *check_reply_texts(settings.content_dir)]
    if problems:
        for problem in problems:
            out.print(str(problem), highlight=False, soft_wrap=True)
        err.print(f"{len(problems)} problem(s) found", highlight=False)
        raise typer.Exit(1)
    assert definitions is not None
    out.print(f"ok: {len(definitions.journeys)} journeys, "
              f"{len(definitions.segments.segments)} segments, "
              f"{len(definitions.content.templates())} templates")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply database migrations (Alembic)."""
    from aftersale.db.migrate import upgrade
    from aftersale.db.session import make_engine

    settings = _settings()
    upgrade(make_engine(settings.database_url))
    out.print("database is up to date")


@app.command()
def ingest(
    path: Annotated[str, typer.Argument(help="JSON Lines file, or - for standard input")],
    format: Annotated[str, typer.Option(
        "--format", help="jsonl (our event format) or shopify (one webhook per line: "
                         '{"topic": ..., "id": ..., "payload": {...}})')] = "jsonl",
    skip_invalid: Annotated[bool, typer.Option("--skip-invalid",
                                               help="store the valid lines of a bad file")] = False,
    workers: Annotated[int | None, typer.Option(
        min=0, help="jsonl: processes validating lines while this one writes (default: one per "
                    "core; 0: validate here)")] = None,
) -> None:
    """Import events into the inbox; an invalid line rejects the whole file unless --skip-invalid."""
    from aftersale.intake import shopify
    from aftersale.intake.importer import default_workers, import_jsonl
    from aftersale.intake.inbox import store_events
    from aftersale.intake.notify import inbox_received
    from aftersale.pipeline.runtime import open_runtime

    if format not in ("jsonl", "shopify"):
        err.print(f"unknown format '{format}'; use jsonl or shopify")
        raise typer.Exit(2)
    settings = _settings()
    shown = "<stdin>" if path == "-" else path
    try:
        handle = sys.stdin if path == "-" else open(path, encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        err.print(f"cannot read {shown}: {exc.strerror}")
        raise typer.Exit(2) from None
    rt = open_runtime(settings)
    with handle:
        if format == "jsonl":  # streamed: a file of millions of lines in flat memory
            result = import_jsonl(rt.factory, handle, source="file", received_at=rt.now(),
                                  skip_invalid=skip_invalid,
                                  workers=default_workers() if workers is None else workers)
            errors, stored = result.errors, result.stored
            already = result.already_stored + result.duplicates_in_file
        else:
            parsed = shopify.parse_file(handle)
            errors, stored, already = parsed.errors, 0, parsed.duplicates_in_file
            if not errors or skip_invalid:
                with rt.factory() as session, session.begin():
                    kept = store_events(session, parsed.events, "file", rt.now())
                stored, already = kept.stored, already + kept.duplicates
    for error in errors:
        err.print(f"{shown}:{error.line}: {error.reason}", highlight=False, soft_wrap=True)
    if errors and not skip_invalid:
        err.print(f"rejected: {len(errors)} invalid line(s); nothing stored "
                  "(fix them, or pass --skip-invalid to store the valid ones)")
        raise typer.Exit(1)
    inbox_received(settings, stored, "file")  # Prefect drains its event queue at exit
    out.print(f"stored {stored} new event(s); {already} already stored; "
              f"{len(errors)} invalid line(s) skipped")


@app.command()
def run(
    until: Annotated[str | None, typer.Option(help="step a simulated clock to this time")] = None,
    tick: Annotated[str, typer.Option(help="simulated clock step, e.g. 1h")] = "1h",
    start: Annotated[str | None, typer.Option(
        help="where the simulated clock starts (default: where it stopped last time, else the "
             "oldest pending event)")] = None,
) -> None:
    """Process the inbox and dispatch due work now, or step a simulated clock to --until."""
    from aftersale.db.clock_state import load_clock
    from aftersale.orchestration.flow_context import using_runtime
    from aftersale.pipeline.runtime import open_runtime
    from aftersale.pipeline.stopping import exit_on_sigterm

    # Stopped by SIGTERM, the run winds down (see aftersale.pipeline.stopping) and exits through its
    # atexit handlers, which stop the temporary Prefect server it may have started.
    exit_on_sigterm()
    settings = _settings()
    if until is None:
        from aftersale.orchestration.dispatch_messages import dispatch_messages
        from aftersale.orchestration.process_events import process_events

        with using_runtime(open_runtime(settings)):
            processed = process_events(reason="cli")
            dispatched = dispatch_messages()
        out.print({"process-events": processed, "dispatch-messages": dispatched})
        return
    try:
        step = parse_duration(tick)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--tick") from None
    target = _parse_time(until)
    rt = open_runtime(settings)
    begin = _parse_time(start) if start else load_clock(rt.factory) or _oldest_pending(rt)
    if begin > target:
        err.print(f"--until {target.isoformat()} is before the clock ({begin.isoformat()})")
        raise typer.Exit(2)
    rt.clock = SimulatedClock(begin)
    from aftersale.orchestration.run_until import run_until

    with using_runtime(rt):
        summary = run_until(until=target, tick=step)
    out.print(summary)


def _oldest_pending(rt: Runtime) -> datetime:
    from sqlalchemy import func, select

    from aftersale.db.models import InboxEvent

    with rt.factory() as session:
        oldest = session.scalar(select(func.min(InboxEvent.occurred_at))
                                .where(InboxEvent.status == "pending"))
    return as_utc(oldest) if oldest else datetime.now(UTC)


@app.command()
def preview(
    journey: Annotated[str, typer.Argument(help="journey name, e.g. onboarding")],
    customer: Annotated[str | None, typer.Option(help="customer id (default: a sample)")] = None,
    order: Annotated[str | None, typer.Option(help="order id (default: their latest)")] = None,
    response: Annotated[list[str] | None, typer.Option(
        help="assume a survey answer, e.g. --response nps=3 (repeatable)")] = None,
) -> None:
    """Print the timeline of messages this customer would get, rendered, in local time."""
    from aftersale.ops.preview import PreviewError, preview_journey, print_timeline
    from aftersale.pipeline.runtime import open_runtime

    settings = _settings()
    rt = open_runtime(settings)
    try:
        timeline = preview_journey(rt, journey, customer, order, _responses(response or []))
    except PreviewError as exc:
        err.print(str(exc), highlight=False)
        raise typer.Exit(1) from None
    print_timeline(out, timeline)


def _responses(values: list[str]) -> dict[str, int]:
    from aftersale.core.survey_scales import SURVEY_SCALES

    answers = {}
    for value in values:
        kind, _, score = value.partition("=")
        if kind not in SURVEY_SCALES or not score.isdigit():
            raise typer.BadParameter(f"'{value}' should look like nps=3, csat=5 or ces=6",
                                     param_hint="--response")
        answers[kind] = int(score)
    return answers


@app.command()
def metrics(
    segment: Annotated[list[str] | None, typer.Option(
        help="only this segment (repeatable; 'all' is every customer in any segment)")] = None,
    from_: Annotated[str | None, typer.Option(
        "--from", help="first day, e.g. 2026-03-01 (UTC), or an ISO time with offset")] = None,
    to: Annotated[str | None, typer.Option(
        help="last day, included whole, e.g. 2026-03-31 (default: now); the report time")] = None,
    format: Annotated[str, typer.Option("--format", help="table, json or csv")] = "table",
) -> None:
    """Per-segment NPS, CSAT, CES, response, repeat-purchase, retention and referral rates,
    and each journey's holdout lift (DESIGN.md section 4)."""
    from aftersale.metrics import present

    if format not in ("table", "json", "csv"):
        err.print(f"unknown format '{format}'; use table, json or csv", highlight=False)
        raise typer.Exit(1)
    from aftersale.metrics.compute import compute

    rt, start, end, kinds = _metrics_inputs(from_, to, segment or None)
    with rt.factory() as session, session.begin():
        report = compute(session, start, end, kinds, segment or None, as_of=rt.now(),
                         parallel=True)
    if format == "json":
        sys.stdout.write(present.to_json(report) + "\n")
    elif format == "csv":
        sys.stdout.write(present.to_csv(report))
    else:
        present.print_table(out, report)


@app.command()
def report(
    out_path: Annotated[Path, typer.Option("--out", help="HTML file to write")] = Path("report.html"),
    from_: Annotated[str | None, typer.Option(
        "--from", help="first day, e.g. 2026-03-01 (UTC), or an ISO time with offset")] = None,
    to: Annotated[str | None, typer.Option(
        help="last day, included whole, e.g. 2026-03-31 (default: now); the report time")] = None,
) -> None:
    """Write one self-contained HTML report with charts (works offline, loads nothing)."""
    from aftersale.metrics.compute import compute, nps_by_month
    from aftersale.metrics.experiments import experiment_results
    from aftersale.metrics.present import period_text
    from aftersale.metrics.report import write_report

    rt, start, end, kinds = _metrics_inputs(from_, to, None)
    with rt.factory() as session, session.begin():
        metrics_report = compute(session, start, end, kinds, as_of=rt.now(), parallel=True)
        trend = nps_by_month(session, start, end)
        # Experiments are judged as of now over their current version, not over the period.
        experiments = experiment_results(session, rt.definitions(), rt.now())
    try:
        write_report(out_path, metrics_report, trend, experiments)
    except OSError as exc:
        err.print(f"cannot write {out_path}: {exc.strerror}", highlight=False)
        raise typer.Exit(1) from None
    out.print(f"wrote {out_path}: metrics {period_text(metrics_report)}", highlight=False)


@app.command()
def experiments(
    format: Annotated[str, typer.Option("--format", help="table or json")] = "table",
    journey: Annotated[str | None, typer.Option(help="only this journey's experiments")] = None,
) -> None:
    """Each experiment of the current journeys, per variant: assigned, sent, people's opens
    and clicks, the goal, the difference to the control with its always-valid 95% interval,
    and the verdict (or the decision taken). Read-only: winners are decided by the
    compute-metrics flow, not by this command."""
    from aftersale.metrics.experiments import experiment_results, print_table
    from aftersale.pipeline.runtime import open_runtime

    if format not in ("table", "json"):
        err.print(f"unknown format '{format}'; use table or json", highlight=False)
        raise typer.Exit(1)
    rt = open_runtime(_settings())
    definitions = rt.definitions()
    if journey is not None and journey not in definitions.journeys:
        err.print(f"unknown journey '{journey}'; journeys: {', '.join(sorted(definitions.journeys))}",
                  highlight=False)
        raise typer.Exit(1)
    with rt.factory() as session, session.begin():
        results = experiment_results(session, definitions, rt.now(), journey)
    if format == "json":
        sys.stdout.write(results.to_json() + "\n")
        return
    print_table(out, results)


def _metrics_inputs(from_text: str | None, to_text: str | None, segments: list[str] | None
                    ) -> tuple[Runtime, datetime | None, datetime, dict[str, str]]:
    """(runtime, start, end, survey kinds by template) for a metrics command; a bad period or an
    unknown segment exits 1 with one line saying what to fix."""
    from aftersale.metrics.compute import PeriodError, known_segments, parse_period
    from aftersale.metrics.present import ALL_SEGMENT
    from aftersale.pipeline.runtime import open_runtime
    from aftersale.surveys.sms_answers import survey_kinds

    settings = _settings()
    try:  # before the database is opened: a typo is answered at once
        start, end = parse_period(from_text, to_text, datetime.now(UTC))
    except PeriodError as exc:
        err.print(str(exc), highlight=False)
        raise typer.Exit(1) from None
    rt = open_runtime(settings)
    definitions = rt.definitions()
    if segments:
        with rt.factory() as session:
            # a segment that is defined but has nobody yet is a fair question (0 customers)
            known = sorted({ALL_SEGMENT, *definitions.segments.names(), *known_segments(session)})
        unknown = [s for s in segments if s not in known]
        if unknown:
            err.print(f"unknown segment {', '.join(repr(s) for s in unknown)}; known segments: "
                      f"{', '.join(known)}", highlight=False)
            raise typer.Exit(1)
    return rt, start, end, survey_kinds(definitions.content)


@app.command()
def serve(host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the web app (POST /events, GET /healthz)."""
    import uvicorn

    from aftersale.web.app import create_app

    settings = _settings()
    try:
        settings.require("api_token", "secret_key")
    except ConfigError as exc:
        err.print(f"configuration error: {exc}")
        raise typer.Exit(2) from None
    for name, needed_for in (("sendgrid_webhook_public_key", "/webhooks/sendgrid/events"),
                             ("twilio_auth_token", "/webhooks/twilio/*")):
        if not getattr(settings, name):
            err.print(f"warning: AFTERSALE_{name.upper()} is not set: {needed_for} answers 503 "
                      "until it is", highlight=False)
    uvicorn.run(create_app(settings), host=host, port=port)


@app.command()
def up(
    host: Annotated[str, typer.Option(help="web app host")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="web app port")] = 8000,
    prefect_port: Annotated[int, typer.Option(
        help="port of the Prefect server started here (unless PREFECT_API_URL answers)")] = 4200,
) -> None:
    """Run it all on this machine until Ctrl-C: a Prefect server, the web app and the flows,
    which webhooks start within seconds (plus their safety schedules)."""
    from aftersale.orchestration.up import UpError, run_up

    settings = _settings()
    try:
        run_up(settings, host, port, prefect_port, out=out)
    except (ConfigError, UpError) as exc:
        err.print(f"aftersale up: {exc}", highlight=False)
        raise typer.Exit(2) from None


@app.command()
def emulators(
    sendgrid_port: Annotated[int, typer.Option(help="port for the SendGrid emulator")] = 8025,
    twilio_port: Annotated[int, typer.Option(help="port for the Twilio emulator")] = 8026,
) -> None:
    """Run local SendGrid and Twilio emulators on 127.0.0.1 until Ctrl-C, to try the real
    provider clients without accounts."""
    import time

    from aftersale.emulators.sendgrid import SendGridEmulator
    from aftersale.emulators.twilio import TwilioEmulator

    account, token, key = "AC" + "0" * 32, "emulator-token", "SG.emulator-key"
    sendgrid, twilio = SendGridEmulator(api_key=key), TwilioEmulator(account, token)
    sendgrid.port, twilio.port = sendgrid_port, twilio_port
    with sendgrid, twilio:
        out.print("Emulators running. Point aftersale at them with:\n")
        for name, value in (
                ("EMAIL_PROVIDER", "sendgrid"), ("SENDGRID_API_KEY", key),
                ("SENDGRID_BASE_URL", sendgrid.base_url), ("SMS_PROVIDER", "twilio"),
                ("WHATSAPP_PROVIDER", "twilio"), ("TWILIO_ACCOUNT_SID", account),
                ("TWILIO_AUTH_TOKEN", token), ("TWILIO_BASE_URL", twilio.base_url),
                ("TWILIO_FROM", "+15017122661"), ("TWILIO_WHATSAPP_FROM", "+14155238886")):
            out.print(f"export AFTERSALE_{name}={value}", highlight=False)
        try:
            while True:
                time.sleep(5)
                out.print(f"sendgrid: {len(sendgrid.sent)} mails, "
                          f"twilio: {len(twilio.messages)} messages", highlight=False)
        except KeyboardInterrupt:
            out.print("stopped")


@app.command()
def demo(
    customers: Annotated[int, typer.Option(min=10, help="synthetic customers")] = 2000,
    days: Annotated[int, typer.Option(min=7, help="days of orders")] = 120,
    seed: Annotated[int, typer.Option(help="random seed")] = 7,
    database: Annotated[Path, typer.Option(help="SQLite file the demo writes")] = Path("aftersale.db"),
    report: Annotated[Path, typer.Option(help="HTML report the demo writes")] = Path("report.html"),
) -> None:
    """The main job on embedded defaults: a synthetic shop through the real engine, ending with
    the per-segment metrics and an HTML report."""
    from aftersale.demo.runner import run_demo

    settings = _settings()
    run_demo(settings, out, customers=customers, days=days, seed=seed, database=database,
             report_path=report)


@app.command()
def forget(
    customer_id: Annotated[str, typer.Argument(help="the customer's id, as the shop sends it")],
) -> None:
    """Erase a customer's personal data (contact details, names, comments, message bodies, raw
    payloads) and keep the anonymous counts, so metrics stay right. Active opt-outs keep their
    address so they go on holding; running it again is harmless."""
    from rich.table import Table

    from aftersale.pipeline.erasure import UnknownCustomer, erase_sandbox_files, forget_customer
    from aftersale.pipeline.runtime import open_runtime

    settings = _settings()
    rt = open_runtime(settings)
    try:
        with rt.factory() as session, session.begin():  # all or nothing
            summary = forget_customer(session, customer_id, rt.now())
    except UnknownCustomer as exc:
        err.print(str(exc), highlight=False)
        raise typer.Exit(1) from None
    erased = dict(summary.erased)
    if settings.sandbox_dir is not None:  # files after the commit: a rollback keeps them
        erased["sandbox files"] = erase_sandbox_files(settings.sandbox_dir, summary.message_ids)
    erased = {kind: n for kind, n in erased.items() if n}
    since = summary.forgotten_at.isoformat(timespec="seconds")
    if summary.already_forgotten and not erased and not summary.changed:
        out.print(f"customer {customer_id} was already forgotten on {since}; nothing left to "
                  "erase", highlight=False)
        return
    out.print(f"customer {customer_id} was already forgotten on {since}; erased what came in since"
              if summary.already_forgotten else
              f"forgot customer {customer_id}: personal data erased, anonymous counts kept",
              highlight=False)
    table = Table(title="Erased", title_justify="left")
    table.add_column("kind")
    table.add_column("rows", justify="right")
    for kind, n in erased.items():
        table.add_row(kind, f"{n:,}")
    if erased:
        out.print(table)
    for count, what in ((summary.enrollments_ended, "active enrollment(s) ended"),
                        (summary.messages_cancelled, "queued message(s) will not be sent"),
                        (summary.suppressions_kept, "opt-out(s) kept (address only) so they "
                                                    "go on holding")):
        if count:
            out.print(f"{count:,} {what}", highlight=False)


@review_app.command("show")
def review_show(
    limit: Annotated[int, typer.Option(min=1, help="items listed per kind")] = 50,
) -> None:
    """Counts by status, then the sends whose outcome is unknown and the failed events."""
    from rich.table import Table

    from aftersale.ops.review import overview
    from aftersale.pipeline.runtime import open_runtime

    rt = open_runtime(_settings())
    try:
        with rt.factory() as session:  # the rows are read whole: usable after it closes
            seen = overview(session, limit)
    finally:
        rt.engine.dispose()
    counts = Table(title="Backlog", title_justify="left")
    for column in ("", "status", "count"):
        counts.add_column(column, justify="right" if column == "count" else "left")
    for kind, by_status in (("inbox events", seen.inbox), ("messages", seen.messages)):
        for status, n in sorted(by_status.items()):
            counts.add_row(kind, status, f"{n:,}")
    out.print(counts)
    if seen.oldest_pending_event is not None:
        out.print(f"oldest pending event received "
                  f"{as_utc(seen.oldest_pending_event).isoformat(timespec='seconds')}")
    unknown = Table(title="Sends whose outcome is unknown: check the provider's log, then "
                          "'aftersale review sent' or 'aftersale review resend'",
                    title_justify="left")
    for column in ("message", "customer", "journey", "template", "channel", "provider",
                   "sending since", "provider's word"):
        unknown.add_column(column)
    for m in seen.unknown:
        unknown.add_row(m.id, m.customer_id, m.journey, m.template, m.channel or "",
                        m.provider or "", as_utc(m.sending_at).isoformat(timespec="seconds")
                        if m.sending_at else "",
                        " ".join(filter(None, (m.provider_message_id, m.delivery_status))))
    failed = Table(title="Failed events: fix the cause, then 'aftersale review requeue'",
                   title_justify="left")
    for column in ("event", "type", "received", "error"):
        failed.add_column(column)
    for e in seen.failed:
        failed.add_row(e.event_id, e.type, as_utc(e.received_at).isoformat(timespec="seconds"),
                       e.error or "")
    for table, rows, total in ((unknown, seen.unknown, seen.messages.get("unknown", 0)),
                               (failed, seen.failed, seen.inbox.get("failed", 0))):
        if rows:
            out.print(table)
            if total > len(rows):
                out.print(f"... and {total - len(rows):,} more", highlight=False)


def _decide(decision: str, ids: list[str] | None) -> int:
    from aftersale.ops.review import NotUnderReview, confirm_sent, requeue, resend
    from aftersale.pipeline.runtime import open_runtime

    rt = open_runtime(_settings())
    try:
        with rt.factory() as session, session.begin():
            if decision == "requeue":
                return requeue(session, ids, rt.now())
            act = resend if decision == "resend" else confirm_sent
            return act(session, ids or [], rt.now())
    except NotUnderReview as exc:
        err.print(f"{exc}; nothing changed", highlight=False)
        raise typer.Exit(1) from None
    finally:
        rt.engine.dispose()


@review_app.command("resend")
def review_resend(
    message_ids: Annotated[list[str], typer.Argument(help="messages whose send is unknown")],
) -> None:
    """Send these messages again at the next dispatch (the provider's log shows they never
    went out)."""
    out.print(f"{_decide('resend', message_ids):,} message(s) will be sent again",
              highlight=False)


@review_app.command("sent")
def review_sent(
    message_ids: Annotated[list[str], typer.Argument(help="messages whose send is unknown")],
) -> None:
    """Record these messages as sent (the provider's log shows they went out)."""
    out.print(f"{_decide('sent', message_ids):,} message(s) recorded as sent", highlight=False)


@review_app.command("requeue")
def review_requeue(
    event_ids: Annotated[list[str] | None, typer.Argument(help="failed events' ids")] = None,
    all_failed: Annotated[bool, typer.Option("--all-failed",
                                             help="every failed event")] = False,
) -> None:
    """Queue failed events again once their cause is fixed; they count as received now, so
    one whose order is still missing waits for it again."""
    if bool(event_ids) == all_failed:
        err.print("give event ids or --all-failed, not both or neither; nothing changed")
        raise typer.Exit(1)
    out.print(f"{_decide('requeue', None if all_failed else event_ids):,} event(s) queued "
              "again", highlight=False)


def main() -> None:
    try:
        app()
    except ConfigError as exc:
        err.print(f"configuration error: {exc}", highlight=False)
        sys.exit(2)
    except DefinitionError as exc:
        for problem in exc.problems:
            err.print(str(problem), highlight=False)
        sys.exit(1)


if __name__ == "__main__":
    main()
