"""Message templates: texts staff send again and again, with the client's details filled in.

Subjects and bodies are Jinja templates written by users, so they are rendered in Jinja's
:class:`~jinja2.sandbox.SandboxedEnvironment` with plain values only (never ORM objects that
could reach other records).  A mistake in a template is a :class:`TemplateFailed` naming
the field and the line, never a crash::

    with crm.acting_as(user) as work:
        message = work.message_templates.render(template_id, party_id=42)
        message.subject, message.body

Variables: ``party`` (name, first_name, last_name, kind, phone, email, custom...),
``record`` (the chosen record's columns and ``custom``), ``sender`` (the actor: name,
email, phone) and ``today``.  The mail plugin uses this service to fill its messages.

A template may have one version per language (same name and channel).
:meth:`MessageTemplateService.render_for` fills the version a client should get: their own
language (``party.language``), else the deployment's (``locale.default``), else the oldest
version (:func:`choose_language`)::

    work.message_templates.render_for("Offer", party_id=42)   # Russian for a Russian client
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import functools
import math
import re
import traceback
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs
import jinja2
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment
from marshmallow import Schema, ValidationError, fields, validate
from sqlalchemy import select

from crmkit.clock import utcnow
from crmkit.errors import NotFound, ValidationFailed
from crmkit.i18n import Message, message
from crmkit.model import MessageTemplate, User
from crmkit.schemas import LANGUAGE_CODE
from crmkit.schemas.output import public_values

if TYPE_CHECKING:
    from crmkit.services.unit import UnitOfWork

#: Names of template fields, as they are reported in errors.
TEMPLATE_FIELDS = ("subject", "body")


class MessageTemplateSchema(Schema):
    """A message template as entered in the editor."""

    class Meta:
        unknown = "raise"

    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    channel = fields.String(validate=validate.Length(min=1, max=32))
    language = fields.String(
        validate=validate.Regexp(
            LANGUAGE_CODE, error="a language code such as ru, en or pt-br (lower case)"
        )
    )
    subject = fields.String(validate=validate.Length(max=500))
    body = fields.String(validate=validate.Length(max=100_000))


@attrs.frozen
class StarterTemplate:
    """A template a plugin ships (``crmkit_register_message_templates``), seeded once.

    ``pipeline`` and ``stage`` say which records it is meant for (a dealer in "lead" gets
    the first offer): a screen offering templates for a record in that stage (the mail
    panel of the client card) chooses the template of this name first.
    """

    name: str
    subject: str = ""
    body: str = ""
    channel: str = "mail"
    language: str = "ru"
    pipeline: str | None = None
    stage: str | None = None


def template_for_stage(
    templates: Iterable[StarterTemplate], pipeline: str | None, stage: str | None, channel: str
) -> str | None:
    """The name of the first starter template of ``channel`` meant for records in ``stage``
    of ``pipeline`` (``None``: none is)."""
    if not pipeline or not stage:
        return None
    for template in templates:
        if (template.pipeline, template.stage, template.channel) == (pipeline, stage, channel):
            return template.name
    return None


def seed_templates(session: Any, templates: Iterable[StarterTemplate]) -> int:
    """Insert the starter templates that are not there yet; returns how many were added.

    Each must compile (a mistake names the template, field and line).
    """
    existing = {
        (name, channel, language)
        for name, channel, language in session.execute(
            select(MessageTemplate.name, MessageTemplate.channel, MessageTemplate.language)
        )
    }
    added = 0
    for template in templates:
        key = (template.name, template.channel, template.language)
        if key in existing:
            continue
        for field in TEMPLATE_FIELDS:
            try:
                MessageTemplateService.check(field, getattr(template, field))
            except TemplateFailed as exc:
                raise ValueError(f"starter template {template.name!r}: {exc}") from None
        stored = attrs.asdict(template, filter=lambda a, _: a.name not in ("pipeline", "stage"))
        session.add(MessageTemplate(**stored))
        existing.add(key)
        added += 1
    return added


class TemplateFailed(ValidationFailed):
    """A template does not compile or fails while rendering; ``line`` is where (1-based)."""

    def __init__(self, field: str, line: int | None, message: str | Message) -> None:
        self.field = field
        self.line = line
        self.message = message
        where = f"line {line}: " if line else ""
        super().__init__({field: [where + str(message)]})


@attrs.frozen
class RenderedMessage:
    """A template filled in for one client (``language``: of the version used, if known).

    ``unfilled`` names the variables the texts write that filled in nothing for this client
    (``"party.inn"``, ``"partyy.name"``): see :func:`unfilled`.
    """

    subject: str
    body: str
    language: str | None = None
    unfilled: tuple[str, ...] = ()


def choose_language(available: Sequence[str], wanted: str | None, default: str) -> str | None:
    """The version a client gets: ``wanted`` (theirs), else ``default``, else the first one.

    ``available`` lists the languages a template exists in, oldest version first; ``None``
    only when it is empty.
    """
    for language in (wanted, default):
        if language and language in available:
            return language
    return available[0] if available else None


#: What one template may make: the rendered text's characters, a string's or a list's
#: length made on the way (``*``, ``+``, ``~``, a filter, a method), a number's digits
#: (``*``, ``**``) and the numbers of a ``range()``.  A template a user writes must not
#: take the memory or the time of the process that renders it (a worker, a web process).
OUTPUT_LIMIT = 200_000
VALUE_LIMIT = 200_000
DIGITS_LIMIT = 1_000
RANGE_LIMIT = 10_000
#: The turns of all ``{% for %}`` loops of one rendering together (nested loops multiply).
LOOP_LIMIT = 1_000_000

#: The refusal of each limit; ``{name}`` names the template, ``{limit}`` the limit.
LIMIT_MESSAGES = {
    "output": message("template “{name}”: the text it makes is longer than {limit} characters"),
    "value": message("template “{name}”: it makes a value longer than {limit} characters"),
    "digits": message("template “{name}”: it makes a number longer than {limit} digits"),
    "range": message("template “{name}”: range() of more than {limit} numbers"),
    "loops": message("template “{name}”: its loops turn more than {limit} times"),
}

_LONG_NUMBER = re.compile(r"\d{7,}")  # a width or precision of a million or more


class TemplateLimit(Exception):
    """A template went over one of the limits above (``kind``: a key of LIMIT_MESSAGES)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        super().__init__(kind)


