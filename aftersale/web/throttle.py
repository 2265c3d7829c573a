"""A token bucket per client address, in this process: a scanner hammering survey links is
slowed down without touching anyone else's bucket.

In-process on purpose: it needs no shared store and costs nothing per request. Behind a load
balancer each web process keeps its own buckets, so a client gets up to the burst per process;
that is still a bounded rate, which is all this is for (the answers themselves are safe
whatever the rate: a scanner's clicks are suspect, never answers).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from fastapi import Request
from starlette.responses import Response


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


Page = TypeVar("Page", bound=Response)


def too_fast(buckets: ClientBuckets, request: Request,
             error_page: Callable[[int], Page]) -> Page | None:
    """The page's 429 (with Retry-After) when this client address is over its rate; None when
    it may go ahead. Nothing is read or stored for a refused request."""
    wait = buckets.wait(request.client.host if request.client else "unknown")
    if not wait:
        return None
    page = error_page(429)
    page.headers["Retry-After"] = str(max(1, math.ceil(wait)))
    return page
