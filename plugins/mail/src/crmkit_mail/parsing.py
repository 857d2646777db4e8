"""Reading a raw mail (RFC 5322 / MIME bytes) into what crmkit records, without ever failing.

Mail from Russian correspondents arrives in every encoding there is: UTF-8, windows-1251 and
KOI8-R bodies, RFC 2047 encoded headers (and raw 8-bit ones that no standard allows),
quoted-printable, base64 and 8-bit transfer encodings, unknown or wrong charset labels, dates
that no parser reads.  :func:`parse_message` lets the standard library's ``email`` package
find the structure (parts, transfer encodings, parameters) and decodes every header and
body itself from the raw bytes, guessing the charset where the label is missing or wrong
(the header registry of ``policy.default`` was both slower and wrong on folded encoded
words); what had to be guessed or dropped is listed in ``defects``.  A message always
yields *something*: ingest never stops on one bad mail.
"""

from __future__ import annotations

import binascii
import codecs
import datetime as dt
import email
import email.header
import email.utils
import hashlib
import html
import mimetypes
import re
from email import policy
from email.message import Message
from html.parser import HTMLParser
from typing import Any

import attrs

#: Charsets tried, in order, for 8-bit text that declares none (or a wrong one).
CYRILLIC_GUESSES = ("cp1251", "koi8_r")
#: The ten most frequent Russian letters: the decoding that produces most of them wins.
_FREQUENT = frozenset("оеаинтсрвл")
#: Charset labels mail clients write that Python does not know, and what they mean.
_CHARSET_ALIASES = {
    "win-1251": "cp1251",
    "windows-cp1251": "cp1251",
    "x-cp1251": "cp1251",
    "cp-1251": "cp1251",
    "koi8": "koi8_r",
    "x-koi8-r": "koi8_r",
    "koi-8r": "koi8_r",
    "unknown-8bit": "",
    "x-unknown": "",
    "unknown": "",
    "default": "",
}
_EARLIEST = dt.datetime(1990, 1, 1, tzinfo=dt.UTC)


@attrs.frozen
class MailAttachment:
    """A file that travelled with the mail.

    A decoding process that writes the file to the CRM's storage itself sets ``stored``
    (a :class:`crmkit.storage.StoredFile`) and leaves ``data`` empty (``None``).
    """

    filename: str
    content_type: str
    data: bytes | None
    stored: Any = None


@attrs.frozen
class Bounce:
    """A delivery status notification: which recipients failed, and for which message.

    ``action`` is ``failed`` (a bounce: ``recipients`` failed) or what the report says
    instead (``delayed``: still being tried, no bounce; ``recipients`` are the delayed
    ones).  Either is a notice, never a conversation or a lead.
    """

    recipients: tuple[str, ...]
    status: str
    original_message_id: str | None
    action: str = "failed"

    @property
    def failed(self) -> bool:
        """Whether the mail was given up on (delayed is not a bounce)."""
        return self.action == "failed"


@attrs.frozen
class ParsedMail:
    """A mail as crmkit understands it; ``defects`` say what had to be guessed."""

    message_id: str | None
    sender: str
    sender_name: str | None
    recipients: tuple[str, ...]
    subject: str
    date: dt.datetime | None
    text: str
    html: str | None
    in_reply_to: str | None
    references: tuple[str, ...]
    attachments: tuple[MailAttachment, ...]
    bounce: Bounce | None
    auto_submitted: bool
    list_unsubscribe: str | None
    digest: str
    defects: tuple[str, ...] = ()
    #: domains the receiving server's Authentication-Results (the topmost one) says passed
    #: DMARC, DKIM or SPF (see :func:`authenticated_domains`)
    authenticated: tuple[str, ...] = ()

    @property
    def thread_refs(self) -> tuple[str, ...]:
        """Ids of earlier messages this one answers, the nearest first."""
        refs = [self.in_reply_to] if self.in_reply_to else []
        refs += [r for r in reversed(self.references) if r not in refs]
        return tuple(refs)


# -- text decoding ------------------------------------------------------------------------


def normalize_charset(label: str | None) -> str | None:
    """A Python codec name for a charset label, or ``None`` when it is unknown or empty."""
    if not label:
        return None
    name = label.strip().strip("\"'").lower()
    name = _CHARSET_ALIASES.get(name, name)
    if not name:
        return None
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def guess_cyrillic(data: bytes) -> str:
    """Decode 8-bit bytes of unknown charset: UTF-8 if valid, else windows-1251 or KOI8-R.

    The two Cyrillic code pages put lower- and upper-case letters in swapped halves, so the
    one whose decoding yields more of the most frequent lower-case Russian letters wins.
    """
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode(_cyrillic_page(data), errors="replace")


def _cyrillic_page(data: bytes) -> str:
    """The code page of :data:`CYRILLIC_GUESSES` whose reading of ``data`` has the most
    frequent lower-case letters (the first one of a tie)."""
    return max(_GUESSED_PAGES, key=lambda charset: _frequent(data, charset))


def decode_bytes(data: bytes, declared: str | None, defects: list[str], where: str) -> str:
    """Text from bytes in the ``declared`` charset, guessing when it is missing or wrong."""
    charset = normalize_charset(declared)
    if charset is None and declared and declared.lower() not in _CHARSET_ALIASES:
        defects.append(f"{where}: unknown charset {declared!r}")
    if charset in (None, "ascii"):
        if data.isascii():
            return data.decode("ascii")
        if charset == "ascii":
            defects.append(f"{where}: 8-bit text labelled us-ascii")
        return guess_cyrillic(data)
    try:
        text = data.decode(charset)
    except UnicodeDecodeError:
        defects.append(f"{where}: not valid {declared}")
        guessed = guess_cyrillic(data)
        return guessed if "\ufffd" not in guessed else data.decode(charset, errors="replace")
    if charset in _CYRILLIC_PAGES and not data.isascii():
        return _relabelled(data, text, charset, declared, defects, where)
    return text


#: The single-byte Cyrillic code pages whose label is checked against the text it gives (any
#: byte decodes in them, so a wrong one gives no error, only mojibake), by what they call
#: themselves in a defect.
_CYRILLIC_PAGES = {"cp1251": "windows-1251", "koi8-r": "koi8-r", "koi8-u": "koi8-u"}
_GUESSED_PAGES = tuple(codecs.lookup(charset).name for charset in CYRILLIC_GUESSES)
_CYRILLIC_LETTER = re.compile("[\u0400-\u04ff]")
_SMALL_THEN_CAPITAL = re.compile("[а-яё][А-ЯЁ]")
#: Bytes that are not one of the frequent letters, lower-case only or of either case, by page.
_NOT_FREQUENT = {
    (charset, either_case): bytes(
        set(range(256)) - set((letters + letters.upper() * either_case).encode(charset))
    )
    for charset in _CYRILLIC_PAGES
    for either_case in (False, True)
    for letters in ["".join(sorted(_FREQUENT))]
}


