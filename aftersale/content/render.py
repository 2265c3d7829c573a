"""Sandboxed Jinja2 rendering: environments, Babel filters, locale fallback, static checks.

Marketer text is untrusted, so every template runs in a :class:`SandboxedEnvironment` whose
unsafe attribute lookups (``''.__class__``) raise :class:`SecurityError` at once instead of
quietly rendering as an empty string.

Two undefined behaviours, one source:

* **runtime** (sending): a missing optional value (``offer``, ``order.tracking.url`` when there
  is no tracking, a ``survey.link(n)`` without a survey) renders as an empty string and can be
  chained and called. One customer without a phone number must not stop a batch of sends.
* **strict** (``check()`` / ``aftersale validate``): the same compiled code runs with
  :class:`StrictUndefined` against a full sample context, so a typo such as
  ``order.traking.url`` or an undefined top-level name fails there, with the file and line.

Every template is compiled to Python code once and instantiated for both environments
(``Template.from_code``), so validation does not double the compile cost of loading.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from types import TracebackType
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_datetime, format_time
from babel.numbers import format_currency, format_decimal, format_percent
from jinja2 import ChainableUndefined, StrictUndefined, Template, nodes, pass_context
from jinja2.runtime import Context, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedEnvironment, SecurityError

#: Top-level names the engine passes (see the library docstring) plus what the library adds.
CONTEXT_KEYS = frozenset(
    {"customer", "order", "shop", "links", "survey", "guides", "offer", "response", "shipment",
     "experiment", "lang", "transactional"}
)
#: Extra names a layout sees: the rendered message goes in ``body``.
LAYOUT_KEYS = CONTEXT_KEYS | {"subject", "body"}
#: Names Jinja itself provides inside templates.
_JINJA_NAMES = frozenset({"loop", "self", "varargs", "kwargs", "caller", "super"})
#: Context key carrying the reader's locale and zone to the filters; the underscore keeps it
#: out of marketers' way (and the static check rejects ``_``-attributes anyway).
FORMATTER_KEY = "_fmt"


@dataclass(frozen=True)
class Rendered:
    """One message ready for a channel. ``subject``/``html`` are set for email only."""

    subject: str | None
    text: str
    html: str | None
    locale: str
    transactional: bool


# --- locales -----------------------------------------------------------------------------

_LOCALE_RE = re.compile(r"^([A-Za-z]{2,3})(?:[-_]([A-Za-z]{4}))?(?:[-_]([A-Za-z]{2}|\d{3}))?$")


def normalize_locale(value: str) -> str | None:
    """``tr-TR``/``tr_tr``/``TR`` -> ``tr_TR``/``tr``; ``None`` when it is not locale-shaped."""
    match = _LOCALE_RE.match(value.strip())
    if not match:
        return None
    lang, script, region = match.groups()
    parts = [lang.lower()]
    if script:
        parts.append(script.title())
    if region:
        parts.append(region.upper())
    return "_".join(parts)


def locale_candidates(value: str | None) -> list[str]:
    """Most to least specific: ``sr_Latn_RS`` -> ``sr_Latn_RS``, ``sr_Latn``, ``sr``."""
    norm = normalize_locale(value) if value else None
    if not norm:
        return []
    parts = norm.split("_")
    return ["_".join(parts[:i]) for i in range(len(parts), 0, -1)]


def pick_locale(available: Collection[str], requested: str | None, default: str) -> str:
    """The first candidate of ``requested`` that exists in ``available``, else ``default``."""
    for candidate in locale_candidates(requested):
        if candidate in available:
            return candidate
    return default


@lru_cache(maxsize=512)
def babel_locale(requested: str | None, content_locale: str) -> Locale:
    """The Babel locale for numbers and dates.

    The customer's full locale (``tr_TR``) when it speaks the language the text is written in;
    otherwise the content's locale, so an English fallback text never carries German number
    formats in the middle of an English sentence.
    """
    content_lang = content_locale.split("_")[0]
    candidates = [c for c in locale_candidates(requested) if c.split("_")[0] == content_lang]
    for candidate in [*candidates, *locale_candidates(content_locale), "en"]:
        try:
            return Locale.parse(candidate)
        except (UnknownLocaleError, ValueError):
            continue
    return Locale.parse("en")  # pragma: no cover - "en" always exists


@lru_cache(maxsize=512)
def zone(name: str | None) -> tzinfo:
    """The customer's time zone; an unknown or missing name means UTC rather than a crash."""
    if not name:
        return UTC
    try:
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


# --- filters -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Formatter:
    """What the filters need to know about the reader: language and time zone."""

    locale: Locale
    tz: tzinfo


def _formatter(ctx: Context) -> Formatter:
    fmt = ctx.get(FORMATTER_KEY)
    return fmt if isinstance(fmt, Formatter) else Formatter(Locale.parse("en"), UTC)


def _missing(value: Any) -> str | None:
    """'' for a missing value at runtime; ``str(StrictUndefined)`` raises during validation."""
    if isinstance(value, Undefined):
        return str(value)
    if value is None:
        return ""
    return None


