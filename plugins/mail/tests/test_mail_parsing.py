"""Decoding real and hand-built Russian mail: charsets, encoded headers, bodies, dates."""

from __future__ import annotations

import base64
import datetime as dt
import email
import email.header
import email.utils
import itertools
import quopri
from email import policy

import pytest
from crmkit_mail.parsing import (
    clean_header,
    decode_bytes,
    decode_header_text,
    guess_cyrillic,
    parse_date,
    parse_message,
    plain_addresses,
    single_part_message,
)
from hypothesis import given, settings
from hypothesis import strategies as st

TEXT = "Добрый день! Пришлите, пожалуйста, счёт на оплату запчастей."


def read_peer(peers_dir, name):
    return (peers_dir / "mail" / "imap_tools" / name).read_bytes()


def test_yandex_welcome_mail(peers_dir):
    mail = parse_message(read_peer(peers_dir, "base.eml"))
    assert mail.sender == "hello@yandex.ru" and mail.sender_name == "Яндекс"
    assert mail.subject == "Соберите всю почту в этот ящик"
    assert mail.message_id == "<20110815165837.A26162B2802A@yaback1.mail.yandex.net>"
    # an HTML-only mail gets a readable text body, no tags
    assert "Соберите письма из других почтовых ящиков" in mail.text and "<" not in mail.text
    assert [(a.filename, a.content_type) for a in mail.attachments] == [
        ("collector.jpg", "image/jpeg")
    ]
    assert mail.attachments[0].data[:2] == b"\xff\xd8"  # a real JPEG, base64 undone


def test_mailru_mail_with_inline_images(peers_dir):
    mail = parse_message(read_peer(peers_dir, "attachment_inline1.eml"))
    assert mail.sender_name == "Команда Почты Mail.Ru"
    assert mail.subject.startswith("Mail.Ru – больше, чем почта.")
    assert mail.text == "Здравствуйте"
    assert mail.attachments == ()  # logos referenced by cid: are not documents


def test_forwarded_message_is_an_attachment(peers_dir):
    mail = parse_message(read_peer(peers_dir, "attachment_7bit.eml"))
    assert mail.subject == "статус"
    assert mail.date == dt.datetime(2017, 10, 12, 4, 41, 56, tzinfo=dt.UTC)
    assert mail.in_reply_to == "<20171011085432.15374.20485@web.hades.company>"
    assert mail.thread_refs == ("<20171011085432.15374.20485@web.hades.company>",)
    assert "jessica.schmidt@uni.de" in mail.recipients
    (forwarded,) = mail.attachments
    assert forwarded.filename == "Contract 25 04 2020.docx"
    inner = parse_message(forwarded.data)
    assert inner.text.startswith("Новый заказ №28922")


def build(headers: str, body: bytes, *, extra: bytes = b"") -> bytes:
    return headers.encode("ascii").replace(b"\n", b"\r\n") + extra + b"\r\n" + body


def test_windows_1251_8bit_body_and_encoded_subject():
    subject = "=?windows-1251?B?" + base64.b64encode("Счёт №17".encode("cp1251")).decode() + "?="
    raw = build(
        f"From: =?windows-1251?Q?=C8=E2=E0=ED_=CF=E5=F2=F0=EE=E2?= <Ivan@Example.RU>\n"
        f"To: sales@firm.test\nSubject: {subject}\n"
        "Date: Mon, 3 Mar 2025 10:15:00 +0300\nMessage-ID: <1@example.ru>\n"
        "Content-Type: text/plain; charset=windows-1251\nContent-Transfer-Encoding: 8bit\n",
        TEXT.encode("cp1251"),
    )
    mail = parse_message(raw)
    assert mail.sender == "ivan@example.ru" and mail.sender_name == "Иван Петров"
    assert mail.subject == "Счёт №17"
    assert mail.text == TEXT
    assert mail.date == dt.datetime(2025, 3, 3, 7, 15, tzinfo=dt.UTC)
    assert mail.defects == ()


def test_koi8r_quoted_printable_body_and_subject():
    subject = "=?KOI8-R?B?" + base64.b64encode("Заказ запчастей".encode("koi8_r")).decode() + "?="
    body = quopri.encodestring(TEXT.encode("koi8_r"))
    raw = build(
        f"From: petrov@example.ru\nSubject: {subject}\nDate: 3 Mar 2025 10:15:00 +0300\n"
        'Content-Type: text/plain; charset="koi8-r"\nContent-Transfer-Encoding: quoted-printable\n',
        body,
    )
    mail = parse_message(raw)
    assert mail.subject == "Заказ запчастей"
    assert mail.text == TEXT
    assert mail.message_id is None  # recorded by the digest of its bytes instead


def test_undeclared_8bit_cyrillic_is_guessed():
    for charset in ("cp1251", "koi8_r", "utf-8"):
        raw = build("From: a@example.ru\nSubject: test\n", TEXT.encode(charset))
        assert parse_message(raw).text == TEXT, charset
    assert guess_cyrillic("привет".encode("koi8_r")) == "привет"