def _sized(value: Any) -> Any:
    """``value``, refused when it is a string or a sequence longer than VALUE_LIMIT."""
    if isinstance(value, str | list | tuple | bytes) and len(value) > VALUE_LIMIT:
        raise TemplateLimit("value")
    if isinstance(value, int) and value.bit_length() > DIGITS_LIMIT * 3.33:
        raise TemplateLimit("digits")
    return value


def _digits(value: int) -> float:
    return abs(value).bit_length() * 0.302  # log10(2): about the decimal digits


def _check_product(left: Any, right: Any) -> None:
    for text, times in ((left, right), (right, left)):
        if (
            isinstance(text, str | list | tuple)
            and isinstance(times, int)
            and len(text) * max(times, 0) > VALUE_LIMIT
        ):
            raise TemplateLimit("value")
    both = isinstance(left, int) and isinstance(right, int)
    if both and _digits(left) + _digits(right) > DIGITS_LIMIT:
        raise TemplateLimit("digits")


def _check_power(left: Any, right: Any) -> None:
    both = isinstance(left, int) and isinstance(right, int)
    if both and right > 0 and abs(left) > 1 and right * math.log10(abs(left)) > DIGITS_LIMIT:
        raise TemplateLimit("digits")


def _check_counts(args: Iterable[Any]) -> None:
    """Refuse a width or a count that would make a value past VALUE_LIMIT."""
    for arg in args:
        if isinstance(arg, int) and not isinstance(arg, bool) and arg > VALUE_LIMIT:
            raise TemplateLimit("value")