#: The page a wrong label of a Cyrillic page most likely hides (KOI8-U puts the Russian
#: letters where KOI8-R does).
_OTHER_PAGE = {"cp1251": "koi8-r", "koi8-r": "cp1251", "koi8-u": "cp1251"}
# the frequent small letters are bytes E0-FF in windows-1251 and C0-DF in KOI8: one pass of
# translate marks those of each page ("w", "k") and drops every other byte
_LETTER_BYTES = (
    "".join(sorted(_FREQUENT)).encode("cp1251"),
    "".join(sorted(_FREQUENT)).encode("koi8-r"),
)
_MARK = bytes.maketrans(b"".join(_LETTER_BYTES), b"w" * 10 + b"k" * 10)
_UNMARKED = bytes(set(range(256)) - set(b"".join(_LETTER_BYTES)))
_MARKER = {"cp1251": b"w", "koi8-r": b"k", "koi8-u": b"k"}


def _frequent(data: bytes, charset: str, either_case: bool = False) -> int:
    """How many frequent Russian letters ``data`` holds, read in a Cyrillic code page."""
    return len(data.translate(None, _NOT_FREQUENT[charset, either_case]))


def _relabelled(
    data: bytes, text: str, charset: str, declared: str | None, defects: list[str], where: str
) -> str:
    """``text`` (``data`` read in the Cyrillic code page it was labelled with), or its reading
    in UTF-8 or the other code page when that is clearly the Russian text.

    Valid UTF-8 with Cyrillic letters in it is UTF-8: a Russian text in a code page is never
    valid UTF-8.  Read in the wrong one of windows-1251 and KOI8-R, Russian letters change
    case (and letter).  The other page wins when its reading has at least twice as many of
    the frequent lower-case letters, and three more, *and* either the labelled reading has
    more words with a capital after a small letter ("пРИВЕТ", a capitalised word read in the
    wrong page) or the other reading has half as many again frequent letters of either case
    (ten at least).  Correct text in capitals, which the wrong page turns into small letters,
    so never flips; short texts all in small letters are left as labelled.
    """
    sample = data[:4096]  # enough letters to tell, whatever the length of the text
    marks = sample.translate(_MARK, _UNMARKED)
    other = _OTHER_PAGE[charset]
    own, theirs = marks.count(_MARKER[charset]), marks.count(_MARKER[other])
    if own * 8 < len(sample):  # few letters of the labelled page's: UTF-8, perhaps
        try:
            utf8 = data.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            if _CYRILLIC_LETTER.search(utf8):
                defects.append(f"{where}: charset {declared} looked like utf-8")
                return utf8
    if theirs < 2 * own + 3:
        return text
    either_case = _frequent(sample, other, True)
    swapped = len(_SMALL_THEN_CAPITAL.findall(sample.decode(charset, errors="replace")))
    if swapped > len(_SMALL_THEN_CAPITAL.findall(sample.decode(other, errors="replace"))) or (
        either_case >= 10 and either_case >= 1.5 * _frequent(sample, charset, True)
    ):
        defects.append(f"{where}: charset {declared} looked like {_CYRILLIC_PAGES[other]}")
        return data.decode(other, errors="replace")
    return text


_SURROGATE = re.compile("[\udc80-\udcff]")
#: What a decoded header value may not hold: C0 control characters but the tab (NUL, which
#: PostgreSQL refuses in text, above all) and line breaks (a reply's subject made of one
#: would not go out).
_HEADER_CONTROLS = re.compile("[\x00-\x08\x0a-\x1f\x85\u2028\u2029]")
#: Line breaks, as ``str.splitlines`` knows them; a run of them becomes one space.
_LINE_BREAKS = re.compile("[\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]+")
_OTHER_CONTROLS = re.compile("[\x00-\x08\x0e-\x1b\x1f]+")
_BASE64_WORD = re.compile(r"=\?([A-Za-z0-9_.:+-]+)\?[bB]\?([A-Za-z0-9+/]*={0,2})\?=")
_FOLDING = re.compile(r"\r?\n[ \t]+")
_BLANKS = re.compile(r"([ \t]+)")


def _unsurrogate(value: str) -> str:
    """Raw 8-bit header bytes (kept by the parser as surrogate escapes), decoded by guess."""
    if value.isascii() or not _SURROGATE.search(value):
        return value
    return guess_cyrillic(value.encode("utf-8", errors="surrogateescape"))


def clean_header(value: str, defects: list[str], where: str) -> str:
    """A decoded header value on one line: each run of line breaks made one space, other
    control characters (but the tab) removed; a defect says which were there."""
    if value.isprintable() or _HEADER_CONTROLS.search(value) is None:
        return value
    if _LINE_BREAKS.search(value) is not None:
        defects.append(f"{where}: line breaks made spaces")
        value = _LINE_BREAKS.sub(" ", value)
    if _OTHER_CONTROLS.search(value) is not None:
        defects.append(f"{where}: control characters removed")
        value = _OTHER_CONTROLS.sub("", value)
    return value


def decode_header_text(raw: str, defects: list[str] | None = None, where: str = "header") -> str:
    """Decode a raw header value: RFC 2047 encoded words in any charset, raw 8-bit bytes.

    The result is one line without control characters (see :func:`clean_header`).
    """
    defects = defects if defects is not None else []
    raw = _FOLDING.sub(" ", raw or "")
    if "=?" not in raw:  # no encoded word: decode_header would hand the text back as it is
        return clean_header(_unsurrogate(raw), defects, where).strip()
    single = _BASE64_WORD.fullmatch(raw.strip())
    if single is not None and len(single[2]) % 4 == 0:
        # the commonest case, one base64 word: what decode_header would make of it, sooner
        data = binascii.a2b_base64(single[2])
        text = decode_bytes(data, single[1].lower(), defects, where)
        return clean_header(text, defects, where).strip()
    if not raw.isascii():
        # raw 8-bit words beside encoded ones: decode_header would turn their bytes into
        # "\\udcd0" text, so they are read as a raw header is, the rest by decode_header
        return clean_header(_decode_mixed(raw, defects, where), defects, where).strip()
    return clean_header(_decode_words(raw, defects, where), defects, where).strip()


