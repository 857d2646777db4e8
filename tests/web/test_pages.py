"""Helpers of the HTML screens: errors shown in the user's language."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from gettext import NullTranslations
from types import SimpleNamespace

from crmkit.errors import ValidationFailed
from crmkit.i18n import MONTH, Day, Label, Message, message
from crmkit.web.i18n import Locale
from crmkit.web.pages import error_text


class Catalog(NullTranslations):
    def __init__(self, texts):
        super().__init__()
        self.texts = texts

    def gettext(self, text):
        return self.texts.get(text, text)


def test_a_validation_message_with_parameters_is_translated_labels_and_all():
    """A service text with parameters (a stage's title) reaches the page translated, its
    label parameters too, next to the translated field name."""
    catalog = Catalog(
        {
            "stage": "стадия",
            "starts in “{stage}”": "начинается в «{stage}»",
            "New": "Новая",
        }
    )
    request = SimpleNamespace(state=SimpleNamespace(locale=Locale("ru", "UTC", "RUB", catalog)))
    failed = ValidationFailed({"stage": [message("starts in “{stage}”", stage=Label("New"))]})
    assert error_text(request, failed) == "стадия: начинается в «Новая»"


def test_a_refusal_names_a_day_and_a_month_the_readers_way():
    """A day or a month among a refusal's parameters reads as the pages write them
    (``ноябрь 2026``, ``1 дек. 2026 г.``); the plain text (logs, the API) stays ISO, and a
    message kept as JSON comes back with them."""
    refusal = message(
        "{month} is not over yet: from {day} on",
        month=Day(dt.date(2026, 11, 1), MONTH),
        day=Day(dt.date(2026, 12, 1)),
    )
    assert str(refusal) == "2026-11 is not over yet: from 2026-12-01 on"
    catalog = Catalog({"{month} is not over yet: from {day} on": "{month} не кончился: с {day}"})
    request = SimpleNamespace(state=SimpleNamespace(locale=Locale("ru", "UTC", "RUB", catalog)))
    shown = error_text(request, ValidationFailed({"_schema": [refusal]}))
    assert (
        shown.replace("\u202f", " ").replace("\xa0", " ")
        == "ноябрь 2026 не кончился: с 1 дек. 2026 г."
    )
    assert Message.from_json(refusal.as_json()) == refusal


def test_page_errors_from_a_message_and_from_a_plain_text_both_reach_russian():
    catalog = Catalog(
        {
            "name": "название",
            "a name is required": "нужно название",
            "{count} too long": "{count} слишком длинное",
            "not allowed": "нельзя",
            "{what} is closed": "{what} закрыт",
            "Order": "Заказ",
        }
    )
    request = SimpleNamespace(state=SimpleNamespace(locale=Locale("ru", "UTC", "RUB", catalog)))
    failed = ValidationFailed(
        {"name": ["a name is required", message("{count} too long", count=3)]}
    )
    assert error_text(request, failed) == "название: нужно название; 3 слишком длинное"
    assert error_text(request, PermissionError("not allowed")) == "нельзя"
    closed = RuntimeError(message("{what} is closed", what=Label("Order")))
    assert error_text(request, closed) == "Заказ закрыт"


def test_a_zero_amount_never_shows_a_minus_sign():
    """A zero that kept its sign (``Decimal('-0.00')``, what a zero times -1 gives) shows as
    zero, in English and in Russian; real negative amounts keep theirs."""
    english = Locale("en", "UTC", "RUB", NullTranslations())
    russian = Locale("ru", "UTC", "RUB", NullTranslations())
    for zero in (Decimal("-0.00"), Decimal("-0"), -0.0):
        assert english.money(zero) == english.money(Decimal("0.00"))
        assert "-" not in english.money(zero) and "-" not in english.number(zero)
        assert russian.money(zero) == "0,00\xa0₽" and russian.number(zero) == "0"
    assert russian.money(Decimal("-5.00")) == "-5,00\xa0₽"


def test_a_number_in_a_form_field_is_typed_the_readers_way():
    """A sum a form prefills reads as the reader writes it (``1 200,00`` in Russian, a
    no-break space between the groups), every decimal kept; English keeps no grouping
    comma, which would read back as a decimal sign."""
    english = Locale("en", "UTC", "RUB", NullTranslations())
    russian = Locale("ru", "UTC", "RUB", NullTranslations())
    assert russian.typed(Decimal("1200.00")) == "1\xa0200,00"
    assert russian.typed(Decimal("12.5")) == "12,5"
    assert russian.typed(Decimal("10").normalize()) == "10"
    assert russian.typed(Decimal("-0.00")) == "0,00"
    assert english.typed(Decimal("1234567.50")) == "1234567.50"
    assert english.typed(None) == russian.typed("") == ""
    assert english.number(Decimal("-1.5")) == "-1.5"