def test_raw_8bit_headers_and_a_wrong_charset_label():
    raw = build(
        "From: a@example.ru\nContent-Type: text/plain; charset=x-unknown-cyr\n",
        TEXT.encode("cp1251"),
        extra=b"Subject: " + "Привет из Тулы".encode("cp1251") + b"\r\n",
    )
    mail = parse_message(raw)
    assert mail.subject == "Привет из Тулы"
    assert mail.text == TEXT
    assert any("unknown charset" in d for d in mail.defects)


def test_a_wrong_cyrillic_code_page_label_is_read_past():
    for actual, label, page in (
        ("koi8_r", "windows-1251", "koi8-r"),
        ("cp1251", "koi8-r", "windows-1251"),
        ("cp1251", "koi8-u", "windows-1251"),
        ("utf-8", "windows-1251", "utf-8"),
    ):
        raw = build(
            f"From: a@example.ru\nSubject: x\nContent-Type: text/plain; charset={label}\n",
            TEXT.encode(actual),
        )
        mail = parse_message(raw)
        assert mail.text == TEXT, (actual, label)
        assert mail.defects == (f"body: charset {label} looked like {page}",)
    # an encoded word's label is checked as a body's is
    subject = "=?windows-1251?B?" + base64.b64encode("Счёт на оплату".encode("koi8_r")).decode()
    assert decode_header_text(subject + "?=") == "Счёт на оплату"


def test_correctly_labelled_cyrillic_never_flips():
    # capitals read in the wrong page are small letters, some of them frequent ones
    for text in (TEXT, TEXT.upper(), "СРОЧНО", "ГРУППЫ", "ОК", "Да", "ООО РОМАШКА", "кВт"):
        for charset, label in (("cp1251", "windows-1251"), ("koi8_r", "koi8-r")):
            defects = []
            assert decode_bytes(text.encode(charset), label, defects, "body") == text
            assert defects == [], (text, label)


def test_raw_8bit_words_beside_encoded_words():
    mir = "=?utf-8?B?" + base64.b64encode("мир".encode()).decode() + "?="
    for charset in ("utf-8", "cp1251", "koi8_r"):
        raw = build(
            "To: a@example.ru\n",
            b"hi",
            extra=(
                f"Subject: Привет {mir}\r\nFrom: Иван {mir} <ivan@x.ru>\r\n"
                f"Cc: {mir} Пётр <p@x.ru>\r\n"
            ).encode(charset),
        )
        mail = parse_message(raw)
        assert (mail.subject, mail.sender_name, mail.sender) == (
            "Привет мир",
            "Иван мир",
            "ivan@x.ru",
        ), charset
        assert mail.recipients == ("a@example.ru", "p@x.ru")
    # the 8-bit words are guessed together, the blanks beside encoded words are kept
    koi8 = "Счёт  =?koi8-r?Q?=CE=C1?= оплату".encode("koi8_r").decode("ascii", "surrogateescape")
    assert decode_header_text(koi8) == "Счёт  на оплату"


# words whose code page the letters tell (a word in capitals may read as small letters of the
# other page, in a raw header with no encoded word too)
RUSSIAN_WORDS = ["Привет", "счёт", "на", "оплату", "Ёлка", "(Иван)", "a", "17"]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.booleans(), st.sampled_from(RUSSIAN_WORDS)), min_size=1, max_size=6),
    st.sampled_from(["utf-8", "cp1251", "koi8_r"]),
)
def test_mixed_headers_read_as_their_words(words, charset):
    # raw 8-bit words in one charset, encoded words in UTF-8, one space apart
    encoded = [
        (True, f"=?utf-8?B?{base64.b64encode(word.encode()).decode()}?=") if enc else (False, word)
        for enc, word in words
    ]
    raw = " ".join(
        w if enc else w.encode(charset).decode("ascii", "surrogateescape") for enc, w in encoded
    )
    # RFC 2047: the blank between two encoded words is not text
    expected = words[0][1]
    for (before, _), (now, word) in itertools.pairwise(words):
        expected += ("" if before and now else " ") + word
    assert decode_header_text(raw) == expected


def test_broken_and_russian_dates():
    base = "From: a@example.ru\nSubject: x\nDate: {}\n"
    broken = parse_message(build(base.format("32 Foo 2025 99:99"), b"hi"))
    assert broken.date is None and any("Date" in d for d in broken.defects)
    russian = parse_message(
        build(
            "From: a@example.ru\nSubject: x\n",
            b"hi",
            extra=("Date: 5 марта 2025 14:00:00 +0300\r\n".encode()),
        )
    )
    assert russian.date == dt.datetime(2025, 3, 5, 11, 0, tzinfo=dt.UTC)
    naive = parse_message(build(base.format("Wed, 5 Mar 2025 14:00:00"), b"hi"))
    assert naive.date == dt.datetime(2025, 3, 5, 14, 0, tzinfo=dt.UTC)
    future = parse_message(build(base.format("Wed, 5 Mar 2099 14:00:00 +0000"), b"hi"))
    assert future.date is None


