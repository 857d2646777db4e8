"""Settings of one deployment: ``crmkit.toml`` plus ``CRMKIT_*`` environment overrides.

Every key the core reads is declared once in :data:`CORE_SETTINGS`; plugins declare theirs
through the ``crmkit_register_settings`` hook.  A key has a dotted name (``database.url``), a
type, a default and a one-line description, and the environment variable that overrides it is
derived from the name (``CRMKIT_DATABASE_URL``).  ``docs/reference/settings.md`` lists every key
and a test checks that none is missing.
"""

from __future__ import annotations

import difflib
import os
import re
import secrets
import tomllib
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs

from crmkit.errors import ConfigError

CONFIG_FILENAME = "crmkit.toml"


@attrs.frozen
class Setting:
    """One configuration key: its dotted name, type, default and meaning."""

    name: str
    type: type
    default: Any
    description: str
    secret: bool = False
    #: smallest allowed value (numbers), inclusive
    minimum: float | None = None
    #: largest allowed value (numbers), inclusive
    maximum: float | None = None
    #: the value must be greater than this (durations that cannot be zero)
    above: float | None = None
    #: the allowed values of an enumeration
    choices: tuple[str, ...] = ()
    #: further check of a set value: the problem in a few words (``"not a Fernet key"``), or
    #: ``None`` when the value is good
    check: Callable[[Any], str | None] | None = attrs.field(default=None, eq=False)
    #: another setting this one may not exceed (``outbox.retry_base_seconds`` is at most
    #: ``outbox.retry_max_seconds``); checked at start when both are declared
    at_most: str | None = None
    #: another setting this one must stay below (``booking.day_start`` before
    #: ``booking.day_end``); checked at start when both are declared
    below: str | None = None
    #: how a value is read to be compared with ``at_most``/``below`` (a time of day's text
    #: as a time); ``None`` compares the values as they are
    order: Callable[[Any], Any] | None = attrs.field(default=None, eq=False)

    @property
    def env_var(self) -> str:
        """The environment variable that overrides this key (``CRMKIT_`` + name in capitals)."""
        return "CRMKIT_" + self.name.replace(".", "_").upper()

    def problem(self, value: Any) -> str | None:
        """What is wrong with a value of the right type (out of range, not a choice), or
        ``None``; the text follows ``setting 'name' from ORIGIN: ``."""
        if self.choices and value not in self.choices:
            return f"must be one of {', '.join(self.choices)}, got {value!r}"
        if isinstance(value, int | float) and not isinstance(value, bool):
            low, high = self.minimum, self.maximum
            if self.above is not None and value <= self.above:
                return f"must be greater than {_number(self.above)}, got {_number(value)}"
            if (low is not None and value < low) or (high is not None and value > high):
                if low is not None and high is not None:
                    allowed = f"between {_number(low)} and {_number(high)}"
                elif low is not None:
                    allowed = f"at least {_number(low)}"
                else:
                    allowed = f"at most {_number(high)}"
                return f"must be {allowed}, got {_number(value)}"
        if self.check is not None:
            return self.check(value)
        return None


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _queue_url(url: str) -> str | None:
    if not url or url.startswith(("redis://", "rediss://", "unix://")):
        return None
    return f"must be empty (the embedded queue) or redis://host:port/db, got {url!r}"


def _fernet_keys(text: str) -> str | None:
    from cryptography.fernet import Fernet

    for number, key in enumerate((k.strip() for k in text.split(",") if k.strip()), 1):
        try:
            Fernet(key.encode("ascii"))
        except (ValueError, UnicodeEncodeError):
            return (
                f"key {number} is not a Fernet key (32 url-safe base64-encoded bytes); make "
                'one with: python -c "from crmkit.sealing import new_key; print(new_key())"'
            )
    return None


def _argon2_profile(name: str) -> str | None:
    from argon2 import profiles

    if isinstance(getattr(profiles, name.upper(), None), type(profiles.CHEAPEST)):
        return None
    known = sorted(n for n in dir(profiles) if n.isupper())
    return f"no argon2 profile {name!r} (known: {', '.join(known)})"


def _phone_region(region: str) -> str | None:
    import phonenumbers

    if region.upper() in phonenumbers.SUPPORTED_REGIONS:
        return None
    return f"no phone region {region!r}; give a two-letter country code such as RU"


