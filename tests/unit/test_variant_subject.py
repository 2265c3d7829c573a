"""An experiment variant's subject line: picked for the message's language and rendered like
the template's own (same context, same sandbox)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from babel.numbers import format_currency
from jinja2.sandbox import SecurityError

from aftersale.content import ContentLibrary, sample_context
from aftersale.content.render import compile_subject, pick_subject

CONTENT = Path(__file__).resolve().parents[2] / "content"
SUBJECTS = {"en": "A gift for {{ customer.first_name }}", "pl_PL": "Prezent dla {{ customer.first_name }}",
            "*": "{{ lang }}: {{ order.total | money }}"}


@pytest.fixture(scope="module")
def library() -> ContentLibrary:
    return ContentLibrary.load(CONTENT)


@pytest.mark.parametrize(("locale", "requested", "expected"), [
    ("en", "en", SUBJECTS["en"]),
    ("en", "de", SUBJECTS["en"]),  # a German reader of the English text: the English line
    ("pl", "pl_PL", SUBJECTS["pl_PL"]),  # more specific than the content's locale
    ("pl", "pl", SUBJECTS["*"]),
    ("tr", "tr_TR", SUBJECTS["*"]),
])
def test_the_subject_fits_the_language_of_the_text(locale: str, requested: str,
                                                    expected: str) -> None:
    assert pick_subject(SUBJECTS, locale, requested) == expected


def test_without_a_line_for_the_language_the_templates_own_subject_stays(
        library: ContentLibrary) -> None:
    assert pick_subject({"tr": "Merhaba"}, "en", "en") is None
    context = sample_context("product_tutorial")
    own = library.render("product_tutorial", "email", "en", context)
    assert library.render("product_tutorial", "email", "en", context, {"tr": "Merhaba"}) == own


def test_the_variant_subject_is_rendered_with_the_templates_context(
        library: ContentLibrary) -> None:
    context = sample_context("product_tutorial")
    context["customer"]["locale"] = "tr"
    rendered = library.render("product_tutorial", "email", None, context, SUBJECTS)
    # tr content, no tr line: "*", with what the library adds (lang, the reader's formats)
    own = library.render("product_tutorial", "email", None, context)
    order = context["order"]
    total = format_currency(order["total"], order["currency"], locale="tr")
    assert (rendered.locale, rendered.subject) == ("tr", f"tr: {total}")
    assert rendered.text == own.text
    assert f"<title>tr: {total}</title>" in (rendered.html or "")


def test_the_variant_subject_runs_in_the_sandbox() -> None:
    part, issues = compile_subject("{{ order.total.__class__ }}{{ nobody }}")
    assert [i.message for i in issues] == [
        "'__class__' is not allowed: templates may not read private attributes",
        "unknown variable 'nobody'"]
    with pytest.raises(SecurityError):
        part.render({"order": {"total": Decimal("1")}})
