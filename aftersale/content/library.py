"""Loading and validating the content directory; the :class:`ContentLibrary` the engine uses.

Directory layout (marketers edit these files)::

    content/
      shop.yaml                 name, url, support_email, help_text and unsubscribe_label
                                (the last two per locale: {en: ..., tr: ...} or one text),
                                and the shop's switches (SHOP_SWITCHES, true/false), which
                                journey conditions read as ``shop.<name>``
      catalog.yaml              product guides (format documented in the file itself)
      _layout/email.html        html wrapper, {{ body }} is the message html (optional)
      _layout/email.txt         text wrapper, {{ body }} is the message text (optional)
      _layout/email.tr.html     a per-locale wrapper wins over the generic one (optional)
      <template>/<locale>.yaml  one message per file: email {subject, text, html}, sms,
                                whatsapp; top-level ``transactional: true`` (read from the
                                default-locale file) and ``whatsapp_template`` (reserved)

The default-locale file (``en.yaml``) defines which channels a template has; other locales may
leave a channel out (that channel falls back to the default text) but may not add one.

Render context: the dict the engine passes to :meth:`ContentLibrary.render`. Every key is
optional at run time (a missing value, or None, renders as ''), and ``aftersale validate`` renders each
template against :func:`sample_context`, where a misspelt name is an error::

    customer: {id, first_name, last_name, email, phone, locale, timezone, country}
    order:    {id, number, total (Decimal), currency, placed_at (aware datetime, UTC),
               items: [{sku, title, category, quantity, price (Decimal)}],
               tracking: {carrier, number, url} or None}
    shop:     {name, url, support_email, help_text, unsubscribe_label, and the switches}
              filled from shop.yaml (help_text etc. in the message's language); keys the
              caller passes win
    links:    {unsubscribe: str | None, referral: str | None}
    survey:   {kind: "nps" | "csat" | "ces", scale: [int], link: callable(int) -> str,
               honeypot: str (the hidden link the e-mail layout carries for mail scanners)} or None
    guides:   [Guide(key, title, url, tips)], filled from catalog.yaml for order.items
              when the caller does not pass it
    offer:    {code, percent} or None
    response: {kind, score, comment} or None    the survey answer, for alert_detractor
    experiment: an experiment's decision, for alert_experiment_decided, or None: {journey,
              name, version, outcome, variant, decided_at, goal, verdict, variants: [{name,
              control, assigned, sent, opened, clicked, goal, numerator, denominator,
              difference, ci_low, ci_high}]}
    shipment: the parcel of a shipment journey, or None: {id, status, raw_status, moment,
              carrier, tracking_number, tracking_url, destination_country, is_international,
              estimated_delivery_at, first_estimated_delivery_at (aware datetimes or None),
              has_estimate, days_late, days_since_update, last_message, status_at,
              last_update_at, shipped_at, delivered_at}
    added by the library: lang ("tr"), transactional (bool); layouts also get subject, body

Filters: ``money(currency)`` (currency defaults to order.currency), ``date``, ``datetime``,
``number``, ``percent`` (15 -> "15%" / "%15"), all in the customer's locale and time zone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from dataclasses import field as dc_field
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

from babel import Locale, UnknownLocaleError
from jinja2 import TemplateSyntaxError
from markupsafe import Markup

from aftersale.content.catalog import Catalog, Guide
from aftersale.content.render import (
    CONTEXT_KEYS,
    FORMATTER_KEY,
    LAYOUT_KEYS,
    Compiler,
    Part,
    Rendered,
    compile_subject,
    error_line,
    field,
    formatter_for,
    normalize_locale,
    pick_locale,
    pick_subject,
)
from aftersale.core.errors import AftersaleError, DefinitionError, Problem
from aftersale.core.survey_scales import SURVEY_KINDS, scale
from aftersale.core.yaml_lines import CONTENT, load_located

CHANNELS = ("email", "sms", "whatsapp")
_EMAIL_PARTS = ("subject", "text", "html")
#: Parts a channel needs before it can be rendered.
_REQUIRED = {"email": {"email.subject", "email.text"}, "sms": {"sms"}, "whatsapp": {"whatsapp"}}
_TOP_KEYS = frozenset({*CHANNELS, "transactional", "survey", "whatsapp_template"})
#: The shop's on/off settings in shop.yaml, with their defaults: what a shop decides about its
#: messages beyond the texts. Journey conditions read them as ``shop.<name>``.
SHOP_SWITCHES: dict[str, bool] = {
    # "Arriving today" when the carrier has the parcel out for delivery (delivery-care).
    "arriving_today_messages": False,
}
_SHOP_KEYS = frozenset({"name", "url", "support_email", "help_text", "unsubscribe_label",
                        *SHOP_SWITCHES})
_RENDER_HINT = "compare the names with the render context documented in aftersale/content"

#: ``path inside the YAML document -> (line of the key, first line of the value's text)``.
Lines = dict[tuple[str | int, ...], tuple[int, int]]


class UnknownTemplate(AftersaleError, KeyError):
    """A journey asked for a template or channel the content directory does not have."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