def _decode_words(raw: str, defects: list[str], where: str) -> str:
    """An ASCII header value's encoded words decoded by ``email.header.decode_header``."""
    try:
        chunks = email.header.decode_header(raw)
    except Exception as exc:  # a malformed encoded word: keep the text as it came
        defects.append(f"{where}: {exc}")
        return _unsurrogate(raw)
    parts: list[str] = []
    for chunk, charset in chunks:
        if isinstance(chunk, str):
            parts.append(_unsurrogate(chunk))
        else:
            # decode_header hands back bytes for encoded words and for plain text beside them
            parts.append(
                decode_bytes(chunk, charset, defects, where)
                if charset
                else _unsurrogate(chunk.decode("ascii", errors="surrogateescape"))
            )
    return "".join(parts)


def _decode_mixed(raw: str, defects: list[str], where: str) -> str:
    """A header value with both raw 8-bit words and encoded ones: the 8-bit words in the one
    charset guessed from all of them together (as a raw header without encoded words is
    read), the ASCII stretches between them by :func:`_decode_words`, blanks kept."""
    pieces = _BLANKS.split(raw)  # words at even places, the blanks between them at odd ones
    joined = b" ".join(
        p.encode("utf-8", "surrogateescape") for p in pieces[::2] if _SURROGATE.search(p)
    )
    try:
        joined.decode("utf-8")
        charset = "utf-8"
    except UnicodeDecodeError:
        charset = _cyrillic_page(joined)
    parts: list[str] = []
    between: list[str] = []  # ASCII words and blanks since the last 8-bit word
    for place, piece in enumerate(pieces):
        if place % 2 or piece.isascii():
            between.append(piece)
            continue
        parts.append(_decode_between("".join(between), defects, where))
        between = []
        if _SURROGATE.search(piece):
            piece = piece.encode("utf-8", "surrogateescape").decode(charset, errors="replace")
        parts.append(piece)
    parts.append(_decode_between("".join(between), defects, where))
    return "".join(parts)


def _decode_between(piece: str, defects: list[str], where: str) -> str:
    """ASCII text between raw 8-bit words: its encoded words decoded, its blanks kept."""
    core = piece.strip(" \t")
    if "=?" not in core:
        return piece
    lead = piece[: len(piece) - len(piece.lstrip(" \t"))]
    trail = piece[len(piece.rstrip(" \t")) :]
    return lead + _decode_words(core, defects, where) + trail


def _raw_headers(message: Message) -> dict[str, list[str]]:
    """Every raw header value by lower-case name, in the order they came."""
    found: dict[str, list[str]] = {}
    for key, value in message.raw_items():
        found.setdefault(key.lower(), []).append(str(value))
    return found


def _raw_header(message: Message | dict[str, list[str]], name: str) -> str | None:
    headers = message if isinstance(message, dict) else _raw_headers(message)
    values = headers.get(name.lower())
    return values[0] if values else None


def header_text(message: Message | dict[str, list[str]], name: str, defects: list[str]) -> str:
    """A header as text, decoded from its raw value (encoded words, raw 8-bit bytes)."""
    raw = _raw_header(message, name)
    return decode_header_text(raw, defects, name) if raw is not None else ""


# -- addresses, ids, dates ----------------------------------------------------------------


# one mailbox of the plain shapes almost all mail has: ``addr@domain``, ``<addr@domain>``,
# ``Words or "quoted words" <addr@domain>`` (no comments, routes, groups or escapes)
_ATOM = r"[^\x00-\x20\x7f()<>@,;:\\\"\[\]]+"
_QUOTED = r'"[^"\\\r\n]*"'
_PLAIN_MAILBOX = re.compile(
    rf"[ \t]*(?:(?P<bare>{_ATOM}@{_ATOM})"
    rf"|(?P<phrase>(?:[ \t]*(?:{_QUOTED}|{_ATOM}))*)[ \t]*<[ \t]*(?P<addr>{_ATOM}@{_ATOM})[ \t]*>)"
    r"[ \t]*"
)
_PHRASE_WORD = re.compile(rf'"([^"\\\r\n]*)"|({_ATOM})')


def plain_addresses(value: str) -> list[tuple[str, str]] | None:
    """``email.utils.getaddresses([value])`` for plain address lists, ``None`` for the rest.

    The standard parser is general and slow; this reads the common shapes with one regular
    expression each and leaves anything else (comments, quoting escapes, groups) to it.
    """
    if "," in value and '"' in value:
        return None  # a comma may sit inside a quoted name
    found = []
    for piece in value.split(","):
        if not piece.strip(" \t"):
            continue
        matched = _PLAIN_MAILBOX.fullmatch(piece)
        if matched is None:
            return None
        if matched["bare"] is not None:
            found.append(("", matched["bare"]))
        else:
            # the words of the name (quoted ones without their quotes), one space apart
            words = [
                w[2] if w[1] is None else w[1] for w in _PHRASE_WORD.finditer(matched["phrase"])
            ]
            found.append((" ".join(words), matched["addr"]))
    return found


def address_key(address: str) -> str:
    """An address as crmkit keeps it: its domain in lower case (domains ignore case, an IDN
    domain stays as written, Unicode or ``xn--``), an ASCII local part in lower case as
    everywhere in crmkit, a non-ASCII one (RFC 6532) as written: folding its case could
    name another mailbox."""
    address = address.strip()
    local, at, domain = address.rpartition("@")
    if not at:
        return address.lower()
    return f"{local.lower() if local.isascii() else local}@{domain.lower()}"


def _top_level(value: str, stops: str) -> list[tuple[int, str]]:
    """Where characters of ``stops`` stand outside quoted strings, comments and ``<...>``
    (a ``"<"`` in ``stops`` is found where it opens an angle address)."""
    found: list[tuple[int, str]] = []
    quoted = escaped = False
    depth = angle = 0
    for place, char in enumerate(value):
        if escaped:
            escaped = False
        elif char == "\\" and (quoted or depth):
            escaped = True
        elif quoted:
            quoted = char != '"'
        elif char == "(":
            depth += 1
        elif char == ")" and depth:
            depth -= 1
        elif depth:
            continue
        elif char == '"':
            quoted = True
        elif char == "<":
            if not angle and "<" in stops:
                found.append((place, char))
            angle += 1
        elif char == ">" and angle:
            angle -= 1
        elif not angle and char in stops:
            found.append((place, char))
    return found


_QUOTED_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')
_ADDRESS_COMMENT = re.compile(r"\((?:[^()\\]|\\.)*\)")


