"""The product guide catalogue (``content/catalog.yaml``): which how-to guides a buyer gets.

A guide applies to an order item when its ``match`` names the item's category or SKU. An item
that no guide matches gets the guides whose ``fallback_for`` names its category (a generic care
guide for mugs, say); an item matched by neither gets nothing, so nobody receives a tutorial
that has nothing to do with what they bought. The file format is documented in catalog.yaml.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aftersale.content.render import field, normalize_locale, pick_locale
from aftersale.core.errors import Problem

#: ``path inside the YAML document -> (line of the key, first line of the value's text)``.
Lines = Mapping[tuple[str | int, ...], tuple[int, int]]

_GUIDE_KEYS = frozenset({"match", "fallback_for", "url", "title", "tips"})
_MATCH_KEYS = frozenset({"categories", "skus"})


@dataclass(frozen=True)
class Guide:
    """A guide in one language, as templates see it: ``guide.title``, ``guide.url``..."""

    key: str
    title: str
    url: str
    tips: list[str]


@dataclass(frozen=True)
class _Entry:
    key: str
    categories: frozenset[str]
    skus: frozenset[str]
    fallback_for: frozenset[str]
    url: dict[str, str]
    title: dict[str, str]
    tips: dict[str, list[str]]

    def guide(self, locale: str | None, default: str) -> Guide:
        def pick(values: Mapping[str, Any]) -> Any:
            return values.get(pick_locale(values.keys(), locale, default), values.get(default))

        return Guide(self.key, pick(self.title) or "", pick(self.url) or "",
                     list(pick(self.tips) or []))


class Catalog:
    """Immutable after loading; ``guides_for`` is called once per rendered message."""

    def __init__(self, entries: Iterable[_Entry], default_locale: str = "en"):
        self._entries = tuple(entries)
        self._default = default_locale

    @classmethod
    def empty(cls, default_locale: str = "en") -> Catalog:
        return cls((), default_locale)

    def keys(self) -> list[str]:
        return [e.key for e in self._entries]

    def guides_for(self, items: Iterable[Any], locale: str | None) -> list[Guide]:
        chosen: dict[str, _Entry] = {}
        for item in items or ():
            category = str(field(item, "category") or "").casefold()
            sku = str(field(item, "sku") or "").casefold()
            matched = [e for e in self._entries if category in e.categories or sku in e.skus]
            if not matched:
                matched = [e for e in self._entries if category in e.fallback_for]
            for entry in matched:
                chosen.setdefault(entry.key, entry)
        return [entry.guide(locale, self._default) for entry in chosen.values()]

    @classmethod
    def from_data(
        cls, data: Any, lines: Lines, path: str, default_locale: str = "en"
    ) -> tuple[Catalog, list[Problem]]:
        """Builds the catalogue from parsed YAML, with every problem found (and its line)."""
        reader = _Reader(lines, path, default_locale)
        entries = reader.read(data)
        return cls(entries, default_locale), reader.problems


class _Reader:
    def __init__(self, lines: Lines, path: str, default_locale: str):
        self.lines = lines
        self.path = path
        self.default = default_locale
        self.problems: list[Problem] = []

    def line(self, where: tuple[str | int, ...]) -> int:
        # The nearest ancestor with a known line: a missing key is reported at its parent.
        while where and where not in self.lines:
            where = where[:-1]
        return self.lines[where][0] if where else 1

    def problem(self, where: tuple[str | int, ...], message: str, hint: str = "") -> None:
        self.problems.append(Problem(self.path, self.line(where), message, hint))

    def read(self, data: Any) -> list[_Entry]:
        if data is None:
            return []
        if not isinstance(data, dict):
            self.problem((), "the catalogue must be a mapping with a 'guides:' key")
            return []
        for key in data.keys() - {"guides"}:
            self.problem((key,), f"unknown key '{key}'", "the only top-level key is 'guides'")
        guides = data.get("guides") or {}
        if not isinstance(guides, dict):
            self.problem(("guides",), "'guides' must map guide names to guides")
            return []
        entries = []
        for key, body in guides.items():
            entry = self.entry(key, body)
            if entry is not None:
                entries.append(entry)
        return entries

    def entry(self, key: str, body: Any) -> _Entry | None:
        where = ("guides", key)
        if not isinstance(body, dict):
            self.problem(where, f"guide '{key}' must be a mapping (match, url, title, tips)")
            return None
        for unknown in sorted(body.keys() - _GUIDE_KEYS):
            self.problem((*where, unknown), f"unknown key '{unknown}' in guide '{key}'",
                         "allowed: " + ", ".join(sorted(_GUIDE_KEYS)))
        match = body.get("match") or {}
        if not isinstance(match, dict):
            self.problem((*where, "match"), "'match' must be a mapping (categories, skus)")
            match = {}
        for unknown in sorted(match.keys() - _MATCH_KEYS):
            self.problem((*where, "match", unknown), f"unknown key '{unknown}' in match",
                         "allowed: categories, skus")
        categories = self.words((*where, "match", "categories"), match.get("categories"))
        skus = self.words((*where, "match", "skus"), match.get("skus"))
        fallback = self.words((*where, "fallback_for"), body.get("fallback_for"))
        if not (categories or skus or fallback):
            self.problem(where, f"guide '{key}' matches nothing, so nobody gets it",
                         "add match: {categories: [...]} or fallback_for: [...]")
        url = self.per_locale((*where, "url"), body.get("url"), str)
        title = self.per_locale((*where, "title"), body.get("title"), str)
        tips = self.per_locale((*where, "tips"), body.get("tips"), list, required=False)
        for locale, values in tips.items():
            if not all(isinstance(tip, str) for tip in values):
                self.problem((*where, "tips", locale), "every tip must be a line of text")
        return _Entry(key, categories, skus, fallback, url, title, tips)

    def words(self, where: tuple[str | int, ...], value: Any) -> frozenset[str]:
        if value is None:
            return frozenset()
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, (str, int)) for v in value):
            self.problem(where, f"'{where[-1]}' must be a list of names")
            return frozenset()
        return frozenset(str(v).casefold() for v in value)

    def per_locale(
        self, where: tuple[str | int, ...], value: Any, kind: type, required: bool = True
    ) -> dict[str, Any]:
        """``{en: ..., tr: ...}``; a bare value means the same for every locale."""
        name = where[-1]
        if value is None:
            if required:
                self.problem(where, f"guide '{where[1]}' has no {name}",
                             f"add {name}: {{{self.default}: ...}}")
            return {}
        if isinstance(value, kind):
            return {self.default: value}
        if not isinstance(value, dict):
            self.problem(where, f"'{name}' must be a {kind.__name__} or one per locale")
            return {}
        result: dict[str, Any] = {}
        for raw, text in value.items():
            locale = normalize_locale(str(raw))
            if locale is None:
                self.problem((*where, raw), f"'{raw}' is not a locale name", "e.g. en, tr, pl_PL")
            elif not isinstance(text, kind):
                self.problem((*where, raw), f"'{name}' for {raw} must be a {kind.__name__}")
            else:
                result[locale] = text
        if required and self.default not in result:
            self.problem(where, f"'{name}' has no text for the default locale '{self.default}'",
                         f"add {self.default}: ... (customers in other languages fall back to it)")
        return result
