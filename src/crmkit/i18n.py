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
from typing import Any

import attrs


class Label(str):
    """A message parameter that is itself a translatable label (a stage, a pipeline)."""

    __slots__ = ()


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
class Message:
    """An English template (``str.format`` style) with its parameters."""

    template: str
    params: Mapping[str, Any] = attrs.field(factory=dict)

    def __str__(self) -> str:
        return self.template.format(**self.params)

    def translate(self, gettext: Callable[[str], str], zone: dt.tzinfo | None = None) -> str:
        """The message in the language of ``gettext`` (labels among parameters included),
        its moments in ``zone`` (as given when ``None``)."""
        params = {k: _translated(v, gettext, zone) for k, v in self.params.items()}
        return gettext(self.template).format(**params)

    def as_json(self) -> dict[str, Any]:
        """A JSON-able form, for a message kept in the database (an import's report) to be
        translated when it is read; :meth:`from_json` gives the message back."""
        kinds = {k: _KINDS[type(v)] for k, v in self.params.items() if type(v) in _KINDS}
        params = {k: list(v) if isinstance(v, Labels) else v for k, v in self.params.items()}
        return {"template": self.template, "params": params, "labels": kinds}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Message:
        """The message :meth:`as_json` wrote (its label parameters labels again)."""
        kinds = data.get("labels") or {}
        params = {
            k: (Label(v) if kinds.get(k) == "label" else Labels(v) if kinds.get(k) else v)
            for k, v in (data.get("params") or {}).items()
        }
        return cls(str(data["template"]), params)


_KINDS = {Label: "label", Labels: "labels"}  # parameters that are labels, by their type


def _translated(value: Any, gettext: Callable[[str], str], zone: dt.tzinfo | None) -> Any:
    if isinstance(value, Label):
        return gettext(value)
    if isinstance(value, Labels):
        return ", ".join(gettext(item) for item in value)
    if isinstance(value, Moment):
        return value.shown(zone)
    return value


def message(template: str, **params: Any) -> Message:
    """Shorthand: ``message("no stage “{stage}”", stage=Label(title))``."""
    return Message(template, params)


def translate(
    text: str | Message, gettext: Callable[[str], str], zone: dt.tzinfo | None = None
) -> str:
    """Translate a plain text or a :class:`Message` with ``gettext`` (moments in ``zone``)."""
    return text.translate(gettext, zone) if isinstance(text, Message) else gettext(text)