# --- YAML with line numbers ------------------------------------------------------------------


def read_yaml(path: Path) -> tuple[Any, Lines, list[Problem]]:
    """A content file through the one YAML reader (:mod:`aftersale.core.yaml_lines`), with content's
    rules: keys kept as written (``no:`` stays "no", not False), a key written twice is a
    problem, and a file with a value that cannot be read is not read at all."""
    doc, problems = load_located(path, rules=CONTENT)
    if doc is None:
        return None, {}, problems
    lines = {loc: (line, doc.text_lines.get(loc, line)) for loc, line in doc.lines.items()}
    return doc.data, lines, problems


# --- the loaded library --------------------------------------------------------------------


@dataclass
class _LocaleFile:
    path: str
    locale: str
    channels: frozenset[str]
    transactional: bool | None  # as written in this file; only the default locale's counts
    survey: str | None  # the survey this message asks (nps, csat, ces); default locale's counts
    lines: dict[str, int]  # top-level key -> line, for problems found after parsing
    whatsapp_sid: str | None = None  # an approved WhatsApp template (Twilio content SID)
    parts: dict[str, Part] = dc_field(default_factory=dict)  # "email.subject", "sms", ...


@dataclass
class _Template:
    name: str
    default_path: str
    transactional: bool
    files: dict[str, _LocaleFile]
    survey: str | None = None


@dataclass(frozen=True)
class _Shop:
    name: str = ""
    url: str = ""
    support_email: str = ""
    help_text: Mapping[str, str] = dc_field(default_factory=dict)
    unsubscribe_label: Mapping[str, str] = dc_field(default_factory=lambda: {"en": "Unsubscribe"})
    switches: Mapping[str, bool] = dc_field(default_factory=lambda: dict(SHOP_SWITCHES))

    def for_locale(self, locale: str, default: str) -> dict[str, Any]:
        def pick(values: Mapping[str, str]) -> str:
            return values.get(pick_locale(values.keys(), locale, default), "")

        return {"name": self.name, "url": self.url, "support_email": self.support_email,
                "help_text": pick(self.help_text),
                "unsubscribe_label": pick(self.unsubscribe_label), **self.switches}


