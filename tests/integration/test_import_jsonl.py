"""``aftersale ingest``'s streamed import validates blocks of lines in worker processes while it
writes: the inbox, the errors and their line numbers must be exactly what validating every
line in this process gives, on both databases."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from aftersale.db.models import InboxEvent
from aftersale.intake import importer
from aftersale.intake.importer import ImportResult, import_jsonl
from aftersale.pipeline.runtime import Runtime
from bench.events import generate
from tests.conftest import START


def _lines() -> list[str]:
    """About seven blocks of 40 lines: blank lines, invalid ones, a repeated id within a
    block and across blocks, and an id the inbox already has."""
    lines = [json.dumps(e) for e in generate(260, start=START, span=timedelta(hours=30), seed=3)]
    lines[10] = "   "
    lines[55] = '{"id": "broken", "type": "order.placed"'  # block 2: not JSON
    lines[130] = json.dumps({"id": "x", "type": "order.teleported", "occurred_at": "2026-03-01"})
    lines[201] = lines[12]  # the same event again, five blocks later
    lines[44] = lines[41]  # and in the same block
    return lines


def _import(rt: Runtime, lines: list[str], workers: int, **options: Any) -> ImportResult:
    return import_jsonl(rt.factory, lines, source="file", received_at=rt.now(), chunk=40,
                        workers=workers, **options)


def _inbox(rt: Runtime) -> list[tuple[Any, ...]]:
    with rt.factory() as session:
        return [tuple(row) for row in session.execute(
            select(InboxEvent.event_id, InboxEvent.type, InboxEvent.occurred_at,
                   InboxEvent.payload, InboxEvent.status).order_by(InboxEvent.seq))]


def _wipe(rt: Runtime) -> None:
    with rt.factory() as session, session.begin():
        session.query(InboxEvent).delete()


@pytest.mark.subprocess  # validation worker processes
@pytest.mark.parametrize("skip_invalid", [True, False])
def test_worker_processes_give_what_one_process_gives(rt: Runtime, skip_invalid: bool) -> None:
    lines = _lines()
    already = json.loads(lines[90])["id"]
    _import(rt, [lines[90]], workers=0)  # the inbox has this one before the file comes

    alone = _import(rt, lines, workers=0, skip_invalid=skip_invalid)
    stored_alone = _inbox(rt)
    _wipe(rt)
    _import(rt, [lines[90]], workers=0)
    together = _import(rt, lines, workers=2, skip_invalid=skip_invalid)

    assert together == alone
    assert _inbox(rt) == stored_alone
    assert [(e.line, e.reason[:20]) for e in together.errors] == [
        (56, "not valid JSON (Expe"), (131, "type: unknown event ")]
    assert together.duplicates_in_file == 2 and together.received == 257
    if skip_invalid:
        assert together.stored == 254 and together.already_stored == 1
        assert [row[0] for row in stored_alone].count(already) == 1
        file_order = list(dict.fromkeys(
            json.loads(line)["id"] for line in lines if line.strip() and "teleported" not in line
            and "broken" not in line))
        file_order.remove(already)
        assert [row[0] for row in stored_alone] == [already, *file_order]  # seq is file order
    else:
        assert together.rejected and together.stored == 0
        assert [row[0] for row in stored_alone] == [already]  # nothing of the file


def test_a_file_of_one_block_is_validated_in_this_process(
        rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_pool(*args: object, **kwargs: object) -> None:
        raise AssertionError("a worker process was started for one block")

    monkeypatch.setattr(importer, "ProcessPoolExecutor", no_pool)
    lines = _lines()[:30]
    result = _import(rt, lines, workers=2)
    assert result.stored == 29 and not result.errors  # line 11 is blank
    assert len(_inbox(rt)) == 29
