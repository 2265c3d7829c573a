"""Content library: shipped templates, locale fallback, escaping, sandbox, validation, guides."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from babel.numbers import format_currency
from jinja2.sandbox import SecurityError

from aftersale.content import ContentLibrary, Guide, UnknownTemplate, read_yaml, sample_context
from aftersale.content.render import Compiler
from aftersale.core.errors import DefinitionError, Problem

CONTENT = Path(__file__).resolve().parents[2] / "content"

EXPECTED_CHANNELS = {
    "shipping_update": {"email", "sms", "whatsapp"},
    "product_tutorial": {"email", "whatsapp"},
    "product_tutorial_offer": {"email", "whatsapp"},
    "csat_checkin": {"email", "sms", "whatsapp"},
    "ces_checkin": {"email", "sms"},
    "nps_survey": {"email", "sms", "whatsapp"},
    "personal_checkin": {"email", "whatsapp"},
    "winback": {"email", "sms"},
    "referral_invite": {"email", "sms", "whatsapp"},
    "detractor_followup": {"email"},
    "alert_detractor": {"email"},
    "delivery_arriving_today": {"email", "sms", "whatsapp"},
    "delivery_attempted": {"email", "sms", "whatsapp"},
    "delivery_pickup_ready": {"email", "sms", "whatsapp"},
    "delivery_pickup_reminder": {"email", "sms", "whatsapp"},
    "delivery_delayed": {"email", "sms", "whatsapp"},
    "delivery_problem": {"email", "sms", "whatsapp"},
    "alert_delivery_problem": {"email"},
    "alert_experiment_decided": {"email"},
    "alert_delivery_problem_report": {"email"},
}
#: Letters only the language has (the sample customer's name "Ayşe" has an ş, so Turkish is
#: told by its dotless ı): every tr/pl message must contain one, proving it is translated.
LETTERS = {"tr": set("ığİ"), "pl": set("ąćęłńóśźżŁŚŻ")}


@pytest.fixture(scope="module")
def library() -> ContentLibrary:
    return ContentLibrary.load(CONTENT)


def copy_content(tmp_path: Path) -> Path:
    target = tmp_path / "content"
    shutil.copytree(CONTENT, target)
    return target


def problems_in(content: Path) -> list[Problem]:
    library, problems = ContentLibrary.check(content)
    assert library is None and problems, "expected validation problems"
    return problems


def only(problems: list[Problem], text: str) -> Problem:
    matching = [p for p in problems if text in p.message]
    assert len(matching) == 1, [str(p) for p in problems]
    return matching[0]


# --- shipped content -------------------------------------------------------------------------


def test_shipped_content_is_valid_and_complete(library: ContentLibrary) -> None:
    assert ContentLibrary.check(CONTENT)[1] == []
    assert {t: library.channels_for(t) for t in library.templates()} == EXPECTED_CHANNELS
    assert library.locales() == {"en", "tr", "pl"}
    assert library.is_transactional("shipping_update")
    assert library.is_transactional("alert_detractor")
    assert not library.is_transactional("winback")


CASES = [
    (template, channel, locale)
    for template, channels in sorted(EXPECTED_CHANNELS.items())
    for channel in sorted(channels)
    for locale in ("en", "tr", "pl")
]


@pytest.mark.parametrize(("template", "channel", "locale"), CASES)
def test_every_shipped_message_renders(
    library: ContentLibrary, template: str, channel: str, locale: str
) -> None:
    rendered = library.render(template, channel, locale, sample_context(template, locale))
    expected_locale = "en" if template.startswith("alert_") else locale  # the team's texts
    assert rendered.locale == expected_locale
    assert rendered.text.strip()
    assert "{{" not in rendered.text and "{%" not in rendered.text
    if expected_locale in LETTERS:
        assert LETTERS[expected_locale] & set(rendered.text), rendered.text
        english = library.render(template, channel, "en", sample_context(template, "en"))
        assert english.text != rendered.text
    if channel == "email":
        assert rendered.subject and "\n" not in rendered.subject
        assert rendered.html is not None and f'<html lang="{expected_locale}">' in rendered.html
    else:
        assert rendered.subject is None and rendered.html is None


def test_turkish_shipping_update_formats_money_and_date_like_babel(
    library: ContentLibrary,
) -> None:
    context = sample_context("shipping_update", "tr_TR")
    rendered = library.render("shipping_update", "email", "tr-TR", context)
    assert rendered.locale == "tr"
    assert "siparişiniz yola çıktı" in rendered.subject
    assert "₺129,90" in rendered.text
    assert format_currency(Decimal("129.90"), "TRY", locale="tr_TR") in rendered.text
    assert "1 Mart 2026" in rendered.text and "1 Mart 2026" in rendered.html
    assert "Kargonuzu takip edin" in rendered.html
    assert "https://track.example/YK123456789" in rendered.html


def test_dates_are_shown_in_the_customer_time_zone(library: ContentLibrary) -> None:
    context = sample_context("shipping_update", "pl")
    context["order"] = {**context["order"], "currency": "PLN",
                        "placed_at": datetime(2026, 3, 1, 23, 30, tzinfo=UTC)}
    context["customer"] = {**context["customer"], "timezone": "Europe/Warsaw"}
    text = library.render("shipping_update", "email", "pl_PL", context).text
    assert "2 marca 2026" in text  # 23:30 UTC is 00:30 the next day in Warsaw
    assert "129,90\xa0zł" in text
    context["customer"]["timezone"] = "America/New_York"
    assert "1 marca 2026" in library.render("shipping_update", "email", "pl", context).text


def test_babel_uses_the_full_customer_locale_when_the_language_matches(
    library: ContentLibrary,
) -> None:
    context = sample_context("shipping_update", "en")
    assert "March 1, 2026" in library.render("shipping_update", "email", "en", context).text
    assert "1 March 2026" in library.render("shipping_update", "email", "en-GB", context).text
    # German falls back to English text, so numbers stay English, not "129,90 TRY".
    fallback = library.render("shipping_update", "email", "de", context)
    assert fallback.locale == "en" and "TRY129.90" in fallback.text


# --- locales ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("requested", "expected"),
    [("tr-TR", "tr"), ("pl_PL", "pl"), ("PL", "pl"), ("de", "en"), ("de-DE", "en"),
     (None, "en"), ("", "en"), ("not a locale", "en")],
)
def test_resolve_locale(library: ContentLibrary, requested: str | None, expected: str) -> None:
    assert library.resolve_locale("shipping_update", requested) == expected


def test_english_only_template_falls_back_for_everyone(library: ContentLibrary) -> None:
    assert library.resolve_locale("alert_detractor", "tr-TR") == "en"


def test_locale_none_means_the_customer_locale(library: ContentLibrary) -> None:
    context = sample_context("csat_checkin", "pl-PL")
    rendered = library.render("csat_checkin", "sms", None, context)
    assert rendered.locale == "pl" and "Odpisz cyfrą" in rendered.text


def test_a_channel_left_out_of_a_locale_falls_back_to_the_default(tmp_path: Path) -> None:
    content = copy_content(tmp_path)
    tr = content / "ces_checkin" / "tr.yaml"
    tr.write_text(tr.read_text(encoding="utf-8").split("\nsms:")[0] + "\n", encoding="utf-8")
    library = ContentLibrary.load(content)
    context = sample_context("ces_checkin", "tr")
    assert library.render("ces_checkin", "sms", "tr", context).locale == "en"
    assert library.render("ces_checkin", "email", "tr", context).locale == "tr"


# --- escaping, sandbox, missing data ---------------------------------------------------------


def test_html_is_escaped_and_text_is_not(library: ContentLibrary) -> None:
    context = sample_context("winback", "en")
    context["customer"]["first_name"] = "<script>alert(1)</script>"
    rendered = library.render("winback", "email", "en", context)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rendered.html
    assert "<script>" not in rendered.html
    assert "Hi <script>alert(1)</script>," in rendered.text
    assert rendered.subject.endswith("off your next order")
    sms = library.render("winback", "sms", "en", context)
    assert "<script>alert(1)</script>" in sms.text and "&lt;" not in sms.text


def test_sandbox_blocks_python_internals_at_runtime() -> None:
    part, issues = Compiler().compile(
        "{{ ''.__class__.__mro__ }}", "t.txt", "t.txt", 1, frozenset()
    )
    assert any("'__class__' is not allowed" in issue.message for issue in issues)
    with pytest.raises(SecurityError):
        part.render({})
    with pytest.raises(SecurityError):
        part.render({}, strict=True)


def test_sandbox_escape_is_a_validation_problem(tmp_path: Path) -> None:
    content = copy_content(tmp_path)
    (content / "winback" / "en.yaml").write_text(
        'email:\n  subject: "Hi"\n  text: |\n    Hello\n    {{ shop.name.__class__ }}\n'
        "sms: \"{{ ''['__cla' ~ 'ss__'] }}\"\n",
        encoding="utf-8",
    )
    problems = problems_in(content)
    static = only(problems, "'__class__' is not allowed")
    assert static.path.endswith("winback/en.yaml") and static.line == 5
    dynamic = only(problems, "unsafe")  # built at run time: found by the trial render
    assert dynamic.path.endswith("winback/en.yaml") and dynamic.line == 6


def test_a_template_cannot_mutate_the_context() -> None:
    part, _ = Compiler().compile("{{ order.items.clear() }}", "t.txt", "t.txt", 1,
                                 frozenset({"order"}))
    order = {"items": [1, 2]}
    with pytest.raises(SecurityError):
        part.render({"order": order})
    assert order["items"] == [1, 2]


def test_missing_optional_data_renders_without_crashing(library: ContentLibrary) -> None:
    context = {"customer": {"first_name": "Sam"}, "order": {"number": "#7"}}
    sms = library.render("shipping_update", "sms", "en", context)
    assert sms.text == "Atlas Store: your order #7 is on its way."
    winback = library.render("winback", "email", "en", context)
    assert winback.subject == "We miss you, Sam" and "code" not in winback.text
    survey = library.render("nps_survey", "email", "en", context)
    assert "score=" not in survey.html


@pytest.mark.parametrize("locale", ["en", "tr", "pl"])
def test_a_customer_without_a_first_name_gets_a_greeting_without_a_gap(
        library: ContentLibrary, locale: str) -> None:
    # A stored customer without a first name has None there, not a missing key.
    context = sample_context("winback", locale)
    context["offer"] = None
    context["customer"] = {**context["customer"], "first_name": None}
    email = library.render("winback", "email", locale, context)
    sms = library.render("winback", "sms", locale, context)
    for text in (email.subject, email.text, email.html, sms.text):
        assert "None" not in text and " ," not in text and " !" not in text
    assert email.text.split(",")[0] in {"Hi", "Merhaba", "Cześć"}
    if locale == "en":
        assert email.subject == "We miss you"


def test_none_prints_as_nothing(tmp_path: Path) -> None:
    content = copy_content(tmp_path)
    (content / "winback" / "en.yaml").write_text(
        (content / "winback" / "en.yaml").read_text().replace(
            "Reply STOP to opt out.", "Reply STOP to opt out.[{{ customer.last_name }}]"))
    context = sample_context("winback")
    context["customer"] = {**context["customer"], "last_name": None}
    sms = ContentLibrary.load(content).render("winback", "sms", "en", context)
    assert sms.text.endswith("Reply STOP to opt out.[]")


def test_a_fallback_for_none_still_works(tmp_path: Path) -> None:
    content = copy_content(tmp_path)
    (content / "winback" / "en.yaml").write_text(
        (content / "winback" / "en.yaml").read_text().replace(
            "We miss you{% if customer.first_name %}, {{ customer.first_name }}{% endif %}",
            "We miss you, {{ customer.first_name or 'friend' }}"))
    context = sample_context("winback")
    context["offer"] = None
    context["customer"] = {**context["customer"], "first_name": None}
    email = ContentLibrary.load(content).render("winback", "email", "en", context)
    assert email.subject == "We miss you, friend"


def test_a_stored_order_gives_templates_the_types_of_the_sample_order() -> None:
    # What `aftersale validate` renders against must behave as a real order does.
    from aftersale.db.models import Order
    from aftersale.pipeline.contexts import order_context

    stored = Order(id="o-9", customer_id="c-9", number="#9", total=Decimal("259.80"),
                   currency="TRY", placed_at=datetime(2026, 3, 1, tzinfo=UTC),
                   discount_codes=[], items=[
                       {"sku": "DRN-1", "title": "Drone X", "category": "drones",
                        "quantity": 2, "price": "129.90"}])
    real, sample = order_context(stored), sample_context("shipping_update")["order"]
    for key, value in sample.items():
        if value is not None and key != "tracking":
            assert type(real[key]) is type(value), key
    for key, value in sample["items"][0].items():
        assert type(real["items"][0][key]) is type(value), key
    total = Compiler().runtime_env.from_string(
        "{{ order.items | sum(attribute='price') }}").render(order=real)
    assert total == "129.90"
    # An item stored before prices were checked keeps what it has rather than fail the send.
    stored.items = [{"sku": "OLD-1", "quantity": 1, "price": None}, {"sku": "OLD-2"}]
    assert [i.get("price") for i in order_context(stored)["items"]] == [None, None]


def test_unsubscribe_link_only_in_marketing_email(library: ContentLibrary) -> None:
    url = "https://shop.example/u/tok123"
    marketing = library.render("winback", "email", "en", sample_context("winback"))
    assert url in marketing.html and f"Unsubscribe: {url}" in marketing.text
    shipping = library.render("shipping_update", "email", "en",
                              sample_context("shipping_update"))
    assert shipping.transactional and url not in shipping.html and url not in shipping.text
    no_link = sample_context("winback", "tr")
    no_link["links"] = {"unsubscribe": None, "referral": None}
    assert "Abonelikten çık" not in library.render("winback", "email", "tr", no_link).html


def test_survey_email_has_one_link_per_score(library: ContentLibrary) -> None:
    nps = library.render("nps_survey", "email", "tr", sample_context("nps_survey", "tr"))
    assert all(f"score={n}\"" in nps.html for n in range(11))
    ces = library.render("ces_checkin", "email", "en", sample_context("ces_checkin"))
    assert "score=7" in ces.html and "score=8" not in ces.html and "score=0" not in ces.html


def test_unknown_template_or_channel(library: ContentLibrary) -> None:
    with pytest.raises(UnknownTemplate):
        library.render("no_such_thing", "email", "en", {})
    with pytest.raises(UnknownTemplate):
        library.render("detractor_followup", "sms", "en", {})
    assert not library.has("detractor_followup", "sms") and library.has("winback", "sms")


# --- validation: path and line ----------------------------------------------------------------


def test_broken_yaml_is_reported_at_its_line(tmp_path: Path) -> None:
    content = copy_content(tmp_path)
    (content / "winback" / "tr.yaml").write_text(
        'email:\n  subject: "Merhaba"\n  text: "Selam"\nsms: {{ shop.name }}: sizi özledik\n',
        encoding="utf-8",
    )
    problem = only(problems_in(content), "YAML syntax error")
    assert problem.path.endswith("winback/tr.yaml") and problem.line == 4
    assert str(problem).startswith(f"{problem.path}:4: YAML syntax error")


def test_unknown_key_and_missing_subject(tmp_path: Path) -> None:
    content = copy_content(tmp_path)
    (content / "winback" / "en.yaml").write_text(
        'email:\n  text: "Hello"\n  body: "x"\nsmss: "Hi"\n', encoding="utf-8"
    )
    problems = problems_in(content)
    unknown = only(problems, "unknown key 'smss'")
    assert unknown.line == 4 and "sms" in unknown.hint
    assert only(problems, "unknown key 'body' in email").line == 3
    assert only(problems, "email has no subject").line == 1
    # sms exists in tr.yaml and pl.yaml but en.yaml no longer has it
    assert {p.path[-7:] for p in problems if "'sms' is not in en.yaml" in p.message} == {
        "tr.yaml", "pl.yaml"}


def test_jinja_syntax_error_is_reported_at_the_yaml_line(tmp_path: Path) -> None:
    content = copy_content(tmp_path)
    (content / "winback" / "en.yaml").write_text(
        "# comment\n"                                   # 1
        "email:\n"                                      # 2
        '  subject: "Hi {{ customer.first_name }}"\n'   # 3
        "  text: |\n"                                   # 4
        "    Hello,\n"                                  # 5
        "\n"                                            # 6
        "    {% if offer %}Code: {{ offer.code }\n"     # 7
        "    {% endif %}\n"                             # 8
        'sms: "Hi"\n',                                  # 9
        encoding="utf-8",
    )
    problem = only(problems_in(content), "email.text:")
    assert problem.path.endswith("winback/en.yaml") and problem.line == 7


def test_unknown_variable_filter_and_misspelt_field(tmp_path: Path) -> None:
    content = copy_content(tmp_path)
    (content / "shipping_update" / "en.yaml").write_text(
        "transactional: true\n"                                          # 1
        "email:\n"                                                       # 2
        '  subject: "Order {{ order.number }}"\n'                        # 3
        "  text: |\n"                                                    # 4
        "    Hi {{ custmer.first_name }}\n"                              # 5
        "    Track: {{ order.tracking.url }}\n"                          # 6
        'sms: "{{ order.total | moneyy }}"\n'                            # 7
        'whatsapp: "{{ order.traking.url }}"\n',                         # 8
        encoding="utf-8",
    )
    problems = problems_in(content)
    assert only(problems, "unknown variable 'custmer'").line == 5
    assert only(problems, "moneyy").line == 7
    misspelt = only(problems, "traking")  # a field, so found by rendering the sample
    assert misspelt.line == 8 and misspelt.message.startswith("whatsapp does not render")


def with_whatsapp_template(tmp_path: Path, tracking: str) -> Path:
    """Shipped content whose English shipping update has an approved WhatsApp template with
    two variables: the first name and ``tracking`` (a Jinja expression)."""
    content = copy_content(tmp_path)
    path = content / "shipping_update" / "en.yaml"
    path.write_text(path.read_text() + (
        "whatsapp_template:\n"
        "  content_sid: HX0123456789abcdef0123456789abcdef\n"
        "  variables:\n"
        "    \"1\": \"{{ customer.first_name }}\"\n"
        f"    \"2\": \"{{{{ {tracking} }}}}\"\n"))
    return content


def test_a_misspelt_whatsapp_template_variable_is_reported_at_its_line(tmp_path: Path) -> None:
    content = with_whatsapp_template(tmp_path, "order.traking.url")
    path = content / "shipping_update" / "en.yaml"
    line = path.read_text().splitlines().index('    "2": "{{ order.traking.url }}"') + 1
    problem = only(problems_in(content), "traking")
    assert (problem.path, problem.line) == (str(path), line)
    assert "whatsapp_template.2" in problem.message


def test_an_empty_whatsapp_template_variable_is_left_out(tmp_path: Path) -> None:
    # Twilio refuses an empty variable for good (21656); left out, the approved default shows.
    content = with_whatsapp_template(tmp_path, "order.tracking.url")
    context = sample_context("shipping_update")
    context["customer"] = {**context["customer"], "first_name": None}
    found = ContentLibrary.load(content).whatsapp_template("shipping_update", "en", context)
    assert found == ("HX0123456789abcdef0123456789abcdef",
                     {"2": "https://track.example/YK123456789"})


def test_missing_default_locale_file(tmp_path: Path) -> None:
    content = copy_content(tmp_path)
    (content / "referral_invite" / "en.yaml").unlink()
    problem = only(problems_in(content), "has no en.yaml")
    assert "referral_invite" in problem.message and problem.path.endswith(".yaml")
    assert "referral_invite/en.yaml" in problem.hint


def test_load_raises_with_every_problem(tmp_path: Path) -> None:
    content = copy_content(tmp_path)
    (content / "winback" / "en.yaml").write_text('emial: "x"\n', encoding="utf-8")
    (content / "ces_checkin" / "de.yaml").write_text('email: [\n', encoding="utf-8")
    with pytest.raises(DefinitionError) as caught:
        ContentLibrary.load(content)
    text = str(caught.value)
    assert "winback/en.yaml:1: unknown key 'emial'" in text
    assert "ces_checkin/de.yaml:2: YAML syntax error" in text


def test_duplicate_keys_and_non_boolean_transactional(tmp_path: Path) -> None:
    content = copy_content(tmp_path)
    (content / "ces_checkin" / "en.yaml").write_text(
        'transactional: "yes please"\nsms: "a"\nsms: "b"\n', encoding="utf-8"
    )
    problems = problems_in(content)
    assert only(problems, "'sms' is written twice").line == 3
    assert only(problems, "'transactional' must be true or false").line == 1


# --- catalogue -------------------------------------------------------------------------------


def item(category: str, sku: str = "X-1") -> dict:
    return {"sku": sku, "title": "Thing", "category": category, "quantity": 1,
            "price": Decimal(10)}


def test_catalogue_choice(library: ContentLibrary) -> None:
    assert [g.key for g in library.guides_for([item("drones")], "en")] == ["drone_setup"]
    assert [g.key for g in library.guides_for([item("mugs")], "en")] == ["care"]
    assert library.guides_for([item("books")], "en") == []
    both = library.guides_for([item("drones"), item("mugs"), item("drones")], "en")
    assert [g.key for g in both] == ["drone_setup", "care"]
    coffee = library.guides_for([item("coffee_machines")], "pl_PL")[0]
    assert coffee.title == "Odkamienianie ekspresu w 10 minut" and len(coffee.tips) == 3
    drone_de = library.guides_for([item("drones")], "de")[0]
    assert drone_de.title.startswith("Set up your drone")


def test_tutorial_gets_guides_from_the_catalogue(library: ContentLibrary) -> None:
    context = sample_context("product_tutorial", "tr")
    text = library.render("product_tutorial", "whatsapp", "tr", context).text
    assert "Drone'unuzu kurun" in text and "bataryaları" in text
    mug = {**context, "order": {**context["order"], "items": [item("mugs")]}}
    assert "bakım önerileri" in library.render("product_tutorial", "email", "tr", mug).html
    given = {**context, "guides": [Guide("x", "Custom guide", "https://x.example", [])]}
    assert "Custom guide" in library.render("product_tutorial", "whatsapp", "en", given).text


def test_catalogue_problems_have_lines(tmp_path: Path) -> None:
    content = copy_content(tmp_path)
    (content / "catalog.yaml").write_text(
        "guides:\n"                          # 1
        "  drone_setup:\n"                   # 2
        "    match: {categories: [drones]}\n"  # 3
        "    title:\n"                       # 4
        "      tr: Kurulum\n"                # 5
        "  orphan:\n"                        # 6
        "    url: https://x.example\n"       # 7
        "    title: {en: Orphan}\n"          # 8
        "    colour: red\n",                 # 9
        encoding="utf-8",
    )
    problems = problems_in(content)
    assert only(problems, "guide 'drone_setup' has no url").line == 2
    assert only(problems, "'title' has no text for the default locale").line == 4
    assert only(problems, "matches nothing").line == 6
    assert only(problems, "unknown key 'colour'").line == 9
    assert all(p.path.endswith("catalog.yaml") for p in problems)


def test_content_keys_stay_as_written_while_values_are_yaml(tmp_path: Path) -> None:
    path = tmp_path / "shop.yaml"
    path.write_text("help_text:\n  no: Hei\n  on: x\n  1: one\ntransactional: no\n"
                    "html: |\n  <p>\n", encoding="utf-8")
    data, lines, problems = read_yaml(path)
    assert problems == []
    assert data == {"help_text": {"no": "Hei", "on": "x", "1": "one"}, "transactional": False,
                    "html": "<p>\n"}
    assert lines[("help_text", "no")] == (2, 2)
    assert lines[("html",)] == (6, 7)  # a block's text starts on the line after the "|"


_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{n}: &{n} [{', '.join([f'*{p}'] * 10)}]\n" for p, n in zip("abcdef", "bcdefg", strict=True))


@pytest.mark.parametrize(("text", "message"), [
    ("a: &x [*x]\n", "too large or nested too deeply"),  # an alias inside itself
    (_LAUGHS, "too large or nested too deeply"),  # 10^7 values from a few lines
    ("a: !!int abc\n", "cannot read a value"),
    ("sms: " + "[" * 2000 + "]" * 2000 + "\n", "too large or nested too deeply"),
])
def test_hostile_yaml_in_content_is_a_problem_not_a_crash(tmp_path: Path, text: str,
                                                           message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    data, _, problems = read_yaml(path)
    assert data is None
    assert [p.path for p in problems] == [str(path)]
    assert message in problems[0].message