def test_zone_names_of_russian_mail():
    utc = dt.UTC
    for value, expected in (
        ("Thu, 01 Jan 2015 10:00:00 MSK", dt.datetime(2015, 1, 1, 7, tzinfo=utc)),
        ("Thu, 01 Jan 2015 10:00 msk", dt.datetime(2015, 1, 1, 7, tzinfo=utc)),
        ("Sun, 1 Jul 2012 10:00:00 MSK", dt.datetime(2012, 7, 1, 6, tzinfo=utc)),  # UTC+4 then
        ("Wed, 1 Jul 2009 10:00:00 MSD", dt.datetime(2009, 7, 1, 6, tzinfo=utc)),
        ("Thu, 01 Jan 2015 10:00:00 YEKT", dt.datetime(2015, 1, 1, 5, tzinfo=utc)),
        ("Thu Jan 01 10:00:00 MSK 2015", dt.datetime(2015, 1, 1, 7, tzinfo=utc)),
        # what RFC 5322 allows, as before: "-0000", no zone, the obsolete names
        ("Thu, 01 Jan 2015 10:00:00 -0000", dt.datetime(2015, 1, 1, 10, tzinfo=utc)),
        ("Thu, 01 Jan 2015 10:00:00", dt.datetime(2015, 1, 1, 10, tzinfo=utc)),
        ("Thu, 01 Jan 2015 10:00:00 EST", dt.datetime(2015, 1, 1, 15, tzinfo=utc)),
        ("Thu, 01 Jan 2015 10:00:00 UT", dt.datetime(2015, 1, 1, 10, tzinfo=utc)),
        ("Thu, 01 Jan 2015 10:00:00 +0300 (MSK)", dt.datetime(2015, 1, 1, 7, tzinfo=utc)),
    ):
        defects = []
        assert parse_date(value, defects) == expected, value
        assert defects == [], value
    for unknown in ("Thu, 01 Jan 2015 10:00:00 XYZ", "01 Jan 2015 10:00:00 GMT+3"):
        defects = []
        assert parse_date(unknown, defects) is None
        assert defects == [f"Date: unreadable {unknown!r}"]


def test_a_date_in_an_unknown_zone_falls_back_to_the_arrival_time():
    from crmkit_mail.imap import FetchedMessage
    from crmkit_mail.sync import inbound

    arrived = dt.datetime(2015, 1, 1, 7, 2, tzinfo=dt.UTC)
    for zone, expected in (("MSK", dt.datetime(2015, 1, 1, 7, tzinfo=dt.UTC)), ("XYZ", arrived)):
        raw = build(f"From: a@example.ru\nSubject: x\nDate: 1 Jan 2015 10:00:00 {zone}\n", b"hi")
        message = inbound(parse_message(raw), FetchedMessage(1, arrived, raw), "shared")
        assert message.received_at == expected, zone


def test_attachment_with_cyrillic_rfc2231_name_and_broken_base64():
    raw = build(
        "From: a@example.ru\nSubject: files\nMIME-Version: 1.0\n"
        'Content-Type: multipart/mixed; boundary="b1"\n',
        b"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        + "см. вложение".encode()
        + b"\r\n--b1\r\nContent-Type: application/pdf\r\n"
        b"Content-Disposition: attachment; filename*=UTF-8''%D0%A1%D1%87%D1%91%D1%82.pdf\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n"
        + base64.b64encode(b"%PDF-1.4 test")
        + b"\r\n--b1\r\nContent-Type: application/octet-stream\r\n"
        b'Content-Disposition: attachment; filename="broken.bin"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n!!!not base64 at all\r\n--b1--\r\n",
    )
    mail = parse_message(raw)
    assert mail.text == "см. вложение"
    names = [a.filename for a in mail.attachments]
    assert names == ["Счёт.pdf", "broken.bin"]
    assert mail.attachments[0].data == b"%PDF-1.4 test"


@pytest.mark.parametrize("charset", ["cp1251", "koi8_r", "utf-8"])
@pytest.mark.parametrize(
    "header", ["Content-Disposition: attachment; filename", "Content-Type: application/pdf; name"]
)
def test_raw_8bit_attachment_names_are_read_as_raw_headers_are(charset, header):
    name = "Счёт на оплату №42.pdf"
    raw = (
        b"From: a@example.ru\r\nSubject: files\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
        b"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhi\r\n"
        b"--b1\r\n"
        + (b"Content-Type: application/pdf\r\n" if "Disposition" in header else b"")
        + (b"Content-Disposition: attachment\r\n" if "Type" in header else b"")
        + header.encode()
        + b'="'
        + name.encode(charset, errors="replace" if charset == "koi8_r" else "strict")
        + b'"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERg==\r\n--b1--\r\n'
    )
    mail = parse_message(raw)
    expected = name if charset != "koi8_r" else name.replace("№", "?")  # KOI8-R has no №
    assert [a.filename for a in mail.attachments] == [expected]
    assert mail.attachments[0].data == b"%PDF"