def currency_code(code: str) -> str | None:
    """A check for currency settings: empty or three capital letters (ISO 4217)."""
    if not code or re.fullmatch(r"[A-Z]{3}", code):
        return None
    return f"must be an ISO 4217 code of three capital letters such as RUB, got {code!r}"


def _ui_language(language: str) -> str | None:
    from crmkit.web.i18n import ui_languages

    available = ui_languages()
    if language in available:
        return None
    return f"no catalogs for language {language!r}; available: {', '.join(available)}"


def _base_url(url: str) -> str | None:
    if not url or re.fullmatch(r"https?://[^/\s]+(/\S*)?", url):
        return None
    return f"must be empty or an http(s) address such as https://crm.example.com, got {url!r}"


CORE_SETTINGS: tuple[Setting, ...] = (
    Setting(
        "database.url",
        str,
        "sqlite:///crmkit.sqlite3",
        "SQLAlchemy URL of the database; relative SQLite paths are resolved against the "
        "deployment directory. PostgreSQL: postgresql+psycopg://user@host/db.",
    ),
    Setting("database.echo", bool, False, "Log every SQL statement (debugging only)."),
    Setting(
        "database.pool_size",
        int,
        10,
        "Connections each process keeps open to a server database (PostgreSQL); a web "
        "worker runs at most this many reads, and this many writes, at once and queues the "
        "rest. Ignored on SQLite.",
        minimum=1,
    ),
    Setting(
        "queue.url",
        str,
        "",
        "Task queue: empty for the embedded SQLite queue in the deployment directory, "
        "redis://host:port/db for a shared Redis queue.",
        check=_queue_url,
    ),
    Setting(
        "secret_key",
        str,
        "",
        "Key that signs session cookies and encrypts integration "
        "secrets; generated by `crmkit init`.",
        secret=True,
    ),
    Setting(
        "security.argon2_profile",
        str,
        "RFC_9106_LOW_MEMORY",
        "argon2 parameters for password hashes (a name from argon2.profiles); "
        "CHEAPEST is for test suites only.",
        check=_argon2_profile,
    ),
    Setting(
        "plugins.allow",
        list,
        [],
        "Allow-list of plugin names to load from the `crmkit` entry point group; empty "
        "loads every installed plugin.",
    ),
    Setting("plugins.block", list, [], "Installed plugins never to load."),
    Setting(
        "locale.default",
        str,
        "ru",
        "Language of the UI for users who did not choose one.",
        check=_ui_language,
    ),
    Setting(
        "locale.timezone",
        str,
        "Europe/Moscow",
        "Time zone of the business (which day a moment belongs to in reports, the cash day) "
        "and of users who did not choose one.",
    ),
    Setting(
        "locale.phone_region",
        str,
        "RU",
        "Region used to read phone numbers written without a country code.",
        check=_phone_region,
    ),
    Setting(
        "locale.currency", str, "RUB", "Default currency of money amounts.", check=currency_code
    ),
    Setting(
        "screening.threshold",
        int,
        85,
        "Name similarity (1-100) from which an existing party counts as a likely duplicate.",
        minimum=1,
        maximum=100,
    ),
    Setting(
        "screening.on_create",
        bool,
        True,
        "Refuse to create a party that looks like an existing one unless the caller confirms.",
    ),
    Setting(
        "screening.domain_blocks",
        bool,
        False,
        "Refuse to create a party that shares a company email or website domain with an "
        "existing one, as for a strong match (public mail services never count).",
    ),
    Setting(
        "channels.unknown_sender",
        str,
        "triage",
        "What happens to a message from an unknown address: `triage` (waits in the "
        "contact center) or `lead` (a new person is created).",
        choices=("triage", "lead"),
    ),
    Setting(
        "security.secrets_key",
        str,
        "",
        "Fernet key(s) that encrypt integration secrets (mailbox passwords, bot tokens) at "
        "rest, comma-separated, the first one sealing; empty derives one from `secret_key`.",
        secret=True,
        check=_fernet_keys,
    ),
    Setting(
        "storage.path",
        str,
        "files",
        "Directory of uploaded files, relative to the deployment directory.",
    ),
    Setting("storage.max_upload_mb", int, 25, "Largest accepted upload, in megabytes.", minimum=1),
    Setting(
        "security.session_days",
        int,
        14,
        "Days a web session lasts without being used.",
        minimum=1,
    ),
    Setting(
        "security.login_window_minutes",
        int,
        15,
        "Window over which failed sign-ins are counted by the login throttle.",
        minimum=1,
    ),
    Setting(
        "security.login_max_failures_account",
        int,
        5,
        "Failed sign-ins of one account within the window before it is refused.",
        minimum=1,
    ),
    Setting(
        "security.login_max_failures_address",
        int,
        20,
        "Failed sign-ins from one address within the window before it is refused.",
        minimum=1,
    ),
    Setting(
        "web.secure_cookies",
        bool,
        False,
        "Mark session cookies Secure (only sent over HTTPS); turn on behind a TLS proxy.",
    ),
    Setting(
        "web.base_url",
        str,
        "",
        "Public address of the web UI (https://crm.example.com), used in links such as "
        "calendar feed URLs; empty uses the address of the request. Mailings (mail plugin) "
        "need it for their unsubscribe links and refuse to start without it.",
        check=_base_url,
    ),
    Setting(
        "api.max_json_bytes",
        int,
        1024 * 1024,
        "Largest JSON request body the REST API reads, in bytes; larger ones answer 413.",
        minimum=1,
    ),
)


