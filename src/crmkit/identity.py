"""Normalized keys that make one person or company recognisable however it was typed.

Every key function takes what a user typed and returns the form used for matching:
phones in E.164 (``+79161234567``), emails in lower case, websites as a bare domain,
company names without legal forms, quotes and punctuation, car plates with Cyrillic and
Latin look-alike letters folded together.  :func:`contact_key` returns the key and whether
the value was valid; an invalid value still gets a key (so exact repeats match) and is kept.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from functools import lru_cache

import attrs
import phonenumbers

# Legal forms stripped from organisation names.  Long forms first so that
# "общество с ограниченной ответственностью" goes before "общество".
_LEGAL_FORMS = (
    "общество с ограниченной ответственностью",
    "публичное акционерное общество",
    "непубличное акционерное общество",
    "закрытое акционерное общество",
    "открытое акционерное общество",
    "акционерное общество",
    "индивидуальный предприниматель",
    "некоммерческая организация",
    "товарищество с ограниченной ответственностью",
    "limited liability company",
    "private limited company",
    "public limited company",
    "incorporated",
    "corporation",
    "limited",
    "company",
    "ооо",
    "оао",
    "ooo",  # the Russian forms transliterated: OOO Romashka
    "oao",
    "zao",
    "pao",
    "зао",
    "пао",
    "нао",
    "ао",
    "ип",
    "нко",
    "тоо",
    "фгуп",
    "гуп",
    "муп",
    "чуп",
    "llc",
    "l.l.c",
    "ltd",
    "gmbh",
    "inc",
    "corp",
    "co",
    "llp",
    "lp",
    "plc",
    "ag",
    "sa",
    "srl",
    "bv",
    "oy",
    "ab",
    "as",
    "kg",
    "ug",
    "sarl",
    "spa",
)
_LEGAL_FORM_RE = re.compile(
    r"(?<![\w])(" + "|".join(re.escape(f) for f in _LEGAL_FORMS) + r")\.?(?![\w])",
    re.IGNORECASE,
)
_QUOTES = "«»\"'„“”‚‘’`´"
# Single letters with dots, as in "О.О.О." or "L.L.C.": run together before legal forms go.
_DOTTED = re.compile(r"(?<![\w.])(?:[^\W\d_]\.\s?)+[^\W\d_](?!\w)\.?")
# A word mixing Latin and Cyrillic letters ("Pомашка" typed with a Latin P)
_SCRIPTS_MEET = re.compile(r"[a-z][а-яё]|[а-яё][a-z]")
_MIXED_WORD = re.compile(r"\w*(?:[a-z][а-яё]|[а-яё][a-z])\w*")
# Latin letters that look like Cyrillic ones once lower-cased (a c e o p x y k)
_TO_CYRILLIC = str.maketrans("aceopxyk", "асеорхук")

_NON_WORD = re.compile(r"[^\w]+", re.UNICODE)
_SPACES = re.compile(r"\s+")

# Cyrillic letters that look like Latin ones on Russian plates (ГОСТ Р 50577: А В Е К М Н
# О Р С Т У Х), folded to their Latin twins.
_PLATE_FOLD = str.maketrans("АВЕКМНОРСТУХ", "ABEKMHOPCTYX")


def _fold_text(value: str) -> str:
    value = unicodedata.normalize("NFKC", value).casefold().replace("ё", "е")
    for quote in _QUOTES:
        value = value.replace(quote, " ")
    return value


def _undot(match: re.Match[str]) -> str:
    return "".join(c for c in match.group() if c.isalpha())


def _cyrillic_word(match: re.Match[str]) -> str:
    return match.group().translate(_TO_CYRILLIC)


def _fold_look_alikes(text: str) -> str:
    """Words mixing Latin and Cyrillic letters, with the Latin look-alikes made Cyrillic.

    ``OОO`` with one Latin O becomes the legal form ``ооо``, ``Pомашка`` with a Latin P
    ``ромашка``; a Latin word beside Cyrillic ones (``Ромашка Group``) stays as it is (an
    all-Latin ``OOO`` is a legal form in its own right).
    """
    if _SCRIPTS_MEET.search(text) is None:
        return text
    return _MIXED_WORD.sub(_cyrillic_word, text)


def company_name_key(name: str) -> str:
    """``ООО «Ромашка»`` and ``Romashka LLC``-style noise removed: ``ромашка``.

    Lower case, ``ё`` as ``е``, legal forms, quotes and punctuation removed, spaces collapsed.
    Dotted forms (``О.О.О.``) and forms typed with Latin look-alike letters count as forms.
    Returns the plain folded text when nothing would be left (a company called "АО").
    """
    folded = _fold_look_alikes(_fold_text(name))
    if "." in folded:
        folded = _DOTTED.sub(_undot, folded)
    stripped = _LEGAL_FORM_RE.sub(" ", folded)
    words = _NON_WORD.sub(" ", stripped).split()
    if not words:
        words = _NON_WORD.sub(" ", folded).split()
    return " ".join(words)


def person_name_key(name: str) -> str:
    """A person's name folded for matching (case, ``ё``, punctuation, spacing)."""
    return " ".join(_NON_WORD.sub(" ", _fold_text(name)).split())


