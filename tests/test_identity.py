"""Normalized keys: phones, emails, sites, company names, car plates."""

from __future__ import annotations

import pytest

from crmkit.identity import (
    company_name_key,
    contact_key,
    email_domain,
    messenger_key,
    phone_key,
    plate_key,
    sender_name_guess,
    website_key,
)


@pytest.mark.parametrize(
    "typed",
    [
        "8 (916) 123-45-67",
        "+7 916 123 45 67",
        "916-123-45-67",
        "+79161234567",
        "8-916-1234567",
        " 7 (916) 123 4567 ",
    ],
)
def test_russian_phone_formats_are_equal(typed):
    assert phone_key(typed) == "+79161234567"


def test_invalid_phone_is_kept_and_flagged():
    result = contact_key("phone", "12-34")
    assert result.value == "12-34"
    assert not result.valid
    assert result.key == contact_key("phone", "12 34").key


def test_foreign_number_with_country_code():
    assert phone_key("+49 30 901820") == "+4930901820"


def test_email_and_domain():
    assert contact_key("email", "  Ivan.Petrov@Romashka.RU ").key == "ivan.petrov@romashka.ru"
    assert email_domain("ivan@Romashka.ru") == "romashka.ru"
    assert not contact_key("email", "not an email").valid


@pytest.mark.parametrize(
    "typed",
    [
        "https://www.Romashka.ru/about?x=1",
        "romashka.ru",
        "http://romashka.ru:8080/",
        "WWW.ROMASHKA.RU",
    ],
)
def test_website_to_bare_domain(typed):
    assert website_key(typed) == "romashka.ru"


@pytest.mark.parametrize(
    "typed",
    [
        "ООО «Ромашка»",
        'ООО "Ромашка"',
        "Ромашка, ООО",
        "Общество с ограниченной ответственностью Ромашка",
        "ромашка",
        "  РОМАШКА  ",
        "OOO Ромашка",  # the form typed with Latin O's
        "OОO «Ромашка»",  # one Latin O among Cyrillic ones
        "О.О.О. Ромашка",  # a dotted form
        "о. о. о. «Ромашка»",
        "Pомашка",  # a Latin P in a Cyrillic word
    ],
)
def test_company_names_without_legal_forms_and_quotes(typed):
    assert company_name_key(typed) == "ромашка"


def test_company_latin_forms_and_yo():
    assert company_name_key("Blue Harbor LLC") == "blue harbor"
    assert company_name_key("Acme GmbH.") == "acme"
    assert company_name_key("Ёлка ИП") == "елка"


def test_look_alike_folding_leaves_latin_words_and_numbers_alone():
    assert company_name_key("Ромашка Group") == "ромашка group"
    assert company_name_key("Ромашка Co") == "ромашка"
    assert company_name_key("И.П. Сидоров") == "сидоров"
    assert company_name_key("Автосервис 5.1") == "автосервис 5 1"


def test_company_made_only_of_a_form_keeps_its_text():
    assert company_name_key("АО") == "ао"


@pytest.mark.parametrize(
    "typed", ["А123ВС77", "a 123 bc 77", "A123BC77", "а123вс 77", "A-123-BC-77"]
)
def test_plates_fold_cyrillic_and_latin(typed):
    assert plate_key(typed) == "A123BC77"


@pytest.mark.parametrize(
    "typed", ["M225TP 177 RUS", "М225ТР|177", "м225тр/177", "м 225 тр 177 рус", "M225TP177rus"]
)
def test_plates_drop_the_country_and_separators(typed):
    assert plate_key(typed) == "M225TP177"


def test_a_plate_ending_in_letters_like_the_country_keeps_them():
    assert plate_key("RUS") == "RUS" and plate_key("A123BC") == "A123BC"


def test_messenger_handles():
    assert messenger_key("@Ivan_Petrov", "telegram") == "telegram:ivan_petrov"


@pytest.mark.parametrize(
    ("address", "named"),
    [
        # a local part that reads as a name: the person, whatever the domain
        ("ivan.petrov@romashka.ru", ("person", "Ivan Petrov", "Ivan", "Petrov")),
        ("Ivan_Petrov@mail.ru", ("person", "Ivan Petrov", "Ivan", "Petrov")),
        ("i.petrov@gmail.com", ("person", "I. Petrov", "I.", "Petrov")),
        ("anna-maria.petrova@bk.ru", ("person", "Anna Maria Petrova", "Anna Maria", "Petrova")),
        ("ivan.petrov+crm@yandex.ru", ("person", "Ivan Petrov", "Ivan", "Petrov")),
        ("иван.петров@почта.рф", ("person", "Иван Петров", "Иван", "Петров")),
        # a role, digits, one word or no name: the company the domain names...
        ("info@romashka.ru", ("organisation", "Romashka", None, None)),
        ("sales@stroy-invest.com.ru", ("organisation", "Stroy-Invest", None, None)),
        ("no-reply@mail.romashka.ru", ("organisation", "Romashka", None, None)),
        ("zakaz@xn--80aswg.xn--p1ai", ("organisation", "Сайт", None, None)),
        ("89161234567@shiny.ru", ("organisation", "Shiny", None, None)),
        ("ivan@romashka.ru", ("organisation", "Romashka", None, None)),
        ("ivan.sales@romashka.ru", ("organisation", "Romashka", None, None)),
        ("petrov85.i@romashka.ru", ("organisation", "Romashka", None, None)),
        # ...unless it is a public mail service's: the address
        ("office@mail.ru", ("person", "office@mail.ru", None, None)),
        ("noreply@gmail.com", ("person", "noreply@gmail.com", None, None)),
        ("89161234567@yandex.ru", ("person", "89161234567@yandex.ru", None, None)),
        ("noname@ya.ru", ("person", "noname@ya.ru", None, None)),
        ("i.p@inbox.ru", ("person", "i.p@inbox.ru", None, None)),
        ("support@localhost", ("person", "support@localhost", None, None)),
        ("+79161234567", ("person", "+79161234567", None, None)),  # not an address at all
    ],
)
def test_a_nameless_sender_is_named_from_the_address(address, named):
    guess = sender_name_guess(address)
    assert (guess.kind, guess.name, guess.first_name, guess.last_name) == named