def field(obj: Any, key: str, default: Any = None) -> Any:
    """Read ``key`` from a mapping or an object: the engine may pass dicts or models."""
    if isinstance(obj, Mapping):
        return obj.get(key, default)
    return getattr(obj, key, default)


def _decimal(value: Any) -> Decimal | None:
    try:
        return value if isinstance(value, Decimal) else Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


@pass_context
def money_filter(ctx: Context, amount: Any, currency: Any = None) -> str:
    """``{{ order.total | money(order.currency) }}``; currency defaults to the order's."""
    if (missing := _missing(amount)) is not None:
        return missing
    if currency is None or isinstance(currency, Undefined):
        currency = field(ctx.get("order"), "currency")
    number = _decimal(amount)
    if number is None or not currency:
        return str(amount)
    return format_currency(number, str(currency), locale=_formatter(ctx).locale)


@pass_context
def number_filter(ctx: Context, value: Any) -> str:
    if (missing := _missing(value)) is not None:
        return missing
    number = _decimal(value)
    return str(value) if number is None else format_decimal(number, locale=_formatter(ctx).locale)


@pass_context
def percent_filter(ctx: Context, value: Any) -> str:
    """``{{ 15 | percent }}`` -> ``15%`` / ``%15`` (Turkish puts the sign first)."""
    if (missing := _missing(value)) is not None:
        return missing
    number = _decimal(value)
    if number is None:
        return str(value)
    return format_percent(number / 100, locale=_formatter(ctx).locale)


def _as_local(value: Any, tz: tzinfo) -> datetime | date | None:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if isinstance(value, datetime):
        # Naive datetimes are UTC by the storage rule, then shown in the reader's zone.
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return aware.astimezone(tz)
    return value if isinstance(value, date) else None


@pass_context
def date_filter(ctx: Context, value: Any, format: str = "long") -> str:
    """``{{ order.placed_at | date }}`` -> ``2 Mart 2026``: the date in the reader's zone."""
    if (missing := _missing(value)) is not None:
        return missing
    fmt = _formatter(ctx)
    local = _as_local(value, fmt.tz)
    return str(value) if local is None else format_date(local, format, locale=fmt.locale)


@pass_context
def datetime_filter(ctx: Context, value: Any, format: str | None = None) -> str:
    """Long date and short time (no seconds) in the reader's zone, or a Babel ``format``."""
    if (missing := _missing(value)) is not None:
        return missing
    fmt = _formatter(ctx)
    local = _as_local(value, fmt.tz)
    if not isinstance(local, datetime):
        return str(value) if local is None else format_date(local, "long", locale=fmt.locale)
    if format:
        return format_datetime(local, format, locale=fmt.locale)
    pattern = str(fmt.locale.datetime_formats["medium"])
    day = format_date(local, "long", locale=fmt.locale)
    time = format_time(local, "short", locale=fmt.locale)
    return pattern.replace("{1}", day).replace("{0}", time)


FILTERS = {
    "money": money_filter,
    "number": number_filter,
    "percent": percent_filter,
    "date": date_filter,
    "datetime": datetime_filter,
}


# --- environments --------------------------------------------------------------------------


class LenientUndefined(ChainableUndefined):
    """Runtime undefined: empty when printed, chainable, and callable (``survey.link(5)``)."""

    __slots__ = ()

    def __call__(self, *args: Any, **kwargs: Any) -> LenientUndefined:  # type: ignore[override]  # Jinja's raises; this one answers
        return self