def test_delivery_status_notification_is_a_bounce():
    raw = build(
        "From: MAILER-DAEMON@mx.example.ru\nSubject: Undelivered Mail Returned to Sender\n"
        "Auto-Submitted: auto-replied\nMIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="r"\n',
        b"--r\r\nContent-Type: text/plain\r\n\r\nI'm sorry to have to inform you...\r\n"
        b"--r\r\nContent-Type: message/delivery-status\r\n\r\n"
        b"Reporting-MTA: dns; mx.example.ru\r\n\r\n"
        b"Final-Recipient: rfc822; Nobody@Example.RU\r\nAction: failed\r\n"
        b"Status: 5.1.1\r\n\r\n"
        b"--r\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        b"Message-ID: <crmkit.abc@firm.test>\r\nSubject: offer\r\n\r\n--r--\r\n",
    )
    mail = parse_message(raw)
    assert mail.bounce is not None
    assert mail.bounce.recipients == ("nobody@example.ru",)
    assert mail.bounce.status == "5.1.1"
    assert mail.bounce.original_message_id == "<crmkit.abc@firm.test>"
    assert mail.auto_submitted


NUL_MAIL = build(
    "From: =?utf-8?Q?Iv=00an?= <ivan@example.ru>\nTo: sales@firm.test\n"
    "Subject: =?utf-8?Q?a=00b=07c?=\nMessage-ID: <nul@example.ru>\nMIME-Version: 1.0\n"
    'Content-Type: multipart/mixed; boundary="b"\n',
    b"--b\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\nhello=00world\r\n"
    b"--b\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    + base64.b64encode(b"<p>hello\x00world</p>")
    + b"\r\n--b\r\nContent-Type: application/pdf\r\n"
    b'Content-Disposition: attachment; filename="=?utf-8?Q?x=00y=09z.pdf?="\r\n\r\n%PDF\r\n'
    b"--b--\r\n",
)


def test_nul_and_control_characters_are_removed_from_decoded_text():
    mail = parse_message(NUL_MAIL)
    assert mail.text == "helloworld" and mail.html == "<p>helloworld</p>"
    assert mail.subject == "abc" and mail.sender_name == "Ivan"
    assert mail.attachments[0].filename == "xy\tz.pdf"  # a tab is no control to remove
    assert {
        "body: NUL characters removed",
        "html: NUL characters removed",
        "subject: control characters removed",
        "from: control characters removed",
        "filename: control characters removed",
    } <= set(mail.defects)
    assert decode_header_text("a\x00b", []) == "ab"  # raw bytes too, not only encoded words


def test_a_mail_with_nul_is_recorded_on_both_databases(mail_crm):
    from crmkit_mail.sync import inbound

    from crmkit.model import Activity

    with mail_crm.system() as work:
        recorded, failures = work.channels.record_isolated(
            [inbound(parse_message(NUL_MAIL), None, "shared")]
        )
        assert failures == {} and recorded[0] is not None
        entry = work.session.get(Activity, recorded[0])
        assert (entry.subject, entry.body) == ("abc", "helloworld")


def test_line_breaks_in_a_decoded_header_become_spaces():
    from crmkit_mail.smtp import compose

    raw = build(
        "From: =?utf-8?Q?Ivan=0APetrov?= <ivan@example.ru>\n"
        "Subject: =?utf-8?Q?a=0D=0ABcc:_x@evil.ru?=\nMessage-ID: <crlf@example.ru>\n",
        b"hi",
    )
    mail = parse_message(raw)
    assert mail.subject == "a Bcc: x@evil.ru" and mail.sender_name == "Ivan Petrov"
    assert "subject: line breaks made spaces" in mail.defects
    for value in ("a\u2028b", "a\x0b\x0cb", "a\x85b", "a\r\n\r\nb"):
        assert decode_header_text(value) == "a b", repr(value)
    # a reply built from it goes out, with no Bcc header of its own
    reply = compose(
        sender="sales@firm.test", sender_name=mail.sender_name, to=[mail.sender],
        subject="Re: " + mail.subject, body="ok", message_id="<r@firm.test>",
        in_reply_to=mail.message_id,
    )  # fmt: skip
    assert reply["Subject"] == "Re: a Bcc: x@evil.ru" and reply["Bcc"] is None


@settings(max_examples=150, deadline=None)
@given(
    st.binary(max_size=400),
    st.sampled_from(
        [b"", b"Subject: =?koi8-r?B?", b"Content-Type: multipart/mixed; boundary=x\r\n"]
    ),
)
def test_no_input_crashes_the_parser(noise, prefix):
    mail = parse_message(prefix + b"\r\n" + noise if prefix else noise)
    assert isinstance(mail.text, str) and isinstance(mail.subject, str)


# -- the quick paths read exactly what the standard library reads --------------------------

