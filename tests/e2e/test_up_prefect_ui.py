"""`aftersale up --prefect-port P` starts its own Prefect server on P, and the UI it serves
there talks to that server: loaded in Debian's chromium, `/runs` shows no connection error
and lists the flow runs that `up` served. The UI asks the server for its API's URL, which
Prefect derives from its port *setting*, not from `--port`, so without `up` passing it along
the page said "Can't connect to Server API at http://127.0.0.1:4200/api"."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, expect

from tests.e2e.test_prefect_trigger import (
    TOKEN,
    _answers,
    _free_port,
    _post,
    _served,
    ctrl_c_stops_it,
    interrupt,
)
from tests.factories import follow, placed

pytestmark = [pytest.mark.prefect, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


class _Up:
    def __init__(self, process: subprocess.Popen[bytes], web: str, api: str, log: Path) -> None:
        self.process, self.web, self.api, self.log = process, web, api, log

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]


def _wait(check: object, timeout: float, what: str, up: _Up) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if up.process.poll() is not None:
            pytest.fail(f"aftersale up exited ({up.process.returncode}):\n{up.output()}")
        if check():  # type: ignore[operator]
            return
        time.sleep(0.25)
    pytest.fail(f"{what} within {timeout:.0f} s\n{up.output()}")


@pytest.fixture(scope="module")
def up_on_own_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Up]:
    """`python -m aftersale.orchestration.up` with no PREFECT_API_URL, so it starts a Prefect server of its
    own on a free port (never 4200, which must not answer for the test to mean anything)."""
    home = tmp_path_factory.mktemp("up-ui")
    web_port, prefect_port = _free_port(), _free_port()
    assert 4200 not in (web_port, prefect_port)
    env = {k: v for k, v in os.environ.items()
           if k not in ("PREFECT_API_URL", "PREFECT_UI_API_URL", "PREFECT_SERVER_UI_API_URL")}
    env |= {"PREFECT_HOME": str(home / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1", "AFTERSALE_DATABASE_URL": f"sqlite:///{home / 'aftersale.db'}",
            "AFTERSALE_API_TOKEN": TOKEN, "AFTERSALE_SECRET_KEY": "e2e-secret",
            "AFTERSALE_JOURNEYS_DIR": str(ROOT / "journeys"),
            "AFTERSALE_CONTENT_DIR": str(ROOT / "content"), "AFTERSALE_PREFECT_EVENTS": "true",
            "AFTERSALE_QUIET_HOURS": "off"}
    log = home / "up.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "aftersale.orchestration.up", "--port", str(web_port), "--prefect-port",
             str(prefect_port)], cwd=home, env=env, stdout=sink, stderr=subprocess.STDOUT,
            preexec_fn=ctrl_c_stops_it)
    up = _Up(process, f"http://127.0.0.1:{web_port}", f"http://127.0.0.1:{prefect_port}/api", log)
    try:
        _wait(lambda: _answers(f"{up.web}/healthz"), 180, "the web app did not answer", up)
        _wait(lambda: _served(up.api), 60, "the deployments and their triggers were not served", up)
        yield up
    finally:
        interrupt(process, 60)
    # `up` stops the server it started: nothing is left answering on the chosen port.
    assert not _answers(f"{up.api}/health")


def _flow_run_count(api: str, flow: str) -> int:
    response = httpx.post(f"{api}/flow_runs/count", json={"flows": {"name": {"any_": [flow]}}},
                          timeout=5)
    return int(response.json()) if response.status_code == 200 else 0


def test_the_prefect_ui_on_a_chosen_port_reaches_its_own_api_and_lists_the_runs(
        up_on_own_port: _Up, browser: Browser) -> None:
    up = up_on_own_port
    settings = httpx.get(up.api.removesuffix("/api") + "/ui-settings", timeout=5).json()
    assert settings["api_url"] == up.api

    now = datetime.now(UTC)
    _post(up, placed("o-ui-1", now))  # type: ignore[arg-type]  # only its .web is read
    _post(up, follow("shipped", "o-ui-1", now))  # type: ignore[arg-type]
    # The UI test is about the page, not the trigger: wait through the API for the run it
    # must list, so a slow server shows up as this message rather than as a missing row.
    _wait(lambda: _flow_run_count(up.api, "process-events") > 0, 120,
          "no process-events run was created", up)

    page = browser.new_page()
    try:
        page.goto(f"{up.api.removesuffix('/api')}/runs")
        # A run of one of the served deployments appears in the list...
        expect(page.get_by_text("process-events").first).to_be_visible(timeout=60_000)
        # ...and the UI never failed to reach its API.
        assert "Can't connect to Server API" not in page.inner_text("body")
    finally:
        page.close()
