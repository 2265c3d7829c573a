"""Is a click on one of our e-mail links a person's? The rules and their thresholds, pure.

Corporate mail scanners (Microsoft Defender Safe Links, Mimecast, Proofpoint, Barracuda, Cisco)
fetch every link of a message, mostly within seconds of delivery, many of them at once. Taken
as clicks, they answer every survey with every score and inflate the click counts. A click is
*suspect* (stored with its reason; never an answer, never counted as a click) when:

- ``honeypot``: it fetched the e-mail's hidden link, which no person sees or can tab to;
- ``prefetch``: a ``HEAD`` request, or one that announces a prefetch or preview
  (``Purpose``/``Sec-Purpose``/``X-Purpose``/``X-Moz`` headers);
- ``scanner_agent``: its User-Agent is missing or names a scanner, a link previewer or an HTTP
  library (:data:`SCANNER_AGENTS`);
- ``too_soon``: it came within :data:`SCANNER_SECONDS` after the send; people take longer to
  open a mail and pick a score;
- ``burst``: within :data:`BURST_SECONDS` of it, the message's clicks show at least
  :data:`BURST_SCORES` different scores, or the honeypot. People click one score, and
  sometimes a second one at once to correct a mis-tap; scanners fetch all of them. The
  earlier clicks of the burst turn suspect too (:func:`burst_partners`).

A click that passes every rule still waits before it counts (twice BURST_SECONDS), so that a
burst it turns out to start can catch it (see :mod:`aftersale.surveys.clicks`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

#: A click this soon after the send is a scanner's: scanners fetch at delivery, a person first
#: has to notice the mail, open it and choose. Sellers of click-audit tools use 5 s.
SCANNER_SECONDS = 10
#: Two different scores of one message (or a score and the honeypot) this close together are
#: one burst: a person who changes their mind reads the thank-you page first.
BURST_SECONDS = 3
#: Different scores within BURST_SECONDS that make a burst: two are a person correcting a tap.
BURST_SCORES = 3
#: Different links of a message clicked within BURST_SECONDS that make a burst in a provider's
#: click reports: a person reaches a second link of an e-mail only by going back to it.
BURST_LINKS = 2

Reason = Literal["honeypot", "prefetch", "scanner_agent", "too_soon", "burst"]

#: Lowercase fragments of User-Agents that no person's browser sends: security gateways, link
#: previewers and HTTP libraries. Matched anywhere in the header, case-insensitively.
SCANNER_AGENTS: tuple[str, ...] = (
    "barracuda", "mimecast", "proofpoint", "urldefense", "safelinks", "ms-office",
    "microsoft office existence", "skypeuripreview", "bingpreview", "ciscosecureemail", "ironport",
    "tmes", "trend micro", "fortimail", "fortiguard", "sophos", "symantec", "forcepoint",
    "zscaler", "checkpoint", "fireeye", "bot", "crawler", "spider", "preview", "scanner",
    "headlesschrome", "phantomjs", "python-requests", "python-urllib", "aiohttp", "httpx",
    "go-http-client", "okhttp", "java/", "apache-httpclient", "curl/", "wget/", "libwww",
    "node-fetch", "axios/",
)
#: Headers a browser sends when it fetches a page the user did not ask for (yet).
PREFETCH_HEADERS: tuple[str, ...] = ("purpose", "sec-purpose", "x-purpose", "x-moz")
_PREFETCH_VALUES = ("prefetch", "preview", "prerender")


@dataclass(frozen=True)
class Seen:
    """A click already recorded on the same message."""

    at: datetime
    score: int | None  # None: the honeypot
    key: int | None = None  # the caller's id for it


@dataclass(frozen=True)
class Click:
    """What we know about a click when it arrives."""

    at: datetime
    score: int | None  # None: the honeypot, or a link without a score
    honeypot: bool = False
    method: str = "GET"
    headers: Mapping[str, str] | None = None  # a request's, with lowercase names
    user_agent: str | None = None  # without headers: what a provider's click report says
    sent_at: datetime | None = None


def suspect_reason(click: Click, recent: Iterable[Seen] = (),
                   burst_scores: int = BURST_SCORES) -> Reason | None:
    """Why ``click`` is most likely a machine's, or None when it may be a person's. The first
    rule that applies, in the order of the module docstring."""
    if click.honeypot:
        return "honeypot"
    headers = click.headers or {}
    if click.method.upper() == "HEAD" or _prefetching(headers):
        return "prefetch"
    # A request without the header is suspect; a provider's report without one tells nothing.
    known = click.headers is not None or click.user_agent is not None
    agent = click.user_agent if click.headers is None else headers.get("user-agent")
    if known and is_scanner_agent(agent):
        return "scanner_agent"
    # A click dated before the send says the clocks differ (a provider's report), not who it was.
    if (click.sent_at is not None
            and timedelta(0) <= click.at - click.sent_at < timedelta(seconds=SCANNER_SECONDS)):
        return "too_soon"
    if burst_partners(click, recent, burst_scores):
        return "burst"
    return None


def burst_partners(click: Click, recent: Iterable[Seen],
                   burst_scores: int = BURST_SCORES) -> list[Seen]:
    """The clicks of ``recent`` that make a burst with ``click``: when the clicks within
    BURST_SECONDS of it show BURST_SCORES different scores or the honeypot, those with another
    score than its own or on the honeypot (the same score twice is a double click)."""
    window = timedelta(seconds=BURST_SECONDS)
    score = None if click.honeypot else click.score
    near = [seen for seen in recent if abs(click.at - seen.at) <= window]
    scores = {seen.score for seen in near} | {score}
    if None not in scores and len(scores) < burst_scores:
        return []  # one score, or a person's correction
    return [seen for seen in near
            if seen.score is None or score is None or seen.score != score]


def is_scanner_agent(agent: str | None) -> bool:
    text = (agent or "").strip().lower()
    return not text or any(fragment in text for fragment in SCANNER_AGENTS)


def _prefetching(headers: Mapping[str, str]) -> bool:
    return any(value in headers.get(name, "").lower()
               for name in PREFETCH_HEADERS for value in _PREFETCH_VALUES)

