"""A token bucket per client address, in this process: a scanner hammering survey links is
slowed down without touching anyone else's bucket.

In-process on purpose: it needs no shared store and costs nothing per request. Behind a load
balancer each web process keeps its own buckets, so a client gets up to the burst per process;
that is still a bounded rate, which is all this is for (the answers themselves are safe
whatever the rate: a scanner's clicks are suspect, never answers).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class ClientBuckets:
    """``rate`` requests a second per address, up to ``burst`` at once. At most ``clients``
    addresses are remembered; the one idle longest is forgotten first (a full bucket again)."""

    rate: float
    burst: float
    clients: int = 10_000
    clock: Callable[[], float] = time.monotonic
    _buckets: OrderedDict[str, tuple[float, float]] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def wait(self, address: str) -> float:
        """0 when ``address`` may go ahead now (and a token is taken); else the seconds until
        it may (nothing is taken)."""
        now = self.clock()
        with self._lock:
            tokens, at = self._buckets.pop(address, (self.burst, now))
            tokens = min(self.burst, tokens + (now - at) * self.rate)
            waited = 0.0 if tokens >= 1 else (1 - tokens) / self.rate
            self._buckets[address] = (tokens - 1 if not waited else tokens, now)
            while len(self._buckets) > self.clients:
                self._buckets.popitem(last=False)
            return waited