def _coerce(setting: Setting, raw: Any, origin: str) -> Any:
    """Convert a raw TOML or environment value to the setting's type, or fail naming the key."""
    kind = setting.type
    if isinstance(raw, kind) and not (kind is int and isinstance(raw, bool)):
        return raw
    if kind is float and isinstance(raw, int) and not isinstance(raw, bool):
        return float(raw)  # `lease_seconds = 30` in TOML means 30.0
    if isinstance(raw, str):
        text = raw.strip()
        if kind is bool:
            if text.lower() in {"1", "true", "yes", "on"}:
                return True
            if text.lower() in {"0", "false", "no", "off", ""}:
                return False
        elif kind is int:
            try:
                return int(text)
            except ValueError:
                pass
        elif kind is float:
            try:
                return float(text)
            except ValueError:
                pass
        elif kind is list:
            return [part.strip() for part in text.split(",") if part.strip()]
    raise ConfigError(
        f"setting {setting.name!r} from {origin} must be {kind.__name__}, got {raw!r}"
    )


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


@attrs.define
class Config:
    """Resolved settings of one deployment.

    ``Config.load(path)`` reads ``crmkit.toml`` from a deployment directory (or a file path);
    ``Config.from_mapping`` builds one in code, as the test kit does.  Values are looked up by
    dotted name: ``config["database.url"]``.
    """

    root: Path
    values: dict[str, Any]
    source: Path | None = None
    known: dict[str, Setting] = attrs.field(factory=lambda: {s.name: s for s in CORE_SETTINGS})
    #: the environment the ``CRMKIT_*`` overrides are read from (``None``: the process's)
    environ: Mapping[str, str] | None = attrs.field(default=None, repr=False)

    @classmethod
    def load(
        cls, path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
    ) -> Config:
        """Read a deployment's ``crmkit.toml``; ``path`` is the file or its directory.

        With no path, ``CRMKIT_CONFIG`` or the current directory is used. A missing or
        malformed file raises :class:`ConfigError` with one line naming the file.
        """
        environ = os.environ if environ is None else environ
        named_by = ""
        if path is None:
            named_by = "CRMKIT_CONFIG " if environ.get("CRMKIT_CONFIG") else ""
            path = environ.get("CRMKIT_CONFIG") or Path.cwd()
        path = Path(path)
        if not path.exists():
            raise ConfigError(
                f"{named_by}{path}: no such file or directory; create a deployment with "
                "`crmkit init DIR`"
            )
        file = path / CONFIG_FILENAME if path.is_dir() else path
        if not file.exists():
            raise ConfigError(
                f"no {CONFIG_FILENAME} at {file.parent.resolve()}; create a deployment with "
                "`crmkit init DIR` or pass --config"
            )
        try:
            tree = tomllib.loads(file.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{file}: not valid TOML: {exc}") from None
        return cls.from_mapping(tree, root=file.parent.resolve(), environ=environ, source=file)

    @classmethod
    def from_mapping(
        cls,
        tree: Mapping[str, Any],
        root: str | os.PathLike[str] | None = None,
        environ: Mapping[str, str] | None = None,
        source: Path | None = None,
    ) -> Config:
        """Build settings from a (possibly nested) mapping, then apply ``CRMKIT_*`` overrides."""
        config = cls(
            root=Path(root or Path.cwd()).resolve(), values={}, source=source, environ=environ
        )
        config.values.update(_flatten(tree))
        config._apply_environment(config._environ)
        return config

    @property
    def _environ(self) -> Mapping[str, str]:
        return os.environ if self.environ is None else self.environ

    def _apply_environment(self, environ: Mapping[str, str]) -> None:
        by_env = {s.env_var: s for s in self.known.values()}
        for var, raw in environ.items():
            setting = by_env.get(var)
            if setting is not None:
                self.values[setting.name] = raw

    def declare(
        self, settings: Iterable[Setting], environ: Mapping[str, str] | None = None
    ) -> None:
        """Add plugin settings so that their defaults, types and env overrides apply."""
        for setting in settings:
            self.known[setting.name] = setting
        self._apply_environment(self._environ if environ is None else environ)

    def __getitem__(self, name: str) -> Any:
        setting = self.known.get(name)
        if setting is None:
            if name in self.values:
                return self.values[name]
            raise KeyError(name)
        if name not in self.values:
            return setting.default
        return _coerce(setting, self.values[name], self._origin(setting))

    def get(self, name: str, default: Any = None) -> Any:
        """The value of ``name``, or ``default`` when the key is neither set nor declared."""
        try:
            return self[name]
        except KeyError:
            return default

    def _origin(self, setting: Setting) -> str:
        if setting.env_var in self._environ:
            return f"${setting.env_var}"
        return self._file

    @property
    def _file(self) -> str:
        return str(self.source) if self.source else "configuration"

    def validate(self, dormant: Callable[[], Collection[str]] = tuple) -> None:
        """Check every set value once, so that a mistake fails at start-up, not later.

        A key no loaded plugin declares is refused naming the closest known one, except
        under a section named after a ``dormant()`` plugin (installed but not loaded: its
        settings stay for when it is loaded again; asked only when a key is unknown) that
        no loaded plugin declares settings in.  A
        ``CRMKIT_<SECTION>_*`` variable of a known section that names no setting is refused
        the same way.  Values are converted to their type and checked against their range
        or choices.
        """
        self._refuse_unknown(dormant)
        for name in self.values:
            setting = self.known.get(name)
            if setting is None:
                continue
            problem = setting.problem(self[name])
            if problem:
                raise ConfigError(f"setting {name!r} from {self._origin(setting)}: {problem}")
        self._check_pairs()
        self.zone  # noqa: B018 - a zone name that does not exist fails here, not in a report

    def _refuse_unknown(self, dormant: Callable[[], Collection[str]]) -> None:
        sections = {name.split(".")[0] for name in self.known if "." in name}
        unknown = [name for name in self.values if name not in self.known]
        asleep = set(dormant()) if unknown else set()
        for name in unknown:
            section = name.split(".")[0]
            # a section a loaded plugin declares settings in is checked, even when an
            # installed plugin of that name was not loaded (the same plugin passed to
            # make_crm under another name, say)
            if section in asleep and section not in sections:
                continue
            close = _closest(name, self.known)
            hint = f"; did you mean {close!r}?" if close else ""
            if not close and "." in name and name.split(".")[0] not in sections:
                hint = (
                    f"; no loaded plugin has settings [{name.split('.')[0]}]: install and "
                    "load the plugin, or remove them"
                )
            raise ConfigError(f"unknown setting {name!r} in {self._file}{hint}")
        known_vars = {setting.env_var: setting for setting in self.known.values()}
        prefixes = tuple(f"CRMKIT_{section.upper()}_" for section in sections)
        for var in sorted(self._environ):
            if var.startswith(prefixes) and var not in known_vars:
                close = _closest(var, known_vars)
                hint = f"; did you mean ${close}?" if close else ""
                raise ConfigError(f"unknown setting variable ${var}{hint}")

    def _check_pairs(self) -> None:
        """Refuse two settings whose values contradict each other (a retry base above the
        retry cap, a day that ends before it starts), naming both keys and values."""
        for setting in self.known.values():
            for other_name, strict in ((setting.at_most, False), (setting.below, True)):
                other = self.known.get(other_name or "")
                if other is None:
                    continue
                if setting.name not in self.values and other.name not in self.values:
                    continue  # both defaults: they agree by design
                value, limit = self[setting.name], self[other.name]
                order = setting.order or (lambda v: v)
                if order(value) < order(limit) or (not strict and order(value) == order(limit)):
                    continue
                relation = "must be at most"
                if strict:
                    relation = "must be before" if setting.order else "must be less than"
                raise ConfigError(
                    f"settings {setting.name!r} and {other.name!r} disagree: "
                    f"{setting.name!r} ({self._value_origin(setting)}) {relation} "
                    f"{other.name!r} ({self._value_origin(other)})"
                )

    def _value_origin(self, setting: Setting) -> str:
        """``7200 from /srv/crm/crmkit.toml``, ``3600 by default``: a value and its origin."""
        value = self[setting.name]
        shown = _number(value) if isinstance(value, int | float) else str(value)
        if setting.name not in self.values:
            return f"{shown} by default"
        return f"{shown} from {self._origin(setting)}"

    def require_secret_key(self) -> str:
        """The ``secret_key``; a :class:`ConfigError` naming the setting when it is empty."""
        key: str = self["secret_key"]
        if not key.strip():
            origin = self._origin(self.known["secret_key"])
            raise ConfigError(
                f"setting 'secret_key' from {origin} is empty: the web UI cannot sign its "
                "cookies; create the deployment with `crmkit init` or set CRMKIT_SECRET_KEY"
            )
        return key

    @property
    def zone(self) -> ZoneInfo:
        """The deployment's time zone (``locale.timezone``): its business days and reports."""
        name = self["locale.timezone"]
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            origin = self._origin(self.known["locale.timezone"])
            raise ConfigError(
                f"setting 'locale.timezone' from {origin}: no time zone {name!r}; "
                "give an IANA name such as Europe/Moscow"
            ) from None

    @property
    def database_url(self) -> str:
        """The database URL with a relative SQLite path resolved against the deployment."""
        url: str = self["database.url"]
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/"):
            rest = url[len(prefix) :]
            if rest and not rest.startswith(":memory:"):
                return prefix + str(self.root / rest)
        return url

    def path(self, name: str) -> Path:
        """A path-valued setting resolved against the deployment directory."""
        value = Path(self[name])
        return value if value.is_absolute() else self.root / value


def _closest(name: str, known: Iterable[str]) -> str | None:
    """The known name ``name`` was probably meant to be: close as a whole, or by its last
    part (``sesion_days`` written outside its section means ``security.session_days``)."""
    known = list(known)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
    if close:
        return close[0]
    by_leaf: dict[str, list[str]] = {}
    for candidate in known:
        by_leaf.setdefault(candidate.rpartition(".")[2], []).append(candidate)
    leaf = difflib.get_close_matches(name.rpartition(".")[2], list(by_leaf), n=1, cutoff=0.8)
    if leaf and len(by_leaf[leaf[0]]) == 1:
        return by_leaf[leaf[0]][0]
    return None


def new_config_text(database_url: str | None = None, plugins: Sequence[str] = ()) -> str:
    """The ``crmkit.toml`` written by ``crmkit init``, with a fresh secret key.

    ``plugins`` fills ``plugins.allow`` (a deployment plugin loads only when named there).
    """
    url = database_url or "sqlite:///crmkit.sqlite3"
    allow = ", ".join(f'"{name}"' for name in plugins)
    return (
        "# crmkit deployment settings; every key is described in docs/reference/settings.md.\n"
        "# Environment variables CRMKIT_<SECTION>_<KEY> override these values.\n"
        f'secret_key = "{secrets.token_urlsafe(32)}"\n\n'
        "[database]\n"
        f'url = "{url}"\n\n'
        "[queue]\n"
        "# empty: embedded queue; redis://127.0.0.1:6379/0 to share work between machines\n"
        'url = ""\n\n'
        "[plugins]\n"
        "# names of the plugins to load; an empty list loads every installed plugin\n"
        f"allow = [{allow}]\n\n"
        "[locale]\n"
        'default = "ru"\n'
        'timezone = "Europe/Moscow"\n'
        'phone_region = "RU"\n'
        'currency = "RUB"\n'
    )
