"""``crmkit import``, ``crmkit export`` and ``crmkit duplicates report`` on a real deployment."""

from __future__ import annotations

from crmkit.cli import main


def call(capsys, *args: str) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_import_with_progress_export_and_report(tmp_path, capsys):
    directory = tmp_path / "crm"
    assert call(capsys, "init", str(directory))[0] == 0
    config = ["--config", str(directory)]
    from crmkit import CRM
    from crmkit.testing import add_user

    crm = CRM.from_directory(directory)
    add_user(crm, "olga", ["admin"])
    crm.close()
    source = tmp_path / "leads.csv"
    source.write_bytes(
        "Наименование;Тел;Мусор\nООО «Ромашка»;8 916 123-45-67;x\nРомашка LLC;;y\n;;\n"
        "Бета;+7 916 000-00-01;z\n".encode("cp1251")
    )
    code, out, err = call(
        capsys, *config, "import", str(source), "--as", "olga", "--map", "Тел=phone",
        "--on-duplicate", "skip",
    )  # fmt: skip
    assert code == 0, err
    assert "importing" in err  # the progress bar
    assert "done: 2 created, 0 updated, 1 skipped, 0 errors, 0 possible duplicates" in out
    target = tmp_path / "out.csv"
    code, out, err = call(capsys, *config, "export", str(target), "--as", "olga")
    assert code == 0, err
    text = target.read_bytes().decode("utf-8-sig")
    assert "ООО «Ромашка»" in text and "Бета" in text and "+7 916 000-00-01" in text
    code, out, err = call(capsys, *config, "duplicates", "report")
    assert code == 0, err
    assert "2 clients scanned" in out


def test_import_maps_a_name_column_it_cannot_guess(tmp_path, capsys):
    """``--map`` maps a name column whose header is not recognised; without it the command
    says what is missing and imports nothing."""
    directory = tmp_path / "crm"
    assert call(capsys, "init", str(directory))[0] == 0
    config = ["--config", str(directory)]
    from crmkit import CRM
    from crmkit.model import ImportRun, Party
    from crmkit.testing import add_user

    crm = CRM.from_directory(directory)
    add_user(crm, "olga", ["admin"])
    crm.close()
    source = tmp_path / "leads.csv"
    source.write_bytes("Контрагент;Телефон\nООО Альфа;+7 916 111-22-33\n".encode("cp1251"))
    code, out, err = call(capsys, *config, "import", str(source), "--as", "olga")
    assert code != 0 and "map a column to the name" in err
    code, out, err = call(
        capsys, *config, "import", str(source), "--as", "olga", "--map", "Контрагент=name"
    )
    assert code == 0, err
    assert "done: 1 created" in out
    crm = CRM.from_directory(directory)
    with crm.system() as work:
        assert [p.name for p in work.session.query(Party)] == ["ООО Альфа"]
        assert work.session.query(ImportRun).count() == 1
    crm.close()
