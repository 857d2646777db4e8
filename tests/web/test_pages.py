"""Helpers of the HTML screens: errors shown in the user's language."""

from __future__ import annotations

from gettext import NullTranslations
from types import SimpleNamespace

from crmkit.errors import ValidationFailed
from crmkit.i18n import Label, message
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