class ContentLibrary:
    """Every message template, compiled once; immutable and safe to share between threads."""

    def __init__(self, content_dir: Path, default_locale: str, templates: dict[str, _Template],
                 shop: _Shop, catalog: Catalog, layouts: dict[tuple[str, str], Part]):
        self.content_dir = content_dir
        self.default_locale = default_locale
        self._templates = templates
        self._shop = shop
        self._catalog = catalog
        self._layouts = layouts

    # -- loading

    @classmethod
    def load(cls, content_dir: Path, default_locale: str = "en") -> ContentLibrary:
        """The library, or :class:`DefinitionError` listing every problem found."""
        library, problems = cls.check(content_dir, default_locale)
        if problems or library is None:
            raise DefinitionError(problems)
        return library

    @staticmethod
    def check(
        content_dir: Path, default_locale: str = "en"
    ) -> tuple[ContentLibrary | None, list[Problem]]:
        """Every problem in the directory (sorted by file and line); the library when none."""
        content_dir = Path(content_dir)
        default = normalize_locale(default_locale)
        if default is None:
            raise ValueError(f"default locale {default_locale!r} is not a locale name")
        if not content_dir.is_dir():
            return None, [Problem(str(content_dir), 1, "content directory not found",
                                  "set AFTERSALE_CONTENT_DIR to the folder holding shop.yaml")]
        reader = _Reader(content_dir, default)
        library = reader.read()
        problems = list(reader.problems)
        # A trial render usually trips over what reading already reported (an unknown name,
        # a private attribute): one problem per line is enough.
        seen = {(p.path, p.line) for p in problems}
        for problem in library._try_render_all():
            if (problem.path, problem.line) not in seen:
                seen.add((problem.path, problem.line))
                problems.append(problem)
        problems.sort(key=lambda p: (p.path, p.line))
        return (None if problems else library), problems

    # -- questions

    def templates(self) -> set[str]:
        return set(self._templates)

    def channels_for(self, template: str) -> set[str]:
        return set(self._template(template).files[self.default_locale].channels)

    def has(self, template: str, channel: str) -> bool:
        return template in self._templates and channel in self.channels_for(template)

    def locales(self) -> set[str]:
        return {loc for t in self._templates.values() for loc in t.files}

    def resolve_locale(self, template: str, locale: str | None) -> str:
        return pick_locale(self._template(template).files.keys(), locale, self.default_locale)

    def is_transactional(self, template: str) -> bool:
        return self._template(template).transactional

    def shop_switches(self) -> dict[str, bool]:
        """shop.yaml's switches (:data:`SHOP_SWITCHES`, defaults filled in): the ``shop``
        root of journey conditions."""
        return dict(self._shop.switches)

    def survey_kind(self, template: str) -> str | None:
        """The survey a template asks (``survey: nps`` in its default-locale file)."""
        return self._template(template).survey

    def guides_for(self, items: list[dict], locale: str) -> list[Guide]:
        return self._catalog.guides_for(items, locale)

    # -- rendering

    def render(self, template: str, channel: str, locale: str | None, context: dict,
               subject: Mapping[str, str] | None = None) -> Rendered:
        """Render one message; ``locale`` None means ``customer.locale`` from the context.
        ``subject``: an experiment variant's subject lines (:func:`pick_subject`), rendered
        in place of the template's own where one fits the message's locale."""
        tmpl = self._template(template)
        if channel not in tmpl.files[self.default_locale].channels:
            raise UnknownTemplate(f"content template '{template}' has no {channel} message")
        requested = locale or field(context.get("customer"), "locale")
        resolved = self.resolve_locale(template, requested)
        if channel not in tmpl.files[resolved].channels:
            resolved = self.default_locale  # this language left the channel out
        return self._render_exact(tmpl, resolved, channel, requested, context, strict=False,
                                  subject=subject)

    def whatsapp_template(self, template: str, locale: str | None, context: dict
                          ) -> tuple[str, dict[str, str]] | None:
        """The approved WhatsApp template (content SID and rendered variables) to use outside
        the 24-hour window, in the customer's language when that file declares one."""
        tmpl = self._template(template)
        requested = locale or field(context.get("customer"), "locale")
        for candidate in (self.resolve_locale(template, requested), self.default_locale):
            file = tmpl.files.get(candidate)
            if file is not None and file.whatsapp_sid:
                ctx = self._context(context, requested, candidate, tmpl.transactional)
                prefix = "whatsapp_template."
                variables = {key.removeprefix(prefix): part.render(ctx, False).strip()
                             for key, part in file.parts.items() if key.startswith(prefix)}
                # Twilio refuses an empty variable (21656) and fails the message for good; left
                # out, it takes the default the template was approved with.
                return file.whatsapp_sid, {k: v for k, v in variables.items() if v}
        return None

    def _template(self, name: str) -> _Template:
        try:
            return self._templates[name]
        except KeyError:
            raise UnknownTemplate(f"no content template '{name}' in {self.content_dir}") from None

    def _render_exact(self, tmpl: _Template, locale: str, channel: str, requested: str | None,
                      context: Mapping[str, Any], strict: bool,
                      subject: Mapping[str, str] | None = None) -> Rendered:
        parts = tmpl.files[locale].parts
        ctx = self._context(context, requested, locale, tmpl.transactional)
        if channel != "email":
            text = parts[channel].render(ctx, strict).strip()
            return Rendered(None, text, None, locale, tmpl.transactional)
        # A subject is one header line whatever the template's line breaks.
        override = pick_subject(subject, locale, requested) if subject else None
        subject_part = parts["email.subject"] if override is None else compile_subject(override)[0]
        subject_line = " ".join(subject_part.render(ctx, strict).split())
        text = parts["email.text"].render(ctx, strict).strip()
        text = self._wrap("txt", locale, ctx, subject_line, text, strict)
        html = None
        if "email.html" in parts:
            body = Markup(parts["email.html"].render(ctx, strict).strip())
            html = self._wrap("html", locale, ctx, subject_line, body, strict)
        return Rendered(subject_line, text, html, locale, tmpl.transactional)

    def _wrap(self, kind: str, locale: str, ctx: dict[str, Any], subject: str, body: str,
              strict: bool) -> str:
        layout = self._layout(kind, locale)
        if layout is None:
            return body.strip()
        return layout.render({**ctx, "subject": subject, "body": body}, strict).strip()

    def _layout(self, kind: str, locale: str) -> Part | None:
        language = locale.split("_")[0]
        for key in (locale, language, "", self.default_locale):
            if (kind, key) in self._layouts:
                return self._layouts[(kind, key)]
        return None

    def _context(self, context: Mapping[str, Any], requested: str | None, locale: str,
                 transactional: bool) -> dict[str, Any]:
        ctx = dict(context)
        shop = self._shop.for_locale(locale, self.default_locale)
        if isinstance(context.get("shop"), Mapping):
            shop.update(context["shop"])
        ctx["shop"] = shop
        if ctx.get("guides") is None:
            # Guides in the language of the text, not the customer's, so they read alike.
            ctx["guides"] = self._catalog.guides_for(
                field(context.get("order"), "items") or [], locale)
        links = context.get("links")
        if links is None or isinstance(links, Mapping):
            ctx["links"] = {"unsubscribe": None, "referral": None, **(links or {})}
        ctx["lang"] = locale.split("_")[0]
        ctx["transactional"] = transactional
        tz_name = field(context.get("customer"), "timezone")
        ctx[FORMATTER_KEY] = formatter_for(requested, locale, tz_name)
        return ctx

    # -- validation by rendering

    def _try_render_all(self) -> list[Problem]:
        """Render every message twice: strictly with full sample data (typos, unsafe access)
        and leniently with almost nothing (a missing optional value must not crash a send)."""
        problems: list[Problem] = []
        sparse = {"customer": {"first_name": "Sam"}, "order": {"number": "#1002"}}
        for tmpl in self._templates.values():
            full = sample_context(tmpl.name)
            if not self._catalog.guides_for(full["order"]["items"], self.default_locale):
                full["guides"] = [_SAMPLE_GUIDE]
            for locale, file in tmpl.files.items():
                names = {p.name: p for p in [*file.parts.values(), *self._layouts.values()]}
                for channel in sorted(file.channels):
                    if not _REQUIRED[channel] <= file.parts.keys():
                        continue  # a part did not compile: already reported
                    failure = _first_failure(
                        partial(self._render_exact, tmpl, locale, channel, locale), full, sparse)
                    if failure:
                        problems.append(_render_problem(*failure, names, file, channel))
                # The approved WhatsApp template's variables, rendered as whatsapp_template()
                # does: they are sent only outside the 24-hour window, too late to find a typo.
                for key, part in file.parts.items():
                    if not key.startswith("whatsapp_template."):
                        continue
                    failure = _first_failure(
                        partial(self._render_part, part, locale, tmpl.transactional), full, sparse)
                    if failure:
                        problems.append(_render_problem(*failure, {part.name: part}, file, key))
        return problems

    def _render_part(self, part: Part, locale: str, transactional: bool,
                     context: Mapping[str, Any], strict: bool) -> str:
        return part.render(self._context(context, locale, locale, transactional), strict)


