"""``aftersale preview``: the timeline a marketer reviews before shipping a change."""

from __future__ import annotations

import pytest
from rich.console import Console

from aftersale.ops.preview import PreviewError, preview_journey, print_timeline
from aftersale.pipeline.runtime import Runtime
from tests.conftest import START
from tests.factories import placed
from tests.integration.helpers import feed, run_to


def test_preview_shows_each_message_in_local_time_rendered(rt: Runtime) -> None:
    feed(rt, placed("o-1", START, "c-1"))
    run_to(rt, rt.definitions(), START)
    timeline = preview_journey(rt, "onboarding", "c-1", responses={"csat": 5, "nps": 10})
    sends = [e for e in timeline.entries if e.kind == "send"]
    # step 8 is the extra week onboarding waits after a delivery problem (none here)
    assert [s.step for s in sends] == ["2", "4", "9", "11.1.0"]
    assert sends[0].channel == "email" and "Drone" in sends[0].text
    assert sends[0].at.utcoffset().total_seconds() == 3 * 3600  # Europe/Istanbul
    # delivered on day 5, tutorial a day later, at the customer's local time
    assert (sends[0].at - START).days == 6
    assert timeline.segment == "first_time"
    console = Console(record=True, width=120)
    print_timeline(console, timeline)
    printed = console.export_text()
    assert "step 11.1.0 · email" in printed and "https://shop.example.com/r/" in printed


def test_preview_follows_the_detractor_branch_when_asked(rt: Runtime) -> None:
    timeline = preview_journey(rt, "onboarding", None, responses={"csat": 4, "nps": 2})
    kinds = [(e.kind, e.text) for e in timeline.entries if e.kind == "alert"]
    assert kinds == [("alert", "team alert: detractor")]


def test_preview_names_what_exists_when_the_input_is_wrong(rt: Runtime) -> None:
    with pytest.raises(PreviewError, match=r"known: .*onboarding"):
        preview_journey(rt, "nope", None)
    with pytest.raises(PreviewError, match="unknown customer 'ghost'"):
        preview_journey(rt, "onboarding", "ghost")