def name_key(name: str, kind: str = "organisation") -> str:
    """The matching key of a party's name, by party kind."""
    return company_name_key(name) if kind == "organisation" else person_name_key(name)


@lru_cache(maxsize=65536)  # an import parses each number in planning and again in writing
def _phone(value: str, region: str) -> tuple[str, bool]:
    digits = re.sub(r"\D", "", value)
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return (("+" + digits) if value.strip().startswith("+") else digits) or value.strip(), False
    if not phonenumbers.is_valid_number(number):
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), False
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), True


def phone_key(value: str, region: str = "RU") -> str:
    """``8 (916) 123-45-67``, ``+7 916 1234567`` and ``916-123-45-67`` all give ``+79161234567``.

    ``region`` reads numbers written without a country code.  An invalid number still
    gets a key (its digits) so that the same typo matches itself.
    """
    return _phone(value.strip(), region)[0]


def phone_is_valid(value: str, region: str = "RU") -> bool:
    """Whether ``value`` is a valid phone number for ``region``'s rules."""
    return _phone(value.strip(), region)[1]


_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def email_key(value: str) -> str:
    """The address in lower case, without surrounding spaces and angle brackets."""
    return value.strip().strip("<>").strip().lower()


def email_domain(value: str) -> str:
    """The domain part of an email address (its own key: "everyone at this company")."""
    key = email_key(value)
    return key.rpartition("@")[2] if "@" in key else ""


def website_key(value: str) -> str:
    """``https://www.Example.com/about`` gives ``example.com``."""
    text = value.strip().lower()
    text = re.sub(r"^[a-z][a-z0-9+.-]*://", "", text)
    text = text.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    text = text.rsplit("@", 1)[-1].split(":", 1)[0]
    if text.startswith("www."):
        text = text[4:]
    return text.strip(".")


def messenger_key(handle: str, service: str | None = None) -> str:
    """``@Ivan_Petrov`` on Telegram gives ``telegram:ivan_petrov``."""
    handle = handle.strip().lstrip("@").lower()
    return f"{service.lower()}:{handle}" if service else handle


def plate_key(value: str) -> str:
    """``а 123 вс 77`` and ``A123BC77`` both give ``A123BC77``.

    Cyrillic letters and their Latin look-alikes fold together (to Latin), case, spaces and
    the separators people type (``- _ . / |``) go, and so does the country after the region
    (``RUS``, ``РУС``): ``M225TP 177 RUS``, ``М225ТР|177`` and ``м225тр/177`` are one plate.
    """
    text = unicodedata.normalize("NFKC", value).upper().replace("Ё", "Е")
    text = re.sub(r"[\s\-_./|\\]", "", text).translate(_PLATE_FOLD)
    return re.sub(r"(?<=\d)(?:RUS|PYC)$", "", text)


@attrs.frozen
class NormalizedContact:
    """A contact value as typed, its matching key, and whether it was recognised as valid."""

    value: str
    key: str
    valid: bool


def contact_key(
    kind: str, value: str, *, region: str = "RU", service: str | None = None
) -> NormalizedContact:
    """Normalize a contact point of ``kind`` (phone, email, messenger, website)."""
    typed = value.strip()
    if kind == "phone":
        key, valid = _phone(typed, region)
        return NormalizedContact(typed, key, valid)
    if kind == "email":
        key = email_key(typed)
        return NormalizedContact(typed, key, bool(_EMAIL_RE.match(key)))
    if kind == "website":
        key = website_key(typed)
        return NormalizedContact(typed, key, "." in key and " " not in key)
    if kind == "messenger":
        key = messenger_key(typed, service)
        return NormalizedContact(typed, key, bool(typed.lstrip("@")))
    raise ValueError(f"unknown contact kind {kind!r}")


# -- matching forms for duplicate screening --------------------------------------------------