def _first_failure(render: Callable[[Mapping[str, Any], bool], object],
                   full: Mapping[str, Any], sparse: Mapping[str, Any]
                   ) -> tuple[Exception, bool] | None:
    """Render strictly with full sample data, then leniently with almost nothing; the first
    error and whether the render was strict. After a strict error the lenient render would
    only repeat it."""
    for strict, ctx in ((True, full), (False, sparse)):
        try:
            render(ctx, strict)
        except Exception as exc:  # noqa: BLE001 - marketer text can raise anything
            return exc, strict
    return None


def _render_problem(exc: Exception, strict: bool, names: Mapping[str, Part], file: _LocaleFile,
                    channel: str) -> Problem:
    found = error_line(exc, names)
    part = names[found[0]] if found else None
    label = part.name.rsplit("#", 1)[-1] if part else channel
    when = "" if strict else " when optional data (tracking, survey, offer...) is missing"
    path, line = (part.path, part.file_line(found[1])) if part and found else (file.path, 1)
    return Problem(path, line, f"{label} does not render{when}: {exc}", _RENDER_HINT)


# --- reading the directory -------------------------------------------------------------------


class _Reader:
    """Reads content_dir, collecting every problem instead of stopping at the first."""

    def __init__(self, content_dir: Path, default_locale: str):
        self.dir = content_dir
        self.default = default_locale
        self.problems: list[Problem] = []
        self.compiler = Compiler()

    def problem(self, path: Path | str, line: int, message: str, hint: str = "") -> None:
        self.problems.append(Problem(str(path), line, message, hint))

    def read(self) -> ContentLibrary:
        shop = self.shop()
        catalog = self.catalog()
        layouts = self.layouts()
        templates = {}
        for directory in sorted(self.dir.iterdir()):
            if directory.is_dir() and not directory.name.startswith(("_", ".")):
                tmpl = self.template(directory)
                if tmpl is not None:
                    templates[tmpl.name] = tmpl
        return ContentLibrary(self.dir, self.default, templates, shop, catalog, layouts)

    # -- shop.yaml and catalog.yaml

    def shop(self) -> _Shop:
        path = self.dir / "shop.yaml"
        if not path.is_file():
            self.problem(path, 1, "shop.yaml is missing",
                         "create it with name, url, support_email and help_text")
            return _Shop()
        data, lines, problems = read_yaml(path)
        self.problems += problems
        if data is None and problems:  # a syntax error; duplicate keys still leave data
            return _Shop()
        if not isinstance(data, dict):
            self.problem(path, 1, "shop.yaml must be a mapping (name, url, support_email, ...)")
            return _Shop()
        for key in sorted(data.keys() - _SHOP_KEYS):
            self.problem(path, lines[(key,)][0], f"unknown key '{key}'",
                         "allowed: " + ", ".join(sorted(_SHOP_KEYS)))
        for key in ("name", "url", "support_email"):
            if not isinstance(data.get(key), str) or not data[key].strip():
                line = lines.get((key,), (1, 1))[0]
                self.problem(path, line, f"shop.yaml needs '{key}' as text")
        help_text = self.per_locale(path, lines, data, "help_text", required=True)
        label = self.per_locale(path, lines, data, "unsubscribe_label", required=False)
        switches = dict(SHOP_SWITCHES)
        for key in SHOP_SWITCHES:
            if key not in data:
                continue
            if isinstance(data[key], bool):
                switches[key] = data[key]
            else:
                self.problem(path, lines[(key,)][0], f"'{key}' must be true or false",
                             f"write {key}: {str(SHOP_SWITCHES[key]).lower()}")
        return _Shop(str(data.get("name") or ""), str(data.get("url") or ""),
                     str(data.get("support_email") or ""), help_text,
                     label or {self.default: "Unsubscribe"}, switches)

    def per_locale(self, path: Path, lines: Lines, data: dict, key: str,
                   required: bool) -> dict[str, str]:
        value = data.get(key)
        line = lines.get((key,), (1, 1))[0]
        if value is None:
            if required:
                self.problem(path, line, f"shop.yaml needs '{key}'",
                             f"{key}: {{{self.default}: ..., tr: ...}}")
            return {}
        if isinstance(value, str):
            return {self.default: value}
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            self.problem(path, line, f"'{key}' must be text, or one text per locale")
            return {}
        result = {normalize_locale(k) or k: v for k, v in value.items()}
        if self.default not in result:
            self.problem(path, line, f"'{key}' has no text for the default locale "
                         f"'{self.default}'", f"add {self.default}: ...")
        return result

    def catalog(self) -> Catalog:
        path = self.dir / "catalog.yaml"
        if not path.is_file():
            return Catalog.empty(self.default)  # no guides is a valid choice
        data, lines, problems = read_yaml(path)
        self.problems += problems
        if data is None and problems:
            return Catalog.empty(self.default)
        catalog, problems = Catalog.from_data(data, lines, str(path), self.default)
        self.problems += problems
        return catalog

    def layouts(self) -> dict[tuple[str, str], Part]:
        """``_layout/email[.<locale>].(html|txt)`` keyed by (kind, locale or "")."""
        layouts: dict[tuple[str, str], Part] = {}
        folder = self.dir / "_layout"
        if not folder.is_dir():
            return layouts
        for path in sorted(folder.iterdir()):
            stem, _, kind = path.name.rpartition(".")
            base, _, locale = stem.partition(".")
            if base != "email" or kind not in ("html", "txt"):
                continue
            norm = normalize_locale(locale) if locale else ""
            if norm is None:
                self.problem(path, 1, f"'{locale}' is not a locale name",
                             "name layouts email.html, email.txt or email.tr.html")
                continue
            try:
                source = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                self.problem(path, 1, f"cannot read the file: {exc}")
                continue
            part = self.compile(source, str(path), path, 1, LAYOUT_KEYS, "layout")
            if part is not None:
                layouts[(kind, norm)] = part
        return layouts

    # -- one template directory

    def template(self, directory: Path) -> _Template | None:
        paths: dict[str, Path] = {}
        for path in sorted(directory.iterdir()):
            if path.suffix not in (".yaml", ".yml") or path.name.startswith("."):
                continue
            locale = normalize_locale(path.stem)
            if locale is None or not _babel_knows(locale):
                self.problem(path, 1, f"'{path.stem}' is not a locale name",
                             "name locale files like en.yaml, tr.yaml or pt_BR.yaml")
            elif locale in paths:
                self.problem(path, 1, f"a second file for locale '{locale}' "
                             f"(first: {paths[locale].name})", "keep one of them")
            else:
                paths[locale] = path
        files = {loc: f for loc, p in paths.items() if (f := self.locale_file(p, loc))}
        default_path = directory / f"{self.default}.yaml"
        if self.default not in paths:
            anchor = next(iter(paths.values()), directory)
            self.problem(anchor, 1, f"template '{directory.name}' has no {default_path.name}",
                         f"create {default_path}: it defines the channels and is the "
                         "fallback for every other language")
            return None
        default = files.get(self.default)
        if default is None:
            return None  # its problems are already reported
        transactional = self.consistent(files)
        return _Template(directory.name, str(paths[self.default]), transactional, files,
                         default.survey)

    def consistent(self, files: dict[str, _LocaleFile]) -> bool:
        """Other locales may drop a channel but not add one, nor change ``transactional``."""
        default = files[self.default]
        name = Path(default.path).name
        transactional = bool(default.transactional)
        for file in files.values():
            for channel in sorted(file.channels - default.channels):
                self.problem(file.path, file.lines.get(channel, 1),
                             f"'{channel}' is not in {name}",
                             f"add it to {name} first: the default locale decides which "
                             "channels a template has")
            flag = file.transactional
            if file is not default and flag is not None and flag != transactional:
                self.problem(file.path, file.lines.get("transactional", 1),
                             f"'transactional' differs from {name}", f"set it only in {name}")
        return transactional

    def locale_file(self, path: Path, locale: str) -> _LocaleFile | None:
        data, lines, problems = read_yaml(path)
        self.problems += problems
        if data is None and problems:
            return None
        if data is None:
            self.problem(path, 1, "the file is empty", "add email:, sms: or whatsapp:")
            return None
        if not isinstance(data, dict):
            self.problem(path, 1, "the file must be a mapping of channels",
                         "start lines with email:, sms: or whatsapp:")
            return None
        for key in data:
            if key not in _TOP_KEYS:
                self.problem(path, lines[(key,)][0], f"unknown key '{key}'",
                             "allowed: " + ", ".join(sorted(_TOP_KEYS)))
        flag = data.get("transactional")
        if flag is not None and not isinstance(flag, bool):
            self.problem(path, lines[("transactional",)][0],
                         "'transactional' must be true or false")
        survey = data.get("survey")
        if survey is not None and survey not in SURVEY_KINDS:
            self.problem(path, lines[("survey",)][0], f"unknown survey '{survey}'",
                         "use nps, csat or ces")
        approved = data.get("whatsapp_template")
        if approved is not None and not (
                isinstance(approved, dict) and str(approved.get("content_sid", "")).startswith("HX")
                and isinstance(approved.get("variables", {}), dict)):
            self.problem(path, lines[("whatsapp_template",)][0], "'whatsapp_template' needs "
                         "content_sid (HX...) and optional variables",
                         "content_sid: HX..., variables: {\"1\": \"{{ customer.first_name }}\"}")
            approved = None
        file = _LocaleFile(
            str(path), locale, frozenset(c for c in CHANNELS if c in data),
            flag if isinstance(flag, bool) else None,
            survey if survey in SURVEY_KINDS else None,
            {str(k[0]): v[0] for k, v in lines.items()
                                                       if len(k) == 1})
        for channel in CHANNELS:
            if channel in data:
                self.channel(file, path, lines, channel, data[channel])
        if approved is not None:
            file.whatsapp_sid = str(approved["content_sid"])
            for name, source in (approved.get("variables") or {}).items():
                line = lines.get(("whatsapp_template", "variables", name), (1, 1))
                self.add_part(file, path, f"whatsapp_template.{name}", str(source), line[1])
        return file

    def channel(self, file: _LocaleFile, path: Path, lines: Lines, channel: str,
                value: Any) -> None:
        key_line = lines[(channel,)][0]
        if channel != "email":
            if not isinstance(value, str) or not value.strip():
                self.problem(path, key_line, f"'{channel}' needs the message text",
                             f"remove '{channel}:' if this template has no {channel} message")
                return
            self.add_part(file, path, channel, value, lines[(channel,)][1])
            return
        if not isinstance(value, dict):
            self.problem(path, key_line, "'email' needs subject, text and optionally html")
            return
        for key in value:
            if key not in _EMAIL_PARTS:
                self.problem(path, lines[("email", key)][0], f"unknown key '{key}' in email",
                             "allowed: subject, text, html")
        for key in _EMAIL_PARTS:
            text = value.get(key)
            if text is None:
                if key != "html":
                    self.problem(path, key_line, f"email has no {key}", f"add {key}: ...")
                continue
            if not isinstance(text, str) or not text.strip():
                self.problem(path, lines[("email", key)][0], f"email {key} must be text")
                continue
            self.add_part(file, path, f"email.{key}", text, lines[("email", key)][1])

    def add_part(self, file: _LocaleFile, path: Path, key: str, source: str,
                 offset: int) -> None:
        part = self.compile(source, f"{path}#{key}", path, offset, CONTEXT_KEYS, key)
        if part is not None:
            file.parts[key] = part

    def compile(self, source: str, name: str, path: Path, offset: int,
                allowed: frozenset[str], label: str) -> Part | None:
        try:
            part, issues = self.compiler.compile(source, name, str(path), offset, allowed)
        except TemplateSyntaxError as exc:
            line = offset + max((exc.lineno or 1) - 1, 0)
            self.problem(path, line, f"{label}: {exc.message}", _syntax_hint(exc))
            return None
        for issue in issues:
            self.problem(path, part.file_line(issue.lineno), f"{label}: {issue.message}",
                         issue.hint)
        return part