def _check_format(text: Any) -> None:
    """Refuse a format string with a width or a precision of a million or more."""
    if isinstance(text, str) and _LONG_NUMBER.search(text):
        raise TemplateLimit("value")


def _check_made(name: str, value: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
    """Refuse a join, a replace or an indent whose result would be past VALUE_LIMIT,
    before it is made (its size is known from its arguments)."""
    size = 0
    if name in ("join", "do_join") and isinstance(value, list | tuple):
        separator = args[0] if args and isinstance(args[0], str) else ""
        size = sum(len(item) for item in value if isinstance(item, str))
        size += len(separator) * len(value)
    elif name in ("replace", "do_replace") and isinstance(value, str) and len(args) >= 2:
        old, new = str(args[0]), str(args[1])
        size = len(value) + (len(value) + 1 if not old else value.count(old)) * len(new)
    elif name == "do_indent" and isinstance(value, str):
        width = args[0] if args else kwargs.get("width", 4)
        size = len(value) + (len(width) if isinstance(width, str) else 0) * value.count("\n")
        if isinstance(width, int):
            size += width * (value.count("\n") + 1)
    if size > VALUE_LIMIT:
        raise TemplateLimit("value")


def _limited_range(*args: int) -> range:
    numbers = range(*args)
    if len(numbers) > RANGE_LIMIT:
        raise TemplateLimit("range")
    return numbers


#: The loop turns left to the rendering under way (a one-item list), None outside one.
_LOOP_BUDGET: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "template_loop_budget", default=None
)


def _counted(items: Any) -> Any:
    """A ``{% for %}`` loop's items, each turn taken from the rendering's budget."""
    budget = _LOOP_BUDGET.get()
    if budget is None:
        yield from items
        return
    for item in items:
        budget[0] -= 1
        if budget[0] < 0:
            raise TemplateLimit("loops")
        yield item


