"""What every flow needs: a runtime, and counts shown in the Prefect UI.

Flow parameters stay plain values (Prefect stores them with the run); the runtime, which holds
a database engine and a clock, is built from settings, or handed in by the CLI, the demo and
the tests with :func:`using_runtime` so they can run the same flows on a simulated clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from prefect.artifacts import create_table_artifact

from aftersale.config import load_settings
from aftersale.pipeline.definitions import Definitions
from aftersale.pipeline.runtime import Runtime, open_runtime

_injected: ContextVar[Runtime | None] = ContextVar("aftersale_runtime", default=None)
_working: ContextVar[tuple[Runtime, Definitions] | None] = ContextVar("aftersale_work",
                                                                     default=None)


@contextmanager
def using_runtime(rt: Runtime) -> Iterator[Runtime]:
    token = _injected.set(rt)
    try:
        yield rt
    finally:
        _injected.reset(token)


def runtime() -> Runtime:
    return _injected.get() or open_runtime(load_settings())


def definitions_for(rt: Runtime, logger: Any) -> Definitions:
    """The definition set a run works with. Files refused as invalid are logged as errors on
    the run (the last valid set runs), so an operator sees them in the Prefect UI."""
    definitions = rt.definitions()
    for problem in rt.problems:
        logger.error("invalid definitions refused, running the last valid set: %s", problem)
    return definitions


@contextmanager
def working_with(rt: Runtime, definitions: Definitions) -> Iterator[None]:
    """What a flow's tasks work with. Tasks read it from here rather than as parameters:
    Prefect walks every parameter of every task run, which costs seconds for a whole
    definition set and is of no use in the UI."""
    token = _working.set((rt, definitions))
    try:
        yield
    finally:
        _working.reset(token)


def work() -> tuple[Runtime, Definitions]:
    current = _working.get()
    if current is None:
        raise RuntimeError("this task runs inside its flow, which sets what it works with")
    return current


def publish_counts(key: str, counts: dict[str, Any], description: str) -> None:
    """A keyed table artifact, so the UI keeps the history of every run's counts."""
    rows = [{"count": name, "value": value if not isinstance(value, dict) else
             ", ".join(f"{k}={v}" for k, v in sorted(value.items())) or "-"}
            for name, value in counts.items()]
    create_table_artifact(rows, key=key, description=description)


# A lingering run asks the database this often whether more work came in...
POLL_SECONDS = 1.0
# ...and ends after this long even if work keeps coming, so a run's counts, logs and artifact
# stay readable; the trigger or the schedule starts the next one.
MAX_RUN_SECONDS = 600.0


def linger(seconds: float, waiting: Callable[[], bool], work: Callable[[], None],
           started: float) -> int:
    """Keep doing ``work`` while ``waiting()`` finds some, until ``seconds`` pass without any.

    Why: the deployment triggers fire at most once per window (``within``), and events that
    arrive while a trigger is quiet start no run. The run that the first event started stays
    at least that long and picks them up, so a burst of webhooks is one run, not one per
    webhook, and none of them waits for the safety schedule. Returns the passes done."""
    passes = 0
    if seconds <= 0:
        return passes
    idle_since = time.monotonic()
    while True:
        now = time.monotonic()
        if now - idle_since >= seconds or now - started >= MAX_RUN_SECONDS:
            return passes
        time.sleep(POLL_SECONDS)
        if waiting():
            work()
            passes += 1
            idle_since = time.monotonic()