# Cyrillic written in Latin letters the way people type it, then a few Latin spellings
# folded together, so that ``Ромашка``, ``Romashka`` and ``Romaschka`` share one form.
_TRANSLIT = str.maketrans(
    {
        "а": "a", "б": "b", "в": "v", "г": "g", "д": "d", "е": "e", "ж": "zh", "з": "z",
        "и": "i", "й": "i", "к": "k", "л": "l", "м": "m", "н": "n", "о": "o", "п": "p",
        "р": "r", "с": "s", "т": "t", "у": "u", "ф": "f", "х": "h", "ц": "ts", "ч": "ch",
        "ш": "sh", "щ": "sch", "ъ": "", "ы": "y", "ь": "", "э": "e", "ю": "yu", "я": "ya",
        "і": "i", "ї": "i", "є": "e", "ґ": "g",
    }
)  # fmt: skip
_LATIN_FOLDS = (
    ("shch", "sch"),
    ("kh", "h"),
    ("ph", "f"),
    ("ck", "k"),
    ("x", "ks"),
    ("w", "v"),
    ("q", "k"),
    ("j", "i"),
    ("y", "i"),
    ("tz", "ts"),
    ("ii", "i"),
)


@lru_cache(maxsize=65536)  # screening scores the same candidates again as one types
def name_skeleton(name: str, kind: str = "organisation") -> str:
    """The name key in Latin letters with common spelling variants folded (for matching).

    ``ООО «Ромашка»`` and ``Romashka LLC`` both give ``romashka``; ``Яндекс`` and ``Yandex``
    both give ``iandeks``.  Never shown: it only decides which names are compared.
    """
    key = name_key(name, kind).translate(_TRANSLIT)
    key = unicodedata.normalize("NFKD", key)
    key = "".join(c for c in key if not unicodedata.combining(c))
    for before, after in _LATIN_FOLDS:
        key = key.replace(before, after)
    return " ".join(key.split())


def match_words(skeleton: str) -> list[str]:
    """The distinct words of a name skeleton worth indexing (two letters or more)."""
    return list(dict.fromkeys(w for w in skeleton.split() if len(w) >= 2))


def whole_name_key(words: Sequence[str]) -> str:
    """The key a whole name is found by: its words in sorted order (``n:``), or a one-word
    name's word (``w:``), as :func:`name_match_keys` stores them."""
    if len(words) > 1:
        return ("n:" + " ".join(sorted(words)))[:120]
    return f"w:{words[0]}"[:120]


def name_match_keys(skeleton: str) -> list[str]:
    """Blocking keys of a name skeleton: each word, the words in sorted order, the words
    run together (``alfa stroi`` = ``alfastroi``)."""
    words = match_words(skeleton)
    if not words:
        return []
    keys = [f"w:{w}" for w in words]
    if len(skeleton.split()) > 1:  # one word: its ``w:`` key says it all
        keys.append(whole_name_key(skeleton.split()))
        keys.append("c:" + "".join(skeleton.split()))
    return [k[:120] for k in dict.fromkeys(keys)]


#: Mail services whose domain says nothing about who the sender works for: their clients
#: are not grouped by it (duplicate screening, the contact center's suggested clients,
#: "Not a client" for a whole domain), and a lead from one is not named after it
#: (:func:`sender_name_guess`).  The one list of them: add a service here.
PUBLIC_MAIL_DOMAINS = frozenset(
    {
        "gmail.com", "googlemail.com", "yahoo.com", "hotmail.com", "outlook.com", "live.com",
        "icloud.com", "me.com", "aol.com", "proton.me", "protonmail.com", "gmx.de", "gmx.net",
        "mail.ru", "inbox.ru", "list.ru", "bk.ru", "internet.ru", "yandex.ru", "ya.ru",
        "yandex.com", "rambler.ru", "lenta.ru", "ro.ru", "autorambler.ru", "qip.ru",
    }
)  # fmt: skip


def domain_key(kind: str, key: str) -> str | None:
    """The organisation's domain behind an email or website key, if it says anything.

    ``info@romashka.ru`` and ``https://www.romashka.ru`` share ``romashka.ru``; addresses at
    public mail services (``gmail.com``, ``mail.ru``...) have none.
    """
    if kind == "email":
        domain = key.rpartition("@")[2] if "@" in key else ""
    elif kind == "website":
        domain = key
    else:
        return None
    if not domain or "." not in domain or domain in PUBLIC_MAIL_DOMAINS:
        return None
    return domain[:253]