def _syntax_hint(exc: TemplateSyntaxError) -> str:
    if "filter" in (exc.message or ""):
        return "filters: money, date, datetime, number, percent and Jinja's built-in ones"
    return "Jinja syntax: {{ value }}, {% if x %}...{% endif %}, {% for x in xs %}...{% endfor %}"


def _babel_knows(locale: str) -> bool:
    try:
        Locale.parse(locale)
    except (UnknownLocaleError, ValueError):
        return False
    return True


# --- sample data ----------------------------------------------------------------------------

_SAMPLE_GUIDE = Guide("sample", "Getting started", "https://shop.example/guides/start",
                      ["Charge it fully before first use."])


def sample_context(template: str, locale: str = "en") -> dict[str, Any]:
    """A realistic context (a drone order with tracking) for validation and previews.

    Every documented key is present, so rendering it strictly finds misspelt names. The
    survey kind follows the template name (``nps_survey`` -> nps, ``ces_checkin`` -> ces).
    """
    kind = next((k for k in SURVEY_KINDS if template.startswith(k)), "csat")
    def link(n: int) -> str:
        return f"https://shop.example/s/tok123?score={n}"

    total = Decimal("129.90")
    return {
        "customer": {"id": "c-1", "first_name": "Ayşe", "last_name": "Yılmaz",
                     "email": "ayse@example.com", "phone": "+905321234567", "locale": locale,
                     "timezone": "Europe/Istanbul", "country": "TR"},
        "order": {"id": "o-1", "number": "#1001", "total": total, "currency": "TRY",
                  "placed_at": datetime(2026, 3, 1, 7, 0, tzinfo=UTC),
                  "items": [{"sku": "DRN-1", "title": "Drone X", "category": "drones",
                             "quantity": 1, "price": total}],
                  "tracking": {"carrier": "Yurtiçi Kargo", "number": "YK123456789",
                               "url": "https://track.example/YK123456789"}},
        "links": {"unsubscribe": "https://shop.example/u/tok123",
                  "referral": "https://shop.example/r/AYSE10"},
        "survey": {"kind": kind, "scale": scale(kind), "link": link,
                   "honeypot": "https://shop.example/s/tok123?hp=1"},
        "offer": {"code": "COMEBACK15", "percent": 15},
        "response": {"kind": "nps", "score": 3, "comment": "The drone arrived late."},
        "experiment": {
            "journey": "onboarding", "name": "tutorial_offer", "version": "3f9c0a1b",
            "outcome": "winner", "variant": "guide_and_offer",
            "decided_at": "2026-06-30T12:00:00+00:00",
            "goal": "repeat purchase within 30 days",
            "verdict": "guide_and_offer wins: +4.1 points of repeat purchase (95% CI +1.2 to +7.0)",
            "variants": [
                {"name": "guide", "control": True, "assigned": 410, "sent": 402, "opened": 250,
                 "clicked": 61, "goal": 10.2, "numerator": 41, "denominator": 402,
                 "difference": None, "ci_low": None, "ci_high": None},
                {"name": "guide_and_offer", "control": False, "assigned": 400, "sent": 396,
                 "opened": 260, "clicked": 80, "goal": 14.3, "numerator": 57, "denominator": 398,
                 "difference": 4.1, "ci_low": 1.2, "ci_high": 7.0}]},
        "shipment": {
            "id": "shopify:5001", "status": "attempted_delivery",
            "raw_status": "attempted_delivery", "moment": "attempted_delivery",
            "carrier": "Yurtiçi Kargo", "tracking_number": "YK123456789",
            "tracking_url": "https://track.example/YK123456789", "destination_country": "TR",
            "is_international": False,
            "estimated_delivery_at": datetime(2026, 3, 5, 15, 0, tzinfo=UTC),
            "first_estimated_delivery_at": datetime(2026, 3, 4, 15, 0, tzinfo=UTC),
            "has_estimate": True, "days_late": 1, "days_since_update": 0,
            "missed_date": None, "new_estimate": datetime(2026, 3, 5, 15, 0, tzinfo=UTC),
            "last_message": "Recipient not at home; a notice was left",
            "status_at": datetime(2026, 3, 4, 11, 0, tzinfo=UTC),
            "last_update_at": datetime(2026, 3, 4, 11, 0, tzinfo=UTC),
            "shipped_at": datetime(2026, 3, 2, 9, 0, tzinfo=UTC), "delivered_at": None},
    }
