"""What every flow needs: a runtime, and counts shown in the Prefect UI.

Flow parameters stay plain values (Prefect stores them with the run); the runtime, which holds
a database engine and a clock, is built from settings, or handed in by the CLI, the demo and
the tests with :func:`using_runtime` so they can run the same flows on a simulated clock.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from prefect.artifacts import create_table_artifact

from aftersale.config import load_settings
from aftersale.journeys.definitions import Definitions
from aftersale.runtime import Runtime, open_runtime

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
