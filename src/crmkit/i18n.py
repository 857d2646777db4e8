"""Messages that travel from the core to a reader in another language.

The core raises errors and refusals long before anyone knows who will read them (a Russian
agent in the UI, an English API client, a log).  A :class:`Message` keeps the English
template and its parameters apart, so each reader translates the template and fills in the
parameters itself; parameters that are labels (a stage's title) are marked :class:`Label`
and translated too, and moments (:class:`Moment`) are shown in the reader's time zone when
the reader gives one.  ``str(message)`` is the English text.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

import attrs


class Label(str):
    """A message parameter that is itself a translatable label (a stage, a pipeline)."""

    __slots__ = ()


#: What separates a message's context from its id in a catalog's key (gettext's own).
CONTEXT_SEPARATOR = "\x04"


def stage_context(pipeline: str) -> str:
    """The message context of a pipeline's stage titles: the pipeline's name.

    One English title (``New``) reads differently by what the stage belongs to (a deal is
    «Новая», a car service's order «Новый»), so each pipeline's titles are looked up in its
    own context first and then as plain messages (see :func:`pgettext`).
    """
    return pipeline


def contexted(context: str, text: str) -> str:
    """The catalog key of ``text`` in ``context`` (``context\\x04text``)."""
    return f"{context}{CONTEXT_SEPARATOR}{text}" if context else text


def pgettext(gettext: Callable[[str], str], context: str, text: str) -> str:
    """``text`` translated in ``context`` when the catalogs have it there, else plainly.

    ``gettext`` is any plain lookup (a catalog's, a locale's): a contexted message is kept
    under its :func:`contexted` key, which an untranslated lookup gives back unchanged.
    """
    if not text:
        return text
    if context:
        key = contexted(context, text)
        found = gettext(key)
        if found != key and CONTEXT_SEPARATOR not in found:
            return found
    return gettext(text)


class StageLabel(Label):
    """A label parameter that is a pipeline's stage title, translated in its context."""

    context: str

    def __new__(cls, title: str, context: str = "") -> StageLabel:
        label = super().__new__(cls, title)
        label.context = context
        return label

    def __reduce__(self) -> Any:
        return (StageLabel, (str(self), self.context))


class Labels(tuple):  # type: ignore[type-arg]
    """A message parameter listing translatable labels, shown joined by commas."""

    __slots__ = ()

    def __str__(self) -> str:
        return ", ".join(self)

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


@attrs.frozen
class Moment:
    """A message parameter that is a point in time (an aware datetime).

    ``str()`` shows it in the zone it was given in (the core gives the deployment's,
    ``config.zone``); a reader that knows its own zone (the web UI: the user's) passes it
    to :meth:`Message.translate` and sees the moment at its own hours.
    """

    value: dt.datetime

    def shown(self, zone: dt.tzinfo | None = None) -> str:
        """``2030-03-04 10:00`` in ``zone`` (the value's own zone when ``None``)."""
        moment = self.value if zone is None else self.value.astimezone(zone)
        return f"{moment:%Y-%m-%d %H:%M}"

    def __str__(self) -> str:
        return self.shown()

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


@attrs.frozen
class Amount:
    """A message parameter that is a sum of money in a currency.

    ``str()`` is the plain ``10700.00 RUB`` (logs, exports, the API's stored text); a reader
    that formats money its own way (the web UI: Babel, ``10 700,00 ₽`` in Russian) passes
    its formatter to :meth:`Message.translate`.
    """

    value: Decimal = attrs.field(converter=lambda v: Decimal(str(v)))
    currency: str = ""

    def __str__(self) -> str:
        return f"{self.value} {self.currency}".strip()

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


#: How a reader formats an :class:`Amount`: ``money(value, currency)``.
MoneyFormat = Callable[[Decimal, str], str]


@attrs.frozen
class Number:
    """A message parameter that is a number (a limit: ``at most 9999999``).

    ``str()`` is the plain ``9999999``; a reader that writes numbers its own way (the web UI:
    Babel, ``9 999 999`` in Russian) passes its formatter to :meth:`Message.translate`.
    """

    value: Decimal | int

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


#: How a reader formats a :class:`Number`: ``number(value)``.
NumberFormat = Callable[[Any], str]

#: The :class:`Day` format of a month: ``ноябрь 2026`` (Babel's pattern).
MONTH = "LLLL y"


@attrs.frozen
class Day:
    """A message parameter that is a calendar day, or a month (``format=MONTH``).

    ``str()`` is the plain ``2026-12-01`` (``2026-11`` for a month: logs, the API); a reader
    that writes dates its own way (the web UI: Babel, ``1 дек. 2026 г.``, ``ноябрь 2026``
    in Russian, as its pages do) passes its formatter to :meth:`Message.translate`.
    """

    value: dt.date
    format: str = "medium"

    def __str__(self) -> str:
        return f"{self.value:%Y-%m}" if self.format == MONTH else self.value.isoformat()

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


#: How a reader formats a :class:`Day`: ``date(value, format)``.
DateFormat = Callable[[dt.date, str], str]


@attrs.frozen
class Message:
    """An English template (``str.format`` style) with its parameters."""

    template: str
    params: Mapping[str, Any] = attrs.field(factory=dict)

    def __str__(self) -> str:
        return self.template.format(**self.params)

    def translate(
        self,
        gettext: Callable[[str], str],
        zone: dt.tzinfo | None = None,
        money: MoneyFormat | None = None,
        number: NumberFormat | None = None,
        date: DateFormat | None = None,
    ) -> str:
        """The message in the language of ``gettext`` (labels among parameters included),
        its moments in ``zone`` (as given when ``None``), its amounts formatted by ``money``
        (plain ``10700.00 RUB`` when ``None``), its numbers by ``number`` and its days by
        ``date`` (plain when ``None``)."""
        params = {
            k: _translated(v, gettext, zone, money, number, date) for k, v in self.params.items()
        }
        return gettext(self.template).format(**params)

    def as_json(self) -> dict[str, Any]:
        """A JSON-able form, for a message kept in the database (an import's report) to be
        translated when it is read; :meth:`from_json` gives the message back."""
        kinds = {k: _kind_of(v) for k, v in self.params.items() if _kind_of(v)}
        params = {k: _plain(v) for k, v in self.params.items()}
        return {"template": self.template, "params": params, "labels": kinds}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Message:
        """The message :meth:`as_json` wrote (its label parameters labels again)."""
        kinds = data.get("labels") or {}
        params = {k: _revived(v, kinds.get(k)) for k, v in (data.get("params") or {}).items()}
        return cls(str(data["template"]), params)


#: parameters that are labels or amounts, by their type (their kind in :meth:`as_json`)
_KINDS = {
    Label: "label",
    Labels: "labels",
    Amount: "amount",
    Moment: "moment",
    Number: "number",
    Day: "day",
}


def _kind_of(value: Any) -> str | None:
    if isinstance(value, StageLabel):
        return "stage"
    if isinstance(value, Message):
        return "message"  # a reason inside a message (a refusal's)
    return _KINDS.get(type(value))


def _plain(value: Any) -> Any:
    if isinstance(value, StageLabel):
        return {"title": str(value), "context": value.context}
    if isinstance(value, Message):
        return value.as_json()
    if isinstance(value, Labels):
        return list(value)
    if isinstance(value, Amount):
        return {"amount": str(value.value), "currency": value.currency}
    if isinstance(value, Moment):
        return value.value.isoformat()
    if isinstance(value, Number):
        return str(value.value)
    if isinstance(value, Day):
        return {"day": value.value.isoformat(), "format": value.format}
    return value


def _revived(value: Any, kind: str | None) -> Any:
    if kind == "message":
        return Message.from_json(value)
    if kind == "label":
        return Label(value)
    if kind == "stage":
        return StageLabel(value["title"], value.get("context") or "")
    if kind == "labels":
        return Labels(value)
    if kind == "amount":
        return Amount(value["amount"], value.get("currency") or "")
    if kind == "moment":
        return Moment(dt.datetime.fromisoformat(value))
    if kind == "number":
        return Number(Decimal(value))
    if kind == "day":
        return Day(dt.date.fromisoformat(value["day"]), value.get("format") or "medium")
    return value


def _translated(
    value: Any,
    gettext: Callable[[str], str],
    zone: dt.tzinfo | None,
    money: MoneyFormat | None = None,
    number: NumberFormat | None = None,
    date: DateFormat | None = None,
) -> Any:
    if isinstance(value, StageLabel):
        return pgettext(gettext, value.context, str(value))
    if isinstance(value, Label):
        return gettext(value)
    if isinstance(value, Labels):
        return ", ".join(gettext(item) for item in value)
    if isinstance(value, Moment):
        return value.shown(zone)
    if isinstance(value, Amount):
        return money(value.value, value.currency) if money else str(value)
    if isinstance(value, Number):
        return number(value.value) if number else str(value)
    if isinstance(value, Day):
        return date(value.value, value.format) if date else str(value)
    if isinstance(value, Message):  # a reason inside a refusal: translated in its turn
        return value.translate(gettext, zone, money, number, date)
    return value


def message(template: str, **params: Any) -> Message:
    """Shorthand: ``message("no stage “{stage}”", stage=Label(title))``."""
    return Message(template, params)


def translate(
    text: str | Message,
    gettext: Callable[[str], str],
    zone: dt.tzinfo | None = None,
    money: MoneyFormat | None = None,
    number: NumberFormat | None = None,
    date: DateFormat | None = None,
) -> str:
    """Translate a plain text or a :class:`Message` with ``gettext`` (moments in ``zone``,
    amounts formatted by ``money``, numbers by ``number``, days by ``date``)."""
    if isinstance(text, Message):
        return text.translate(gettext, zone, money, number, date)
    return gettext(text)