def split_mailboxes(value: str) -> list[tuple[str, str]]:
    """``(display name, address)`` of each mailbox of an address list (RFC 5322 3.4).

    Commas split mailboxes only outside quoted strings, comments and angle brackets; a
    mailbox with an angle address has that for its address and everything before it for
    its name, whatever the name holds (an unquoted "@", raw 8-bit text, encoded words that
    decode to "<" or ","), so a name never becomes an address.  Group names ("Team:")
    and the group's closing ";" are dropped; other shapes go to ``email.utils``.
    """
    cuts = [place for place, _char in _top_level(value, ",;")]
    bounds = zip([-1, *cuts], [*cuts, len(value)], strict=True)
    pieces = [value[a + 1 : b] for a, b in bounds]
    found: list[tuple[str, str]] = []
    for piece in pieces:
        colons = [place for place, _char in _top_level(piece, ":")]
        if colons:  # a group's name before its first member
            piece = piece[colons[0] + 1 :]
        opening = _angle_start(piece)
        if opening is None:
            if piece.strip(" \t"):
                found.extend(email.utils.getaddresses([piece]))
            continue
        closing = piece.find(">", opening)
        inside = piece[opening + 1 : closing if closing >= 0 else len(piece)].strip(" \t")
        inside = inside.rpartition(":")[2] if inside.startswith("@") else inside  # a route
        display = _ADDRESS_COMMENT.sub(" ", piece[:opening])
        display = _QUOTED_STRING.sub(lambda m: re.sub(r"\\(.)", r"\1", m[1]), display)
        found.append((" ".join(display.split()), inside.strip()))
    return found


def _angle_start(piece: str) -> int | None:
    """Where a mailbox's angle address opens (outside quotes and comments), if it has one."""
    return next((place for place, _char in _top_level(piece, "<")), None)


def _addresses(
    message: Message | dict[str, list[str]], name: str, defects: list[str]
) -> list[tuple[str, str]]:
    """``(display name, lower-case address)`` pairs of an address header.

    Read from the raw value: the standard header registry puts a space between adjacent
    encoded words of a display name split by folding ("про даж"), which RFC 2047 forbids.
    """
    headers = message if isinstance(message, dict) else _raw_headers(message)
    found: list[tuple[str, str]] = []
    for raw in headers.get(name, ()):
        unfolded = _FOLDING.sub(" ", raw)
        pairs = plain_addresses(unfolded)
        if pairs is None:
            pairs = split_mailboxes(unfolded)
        for display, address in pairs:
            if "@" in address:
                found.append(
                    (
                        decode_header_text(display, defects, name),
                        address_key(clean_header(_unsurrogate(address), defects, name)),
                    )
                )
    if found or isinstance(message, dict):
        return found
    try:  # the registry's parser copes with some shapes getaddresses does not
        header = message.get(name)
        for address in getattr(header, "addresses", ()):
            if address.addr_spec and "@" in address.addr_spec:
                found.append(
                    (
                        clean_header(
                            _unsurrogate(address.display_name or ""), defects, name
                        ).strip(),
                        address_key(clean_header(_unsurrogate(address.addr_spec), defects, name)),
                    )
                )
    except Exception as exc:  # nothing readable: the caller reports a missing sender
        defects.append(f"{name}: {type(exc).__name__}")
    return found


_MSGID = re.compile(r"<([^<>\s]+)>")


def message_ids(value: str | None) -> tuple[str, ...]:
    """The ``<id>`` values in a Message-ID, In-Reply-To or References header."""
    if not value:
        return ()
    found = _MSGID.findall(value)
    if not found and value.strip() and " " not in value.strip():
        found = [value.strip()]  # an id without angle brackets, as some clients write it
    return tuple(f"<{item}>" for item in found)


_COMMENT = re.compile(r"\([^)]*\)")
_RUSSIAN_MONTHS = {
    "янв": "Jan", "фев": "Feb", "мар": "Mar", "апр": "Apr", "мая": "May", "май": "May",
    "июн": "Jun", "июл": "Jul", "авг": "Aug", "сен": "Sep", "окт": "Oct", "ноя": "Nov",
    "дек": "Dec",
}  # fmt: skip


#: Zone names of Russian mail (and its neighbours') that ``parsedate`` does not know, as
#: hours east of UTC.  Any other zone name it does not know leaves the date unreadable.
_ZONE_NAMES = {
    "MSK": 3, "МСК": 3, "MSD": 4, "SAMT": 4, "YEKT": 5, "OMST": 6, "NOVT": 7, "KRAT": 7,
    "IRKT": 8, "YAKT": 9, "VLAT": 10, "MAGT": 11, "PETT": 12,
    "CET": 1, "CEST": 2, "EET": 2, "EEST": 3,
}  # fmt: skip
#: Moscow time was UTC+4 all year from 27 March 2011 to 26 October 2014, and called MSK.
_MOSCOW_SUMMER = (dt.datetime(2011, 3, 27, 2), dt.datetime(2014, 10, 26, 2))
# the word after the time of day, where a date has its zone
_ZONE_AFTER_TIME = re.compile(r"\d:\d\d(?::\d\d)?[ \t]+([^\s\d+-][^\s]*)")

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_PLAIN_DATE = re.compile(
    r"[ \t]*(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun),[ \t]*)?(\d{1,2}) (" + "|".join(_MONTHS) + ")"
    r" (\d{4}) (\d\d):(\d\d)(?::(\d\d))? ([+-])(\d\d)(\d\d)[ \t]*"
)


def _plain_date(value: str) -> dt.datetime | None:
    """A date in the exact RFC 5322 form most mail has, read without the general parser."""
    found = _PLAIN_DATE.fullmatch(value)
    if found is None:
        return None
    day, month, year, hour, minute, second, sign, zone_h, zone_m = found.groups()
    offset = dt.timedelta(hours=int(zone_h), minutes=int(zone_m))
    try:
        return dt.datetime(
            int(year), _MONTHS.index(month) + 1, int(day), int(hour), int(minute), int(second or 0),
            tzinfo=dt.timezone(-offset if sign == "-" else offset),
        )  # fmt: skip
    except ValueError:  # out of range: the general parser decides what to make of it
        return None


def _zone_name(value: str, when: dt.datetime) -> dt.timezone | None:
    """The zone of a date ``parsedate`` read without one: UTC when it has no zone name after
    its time (RFC 5322's "-0000", or none at all), that of a name of :data:`_ZONE_NAMES`, or
    ``None`` for any other name ("GMT+3", "IST"): what time it means is not known."""
    found = _ZONE_AFTER_TIME.search(value)
    if found is None:
        return dt.UTC
    name = found[1].strip(",").upper()
    hours = _ZONE_NAMES.get(name)
    if hours is None:
        return None
    if name in ("MSK", "МСК") and _MOSCOW_SUMMER[0] <= when < _MOSCOW_SUMMER[1]:
        hours = 4
    return dt.timezone(dt.timedelta(hours=hours))