#: Local parts (or words of one) that name a mailbox's role, not a person: ``info@``,
#: ``sales@``, ``no-reply@``... A lead from such an address is not named by it.
ROLE_MAILBOXES = frozenset(
    {
        "info", "sales", "sale", "noreply", "no", "reply", "donotreply", "office", "admin",
        "administrator", "support", "mail", "email", "zakaz", "zakazy", "order", "orders",
        "hello", "contact", "contacts", "help", "helpdesk", "service", "billing", "invoice",
        "buh", "buhgalter", "buhgalteria", "accounting", "accounts", "finance", "manager",
        "managers", "director", "secretary", "reception", "priemnaya", "hr", "job", "jobs",
        "kadry", "team", "marketing", "reklama", "press", "pr", "news", "newsletter",
        "notify", "notifications", "robot", "bot", "postmaster", "webmaster", "mailer",
        "daemon", "abuse", "security", "root", "feedback", "tender", "tenders", "snab",
        "opt", "sklad", "shop", "store", "partner", "partners", "client", "clients",
        "request", "requests", "post", "inbox", "all", "general", "user", "test",
    }
)  # fmt: skip

#: Second-level labels under which a company's own name is one label further left
#: (``stroy.com.ru``, ``firm.co.uk``, ``shop.msk.ru``).
_SHARED_SECOND_LEVELS = frozenset(
    {"com", "co", "org", "net", "gov", "edu", "ac", "msk", "spb", "biz", "pp", "nov", "kiev"}
)


@attrs.frozen
class SenderName:
    """What a lead from a sender without a name is called (see :func:`sender_name_guess`)."""

    kind: str  # "person" or "organisation"
    name: str
    first_name: str | None = None
    last_name: str | None = None


def _person_words(local: str) -> list[str] | None:
    """The words of a name in an address's local part (``ivan.petrov``, ``i_petrov``), or
    ``None`` when it does not read as one: a role, digits, one word, letters mixed with
    anything else."""
    local = local.split("+", 1)[0].casefold()
    if not local or local in ROLE_MAILBOXES:
        return None
    words = [w for w in re.split(r"[._-]+", local) if w]
    if not 2 <= len(words) <= 3:
        return None
    if any(not w.isalpha() or w in ROLE_MAILBOXES for w in words):
        return None
    if all(len(w) == 1 for w in words):
        return None
    return [f"{w.upper()}." if len(w) == 1 else w[:1].upper() + w[1:] for w in words]


def _company_of_domain(domain: str) -> str | None:
    """The company name an address's own domain gives (``romashka.ru``: ``Romashka``);
    ``None`` for a public mail service's (:data:`PUBLIC_MAIL_DOMAINS`) or a bare host."""
    if domain_key("email", f"x@{domain}") is None:
        return None
    labels = [label for label in domain.split(".") if label]
    if len(labels) < 2:
        return None
    name = labels[-2]
    if len(labels) >= 3 and name in _SHARED_SECOND_LEVELS:
        name = labels[-3]
    if name.startswith("xn--"):
        try:
            name = name.encode("ascii").decode("idna")
        except UnicodeError:
            return None
    parts = [p[:1].upper() + p[1:] for p in name.split("-")]
    return "-".join(parts) if any(parts) else None


def sender_name_guess(address: str) -> SenderName:
    """The name of a lead from a sender who gave none, read from their address, as mature
    CRMs do: the person when the local part reads as a name (``ivan.petrov``, ``ivan_petrov``,
    ``i.petrov``: *Ivan Petrov*, *I. Petrov*; not a role such as ``info@`` or ``sales@``
    (:data:`ROLE_MAILBOXES`), nor digits); else the company the domain names
    (``info@romashka.ru``: the organisation *Romashka*), unless it is a public mail service's
    (:data:`PUBLIC_MAIL_DOMAINS`); else the address itself, as before.  The address is kept
    on the lead as its email whatever its name."""
    text = address.strip()
    local, at, domain = text.rpartition("@")
    if not at or not local:
        return SenderName("person", text)
    words = _person_words(local)
    if words is not None:
        return SenderName(
            "person", " ".join(words), first_name=" ".join(words[:-1]), last_name=words[-1]
        )
    company = _company_of_domain(domain.casefold())
    if company is not None:
        return SenderName("organisation", company)
    return SenderName("person", text)


def one_letter_variants(word: str) -> list[str]:
    """``word`` and each spelling of it with one letter left out (words of 4+ letters).

    Two words within one typo (a letter changed, dropped, added or two swapped) always
    share one of these, which makes typo-tolerant look-up an exact, indexed match.
    """
    if len(word) < 4:
        return [word]
    return list(dict.fromkeys([word, *(word[:i] + word[i + 1 :] for i in range(len(word)))]))