HEADER_LINES = [
    b"From: =?koi8-r?B?8NLJ18XU?= <k@x.ru>",
    b'From: "Ivan, P." <I@x.ru>',
    b"From: A. Smith  <as@x.ru>, other@y.ru",
    b"To: a@b, (c) d@e",
    b"Subject: " + "Счёт".encode("cp1251"),
    b"Subject: =?utf-8?Q?=D0=9F=D1=80?=\r\n  folded",
    b"Date: Mon, 3 Mar 2025 10:01:00 +0300",
    b"Message-ID: <x@y>",
    b"Content-Type: text/plain; charset=windows-1251",
    b'Content-Type: text/html; charset="koi8-r"',
    b"Content-Type: application/pdf; name=x.pdf",
    b"Content-Type: multipart/mixed; boundary=b",
    b"Content-Type: message/rfc822",
    b"Content-Transfer-Encoding: quoted-printable",
    b"X-Folded: a\r\n\tb",
    b" a continuation",
    b"From nobody Mon Mar  3 10:00:00 2025",
    b"not a header",
    b":no name",
    b"X-Bare-CR: a\rb",
]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(HEADER_LINES), max_size=6),
    st.sampled_from([b"\r\n", b"\n"]),
    st.sampled_from([b"\r\n", b"\n", b""]),
    st.binary(max_size=60),
)
def test_single_part_messages_are_built_as_the_email_package_builds_them(
    lines, newline, blank, body
):
    raw = b"".join(line.replace(b"\r\n", newline) + newline for line in lines) + blank + body
    quick = single_part_message(raw)
    if quick is None:
        return
    full = email.message_from_bytes(raw, policy=policy.compat32)
    assert quick.raw_items() and list(quick.raw_items()) == list(full.raw_items())
    assert quick.get_payload() == full.get_payload()
    assert quick.defects == full.defects == []
    assert parse_message(raw) == _without_quick_path(raw)


def _without_quick_path(raw):
    import crmkit_mail.parsing as parsing

    original = parsing.single_part_message
    parsing.single_part_message = lambda raw: None
    try:
        return parse_message(raw)
    finally:
        parsing.single_part_message = original


def test_the_quick_path_takes_ordinary_mail_only(peers_dir):
    plain = build("From: a@example.ru\nSubject: hi\nContent-Type: text/plain\n", b"body")
    assert single_part_message(plain).get_payload() == "body"
    for name in ("base.eml", "attachment_inline1.eml", "attachment_7bit.eml"):  # multipart
        raw = read_peer(peers_dir, name)
        assert single_part_message(raw) is None
        assert parse_message(raw) == _without_quick_path(raw)
    assert single_part_message(b"From x\r\n\r\nbody") is None  # no colon: not a header


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet='ab.@<>", ;:()\\\t=?Q\udcd0', max_size=30))
def test_plain_addresses_read_as_getaddresses_does(value):
    quick = plain_addresses(value)
    if quick is not None:
        expected = [pair for pair in email.utils.getaddresses([value]) if "@" in pair[1]]
        assert [pair for pair in quick if "@" in pair[1]] == expected


def test_plain_addresses_cover_the_usual_shapes():
    value = '=?utf-8?B?0K/QvdC00LXQutGB?= <hello@yandex.ru>, "Petrov, I." <ip@x.ru>'
    assert plain_addresses(value) is None  # a comma beside quotes: the full parser
    assert plain_addresses("A.  Smith <as@x.ru>, b@y.ru") == [
        ("A. Smith", "as@x.ru"),
        ("", "b@y.ru"),
    ]
    assert plain_addresses('"Ivan Petrov" <ip@x.ru>') == [("Ivan Petrov", "ip@x.ru")]
    assert plain_addresses("Ivan (work) <ip@x.ru>") is None


@settings(max_examples=300, deadline=None)
@given(
    st.datetimes(min_value=dt.datetime(1991, 1, 1), max_value=dt.datetime(2025, 12, 31)),
    st.integers(min_value=-14 * 60, max_value=14 * 60),
    st.booleans(),
)
def test_plain_dates_read_as_the_general_parser_reads_them(when, minutes, weekday):
    zone = dt.timezone(dt.timedelta(minutes=minutes))
    value = email.utils.format_datetime(when.replace(tzinfo=zone, microsecond=0))
    if not weekday:
        value = value.split(", ", 1)[1]
    expected = email.utils.parsedate_to_datetime(value).astimezone(dt.UTC)
    assert parse_date(value, []) == expected


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=40),
    st.sampled_from(["utf-8", "UTF-8", "windows-1251", "koi8-r", "x-unknown", "us-ascii"]),
    st.sampled_from(["", " ", "  \t"]),
)
def test_one_base64_word_decodes_as_decode_header_says(data, charset, space):
    value = f"{space}=?{charset}?B?{base64.b64encode(data).decode()}?={space}"
    quick_defects, general_defects = [], []
    quick = decode_header_text(value, quick_defects, "subject")
    ((chunk, label),) = email.header.decode_header(value.strip())
    general = decode_bytes(chunk, label, general_defects, "subject")
    general = clean_header(general, general_defects, "subject").strip()
    assert (quick, quick_defects) == (general, general_defects)


def test_authentication_results_name_the_domains_that_passed():
    from crmkit_mail.parsing import aligned, authenticated_domains

    value = (
        "mx.yandex.net; spf=pass (mx.yandex.net: domain of firm.ru designates 1.2.3.4 as"
        " permitted sender) smtp.mail=sales@firm.ru; dkim=pass header.i=@mail.firm.ru;"
        " dmarc=fail header.from=other.ru"
    )
    assert authenticated_domains(value) == ("mail.firm.ru",)
    assert authenticated_domains("mx; dmarc=pass header.from=Firm.RU") == ("firm.ru",)
    assert authenticated_domains("mx; spf=softfail smtp.mailfrom=a@firm.ru") == ()
    assert authenticated_domains("mx; none") == authenticated_domains(None) == ()
    assert aligned("sales@shop.firm.ru", ("firm.ru",))
    assert not aligned("sales@firm.ru", ("evilfirm.ru",))
    raw = (
        b"Authentication-Results: mx; dkim=pass header.d=firm.ru\r\n"
        b"Authentication-Results: mx; dkim=pass header.d=evil.ru\r\n"
        b"From: sales@firm.ru\r\nSubject: x\r\n\r\nbody\r\n"
    )
    assert parse_message(raw).authenticated == ("firm.ru",)  # the topmost one only