def parse_date(value: str | None, defects: list[str]) -> dt.datetime | None:
    """A Date header as aware UTC, or ``None`` (with a defect) when it cannot be read."""
    if not value or not value.strip():
        return None
    when = _plain_date(value)
    if when is not None:
        when = when.astimezone(dt.UTC)
        if when < _EARLIEST or when > dt.datetime.now(dt.UTC) + dt.timedelta(days=2):
            defects.append(f"Date: implausible {value!r}")
            return None
        return when
    value = _unsurrogate(value)
    candidates = [value]
    cleaned = _COMMENT.sub("", value).replace(".", " ").strip()
    for russian, english in _RUSSIAN_MONTHS.items():
        cleaned = re.sub(russian + r"[а-я]*", english, cleaned, flags=re.IGNORECASE)
    candidates.append(cleaned)
    # "12 Oct 2017 09:41:56 +0500" without a weekday, or with a zone name Python lacks
    candidates.append(re.sub(r"\s+[A-Z]{3,5}$", "", cleaned))
    for candidate in candidates:
        try:
            when = email.utils.parsedate_to_datetime(candidate)
        except (TypeError, ValueError, IndexError, OverflowError):
            continue
        if when is None:
            continue
        if when.tzinfo is None:  # no zone, "-0000" (UTC) or a zone name parsedate lacks
            zone = _zone_name(cleaned, when)
            if zone is None:
                break
            when = when.replace(tzinfo=zone)
        when = when.astimezone(dt.UTC)
        if when < _EARLIEST or when > dt.datetime.now(dt.UTC) + dt.timedelta(days=2):
            defects.append(f"Date: implausible {value!r}")
            return None
        return when
    defects.append(f"Date: unreadable {value!r}")
    return None


# -- bodies and attachments ---------------------------------------------------------------


