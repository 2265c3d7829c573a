"""What the customer's pages share: the language, the signed link, the shop's texts, one layout.

The survey pages (:mod:`aftersale.web.surveys`), the unsubscribe page
(:mod:`aftersale.web.feedback`) and the tracking page (:mod:`aftersale.web.tracking`) are plain
HTML in ``templates/``: every page extends ``page.html`` (no script, no external asset; the CSP
in ``PAGE_HEADERS`` allows neither).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader

from aftersale.config import Settings
from aftersale.content import read_yaml
from aftersale.content.render import locale_candidates, pick_locale
from aftersale.core.links import BadToken, Purpose, Signer

log = logging.getLogger(__name__)

LANGUAGES = ("en", "tr", "pl")
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",  # the token is in the URL
    "X-Robots-Tag": "noindex",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
}

_TEMPLATES = Environment(loader=PackageLoader("aftersale.web"), autoescape=True)


def render_page(template: str, status_code: int, **context: Any) -> HTMLResponse:
    """``templates/<template>`` as the response, with the pages' headers."""
    html = _TEMPLATES.get_template(template).render(**context)
    return HTMLResponse(html, status_code=status_code, headers=PAGE_HEADERS)


def language(settings: Settings, locale: str | None) -> str:
    """The one of ``LANGUAGES`` a page speaks to a customer with ``locale``."""
    default = settings.default_locale if settings.default_locale in LANGUAGES else "en"
    return pick_locale(LANGUAGES, locale, default)


def accepted_language(header: str | None) -> str | None:
    """The most preferred of our languages in an ``Accept-Language`` header, if any."""
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate((header or "").split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        if tag and quality > 0:
            ranked.append((-quality, index, tag))
    for _, _, tag in sorted(ranked):
        if any(c in LANGUAGES for c in locale_candidates(tag)):
            return tag
    return None


def signed_payload(signer: Signer | None, purpose: Purpose, token: str,
                   bad_status: int) -> dict[str, Any] | int:
    """The payload of a token signed for ``purpose``, or the status to answer:
    ``bad_status`` when it is tampered, malformed or another purpose's, 503 when no key is set.
    The caller checks the claims in it."""
    if signer is None:
        log.error("%s link used but AFTERSALE_SECRET_KEY is not set", purpose.value)
        return 503
    try:
        return signer.verify(purpose, token)
    except BadToken:
        return bad_status


# --- shop texts (content/shop.yaml) -------------------------------------------------------------


@dataclass(frozen=True)
class ShopTexts:
    name: str = ""
    support_email: str = ""
    help_text: Mapping[str, str] = field(default_factory=dict)

    def help_for(self, settings: Settings, locale: str | None) -> str:
        """The help text in the customer's language (one text for all: ``"*"``), else in the
        default locale, else English; empty when the shop wrote none."""
        if "*" in self.help_text:
            return self.help_text["*"]
        default = settings.default_locale if settings.default_locale in self.help_text else "en"
        return self.help_text.get(pick_locale(self.help_text.keys(), locale, default), "")


_SHOP_CACHE: dict[Path, tuple[int, ShopTexts]] = {}


def shop_texts(content_dir: Path) -> ShopTexts:
    """``shop.yaml`` read with the content library's own reader, re-read when the file changes.
    An unreadable file gives empty texts: a HELP reply or a page must still go out."""
    path = Path(content_dir) / "shop.yaml"
    try:
        stamp = os.stat(path).st_mtime_ns
    except OSError:
        return ShopTexts()
    cached = _SHOP_CACHE.get(path)
    if cached and cached[0] == stamp:
        return cached[1]
    data, _, _ = read_yaml(path)
    texts = ShopTexts()
    if isinstance(data, dict):
        help_text = data.get("help_text")
        if isinstance(help_text, str):
            help_text = {"*": help_text}
        texts = ShopTexts(str(data.get("name") or ""), str(data.get("support_email") or ""),
                          {str(k): str(v) for k, v in help_text.items()}
                          if isinstance(help_text, dict) else {})
    _SHOP_CACHE[path] = (stamp, texts)
    return texts