# Plain-text delivery failure notices (no multipart/report), as mail systems write them.
EXIM_FAILED = (
    b"Return-path: <>\r\n"
    b"From: Mail Delivery System <Mailer-Daemon@mx1.hosting.example>\r\n"
    b"To: sales@firm.test\r\n"
    b"Subject: Mail delivery failed: returning message to sender\r\n"
    b"Message-Id: <E1tAbCd-0003xY-Qz@mx1.hosting.example>\r\n"
    b"Auto-Submitted: auto-replied\r\n"
    b"Date: Tue, 24 Nov 2026 10:02:11 +0300\r\n\r\n"
    b"This message was created automatically by mail delivery software.\r\n\r\n"
    b"A message that you sent could not be delivered to one or more of its\r\n"
    b"recipients. This is a permanent error. The following address(es) failed:\r\n\r\n"
    b"  ivanov@old-client.ru\r\n"
    b"    host mx.old-client.ru [203.0.113.25]\r\n"
    b"    SMTP error from remote mail server after RCPT TO:<ivanov@old-client.ru>:\r\n"
    b"    550 5.1.1 <ivanov@old-client.ru>: Recipient address rejected: User unknown\r\n"
    b"  petrova@old-client.ru\r\n"
    b"    Unrouteable address\r\n\r\n"
    b"------ This is a copy of the message, including all the headers. ------\r\n\r\n"
    b"Return-path: <sales@firm.test>\r\n"
    b"From: sales@firm.test\r\n"
    b"To: ivanov@old-client.ru,\r\n  petrova@old-client.ru, boss@old-client.ru\r\n"
    b"Subject: =?utf-8?B?0KHRh9GR0YI=?=\r\n"
    b"Message-ID: <crmkit.0a1b2c@firm.test>\r\n\r\n"
    b"Invoice attached.\r\n"
)
POSTFIX_PLAIN = (
    b"From: MAILER-DAEMON@mail.firm.test (Mail Delivery System)\r\n"
    b"To: sales@firm.test\r\n"
    b"Subject: Undelivered Mail Returned to Sender\r\n"
    b"Message-Id: <20261124070211.5F1A2C0123@mail.firm.test>\r\n"
    b"Content-Type: text/plain; charset=us-ascii\r\n\r\n"
    b"This is the mail system at host mail.firm.test.\r\n\r\n"
    b"I'm sorry to have to inform you that your message could not\r\n"
    b"be delivered to one or more recipients. It's attached below.\r\n\r\n"
    b"                   The mail system\r\n\r\n"
    b"<nobody@client.example>: host mx.client.example[198.51.100.7] said: 550\r\n"
    b"    5.1.1 <nobody@client.example>: Recipient address rejected: User unknown\r\n"
    b"    (in reply to RCPT TO command)\r\n\r\n"
    b"--- Below this line is a copy of the message.\r\n\r\n"
    b"From: sales@firm.test\r\nTo: nobody@client.example, other@client.example\r\n"
    b"Message-ID: <crmkit.ffee@firm.test>\r\nSubject: Offer\r\n\r\nHello\r\n"
)
QMAIL_FAILURE = (
    b"From: MAILER-DAEMON@mail.example.net\r\nTo: sales@firm.test\r\n"
    b"Subject: failure notice\r\n\r\n"
    b"Hi. This is the qmail-send program at mail.example.net.\r\n"
    b"I'm afraid I wasn't able to deliver your message to the following addresses.\r\n"
    b"This is a permanent error; I've given up. Sorry it didn't work out.\r\n\r\n"
    b"<gone@example.net>:\r\nSorry, no mailbox here by that name. (#5.1.1)\r\n\r\n"
    b"--- Below this line is a copy of the message.\r\n\r\n"
    b"Message-ID: <crmkit.q1@firm.test>\r\nTo: gone@example.net\r\n\r\nhi\r\n"
)
MAILRU_RUSSIAN = (
    "From: mailer-daemon@corp.mail.ru\r\nTo: sales@firm.test\r\n"
    "Subject: =?utf-8?B?0J3QtdC00L7RgdGC0LDQstC70LXQvdC90L7QtSDRgdC+0L7QsdGJ0LXQvdC40LU=?=\r\n"
    "Auto-Submitted: auto-replied\r\nContent-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: 8bit\r\n\r\n"
    "Это письмо создано автоматически\r\nсервером Mail.Ru, отвечать на него не\r\nнужно.\r\n\r\n"
    "К сожалению, Ваше письмо не может\r\nбыть доставлено одному или нескольким\r\n"
    "получателям:\r\n\r\nvasya.pupkin@mail.ru\r\n"
    "message is not accepted: user not found\r\n\r\n"
    "Рекомендуем Вам проверить корректность указания\r\nадресов получателей.\r\n"
).encode()
EXIM_DELAYED = (
    b"From: Mail Delivery System <Mailer-Daemon@mx1.hosting.example>\r\n"
    b"To: sales@firm.test\r\nAuto-Submitted: auto-replied\r\n"
    b"Subject: Warning: message 1tAbCd-0003xY-Qz delayed 24 hours\r\n\r\n"
    b"This message was created automatically by mail delivery software.\r\n"
    b"A message that you sent has not yet been delivered to one or more of its\r\n"
    b"recipients after more than 24 hours on the queue on mx1.hosting.example.\r\n\r\n"
    b"The message identifier is:     1tAbCd-0003xY-Qz\r\n\r\n"
    b"The address to which the message has not yet been delivered is:\r\n\r\n"
    b"  slow@far.example\r\n    Delay reason: SMTP error from remote mail server\r\n\r\n"
    b"No action is required on your part.\r\n"
)