class _Sandbox(ImmutableSandboxedEnvironment):
    """Immutable: a template must not change the context (``order.items.clear()``) that the
    engine reuses for the next part or message."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        # Marketers write ``order.items``; on a dict Jinja would find the ``dict.items``
        # method first. A mapping is a data record here: keys only, never its methods.
        if isinstance(obj, Mapping) and isinstance(attribute, str):
            try:
                return obj[attribute]
            except (KeyError, TypeError):
                return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)

    def unsafe_undefined(self, obj: Any, attribute: str) -> Undefined:
        # The stock sandbox returns an Undefined that a lenient environment would print as ''.
        # Probing for internals is never a typo: fail loudly in both modes.
        raise SecurityError(
            f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe"
        )


def _autoescape(name: str | None) -> bool:
    # Only the html part of an email (and the html layout) is HTML; escaping a subject or an
    # SMS would put "&amp;" in front of customers.
    return name is not None and name.endswith(".html")


def _shown(value: Any) -> Any:
    # A stored customer often has no first name: "Hi None," would reach the customer. Shown
    # as nothing instead, like a missing value; ``{{ customer.first_name or "there" }}`` still
    # works, since None stays None until it is printed.
    return "" if value is None else value


def _environment(undefined: type[Undefined]) -> SandboxedEnvironment:
    env = _Sandbox(
        undefined=undefined, autoescape=_autoescape, trim_blocks=True, lstrip_blocks=True,
        finalize=_shown,
    )
    env.filters.update(FILTERS)
    return env


@dataclass(frozen=True)
class Part:
    """One compiled piece of text (``email.html`` of ``shipping_update/tr.yaml``, a layout...).

    ``offset`` is the file line of the text's first line, so Jinja's line numbers can be
    reported as lines of the YAML file the marketer edits.
    """

    name: str
    path: str
    offset: int
    runtime: Template
    strict: Template

    def file_line(self, lineno: int | None) -> int:
        return self.offset + max((lineno or 1) - 1, 0)

    def render(self, context: Mapping[str, Any], strict: bool = False) -> str:
        return (self.strict if strict else self.runtime).render(context)


@dataclass(frozen=True)
class StaticIssue:
    lineno: int
    message: str
    hint: str


class Compiler:
    """Owns the two environments; compiles each text once for both."""

    def __init__(self) -> None:
        self.runtime_env = _environment(LenientUndefined)
        self.strict_env = _environment(StrictUndefined)

    def compile(
        self, source: str, name: str, path: str, offset: int, allowed: frozenset[str]
    ) -> tuple[Part, list[StaticIssue]]:
        """Raises :class:`jinja2.TemplateSyntaxError` (with ``lineno``) on a syntax error."""
        tree = self.strict_env.parse(source, name, name)
        issues = list(_static_issues(tree, allowed, set(self.strict_env.globals)))
        code = self.strict_env.compile(tree, name, name)
        runtime = self.runtime_env.template_class.from_code(
            self.runtime_env, code, self.runtime_env.make_globals(None)
        )
        strict = self.strict_env.template_class.from_code(
            self.strict_env, code, self.strict_env.make_globals(None)
        )
        return Part(name, path, offset, runtime, strict), issues


def _static_issues(
    tree: nodes.Template, allowed: Collection[str], builtins: Collection[str]
) -> Iterator[StaticIssue]:
    """Problems visible without rendering, so they are found even in branches not taken."""
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        attr = node.attr if isinstance(node, nodes.Getattr) else None
        if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            attr = node.arg.value if isinstance(node.arg.value, str) else None
        if attr and attr.startswith("_"):
            yield StaticIssue(
                node.lineno,
                f"'{attr}' is not allowed: templates may not read private attributes",
                "use only the documented render context (customer, order, shop, ...)",
            )
    stored = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
    known = set(allowed) | set(builtins) | stored | _JINJA_NAMES
    for name in tree.find_all(nodes.Name):
        if name.ctx == "load" and name.name not in known:
            yield StaticIssue(
                name.lineno,
                f"unknown variable '{name.name}'",
                "available: " + ", ".join(sorted(allowed)),
            )


def error_line(exc: BaseException, names: Collection[str]) -> tuple[str, int] | None:
    """The innermost template frame among ``names`` in ``exc``'s traceback: (name, line).

    Jinja rewrites tracebacks so template frames carry the template name as file name and the
    template line as line number; that is how a render error is mapped back to the YAML file.
    """
    found: tuple[str, int] | None = None
    tb: TracebackType | None = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename in names:
            found = (filename, tb.tb_lineno)
        tb = tb.tb_next
    return found


def formatter_for(requested: str | None, content_locale: str, tz_name: str | None) -> Formatter:
    return Formatter(babel_locale(requested, content_locale), zone(tz_name))


# --- a variant's subject line ---------------------------------------------------------------
# A message split may give a variant its own subject (``subject:`` in the journey YAML, one text
# or one per locale). It is marketer text like the template's subject: compiled in the same
# sandbox and rendered with the same context in place of it.

#: The key of a subject for every locale without its own.
ANY_LOCALE = "*"


def pick_subject(subjects: Mapping[str, str], locale: str, requested: str | None = None
                 ) -> str | None:
    """The subject for a message written in ``locale`` to a customer who asked for
    ``requested``: the most specific entry in the text's language (``pl_PL`` for a Polish
    customer reading the ``pl`` text; a German customer reading the English text gets the
    English subject), else the ``"*"`` one, else None (the template's own subject)."""
    by_locale = {normalize_locale(key) or key: text for key, text in subjects.items()}
    language = locale.split("_")[0]
    mine = [c for c in locale_candidates(requested) if c.split("_")[0] == language]
    for candidate in [*mine, *locale_candidates(locale)]:
        if candidate in by_locale:
            return by_locale[candidate]
    return subjects.get(ANY_LOCALE)


@lru_cache(maxsize=1)
def _subject_compiler() -> Compiler:
    return Compiler()


@lru_cache(maxsize=512)
def compile_subject(text: str) -> tuple[Part, tuple[StaticIssue, ...]]:
    """A variant's subject compiled once per text; raises
    :class:`jinja2.TemplateSyntaxError`. The issues are what ``aftersale validate`` reports
    for a template's own subject (an unknown name, a private attribute)."""
    part, issues = _subject_compiler().compile(text, "variant subject", "<journey>", 1,
                                               CONTEXT_KEYS)
    return part, tuple(issues)

