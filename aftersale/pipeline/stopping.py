"""A graceful stop for the senders: SIGTERM (a deploy, ``docker stop``, a node drain) or
Ctrl-C while a batch is with the providers lets the calls in flight finish and be recorded,
and puts the rest of the batch back in the queue, instead of leaving it ``sending``.

``STOP`` is set by the signal; the sender stops claiming and starts no further provider call
while it is set. Outside a send stage the signals keep whatever handler was there before
(Prefect's flow engine, the CLI's, Python's own), which :func:`graceful` hands the signal to
once the stage has wound down.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

#: Set when this process was told to stop: no new claim, no new provider call.
STOP = threading.Event()


@contextmanager
def graceful(signals: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT)
             ) -> Iterator[None]:
    """While inside, ``signals`` only set :data:`STOP`; on leaving, the first one received
    goes to the handler that was there before, so the process stops as it would have, only
    later. Signals reach the main thread alone: elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    STOP.clear()
    received: list[int] = []

    def note(signum: int, _frame: FrameType | None) -> None:
        STOP.set()
        received.append(signum)

    previous = {s: signal.signal(s, note) for s in signals}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if received:
            signal.raise_signal(received[0])


def stop_on_sigterm() -> None:
    """SIGTERM sets :data:`STOP` and nothing else, for a process that winds down by itself
    once it sees it (the send helpers)."""
    signal.signal(signal.SIGTERM, lambda _signum, _frame: STOP.set())


def exit_on_sigterm() -> None:
    """SIGTERM exits as Ctrl-C would, through ``finally`` blocks and ``atexit`` handlers, rather
    than at once: a temporary Prefect server started by this process is stopped with it."""
    def leave(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, leave)