@pytest.mark.parametrize(
    ("raw", "recipients", "status", "original"),
    [
        (EXIM_FAILED, ("ivanov@old-client.ru", "petrova@old-client.ru"), "5.1.1",
         "<crmkit.0a1b2c@firm.test>"),
        (POSTFIX_PLAIN, ("nobody@client.example",), "5.1.1", "<crmkit.ffee@firm.test>"),
        (QMAIL_FAILURE, ("gone@example.net",), "5.1.1", "<crmkit.q1@firm.test>"),
        (MAILRU_RUSSIAN, ("vasya.pupkin@mail.ru",), "", None),
    ],
    ids=["exim", "postfix", "qmail", "mail.ru"],
)  # fmt: skip
def test_a_plain_text_delivery_failure_is_a_bounce(raw, recipients, status, original):
    """Only the addresses the notice says failed: not the quoted original's other To."""
    bounce = parse_message(raw).bounce
    assert bounce is not None and bounce.failed
    assert (bounce.recipients, bounce.status, bounce.original_message_id) == (
        recipients,
        status,
        original,
    )


def test_a_plain_text_delay_warning_is_a_notice_not_a_bounce():
    bounce = parse_message(EXIM_DELAYED).bounce
    assert bounce is not None and not bounce.failed and bounce.action == "delayed"


@pytest.mark.parametrize(
    "raw",
    [
        # a postmaster writing as a person, about something else
        b"From: postmaster@client.ru\r\nTo: sales@firm.test\r\nSubject: New MX records\r\n\r\n"
        b"We move our mail servers on Friday.\r\n",
        # a colleague passing a notice on, and a person quoting one
        b"From: anna@firm.test\r\nTo: sales@firm.test\r\n"
        b"Subject: Fwd: Undelivered Mail Returned to Sender\r\n\r\n"
        b"<nobody@client.example>: host said: 550 User unknown\r\n",
        b"From: ivan@client.ru\r\nTo: sales@firm.test\r\n"
        b"Subject: Undelivered Mail Returned to Sender\r\n\r\nYour mail bounced, why?\r\n",
        # an auto-reply is no failure
        b"From: petrov@client.ru\r\nTo: sales@firm.test\r\nAuto-Submitted: auto-replied\r\n"
        b"Subject: =?utf-8?B?0K8g0LIg0L7RgtC/0YPRgdC60LU=?=\r\n\r\nVacation.\r\n",
    ],
    ids=["postmaster-note", "forwarded", "person", "auto-reply"],
)
def test_mail_that_only_looks_like_a_notice_is_not_a_bounce(raw):
    assert parse_message(raw).bounce is None


def _utf8_subject(text: str) -> bytes:
    return b"Subject: =?utf-8?B?" + base64.b64encode(text.encode()) + b"?=\r\n"


@pytest.mark.parametrize(
    "raw",
    [
        # a vacation reply sent as RFC 3834 asks (empty return path), in Russian
        b"Return-Path: <>\r\nFrom: petrov@client.ru\r\nTo: sales@firm.test\r\n"
        b"Auto-Submitted: auto-replied\r\n"
        + _utf8_subject("Автоответ: undeliverable goods")
        + b"\r\nI am on leave; mail sent here is undeliverable until Monday.\r\n",
        # Yandex's auto-reply header, an out-of-office subject, a failure in the text
        b"Return-Path: <>\r\nFrom: ivanova@client.ru\r\nTo: sales@firm.test\r\n"
        b"X-Autoreply: yes\r\nAuto-Submitted: auto-generated\r\n"
        b"Subject: Out of office: Mail delivery failed\r\n\r\n"
        b"Your message could not be delivered to me in person: this is a permanent error\r\n"
        b"of my holiday. Write to office@client.ru.\r\n",
        # the postmaster's own mailbox answering while its owner is away
        b"From: postmaster@client.ru\r\nTo: sales@firm.test\r\n"
        b"Auto-Submitted: auto-replied\r\n"
        b"Subject: Automatic reply: Undeliverable mail to our old domain\r\n\r\n"
        b"I am out of the office. Mail to @old-client.ru is undeliverable.\r\n",
        # merely generated by a machine: no mail system, no empty return path
        b"From: robot@shop.example\r\nTo: sales@firm.test\r\n"
        b"Auto-Submitted: auto-generated\r\nSubject: Undeliverable parcel #1234\r\n\r\n"
        b"The courier could not deliver your parcel.\r\n",
    ],
    ids=["russian-vacation", "x-autoreply", "postmaster-away", "generated-only"],
)
def test_an_auto_reply_that_mentions_a_failure_is_not_a_bounce(raw):
    """An auto-reply (or any machine's mail) saying "undeliverable" marks nothing bounced:
    a bounce takes a mail system and a failure, or a delivery status report."""
    mail = parse_message(raw)
    assert mail.bounce is None
    assert mail.auto_submitted  # still a machine's mail: never a lead


