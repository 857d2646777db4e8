"""Languages and formats of the web UI: Babel catalogs, dates, numbers and money.

The catalogs are gettext ``.po`` files under ``crmkit/web/locale/<lang>/LC_MESSAGES/``
(``messages.po``); plugins ship their own ``locale/`` folder beside their package and it is
merged in.  Catalogs are read once per application from the ``.po`` sources (no compiled
files to keep in step).  The language and time zone of a request are the signed-in user's,
else the deployment's defaults (``locale.default``, ``locale.timezone``).

Templates call ``_("text")``; Python code calls :func:`gettext`.  Both read the current
request's :class:`Locale` from a context variable set by :func:`activate`.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import io
import re
from collections.abc import Iterable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs
from babel import Locale as BabelLocale
from babel import dates, numbers
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

from crmkit.i18n import Message, contexted
from crmkit.i18n import pgettext as _pgettext

#: Languages of the reference UI.
LANGUAGES = {"ru": "Русский", "en": "English"}
#: The group separators a typed number may keep (:meth:`Locale.typed`): spaces, plain,
#: no-break, thin and narrow no-break.
TYPED_GROUPS = " \u00a0\u2009\u202f"
LOCALE_DIR = Path(__file__).parent / "locale"


def ui_languages() -> list[str]:
    """The languages the UI can speak: those of :data:`LANGUAGES` with a core catalog."""
    return sorted(
        language
        for language in LANGUAGES
        if (LOCALE_DIR / language / "LC_MESSAGES" / "messages.po").exists()
    )


def load_catalogs(directories: Iterable[Path]) -> dict[str, NullTranslations]:
    """Translations per language, merged from every ``locale`` directory given (first wins)."""
    result: dict[str, NullTranslations] = {}
    for language in LANGUAGES:
        merged: Translations | None = None
        for directory in directories:
            po = directory / language / "LC_MESSAGES" / "messages.po"
            if not po.exists():
                continue
            with po.open("rb") as source:
                catalog = read_po(source, locale=language)
            buffer = io.BytesIO()
            write_mo(buffer, catalog)
            buffer.seek(0)
            translations = Translations(buffer, domain="messages")
            if merged is None:
                merged = translations
            else:
                # later directories (plugins) only add what the earlier ones lack
                translations.merge(merged)
                merged = translations
        result[language] = merged or NullTranslations()
    return result


def catalogs_of(crm: Any) -> dict[str, NullTranslations]:
    """The catalogs of ``crm``'s UI, the core's and its plugins' (``locale`` folders),
    loaded once per application: the web app's pages and what is written for a user
    outside a request (a notification forwarded by mail) read the same ones."""
    cached = getattr(crm, "_ui_catalogs", None)
    if cached is None:
        from crmkit.web.app import plugin_folders

        folders = [folder for _, folder in plugin_folders(crm, "locale")]
        cached = load_catalogs([LOCALE_DIR, *folders])
        crm._ui_catalogs = cached
    return cached


def locale_of(crm: Any, user: Any, accept_language: str | None = None) -> Locale:
    """How ``user`` reads: their language (``User.locale``) and time zone, else the
    deployment's (``locale.default``, ``locale.timezone``), as their pages do.

    ``accept_language`` (a request's ``Accept-Language`` header, the API's) chooses among
    the UI's languages for a user who has not chosen one, before the deployment's.
    """
    config = crm.config
    language = getattr(user, "locale", None)
    if language not in LANGUAGES:
        language = accepted_language(accept_language)
    if language not in LANGUAGES:
        language = config["locale.default"]
    if language not in LANGUAGES:
        language = "ru"
    timezone = getattr(user, "timezone", None) or config["locale.timezone"]
    return Locale(language, timezone, config["locale.currency"], catalogs_of(crm)[language])


def accepted_language(header: str | None) -> str | None:
    """The UI language an ``Accept-Language`` header prefers (``en-GB,en;q=0.9,ru;q=0.5``
    gives ``en``), matched by primary subtag; ``None`` when it names none of
    :data:`LANGUAGES` (or only with ``q=0``)."""
    best: tuple[float, int] | None = None
    found = None
    for position, item in enumerate((header or "").split(",")):
        tag, _, params = item.strip().partition(";")
        language = tag.strip().lower().partition("-")[0]
        if language not in LANGUAGES:
            continue
        weight = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        if not 0 < weight <= 1:
            continue
        rank = (-weight, position)  # the highest weight; of equal ones, the first named
        if best is None or rank < best:
            best, found = rank, language
    return found


@attrs.frozen
class Locale:
    """How one request speaks and writes: language, time zone, currency."""

    language: str
    timezone: str
    currency: str
    translations: NullTranslations = attrs.field(eq=False, repr=False)

    @property
    def zone(self) -> ZoneInfo:
        """The time zone (UTC when the name is unknown)."""
        try:
            return ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            return ZoneInfo("UTC")

    def gettext(self, message: str) -> str:
        """The translation of ``message``; an empty text stays empty (gettext would give
        the catalog's header, ``Project-Id-Version: …``, for it)."""
        if not message:
            return message
        return self.translations.gettext(message)

    def pgettext(self, context: str, message: str) -> str:
        """The translation of ``message`` in ``context`` (``msgctxt``), else its plain one."""
        return _pgettext(self.gettext, context, message)

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        """The translation of a message with a count."""
        return self.translations.ngettext(singular, plural, n)

    # -- formats -------------------------------------------------------------------------

    def local(self, value: dt.datetime) -> dt.datetime:
        """An aware time in the user's zone."""
        return value.astimezone(self.zone)

    def datetime(self, value: dt.datetime | None, format: str = "short") -> str:
        """A date and time in the user's zone and language (``21.11.2026, 14:05``)."""
        if value is None:
            return ""
        return dates.format_datetime(value, format, tzinfo=self.zone, locale=self.language)

    def date(self, value: dt.date | dt.datetime | None, format: str = "medium") -> str:
        """A date (a time is first moved to the user's zone)."""
        if value is None:
            return ""
        if isinstance(value, dt.datetime):
            value = self.local(value).date()
        return dates.format_date(value, format, locale=self.language)

    def time(self, value: dt.datetime | None) -> str:
        """A time of day in the user's zone."""
        if value is None:
            return ""
        return dates.format_time(value, "short", tzinfo=self.zone, locale=self.language)

    def number(self, value: Any) -> str:
        """A number with the language's separators."""
        if value is None or value == "":
            return ""
        return numbers.format_decimal(_unsigned_zero(value), locale=self.language)

    def typed(self, value: Decimal | int | None) -> str:
        """A number as a form field holds it for the reader to send back: the language's
        decimal sign and every decimal kept (``1 200,00`` in Russian, ``1200.00`` in
        English).  Groups are split only where the language splits them with a space (a
        no-break one in Russian): a grouping comma (``1,200.00``) would read back as the
        decimal sign.  The finance plugin's amounts read all of these back."""
        if value is None or value == "":
            return ""
        number = _unsigned_zero(Decimal(str(value)))
        exponent = number.as_tuple().exponent
        places = -exponent if isinstance(exponent, int) and exponent < 0 else 0
        grouped = numbers.get_group_symbol(self.language) in TYPED_GROUPS
        pattern = ("#,##0" if grouped else "0") + ("." + "0" * places if places else "")
        return numbers.format_decimal(number, format=pattern, locale=self.language)

    def money(self, value: Decimal | float | int | None, currency: str | None = None) -> str:
        """An amount with its currency (``1 234,50 ₽`` in Russian)."""
        if value is None:
            return ""
        return numbers.format_currency(
            _unsigned_zero(Decimal(str(value))), currency or self.currency, locale=self.language
        )

    def relative(self, value: dt.datetime | None, now: dt.datetime | None = None) -> str:
        """How long ago or from now (``3 hours ago``)."""
        if value is None:
            return ""
        delta = value - (now or dt.datetime.now(dt.UTC))
        return dates.format_timedelta(
            delta, add_direction=True, threshold=1.1, locale=self.language
        )

    @property
    def first_weekday(self) -> int:
        """0 for Monday (Babel's numbering) in Russian, Sunday is 6."""
        return BabelLocale.parse(self.language).first_week_day


def _unsigned_zero(value: Any) -> Any:
    """A zero without its minus sign (``-0.00`` shows as ``0.00``, ``0,00`` in Russian);
    anything else as it is."""
    if isinstance(value, Decimal):
        return value.copy_abs() if value.is_zero() else value
    if isinstance(value, float) and value == 0:
        return 0.0
    return value


_current: contextvars.ContextVar[Locale | None] = contextvars.ContextVar(
    "crmkit_locale", default=None
)


@contextlib.contextmanager
def activate(locale: Locale) -> Iterator[Locale]:
    """Make ``locale`` the current one while the block runs (rendering a page)."""
    token = _current.set(locale)
    try:
        yield locale
    finally:
        _current.reset(token)


def current() -> Locale | None:
    """The active locale, if any."""
    return _current.get()


def gettext(message: str) -> str:
    """Translate ``message`` into the current request's language."""
    locale = _current.get()
    return locale.gettext(message) if locale else message


def pgettext(context: str, message: str) -> str:
    """Translate ``message`` in ``context`` (its plain translation when the catalogs have
    none in that context) into the current request's language."""
    locale = _current.get()
    return locale.pgettext(context, message) if locale else message


def stage_title(pipeline: Any, stage: Any) -> str:
    """A stage's title in the current language, translated in its pipeline's context
    (``stage`` is a :class:`~crmkit.pipeline.Stage` or a stage's name; a name the pipeline
    no longer has, or no pipeline, shows as it is)."""
    if pipeline is None:
        return str(getattr(stage, "title", stage) or "")
    name = getattr(stage, "name", stage)
    if not name:
        return ""
    return pgettext(pipeline.stage_context, pipeline.stage_title(name))


def ngettext(singular: str, plural: str, n: int) -> str:
    """Translate a message with a count into the current request's language."""
    locale = _current.get()
    if locale:
        return locale.ngettext(singular, plural, n)
    return singular if n == 1 else plural


def lazy(message: str) -> str:
    """Mark a message for extraction without translating it now (labels in registries)."""
    return message


#: Messages raised by the services that users see often (shown translated when listed here).
SERVICE_MESSAGES = {
    "wrong username or password",
    "too many failed sign-in attempts; try again later",
    "the current password is wrong",
    "a comment is required for this move",
    "a note cannot be empty",
    "must be after the start",
    "contains a NUL character",
    "not a whole number",
    "too large (at most 2^63-1)",
    "the file name contains a NUL character",
    "a name is required",
    "one line, without line breaks",
    "a closed conversation is not snoozed: reopen it",
    "the message is empty",
    "a time in the future",
    "a new message arrived: read it first (it is shown now)",
    "the conversation has been put back in the unassigned queue meanwhile",
    "duplicate of a client you may not edit: skipped",
    "changed by someone else meanwhile: import it again",
    "no such column in the file",
    "the members are in this group already: choose another one",
    # imports: refusals of a file or a mapping, a row's error, the error report's header
    "a .csv or .xlsx file",
    "choose a file",
    "the first row must name the columns",
    "map a column to the name",
    "the import has started already",
    "longer than 300 characters",
    "row",
    "column",
    # API tokens made on the profile page
    "expires_on",
    "not a valid date",
    "must be today or later",
    "give the token a name (what is it for?)",
    "at most 200 characters",
    # a call recorded on a card without saying how it ended
    "choose how the call ended",
    # an id field that names no record (crmkit.web.forms.NOT_AN_ID)
    "not an id (1 to 2^63-1)",
    # custom fields' values (crmkit.services.custom_fields)
    "too long (5000 characters at most)",
    "out of range (less than 10^15)",
    # a report's period (crmkit.pipeline.reports.PERIOD_PARAMS)
    "not a date or time (ISO 8601)",
}


#: Marshmallow's own refusals that hold values (its validators' default messages), as
#: message templates: :func:`validation_message` finds the values in a refusal and the
#: reader sees the template translated with them.
MARSHMALLOW_TEMPLATES = (
    "Length must be between {min} and {max}.",
    "Length must be {equal}.",
    "Longer than maximum length {max}.",
    "Shorter than minimum length {min}.",
    "Must be greater than or equal to {min} and less than or equal to {max}.",
    "Must be greater than {min} and less than {max}.",
    "Must be greater than or equal to {min} and less than {max}.",
    "Must be greater than {min} and less than or equal to {max}.",
    "Must be greater than or equal to {min}.",
    "Must be greater than {min}.",
    "Must be less than or equal to {max}.",
    "Must be less than {max}.",
    "Must be one of: {choices}.",
    "Must be equal to {other}.",
)

#: Marshmallow's fixed refusals (its fields' default messages), translated as they are.
MARSHMALLOW_MESSAGES = {
    "Missing data for required field.",
    "Field may not be null.",
    "Unknown field.",
    "Invalid input type.",
    "Invalid value.",
    "Invalid type.",
    "Not a valid integer.",
    "Not a valid number.",
    "Not a valid string.",
    "Not a valid boolean.",
    "Not a valid date.",
    "Not a valid datetime.",
    "Not a valid aware datetime.",
    "Not a valid naive datetime.",
    "Not a valid list.",
    "Not a valid mapping type.",
    "Not a valid email address.",
    "Not a valid URL.",
    "Not a valid UUID.",
    "Number too large.",
    "Special numeric values (nan or infinity) are not permitted.",
    "String does not match expected pattern.",
}


def _template_pattern(template: str) -> re.Pattern[str]:
    parts = re.split(r"\{(\w+)\}", template)
    pattern = ""
    for index, part in enumerate(parts):
        if index % 2:
            pattern += rf"(?P<{part}>.+)" if part == "choices" else rf"(?P<{part}>\S+)"
        else:
            pattern += re.escape(part)
    return re.compile(pattern)


_MARSHMALLOW_PATTERNS = [(t, _template_pattern(t)) for t in MARSHMALLOW_TEMPLATES]


def validation_message(text: str) -> str | Message:
    """A refusal as the reader should see it: one of marshmallow's default messages with
    values (``Length must be between 1 and 20.``) becomes its template with those values,
    translated like any :class:`~crmkit.i18n.Message`; any other text is left as it is."""
    for template, pattern in _MARSHMALLOW_PATTERNS:
        found = pattern.fullmatch(text)
        if found:
            return Message(template, found.groupdict())
    return text


def registry_messages(crm: Any) -> set[str]:
    """Texts the UI shows from registries and data, translated with ``_(value)``.

    Entity, role, pipeline and stage labels, column names, kinds and statuses: none of them
    is a literal in a template, so the catalog tools collect them from here.
    """
    from crmkit.access.rules import ACTIONS, Scope
    from crmkit.model import ContactKind, CustomerType, PartyKind
    from crmkit.reports import PERIOD_SHORTCUTS
    from crmkit.schemas import EVENT_STATUSES, TASK_STATUSES
    from crmkit.services.conversations import STATUSES as CONVERSATION_STATUSES
    from crmkit.services.timeline import ACTIVITY_KINDS, CALL_OUTCOMES

    texts: set[str] = set()
    for entity in crm.entities:
        texts |= {entity.label, entity.label_plural}
        # actions its pipelines or plugins' cells add: columns of the permission screen
        texts |= set(crm.actions_of(entity.name)) - set(entity.actions)
        texts |= {c.key for c in entity.model.__table__.columns}
        texts |= set(entity.filter_attrs)
    for role in crm.roles.values():
        texts.add(role.label or role.name)
    for pipeline in crm.pipelines.values():
        texts.add(pipeline.title)
        texts |= {stage.title for stage in pipeline.stages}
        # each pipeline's titles in its own context too (``msgctxt``), for a language whose
        # words agree with what the stage belongs to (a deal «Новая», an order «Новый»)
        texts |= {contexted(pipeline.stage_context, s.title) for s in pipeline.stages}

    for item in crm.menu_items:
        texts.add(item.label)
    for report in crm.reports.values():
        texts |= {report.label, report.description}
    texts |= set(PERIOD_SHORTCUTS)  # the period links of a report's form
    texts |= set(CALL_OUTCOMES)
    texts |= {kind.label for kind in crm.timeline_kinds.values()}
    texts |= set(ACTIVITY_KINDS) | set(TASK_STATUSES) | set(EVENT_STATUSES) | set(ACTIONS)
    texts |= set(CONVERSATION_STATUSES) | {c.label for c in crm.channels.values()}
    texts |= {s.label for s in Scope}
    texts |= {k.value for k in PartyKind} | {k.value for k in CustomerType}
    texts |= {k.value for k in ContactKind}
    texts |= {"mention", "assignment", "reminder", "reassignment", "tags", "tag", "group"}
    texts |= {"text", "number", "money", "date", "boolean", "choice", "multi_choice", "reference"}
    texts |= SERVICE_MESSAGES
    texts |= MARSHMALLOW_MESSAGES | set(MARSHMALLOW_TEMPLATES)
    return {t for t in texts if t}
