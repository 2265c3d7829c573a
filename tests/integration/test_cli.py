"""The command line as a user runs it: a real subprocess, real files, a real database."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, inspect, select
from sqlalchemy.orm import Session

from aftersale.db.models import Enrollment, InboxEvent, Message, Order, RuntimeState
from tests.conftest import START
from tests.factories import follow, placed
from tests.integration.helpers import aftersale, treated_customer


def _count(database_url: str) -> int:
    """Stored events; a rejected import may not even have created the tables."""
    engine = create_engine(database_url)
    if not inspect(engine).has_table("inbox_events"):
        return 0
    with engine.connect() as connection:
        count = connection.execute(select(func.count()).select_from(InboxEvent)).scalar_one()
    engine.dispose()
    return count


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_ingest_stores_a_file_once_and_a_reimport_is_harmless(
        cli_env: dict[str, str], tmp_path: Path, database_url: str) -> None:
    events = [placed("o-1", START), follow("shipped", "o-1", START), placed("o-2", START, "c-2")]
    path = _write(tmp_path / "events.jsonl", [json.dumps(e) for e in events])
    first = aftersale("ingest", str(path), env=cli_env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "stored 3 new event(s); 0 already stored" in first.stdout
    again = aftersale("ingest", str(path), env=cli_env, cwd=tmp_path)
    assert "stored 0 new event(s); 3 already stored" in again.stdout
    assert _count(database_url) == 3


def test_an_invalid_file_is_rejected_whole_with_every_bad_line(
        cli_env: dict[str, str], tmp_path: Path, database_url: str) -> None:
    bad_type = placed("o-2", START) | {"type": "order.exploded", "id": "e-2"}
    bad_phone = placed("o-3", START, "c-3", phone="12")
    path = _write(tmp_path / "events.jsonl", [
        json.dumps(placed("o-1", START)), "{not json", json.dumps(bad_type), "",
        json.dumps(bad_phone)])
    result = aftersale("ingest", str(path), env=cli_env, cwd=tmp_path)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.startswith(str(path))]
    assert [line.split(":")[1] for line in lines] == ["2", "3", "5"]
    assert "not valid JSON" in lines[0]
    assert "unknown event type 'order.exploded'" in lines[1]
    assert "customer.phone" in lines[2] or "phone" in lines[2]
    assert "nothing stored" in result.stderr
    assert _count(database_url) == 0


def test_ingest_names_the_line_and_field_of_a_consent_of_the_wrong_type(
        cli_env: dict[str, str], tmp_path: Path, database_url: str) -> None:
    bad = placed("o-2", START, "c-2", consent={"email": True, "order_updates": {"sms": "yes"}})
    path = _write(tmp_path / "events.jsonl", [json.dumps(placed("o-1", START)), json.dumps(bad)])
    result = aftersale("ingest", str(path), env=cli_env, cwd=tmp_path)
    assert result.returncode == 1
    [line] = [line for line in result.stderr.splitlines() if line.startswith(str(path))]
    assert line.startswith(f"{path}:2:")
    assert "customer.consent.order_updates.sms: must be true, false or null, got 'yes'" in line
    assert _count(database_url) == 0


def test_skip_invalid_stores_the_valid_lines(cli_env: dict[str, str], tmp_path: Path,
                                             database_url: str) -> None:
    path = _write(tmp_path / "events.jsonl", [json.dumps(placed("o-1", START)), "[1, 2]"])
    result = aftersale("ingest", str(path), "--skip-invalid", env=cli_env, cwd=tmp_path)
    assert result.returncode == 0
    assert "1 invalid line(s) skipped" in result.stdout
    assert _count(database_url) == 1


def test_a_large_file_is_validated_by_worker_processes_with_the_right_line_numbers(
        cli_env: dict[str, str], tmp_path: Path, database_url: str) -> None:
    # Three blocks of 5,000 lines, so the console script starts its validating workers.
    lines = [json.dumps(placed(f"o-{n}", START, f"c-{n % 900}")) for n in range(12_000)]
    lines[10_321] = "{not json"
    path = _write(tmp_path / "events.jsonl", lines)
    result = aftersale("ingest", str(path), "--skip-invalid", "--workers", "2", env=cli_env,
                       cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"{path}:10322: not valid JSON" in result.stderr
    assert "stored 11999 new event(s)" in result.stdout
    assert _count(database_url) == 11_999


def test_ingest_reads_standard_input(cli_env: dict[str, str], tmp_path: Path,
                                     database_url: str) -> None:
    result = aftersale("ingest", "-", env=cli_env, cwd=tmp_path,
                       stdin=json.dumps(placed("o-1", START)) + "\n")
    assert result.returncode == 0, result.stderr
    assert _count(database_url) == 1


def test_validate_names_file_line_and_fix_for_each_problem(
        cli_env: dict[str, str], definitions_dirs: tuple[Path, Path], tmp_path: Path) -> None:
    journeys, _ = definitions_dirs
    (journeys / "broken.yaml").write_text(
        "journey: broken\n"
        "trigger: order.placed\n"
        "segments: [first_time, big_spenders]\n"
        "steps:\n"
        "  - wait: 3 days\n"
        "  - send: no_such_template\n"
        "  - send: nps_survey\n"
        "    channels: [email, pigeon]\n"
        "  - wait_for: order.teleported\n"
        "    timeout: 2d\n"
        "  - end\n"
        "  - send: nps_survey\n", encoding="utf-8")
    result = aftersale("validate", env=cli_env, cwd=tmp_path)
    assert result.returncode == 1
    problems = [line for line in result.stdout.splitlines() if "broken.yaml:" in line]
    where = {int(line.split(":")[1]) for line in problems}
    assert where == {5, 8, 9, 12}, result.stdout
    assert any(("'3 days' is not a duration" in p and "hint" not in p) or "1d" in p
               for p in problems)
    assert any("unknown event 'order.teleported'" in p for p in problems)
    assert any("can never run" in p for p in problems)
    # cross-checks are reported once the file itself is well-formed
    (journeys / "broken.yaml").write_text(
        "journey: broken\ntrigger: order.placed\nsegments: [first_time, big_spenders]\n"
        "steps:\n  - send: no_such_template\n", encoding="utf-8")
    result = aftersale("validate", env=cli_env, cwd=tmp_path)
    lines = [line for line in result.stdout.splitlines() if "broken.yaml:" in line]
    assert any(line.startswith(str(journeys / "broken.yaml") + ":3: unknown segment 'big_spenders'")
               for line in lines), result.stdout
    assert any(":5: unknown template 'no_such_template'" in line for line in lines)


def test_validate_passes_on_the_shipped_definitions(cli_env: dict[str, str],
                                                     tmp_path: Path) -> None:
    result = aftersale("validate", env=cli_env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok: 6 journeys, 5 segments" in result.stdout


def test_a_bad_setting_stops_with_one_line_naming_it(cli_env: dict[str, str],
                                                      tmp_path: Path) -> None:
    env = cli_env | {"AFTERSALE_EMAIL_PROVIDER": "sendgrid"}
    result = aftersale("validate", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "configuration error: AFTERSALE_SENDGRID_API_KEY is required when "
        "AFTERSALE_EMAIL_PROVIDER=sendgrid"]
    env = cli_env | {"AFTERSALE_BATCH_SIZE": "lots"}
    result = aftersale("validate", env=env, cwd=tmp_path)
    assert result.returncode == 2 and "AFTERSALE_BATCH_SIZE" in result.stderr


def test_db_upgrade_is_repeatable(cli_env: dict[str, str], tmp_path: Path) -> None:
    for _ in range(2):
        result = aftersale("db", "upgrade", env=cli_env, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "database is up to date" in result.stdout


@pytest.mark.usefixtures("prefect_server")
def test_run_fast_forwards_the_clock_and_preview_prints_the_timeline(
        cli_env: dict[str, str], tmp_path: Path) -> None:
    from prefect.settings import PREFECT_API_URL

    env = cli_env | {"PREFECT_API_URL": str(PREFECT_API_URL.value())}
    events = [placed("o-1", START, "c-7"), follow("shipped", "o-1", START + timedelta(days=1), "c-7")]
    path = _write(tmp_path / "events.jsonl", [json.dumps(e) for e in events])
    assert aftersale("ingest", str(path), env=env, cwd=tmp_path).returncode == 0
    until = (START + timedelta(days=2)).isoformat()
    result = aftersale("run", "--until", until, "--tick", "6h", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "'dispatch_sent': 1" in result.stdout  # the tracking link
    before = aftersale("run", "--until", START.isoformat(), env=env, cwd=tmp_path)
    assert before.returncode == 2 and "is before the clock" in before.stderr

    preview = aftersale("preview", "order-updates", "--customer", "c-7", env=env, cwd=tmp_path)
    assert preview.returncode == 0, preview.stderr
    assert "step 1 · whatsapp" in preview.stdout and "track.example.com/o-1" in preview.stdout
    unknown = aftersale("preview", "order-updates", "--customer", "nobody", env=env, cwd=tmp_path)
    assert unknown.returncode == 1 and "unknown customer 'nobody'; for example: c-7" in unknown.stderr


@pytest.mark.usefixtures("prefect_server")
def test_run_until_after_an_ingest_takes_each_event_when_it_happened(
        cli_env: dict[str, str], tmp_path: Path, database_url: str) -> None:
    """Two orders a day apart, each shipped a day later and delivered two days after that:
    imported first, then simulated from the oldest event (no clock is stored yet)."""
    from prefect.settings import PREFECT_API_URL

    env = cli_env | {"PREFECT_API_URL": str(PREFECT_API_URL.value())}
    events = []
    for n, cid in enumerate([treated_customer("onboarding", 10, prefix=f"i{n}") for n in (0, 1)]):
        at = START + timedelta(days=n, hours=3 * n)
        events += [placed(f"o-{n}", at, cid), follow("shipped", f"o-{n}", at + timedelta(days=1), cid),
                   follow("delivered", f"o-{n}", at + timedelta(days=3), cid)]
    path = _write(tmp_path / "week.jsonl", [json.dumps(e) for e in events])
    assert aftersale("ingest", str(path), env=env, cwd=tmp_path).returncode == 0
    until = START + timedelta(days=12)
    result = aftersale("run", "--until", until.isoformat(), "--tick", "1h", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    engine = create_engine(database_url)
    with Session(engine) as session:
        rows = session.execute(select(Message.template, Message.created_at, Message.sent_at,
                                      Order.shipped_at, Order.delivered_at)
                               .join(Enrollment, Enrollment.id == Message.enrollment_id)
                               .join(Order, Order.id == Enrollment.order_id)).tuples().all()
        clock = session.scalar(select(RuntimeState.value))
    engine.dispose()
    assert clock is not None and datetime.fromisoformat(clock) == until
    by_template = {t: [r for r in rows if r[0] == t] for t in ("shipping_update", "csat_checkin")}
    assert len(by_template["shipping_update"]) == 2 and len(by_template["csat_checkin"]) == 2
    for _, created, sent_at, shipped, _delivered in by_template["shipping_update"]:
        assert sent_at is not None and shipped <= created <= sent_at, (shipped, sent_at)
    for _, created, sent_at, _shipped, delivered in by_template["csat_checkin"]:
        due = delivered + timedelta(days=7)
        assert due <= created < due + timedelta(hours=1) and sent_at is not None, (delivered, created)


def test_ingest_reads_shopify_webhooks_from_a_file(
        cli_env: dict[str, str], tmp_path: Path, database_url: str) -> None:
    fixtures = Path(__file__).parents[1] / "fixtures" / "shopify"
    lines = []
    for name in ("orders_create", "fulfillments_create", "fulfillments_update_delivered"):
        data = json.loads((fixtures / f"{name}.json").read_text(encoding="utf-8"))
        lines.append(json.dumps({"topic": data["headers"]["X-Shopify-Topic"],
                                 "id": data["headers"]["X-Shopify-Event-Id"],
                                 "payload": data["payload"]}))
    path = _write(tmp_path / "shopify.jsonl", lines)
    first = aftersale("ingest", str(path), "--format", "shopify", env=cli_env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    stored = _count(database_url)
    assert stored >= 3  # a delivered fulfillment with tracking also records the shipment
    again = aftersale("ingest", str(path), "--format", "shopify", env=cli_env, cwd=tmp_path)
    assert f"stored 0 new event(s); {stored} already stored" in again.stdout
    bad = _write(tmp_path / "bad.jsonl", [lines[0], '{"topic": "orders/create"}'])
    rejected = aftersale("ingest", str(bad), "--format", "shopify", env=cli_env, cwd=tmp_path)
    assert rejected.returncode == 1 and f"{bad}:2:" in rejected.stderr
    unknown = aftersale("ingest", str(path), "--format", "csv", env=cli_env, cwd=tmp_path)
    assert unknown.returncode == 2 and "use jsonl or shopify" in unknown.stderr


def test_up_refuses_a_web_port_that_is_taken(cli_env: dict[str, str], tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = cli_env | {"AFTERSALE_API_TOKEN": "t", "AFTERSALE_SECRET_KEY": "k"}
        result = aftersale("up", "--port", str(port), env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert f"port {port} on 127.0.0.1 is in use" in result.stderr