class _LimitedCode(CodeGenerator):
    """Jinja's code generator, with every ``~`` concatenation's result size-checked and
    every loop's turns counted."""

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        counted = nodes.EnvironmentAttribute("counted", lineno=node.iter.lineno)
        if not (isinstance(node.iter, nodes.Call) and node.iter.node == counted):
            node.iter = nodes.Call(counted, [node.iter], [], None, None, lineno=node.lineno)
        super().visit_For(node, frame)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.sized(")
        super().visit_Concat(node, frame)
        self.write(")")


class _Sandbox(SandboxedEnvironment):
    """The sandbox, telling the author when a template reaches for something forbidden
    and holding every template to the limits above."""

    code_generator_class = _LimitedCode
    intercepted_binops = frozenset(["*", "**", "+", "%"])
    sized = staticmethod(_sized)
    counted = staticmethod(_counted)

    def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
        raise SecurityError(f"{attribute!r} may not be used in a template")

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            _check_product(left, right)
        elif operator == "**":
            _check_power(left, right)
        elif operator == "%" and isinstance(left, str):
            _check_format(left)
            _check_counts(right if isinstance(right, tuple) else [right])
        return _sized(super().call_binop(context, operator, left, right))

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        # a string's method (str.format comes wrapped by the sandbox)
        owner = getattr(getattr(__obj, "__wrapped__", __obj), "__self__", None)
        if isinstance(owner, str):
            _check_counts([*args, *kwargs.values()])
            _check_format(owner)
            name = getattr(__obj, "__name__", "")
            if name == "join" and args:
                _check_made(name, args[0], (owner,), {})
            elif name == "replace":
                _check_made(name, owner, args, kwargs)
        return _sized(super().call(__context, __obj, *args, **kwargs))


def _limited_filter(function: Any) -> Any:
    """A built-in filter whose widths and counts are checked, and whose result is sized."""

    # the value filtered comes after the context or environment the filter may ask for
    value_at = 1 if hasattr(function, "jinja_pass_arg") else 0

    @functools.wraps(function)  # keeps jinja_pass_arg
    def limited(*args: Any, **kwargs: Any) -> Any:
        _check_counts([*args[value_at + 1 :], *kwargs.values()])
        if len(args) > value_at:
            if function.__name__ == "do_format":
                _check_format(args[value_at])
            _check_made(function.__name__, args[value_at], args[value_at + 1 :], kwargs)
        return _sized(function(*args, **kwargs))

    return limited


def _environment() -> SandboxedEnvironment:
    env = _Sandbox(
        undefined=jinja2.ChainableUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        # a value the client or the sender lacks (no phone, no source) is written as
        # nothing, never as "None" in a mail to the client
        finalize=_blank_none,
    )
    for name in ("center", "indent", "format", "replace", "wordwrap", "truncate", "join"):
        env.filters[name] = _limited_filter(env.filters[name])
    env.globals["range"] = _limited_range
    env.filters["money"] = lambda value: f"{Decimal(str(value or 0)):,.2f}".replace(",", " ")
    env.filters["date"] = lambda value, fmt="%d.%m.%Y": (
        value.strftime(fmt) if isinstance(value, dt.date | dt.datetime) else value
    )
    env.filters["local"] = _local_time
    return env


#: Filters that give a value of their own when there is none: a variable written with one
#: is not named by :func:`unfilled`.
_FALLBACK_FILTERS = frozenset({"default", "d"})


@functools.lru_cache(maxsize=256)
def _written_paths(source: str) -> tuple[tuple[str, ...], ...]:
    """The variables a text writes as they are (``{{ party.inn }}`` -> ``("party", "inn")``),
    in order, outside ``{% if %}``, loops and macros and without a fallback filter."""
    try:
        tree = _ENV.parse(source or "")
    except jinja2.TemplateSyntaxError:
        return ()
    found: list[tuple[str, ...]] = []

    def path_of(expression: nodes.Node) -> tuple[str, ...] | None:
        while isinstance(expression, nodes.Filter):
            if expression.name in _FALLBACK_FILTERS or expression.node is None:
                return None
            expression = expression.node
        if isinstance(expression, nodes.Name):
            return (expression.name,)
        if isinstance(expression, nodes.Getattr):
            base = path_of(expression.node)
            return None if base is None else (*base, expression.attr)
        if (
            isinstance(expression, nodes.Getitem)
            and isinstance(expression.arg, nodes.Const)
            and isinstance(expression.arg.value, str)
        ):
            base = path_of(expression.node)
            return None if base is None else (*base, expression.arg.value)
        return None

    def walk(node: nodes.Node) -> None:
        for child in node.iter_child_nodes():
            if isinstance(child, nodes.Output):
                for part in child.nodes:
                    path = path_of(part)
                    if path is not None:
                        found.append(path)
            elif not isinstance(
                child, nodes.If | nodes.For | nodes.Macro | nodes.CallBlock | nodes.Expr
            ):
                walk(child)

    walk(tree)
    # names the text sets itself ({% set n = party.name %}{{ n }}) are not ours to judge
    local = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
    return tuple(path for path in found if path[0] not in local)


def unfilled(texts: Iterable[str], variables: Mapping[str, Any]) -> tuple[str, ...]:
    """The variables ``texts`` write that fill in nothing with ``variables``, each once, as
    written (``"party.inn"``): a misspelt or unknown name, a field the client lacks (no
    phone), an empty value.

    Rendering writes nothing for them and goes on (a mailing to many does not stop at one
    client without a phone); the preview and the compose page name them so the writer sees
    "Здравствуйте, !" before the client does.  Variables written under ``{% if %}``, in a
    loop or with ``|default`` are the writer's choice and not named.
    """
    named: dict[str, None] = {}
    for text in texts:
        for path in _written_paths(text or ""):
            value: Any = variables
            for key in path:
                if value is None:
                    break  # under a name that is missing or empty: named below
                if not isinstance(value, Mapping):
                    value = ...  # an attribute of a value (today.year): not ours to judge
                    break
                value = value.get(key)
            if value is None or value == "":
                named[".".join(path)] = None
    return tuple(named)


def _blank_none(value: Any) -> Any:
    """What ``{{ ... }}`` writes for a value: ``None`` (an empty column) as nothing."""
    return "" if value is None else value


def _local_time(value: Any, zone: str = "UTC") -> Any:
    """``{{ record.starts_at|local(zone)|date("%d.%m %H:%M") }}``: a UTC moment in a zone."""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            return value
    if not isinstance(value, dt.datetime):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    from zoneinfo import ZoneInfo

    return value.astimezone(ZoneInfo(str(zone)))


_ENV = _environment()


@functools.lru_cache(maxsize=256)
def _compiled(source: str) -> jinja2.Template:
    """A template text compiled once: a mailing renders the same text for every recipient."""
    return _ENV.from_string(source)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _columns(record: Any) -> dict[str, Any]:
    """A record's values for templates; private columns (secrets, hashes) are left out."""
    return {key: _plain(value) for key, value in public_values(record).items()}


def _without_hidden_clients(service: Any, values: dict[str, Any]) -> dict[str, Any]:
    """A row's values less the clients it names that the actor may not read (a person's
    organisation, a deal's client held by its owner): ``None``, as the API gives them."""
    attrs = [a for a in service.client_attrs() if values.get(a) is not None]
    if not attrs:
        return values
    readable = service.readable_clients(values[a] for a in attrs)
    return {**values, **{a: None for a in attrs if values[a] not in readable}}


class MessageTemplateService:
    """Create, edit, list and render message templates (entity ``message_template``)."""

    def __init__(self, work: UnitOfWork) -> None:
        self.work = work

    @property
    def session(self) -> Any:
        return self.work.session

    # -- editing --------------------------------------------------------------------------

    def list(self, *, channel: str | None = None, language: str | None = None) -> list[Any]:
        """Templates, by name."""
        self.work.access.require("message_template", "read")
        statement = select(MessageTemplate)
        if channel:
            statement = statement.where(MessageTemplate.channel == channel)
        if language:
            statement = statement.where(MessageTemplate.language == language)
        return list(self.session.scalars(statement.order_by(MessageTemplate.name)))

    def get(self, template_id: int) -> MessageTemplate:
        """One template."""
        self.work.access.require("message_template", "read")
        template = self.session.get(MessageTemplate, template_id)
        if template is None:
            raise NotFound("message_template", template_id)
        return template

    def _load(self, data: Mapping[str, Any], partial: bool) -> dict[str, Any]:
        try:
            loaded: dict[str, Any] = MessageTemplateSchema().load(dict(data), partial=partial)
        except ValidationError as exc:
            raise ValidationFailed(exc.messages, entity="message_template") from None  # type: ignore[arg-type]
        for field in TEMPLATE_FIELDS:
            if field in loaded:
                self.check(field, loaded[field])
        return loaded

    def create(self, data: Mapping[str, Any] | None = None, **values: Any) -> MessageTemplate:
        """A new template; its subject and body must compile."""
        self.work.access.require("message_template", "create")
        loaded = self._load({**(data or {}), **values}, partial=False)
        loaded.setdefault("language", self.work.crm.config["locale.default"])
        self._unique(loaded["name"], loaded.get("channel", "mail"), loaded["language"], None)
        template = MessageTemplate(created_by_id=self.work.actor.user_id, **loaded)
        self.session.add(template)
        self.work.flush()
        self.work.audit("message_template", template.id, "create", {"name": [None, template.name]})
        return template

    def update(
        self, template_id: int, data: Mapping[str, Any] | None = None, **values: Any
    ) -> MessageTemplate:
        """Change a template; the audit entry lists what changed."""
        self.work.access.require("message_template", "update")
        template = self.get(template_id)
        loaded = self._load({**(data or {}), **values}, partial=True)
        self._unique(
            loaded.get("name", template.name),
            loaded.get("channel", template.channel),
            loaded.get("language", template.language),
            template.id,
        )
        changes = {}
        for key, value in loaded.items():
            if getattr(template, key) != value:
                changes[key] = [getattr(template, key), value]
                setattr(template, key, value)
        if changes:
            template.updated_at = utcnow()
            self.work.flush()
            self.work.audit("message_template", template.id, "update", changes)
        return template

    def delete(self, template_id: int) -> None:
        """Delete a template."""
        self.work.access.require("message_template", "delete")
        template = self.get(template_id)
        self.session.delete(template)
        self.work.audit("message_template", template_id, "delete", {"name": [template.name, None]})

    def _unique(self, name: str, channel: str, language: str, own_id: int | None) -> None:
        clash = self.session.scalar(
            select(MessageTemplate.id).where(
                MessageTemplate.name == name,
                MessageTemplate.channel == channel,
                MessageTemplate.language == language,
            )
        )
        if clash is not None and clash != own_id:
            raise ValidationFailed({"name": [f"a {channel} template {name!r} ({language}) exists"]})

    # -- language versions ----------------------------------------------------------------

    def versions(self, name: str, channel: str = "mail") -> list[MessageTemplate]:
        """Every language version of the template ``name`` for ``channel``, oldest first."""
        self.work.access.require("message_template", "read")
        return list(
            self.session.scalars(
                select(MessageTemplate)
                .where(MessageTemplate.name == name, MessageTemplate.channel == channel)
                .order_by(MessageTemplate.id)
            )
        )

    def version_for(
        self,
        template: int | str | MessageTemplate,
        *,
        channel: str = "mail",
        party_id: int | None = None,
        language: str | None = None,
    ) -> MessageTemplate:
        """The version of a template a client should get (see :func:`choose_language`).

        ``template`` is a name (with ``channel``) or any one version (an id or a row): its
        siblings of the same name and channel are the other versions.  The client's
        language is ``language`` if given, else the party's (a hidden party is
        :class:`NotFound`).
        """
        if isinstance(template, int):
            template = self.get(template)
        if isinstance(template, MessageTemplate):
            name, channel = template.name, template.channel
        else:
            name = template
        versions = self.versions(name, channel)
        if not versions:
            raise NotFound("message_template", f"{name} ({channel})")
        if language is None and party_id is not None:
            language = self.work.parties.get(party_id).language
        chosen = choose_language(
            [v.language for v in versions], language, str(self.work.crm.config["locale.default"])
        )
        return next(v for v in versions if v.language == chosen)

    def render_for(
        self,
        template: int | str | MessageTemplate,
        *,
        channel: str = "mail",
        party_id: int | None = None,
        record: tuple[str, int] | None = None,
    ) -> RenderedMessage:
        """Fill the version of a template in the client's language for the party and record.

        The client is ``party_id``, else the party of ``record``; without either the
        deployment's language is used.
        """
        if party_id is None and record is not None:
            service = self.work.records(record[0])
            party_id = service.party_id_of(service.get(record[1]))
        version = self.version_for(template, channel=channel, party_id=party_id)
        rendered = self.render(version, party_id=party_id, record=record)
        return attrs.evolve(rendered, language=version.language)

    # -- rendering ------------------------------------------------------------------------

    @staticmethod
    def check(field: str, source: str) -> None:
        """Compile a template text; :class:`TemplateFailed` with the line of the mistake."""
        try:
            _ENV.parse(source or "")
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateFailed(field, exc.lineno, exc.message or "syntax error") from None

    def variables(
        self, *, party_id: int | None = None, record: tuple[str, int] | None = None
    ) -> dict[str, Any]:
        """What templates may use: ``party``, ``record``, ``sender``, ``today``.

        The party and the record are read through the services, so a hidden one is
        :class:`NotFound`.
        """
        sender = (
            self.session.get(User, self.work.actor.user_id) if self.work.actor.user_id else None
        )
        values: dict[str, Any] = {"today": self._today(sender), "party": {}, "record": {}}
        if record is not None:
            service = self.work.records(record[0])
            row = service.get(record[1])
            values["record"] = _without_hidden_clients(service, _columns(row))
            if party_id is None:
                party_id = service.party_id_of(row)
        if party_id is not None:
            party = self.work.parties.get(party_id)
            data = _without_hidden_clients(self.work.parties, _columns(party))
            for point in party.contact_points:
                data.setdefault(point.kind, point.value)
            data["custom"] = _plain(party.custom or {})
            values["party"] = data
        values["sender"] = (
            {
                "name": sender.label,
                "username": sender.username,
                "email": sender.email,
                "phone": sender.phone,
            }
            if sender
            else {"name": self.work.actor.label}
        )
        return values

    def _today(self, sender: User | None) -> dt.date:
        """Today's date where the sender is: their time zone, else the deployment's
        (``locale.timezone``), as their pages show dates; UTC's date is yesterday's in
        Moscow until 03:00."""
        zone = self.work.crm.config.zone
        name = getattr(sender, "timezone", None)
        if name:
            with contextlib.suppress(ZoneInfoNotFoundError, ValueError):  # unknown: ours
                zone = ZoneInfo(name)
        return utcnow().astimezone(zone).date()

    def render_text(
        self, field: str, source: str, variables: Mapping[str, Any], *, template: str = ""
    ) -> str:
        """Render one template text in the sandbox; mistakes become :class:`TemplateFailed`.

        A text going over a limit (:data:`OUTPUT_LIMIT` and the others) fails naming
        ``template`` (the template's or the mailing's name) and the limit.
        """
        try:
            compiled = _compiled(source or "")
        except jinja2.TemplateSyntaxError:
            self.check(field, source)  # raises TemplateFailed naming the field and the line
            raise
        budget = _LOOP_BUDGET.set([LOOP_LIMIT])
        try:
            parts: list[str] = []
            size = 0
            for part in compiled.generate(variables):
                size += len(part)
                if size > OUTPUT_LIMIT:
                    raise TemplateLimit("output")
                parts.append(part)
            return "".join(parts)
        except TemplateLimit as exc:
            limit = {
                "output": OUTPUT_LIMIT,
                "value": VALUE_LIMIT,
                "digits": DIGITS_LIMIT,
                "range": RANGE_LIMIT,
                "loops": LOOP_LIMIT,
            }[exc.kind]
            refusal = LIMIT_MESSAGES[exc.kind].template
            text = message(refusal, name=template or field, limit=limit)
            raise TemplateFailed(field, _template_line(exc), text) from None
        except jinja2.TemplateError as exc:
            raise TemplateFailed(field, _template_line(exc), str(exc)) from None
        except (ArithmeticError, LookupError, TypeError, ValueError, AttributeError) as exc:
            raise TemplateFailed(
                field, _template_line(exc), f"{type(exc).__name__}: {exc}"
            ) from None
        finally:
            _LOOP_BUDGET.reset(budget)

    def render(
        self,
        template: int | MessageTemplate | Mapping[str, str],
        *,
        party_id: int | None = None,
        record: tuple[str, int] | None = None,
    ) -> RenderedMessage:
        """Fill a template (an id, a row, or ``{"subject":..., "body":...}``) for a client."""
        if isinstance(template, int):
            template = self.get(template)
        if isinstance(template, MessageTemplate):
            texts = {"subject": template.subject, "body": template.body}
        else:
            texts = {field: template.get(field, "") for field in TEMPLATE_FIELDS}
        variables = self.variables(party_id=party_id, record=record)
        name = template.name if isinstance(template, MessageTemplate) else template.get("name", "")
        return RenderedMessage(
            subject=self.render_text("subject", texts["subject"], variables, template=name),
            body=self.render_text("body", texts["body"], variables, template=name),
            language=template.language if isinstance(template, MessageTemplate) else None,
            unfilled=unfilled((texts["subject"], texts["body"]), variables),
        )


def _template_line(exc: BaseException) -> int | None:
    """The line of the user's template where rendering failed (Jinja keeps it in the traceback)."""
    line = getattr(exc, "lineno", None)
    if line:
        return int(line)
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename == "<template>":
            return frame.lineno
    return None