EXCHANGE_NDR_PLAIN = (
    b"Return-Path: <>\r\n"
    b"From: Microsoft Outlook <MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@client.ru>\r\n"
    b"To: sales@firm.test\r\nAuto-Submitted: auto-generated\r\n"
    b"Subject: Undeliverable: Automatic reply: Offer\r\n\r\n"
    b"Delivery has failed to these recipients or groups:\r\n\r\n"
    b"<gone@client.ru>: The email address you entered couldn't be found. 550 5.1.10\r\n\r\n"
    b"------ Original message headers ------\r\n\r\n"
    b"Message-ID: <crmkit.ex1@firm.test>\r\nTo: gone@client.ru\r\n"
)


def test_delivery_failures_with_auto_reply_marks_are_still_bounces():
    """A report or a mail system's failure notice stays a bounce though it is marked as a
    machine's answer, or bounces an auto-reply (whose subject it quotes)."""
    dsn = build(
        'From: "Microsoft Outlook" <postmaster@client.ru>\nTo: sales@firm.test\n'
        "Auto-Submitted: auto-replied\nX-Autoreply: yes\nSubject: Out of office\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="r"\n',
        b"--r\r\nContent-Type: message/delivery-status\r\n\r\n"
        b"Reporting-MTA: dns; mx.client.ru\r\n\r\n"
        b"Final-Recipient: rfc822; gone@client.ru\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
        b"--r--\r\n",
    )
    bounce = parse_message(dsn).bounce
    assert bounce is not None and bounce.failed and bounce.recipients == ("gone@client.ru",)
    # a plain notice from a system mailbox, sent with an empty return path: it bounces an
    # auto-reply, whose subject it quotes
    bounce = parse_message(EXCHANGE_NDR_PLAIN).bounce
    assert bounce is not None and bounce.failed
    assert (bounce.recipients, bounce.status, bounce.original_message_id) == (
        ("gone@client.ru",),
        "5.1.10",
        "<crmkit.ex1@firm.test>",
    )


def test_real_mail_of_the_peers_keeps_its_verdict(peers_dir):
    """The real messages of ``peers/mail`` (welcome mail, a forwarded order) are no
    delivery reports, and none is taken for a bounce; a report among them would be one."""
    paths = sorted((peers_dir / "mail").rglob("*.eml"))
    assert len(paths) >= 3
    for path in paths:
        raw = path.read_bytes()
        message = email.message_from_bytes(raw, policy=policy.compat32)
        is_report = (
            message.get_content_type() == "multipart/report"
            and (message.get_param("report-type") or "").lower() == "delivery-status"
        )
        bounce = parse_message(raw).bounce
        assert (bounce is not None) == is_report, path.name


def test_copies_of_the_real_message_split_names_from_addresses(peers_dir):
    # its second recipient's display name is an encoded address ("Rabea.Bartölke@uni.de") and
    # its address has a raw UTF-8 local part (RFC 6532): the name stays out of the address,
    # the address is kept as written
    mail = parse_message(read_peer(peers_dir, "attachment_7bit.eml"))
    assert mail.recipients == ("jessica.schmidt@uni.de", "я你Rabea.Bartölke@uni.de")


def test_display_names_never_leak_into_addresses():
    raw = (
        "From: =?utf-8?B?0JjQstCw0L0=?= <Ivan@Example.RU>\r\n"
        'To: Rabea.Bartölke@uni.de <я你Rabea.Bartölke@Uni.DE>, "Петров, Пётр" <p@пример.рф>\r\n'
        "Cc: =?utf-8?Q?Bart=C3=B6lke=2C_R_=3Cfake=40x=2Ede=3E?= <r@xn--e1afmkfd.xn--p1ai>,\r\n"
        " ivan@x.ru <Ivan@X.ru>, Group: a@b.ru, =?utf-8?B?0JjQstCw0L0=?= <c@d.ru>;\r\n"
        "Subject: s\r\n\r\nhi\r\n"
    ).encode()
    mail = parse_message(raw)
    assert (mail.sender, mail.sender_name) == ("ivan@example.ru", "Иван")
    assert mail.recipients == (
        "я你Rabea.Bartölke@uni.de",
        "p@пример.рф",
        "r@xn--e1afmkfd.xn--p1ai",
        "ivan@x.ru",
        "a@b.ru",
        "c@d.ru",
    )