class _TextOfHtml(HTMLParser):
    BLOCKS = frozenset({"p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "table", "hr"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in ("script", "style", "head"):
            self.skip += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "head"):
            self.skip = max(0, self.skip - 1)
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.parts.append(data)


def html_to_text(source: str) -> str:
    """Readable plain text of an HTML body (for mails that have no text part)."""
    parser = _TextOfHtml()
    try:
        parser.feed(source)
        parser.close()
    except Exception:  # html.parser is lenient, but never let a body stop ingest
        return html.unescape(re.sub(r"<[^>]+>", " ", source))
    lines = [" ".join(line.split()) for line in "".join(parser.parts).splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def part_text(part: Message, defects: list[str]) -> str:
    """The decoded text of a text part (transfer encoding undone, charset applied)."""
    try:
        data = part.get_payload(decode=True)
    except Exception as exc:  # a broken base64 or QP body
        defects.append(f"body: {type(exc).__name__}")
        data = None
    if data is None:
        payload = part.get_payload()
        data = payload.encode("utf-8", "surrogateescape") if isinstance(payload, str) else b""
    return decode_bytes(data, part.get_content_charset(), defects, "body")


def _raw_8bit_filename(part: Message) -> str | None:
    """The file name of a part whose Content-Disposition or Content-Type carries raw 8-bit
    bytes (no standard allows them, mail clients write them), as surrogate-escaped text.

    The email package would read such a header as "unknown-8bit" and turn every byte into
    U+FFFD; here its parameters are read from the raw bytes, each byte kept as one Latin-1
    character, and the name's bytes are given back for the headers' charset guessing.
    """
    for header, parameter in (("content-disposition", "filename"), ("content-type", "name")):
        raw = _raw_header(part, header)
        if raw is None or raw.isascii():
            continue
        probe = Message()
        probe[header] = raw.encode("utf-8", "surrogateescape").decode("latin-1")
        value = probe.get_param(parameter, header=header)
        if value is None:
            continue
        if isinstance(value, tuple):  # RFC 2231 pieces, collapsed once the bytes are read
            value = email.utils.collapse_rfc2231_value(value)
        try:
            return str(value).encode("latin-1").decode("ascii", "surrogateescape")
        except UnicodeEncodeError:  # an RFC 2231 value in its own charset, decoded already
            return str(value)
    return None


def _filename(part: Message, defects: list[str]) -> str | None:
    raw_name = _raw_8bit_filename(part)
    if raw_name is not None:
        return decode_header_text(raw_name, defects, "filename").replace("/", "_") or None
    try:
        name = part.get_filename()
    except Exception as exc:
        defects.append(f"filename: {type(exc).__name__}")
        name = None
    if name is None:
        try:
            name = part.get_param("name", header="content-type")  # type: ignore[assignment]
        except Exception:
            name = None
        if isinstance(name, tuple):
            name = email.utils.collapse_rfc2231_value(name)
    if not name:
        return None
    return decode_header_text(str(name), defects, "filename").replace("/", "_") or None


def _is_attachment(part: Message, filename: str | None) -> bool:
    disposition = (part.get_content_disposition() or "").lower()
    if disposition == "attachment":
        return True
    if part.get_content_maintype() in ("text", "multipart"):
        return False
    # inline images of an HTML body (cid: references) are decoration, not documents
    return disposition != "inline" and part.get("content-id") is None and filename is not None


def _walk(
    part: Message,
    defects: list[str],
    texts: list[str],
    htmls: list[str],
    files: list[MailAttachment],
) -> None:
    content_type = part.get_content_type()
    if content_type == "message/rfc822":
        inner = part.get_payload()
        inner_message = inner[0] if isinstance(inner, list) and inner else None
        name = _filename(part, defects)
        if inner_message is not None:
            data = inner_message.as_bytes(policy=policy.compat32)
            if not name:
                name = (header_text(inner_message, "subject", defects) or "message")[:80] + ".eml"
            files.append(MailAttachment(name, "message/rfc822", data))
        return
    if part.is_multipart():
        payload = part.get_payload()
        subparts = payload if isinstance(payload, list) else []
        if content_type == "multipart/alternative":
            # one body of the alternatives: the plain one if any, the richest html otherwise
            before = len(texts)
            for sub in subparts:
                if sub.get_content_type() == "text/plain" and len(texts) == before:
                    _walk(sub, defects, texts, htmls, files)
            for sub in subparts:
                if sub.get_content_type() != "text/plain":
                    _walk(sub, defects, texts, htmls, files)
            return
        for sub in subparts:
            _walk(sub, defects, texts, htmls, files)
        return
    filename = _filename(part, defects)
    if _is_attachment(part, filename):
        try:
            data = part.get_payload(decode=True) or b""
        except Exception as exc:
            defects.append(f"attachment: {type(exc).__name__}")
            data = b""
        if not filename:
            extension = mimetypes.guess_extension(content_type) or ".bin"
            filename = f"attachment-{len(files) + 1}{extension}"
        files.append(
            MailAttachment(filename, clean_header(content_type, defects, "attachment"), data)
        )
    elif content_type == "text/plain":
        texts.append(part_text(part, defects))
    elif content_type == "text/html":
        htmls.append(part_text(part, defects))


# -- authentication results -------------------------------------------------------------

_RESULT = re.compile(r"\b(dmarc|dkim|spf)\s*=\s*([a-z]+)", re.IGNORECASE)
_PROPERTY = re.compile(
    r"\b(header\.from|header\.d|header\.i|smtp\.mailfrom)\s*=\s*([^\s;()]+)", re.IGNORECASE
)


def authenticated_domains(value: str | None) -> tuple[str, ...]:
    """The domains an ``Authentication-Results`` header (RFC 8601) says passed: DMARC's
    ``header.from``, DKIM's ``header.d`` (or ``header.i``'s domain), SPF's
    ``smtp.mailfrom`` domain.  Only the topmost such header should be given: it is the
    one the receiving server added (the ones below may be anybody's)."""
    if not value:
        return ()
    found: list[str] = []
    text = _FOLDING.sub(" ", value)
    for clause in text.split(";")[1:]:  # the first part is the server's id
        result = _RESULT.search(clause)
        if result is None or result.group(2).lower() != "pass":
            continue
        method = result.group(1).lower()
        wanted = {"dmarc": ("header.from",), "dkim": ("header.d", "header.i"),
                  "spf": ("smtp.mailfrom",)}[method]  # fmt: skip
        for name, domain in _PROPERTY.findall(clause):
            if name.lower() in wanted:
                domain = domain.strip("<>\"'").rpartition("@")[2].lower().rstrip(".")
                if domain and domain not in found:
                    found.append(domain)
                break
    return tuple(found)


def aligned(address: str, domains: tuple[str, ...]) -> bool:
    """Whether ``address``'s domain is one of ``domains`` or below one of them (relaxed
    alignment: mail of ``sales@shop.example.ru`` signed by ``example.ru``)."""
    domain = address.rpartition("@")[2].lower().rstrip(".")
    return bool(domain) and any(domain == d or domain.endswith("." + d) for d in domains)


# -- delivery status notifications --------------------------------------------------------

_ACTION = re.compile(r"[a-z]*")


def _bounce(message: Message, defects: list[str]) -> Bounce | None:
    """A bounce from a multipart/report DSN (RFC 3464), or ``None`` for an ordinary mail."""
    if message.get_content_type() != "multipart/report":
        return None
    if (message.get_param("report-type") or "").lower() != "delivery-status":
        return None
    recipients: list[str] = []
    others: list[str] = []  # delayed (or delivered, relayed...): a notice, no bounce
    other_action = ""
    status = ""
    original: str | None = None
    for part in message.walk():
        kind = part.get_content_type()
        if kind == "message/delivery-status":
            payload = part.get_payload()
            blocks = payload if isinstance(payload, list) else []
            for block in blocks:
                # "failed", "Failed (mailbox full)", "failed; comment": the first word
                action = _ACTION.match(str(block.get("action") or "").strip().lower())[0]
                recipient = block.get("final-recipient") or block.get("original-recipient")
                if not recipient:
                    continue
                address = clean_header(str(recipient), defects, "bounce")
                address = address.split(";", 1)[-1].strip().strip("<>").lower()
                if "@" not in address:
                    continue
                found_status = clean_header(str(block.get("status") or ""), defects, "bounce")
                if action in ("failed", ""):
                    recipients.append(address)
                    status = status or found_status.strip()
                else:
                    others.append(address)
                    other_action = other_action or action
                    if not recipients:
                        status = status or found_status.strip()
        elif kind in ("message/rfc822", "text/rfc822-headers") and original is None:
            inner: Any = part.get_payload()
            if isinstance(inner, list) and inner:
                value = clean_header(str(inner[0].get("message-id", "")), defects, "bounce")
                original = (message_ids(value) or (None,))[0]
            else:
                text = part_text(part, defects).replace("\x00", "")
                found = re.search(r"^message-id:\s*(.+)$", text, re.IGNORECASE | re.MULTILINE)
                original = (message_ids(found.group(1)) or (None,))[0] if found else None
    if recipients:
        return Bounce(tuple(recipients), status, original)
    # a delivery status that is no failure (delayed...) is a notice all the same
    return Bounce(tuple(others), status, original, other_action or "delayed")


#: Local parts of mail systems' own addresses (bounces, notices): no person writes from them.
MAIL_SYSTEMS = frozenset({"mailer-daemon", "postmaster", "mail-daemon", "mailerdaemon"})

# plain-text notices (no multipart/report): what their subjects and bodies say
_REPLY_PREFIX = re.compile(r"\s*(?:re|fwd?|aw|wg|отв|пересл)\s*:", re.IGNORECASE)
# a person's mailbox answering by itself (vacation, out of office): the subject's start
_AUTO_REPLY_SUBJECT = re.compile(
    r"\s*(?:out of (?:the )?office|automatic reply|auto[- ]?reply|auto[- ]?response"
    r"|auto\s*:|vacation|away from (?:the )?office|i am away|i'm away|absence"
    r"|автоответ|автоматический ответ|авто\s*:|нет на месте|вне офиса|в отпуске|отсутству)",
    re.IGNORECASE,
)
#: Headers only auto-responders add (their value does not matter).
_AUTO_REPLY_HEADERS = ("x-autoreply", "x-autorespond", "x-mail-autoreply")
_DELAY_SUBJECT = re.compile(
    r"\(delay\)|delayed mail|delivery delayed|delivery has been delayed|still being retried"
    r"|warning: (?:message .{0,60}delayed|could not send)|задерж",
    re.IGNORECASE,
)
_FAILURE_SUBJECT = re.compile(
    r"undeliver|returned mail|returned to sender|mail delivery failed|delivery failure"
    r"|\(failure\)|failure notice|delivery has failed|could not be delivered|non-?delivery"
    r"|mail system error|недоставлен|не\s+доставлен|ошибка\s+доставки|не\s+удалось\s+доставить",
    re.IGNORECASE,
)
_FAILURE_BODY = re.compile(
    r"permanent error|permanent fatal error|could not be delivered|failed permanently"
    r"|address(?:\(es\)|es)? failed|undeliverable|не\s+может\s+быть\s+доставлен"
    r"|не\s+удалось\s+доставить|не\s+было\s+доставлен",
    re.IGNORECASE,
)
# the line after which a notice quotes the original (its headers, often its text)
_COPY_FENCE = re.compile(
    r"^\s*[-=_*]{2,}.*(?:copy of|below this line|original|returned message|headers"
    r"|исходн|копи|оригинал)",
    re.IGNORECASE | re.MULTILINE,
)
_ADDRESS = r"[^\s<>()\[\]\",;:@]+@[^\s<>()\[\]\",;:@]+\.[^\s<>()\[\]\",;:@]+"
_DSN_FIELD = re.compile(
    rf"^\s*(final|original)-recipient:\s*(?:rfc822\s*;)?\s*<?({_ADDRESS})>?",
    re.IGNORECASE | re.MULTILINE,
)
# Postfix, qmail, sendmail: "<address>: host ... said: 550 ..." or "<address>" on its own
_ANGLED_LINE = re.compile(rf"^<({_ADDRESS})>(?::|\s*$)", re.MULTILINE)
# Exim, Gmail, Mail.ru: "The following address(es) failed:" then the addresses, one a line
_LIST_INTRO = re.compile(
    r"(?:failed|failed permanently|recipients?|addresses|получател\w*|адресат\w*)\s*:\s*$",
    re.IGNORECASE,
)
_BARE_LINE = re.compile(rf"^(\s*)<?({_ADDRESS})>?:?\s*$")
_RCPT_TO = re.compile(rf"RCPT TO:\s*<({_ADDRESS})>", re.IGNORECASE)
_STATUS_FIELD = re.compile(r"^\s*status:\s*([245]\.\d{1,3}\.\d{1,3})", re.IGNORECASE | re.MULTILINE)
_STATUS_CODE = re.compile(r"(?<![\d.])([45]\.\d{1,3}\.\d{1,3})(?![\d.])")


def _plain_bounce(
    message: Message, headers: dict[str, list[str]], sender: str, subject: str, text: str
) -> Bounce | None:
    """A bounce from a plain-text delivery failure notice (a mail system's own words, no
    multipart/report), or ``None`` for any other mail.

    It takes both a mail system and its words.  The mail system: the notice comes from one
    (``MAILER-DAEMON@``, ``postmaster@``: :data:`MAIL_SYSTEMS`) or with an empty return path
    (``Return-Path: <>``, what delivery software sends its notices with).  Its words: the
    subject says the mail failed ("Undelivered Mail Returned to Sender", "Mail delivery
    failed", "Недоставленное сообщение"; a delay warning is a notice) or the text does
    ("This is a permanent error").  An auto-reply is never one, whatever it says (see
    :func:`_auto_reply`), nor is a subject starting with ``Re:``/``Fwd:``.  The failed
    addresses are read only where notices put them (see :func:`_failed_addresses`); the
    original by the Message-ID of its quoted headers.
    """
    from_system = sender.partition("@")[0].lower() in MAIL_SYSTEMS
    if not (from_system or _null_return_path(headers)):
        return None
    subject = subject or ""
    if _REPLY_PREFIX.match(subject):
        return None  # someone answering or passing on a notice: a person's mail
    if _auto_reply(headers, subject, from_system):
        return None
    fence = _COPY_FENCE.search(text)
    report = text[: fence.start()] if fence else text
    if _DELAY_SUBJECT.search(subject):
        action = "delayed"
    elif _FAILURE_SUBJECT.search(subject) or _FAILURE_BODY.search(report):
        action = "failed"
    else:
        return None
    status = _STATUS_FIELD.search(report) or _STATUS_CODE.search(report)
    original = _quoted_original(message, text[fence.end() :] if fence else text)
    return Bounce(_failed_addresses(report), status.group(1) if status else "", original, action)


def _null_return_path(headers: dict[str, list[str]]) -> bool:
    """Whether the topmost ``Return-Path`` is empty (``<>``): sent by delivery software."""
    value = _raw_header(headers, "return-path")
    return value is not None and re.fullmatch(r"\s*<\s*>\s*", value) is not None


def _auto_reply(headers: dict[str, list[str]], subject: str, from_system: bool) -> bool:
    """Whether a mail is a mailbox's own answer (vacation, out of office): a header only
    auto-responders add (``X-Autoreply``...), ``Precedence: auto_reply``, a subject that
    starts as theirs do ("Out of office", "Automatic reply", "Автоответ"...), or
    ``Auto-Submitted: auto-replied`` from anyone but a mail system (Exim and Mail.ru send
    their own failure notices so marked, as RFC 3834 asks)."""
    if any(name in headers for name in _AUTO_REPLY_HEADERS):
        return True
    precedence = (_raw_header(headers, "precedence") or "").strip().lower()
    if precedence == "auto_reply" or _AUTO_REPLY_SUBJECT.match(subject):
        return True
    auto = (_raw_header(headers, "auto-submitted") or "").strip().lower()
    return auto.startswith("auto-replied") and not from_system


def _failed_addresses(report: str) -> tuple[str, ...]:
    """The recipients a plain-text notice says failed, read where notices put them: its
    ``Final-Recipient`` fields, else ``<address>:`` lines (Postfix, qmail, sendmail), else
    the list under "The following address(es) failed:" (Exim, Gmail, Mail.ru), else the
    ``RCPT TO:<address>`` the refusing server answered.  Nothing else of the text (the
    quoted original's To and Cc name everyone it went to) is taken for a failure."""
    found: list[str] = []
    fields = _DSN_FIELD.findall(report)
    finals = [address for kind, address in fields if kind.lower() == "final"]
    found = finals or [address for _kind, address in fields]
    if not found:
        found = _ANGLED_LINE.findall(report)
    if not found:
        found = _listed(report)
    if not found:
        found = _RCPT_TO.findall(report)
    unique: list[str] = []
    for address in found:
        address = address.lower().rstrip(".")
        if address not in unique:
            unique.append(address)
    return tuple(unique[:50])


def _listed(report: str) -> list[str]:
    """Addresses one a line right below a line ending in "failed:" or "recipients:": the
    first one sets the indentation the others share (Exim indents each failure's details
    further); the list ends at the first unindented line that is no address."""
    lines = report.splitlines()
    for start, line in enumerate(lines):
        if not _LIST_INTRO.search(line):
            continue
        found: list[str] = []
        indent: int | None = None
        for later in lines[start + 1 :]:
            if not later.strip():
                continue
            bare = _BARE_LINE.match(later)
            depth = len(later) - len(later.lstrip())
            if bare is not None and (indent is None or depth <= indent):
                indent = depth if indent is None else indent
                found.append(bare.group(2))
            elif indent is None or depth <= indent:
                break  # the list's end (or no list: prose follows the colon)
        if found:
            return found
    return []


def _quoted_original(message: Message, copied: str) -> str | None:
    """The Message-ID of the original a notice returns: its attached copy (a message/rfc822
    or text/rfc822-headers part), else the first Message-ID line of the quoted copy."""
    for part in message.walk():
        if part.get_content_type() not in ("message/rfc822", "text/rfc822-headers"):
            continue
        inner: Any = part.get_payload()
        if isinstance(inner, list) and inner:
            found = message_ids(str(inner[0].get("message-id", "")))
        else:
            body = part.get_payload(decode=True) or b""
            line = re.search(rb"^message-id:\s*(.+)$", body, re.IGNORECASE | re.MULTILINE)
            found = message_ids(line.group(1).decode("ascii", "replace")) if line else ()
        if found:
            return found[0]
    line = re.search(r"^\s*message-id:\s*(<[^>\s]+>)", copied, re.IGNORECASE | re.MULTILINE)
    return line.group(1) if line else None


# -- the whole message --------------------------------------------------------------------

# a header line as the email package's feed parser accepts it: a name, then a colon
_HEADER_NAME = re.compile(r"[\041-\071\073-\176]+:")
_BLANK_LINE = re.compile(r"\n\r?\n")


def single_part_message(raw: bytes) -> Message | None:
    """The message ``email.message_from_bytes(raw, policy=compat32)`` builds, built directly
    for the common case of a single-part mail with well-formed headers; ``None`` otherwise.

    Most mail is one text part: its headers and body are split here with a few string
    operations instead of the general feed parser, which is several times slower.  Any
    shape the feed parser treats specially (multipart, message/*, a missing blank line, an
    envelope "From " line, a bare CR, a header line it would flag) is left to it.
    """
    text = raw.decode("ascii", "surrogateescape")
    blank = _BLANK_LINE.search(text)
    if blank is None or text[0] in "\r\n":
        return None
    block = text[: blank.start() + 1]
    if block.count("\r") != block.count("\r\n"):
        return None
    message = _SinglePart(policy.compat32)
    name, lines = "", []
    for line in block.split("\n")[:-1]:
        line += "\n"
        if line[0] in " \t":
            if not name:
                return None
            lines.append(line)
            continue
        if line.startswith("From ") or _HEADER_NAME.match(line) is None:
            return None
        if name:
            message.set_raw(*policy.compat32.header_source_parse(lines))
        name, lines = line[: line.index(":")], [line]
    message.set_raw(*policy.compat32.header_source_parse(lines))
    message.first, message.params = {}, {}
    for key, value in reversed(list(message.raw_items())):
        message.first[key.lower()] = (key, value)
    if message.get_content_maintype() in ("multipart", "message"):
        return None
    message.set_payload(text[blank.end() :])
    return message


class _SinglePart(Message):
    """A compat32 message whose headers, never changed after parsing, are looked up by name
    in a dict: the walk over a single part asks for the same few headers a dozen times."""

    first: dict[str, tuple[str, Any]]
    params: dict[str, Any]

    def get(self, name: str, failobj: Any = None) -> Any:
        found = self.first.get(name.lower())
        return failobj if found is None else self.policy.header_fetch_parse(*found)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self.first

    def _get_params_preserve(self, failobj: Any, header: str) -> Any:
        # get_param parses a header's parameters on every call; they cannot change here
        key = header.lower()
        if key not in self.params:
            self.params[key] = super()._get_params_preserve(_NO_PARAMS, header)  # type: ignore[misc]
        found = self.params[key]
        return failobj if found is _NO_PARAMS else found


_NO_PARAMS = object()


def parse_message(raw: bytes) -> ParsedMail:
    """Read a raw mail; never raises for bad content (see ``ParsedMail.defects``)."""
    defects: list[str] = []
    # compat32 parses the structure only; headers are decoded from their raw values below,
    # which is both faster than the header registry and right where it is wrong
    message = single_part_message(raw)
    if message is None:
        message = email.message_from_bytes(raw, policy=policy.compat32)
    defects.extend(type(d).__name__ for d in getattr(message, "defects", ()))
    headers = _raw_headers(message)

    senders = _addresses(headers, "from", defects) or _addresses(headers, "sender", defects)
    sender_name, sender = senders[0] if senders else ("", "")
    if not sender:
        defects.append("From: no address")
    recipients = tuple(
        address for name in ("to", "cc") for _display, address in _addresses(headers, name, defects)
    )
    subject = header_text(headers, "subject", defects)
    date = parse_date(_raw_header(headers, "date"), defects)
    message_id = (message_ids(header_text(headers, "message-id", defects)) or (None,))[0]
    in_reply_to = (message_ids(header_text(headers, "in-reply-to", defects)) or (None,))[0]
    references = message_ids(header_text(headers, "references", defects))

    texts: list[str] = []
    htmls: list[str] = []
    files: list[MailAttachment] = []
    try:
        _walk(message, defects, texts, htmls, files)
    except Exception as exc:  # a structure the walker did not foresee: keep the raw text
        defects.append(f"structure: {type(exc).__name__}: {exc}")
        texts = [decode_bytes(raw.partition(b"\n\n")[2], None, defects, "body")]
    html_body = "\n".join(htmls) if htmls else None
    text = "\n".join(t for t in texts if t.strip()).strip()
    if not text and html_body:
        text = html_to_text(html_body)
    # a NUL decoded from quoted-printable or base64: PostgreSQL refuses it in a text column
    if "\x00" in text:
        text = text.replace("\x00", "")
        defects.append("body: NUL characters removed")
    if html_body is not None and "\x00" in html_body:
        html_body = html_body.replace("\x00", "")
        defects.append("html: NUL characters removed")

    auto = (header_text(headers, "auto-submitted", defects) or "no").lower()
    return ParsedMail(
        message_id=message_id,
        sender=sender,
        sender_name=sender_name or None,
        recipients=recipients,
        subject=subject,
        date=date,
        text=text,
        html=html_body,
        in_reply_to=in_reply_to,
        references=references,
        attachments=tuple(files),
        bounce=_bounce(message, defects) or _plain_bounce(message, headers, sender, subject, text),
        auto_submitted=auto not in ("", "no"),
        list_unsubscribe=header_text(headers, "list-unsubscribe", defects) or None,
        digest=hashlib.sha256(raw).hexdigest(),
        defects=tuple(defects),
        authenticated=authenticated_domains(_raw_header(headers, "authentication-results")),
    )
