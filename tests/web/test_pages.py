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
