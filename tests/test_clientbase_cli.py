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


def test_import_resume_takes_only_the_run_id(tmp_path, capsys):
    """``crmkit import --resume ID`` (as the guide writes it) goes on with the run's own
    file as the user who started it: no file nor ``--as`` to repeat.  Without ``--resume``
    the file and ``--as`` are still required, and named when missing."""
    directory = tmp_path / "crm"
    assert call(capsys, "init", str(directory))[0] == 0
    config = ["--config", str(directory)]
    from crmkit import CRM
    from crmkit.model import ImportRun, Party
    from crmkit.testing import add_user

    crm = CRM.from_directory(directory)
    add_user(crm, "olga", ["admin"])
    data = "Название;Телефон\nООО Альфа;+7 916 111-22-33\nБета;\n".encode()
    with crm.acting_as("olga") as work:  # started, never run: as after an interruption
        run = work.imports.start("leads.csv", data, source="old-crm")
        run_id = run.id
    crm.close()

    code, out, err = call(capsys, *config, "import", "--resume", str(run_id))
    assert code == 0, err
    assert f"import {run_id}: 2 rows" in err and "done: 2 created" in out
    code, out, err = call(capsys, *config, "import", "--resume", "999")
    assert (code, err) == (1, "error: import 999 not found\n")
    crm = CRM.from_directory(directory)
    with crm.system() as work:
        assert sorted(p.name for p in work.session.query(Party)) == ["Бета", "ООО Альфа"]
        assert {p.created_by_id for p in work.session.query(Party)} == {
            work.session.get(ImportRun, run_id).created_by_id
        }
    crm.close()

    code, out, err = call(capsys, *config, "import", "--as", "olga")
    assert code == 2 and "Missing argument 'PATH'" in err
    source = tmp_path / "leads.csv"
    source.write_bytes(data)
    code, out, err = call(capsys, *config, "import", str(source))
    assert code == 2 and "Missing option '--as'" in err


def _stale(crm, party_id, name_key, keys):
    """Store keys as rules older than today's made them (as a party saved long ago has)."""
    import sqlalchemy as sa

    from crmkit.model import Party, PartyMatchKey
    from crmkit.services.screening import add_words

    with crm.system() as work:
        connection = work.session.connection()
        connection.execute(sa.delete(PartyMatchKey).where(PartyMatchKey.party_id == party_id))
        connection.execute(
            sa.update(Party.__table__).where(Party.id == party_id).values(name_key=name_key)
        )
        for key in keys:
            connection.execute(sa.insert(PartyMatchKey).values(key=key, party_id=party_id))
        add_words(connection, [k[2:] for k in keys if k.startswith("w:")])


def _keys(crm, party_id):
    import sqlalchemy as sa

    from crmkit.model import PartyMatchKey

    with crm.system() as work:
        query = sa.select(PartyMatchKey.key).where(PartyMatchKey.party_id == party_id)
        return set(work.session.scalars(query))


def test_screening_rebuild_recomputes_stale_name_keys(crm):
    from click.testing import CliRunner

    from crmkit.cli import Env
    from crmkit.clientbase_cli import screening
    from crmkit.model import Party

    with crm.system() as work:
        # "Сфера" typed with a Latin C, e, p and a: today's rules read it as Cyrillic
        sfera = work.parties.create(name="Cфepa", confirm_duplicates=True).id
        merged = work.parties.create(name="ООО Полюс", confirm_duplicates=True).id
        kept = work.parties.create(name="ООО «Ромашка»", confirm_duplicates=True).id
        work.session.get(Party, merged).merged_into_id = kept
    # before the look-alike folding both kept what they were typed with
    _stale(crm, sfera, "cфepa", ["w:cfepa"])
    _stale(crm, merged, "полюс", ["w:polius"])  # merged away: it should keep no keys
    with crm.system() as work:
        stamp = work.session.get(Party, sfera).updated_at

    def found(typed):
        with crm.system() as work:
            return [c.id for c in work.screening.probe_text(typed)]

    assert sfera not in found("Сфера")  # two letters away: screening misses it
    env = Env(None, debug=False)
    env._crm = crm
    run = CliRunner().invoke(screening, ["rebuild", "--batch-size", "2"], obj=env)
    assert run.exit_code == 0, run.output
    assert (
        "3 clients checked, keys changed for 2: 1 name keys rewritten, "
        "1 blocking keys added, 2 removed"
    ) in run.stdout
    assert found("Сфера")[0] == sfera and found("ООО «Сфера»")[0] == sfera
    assert merged not in found("Полюс")
    assert _keys(crm, merged) == set() and _keys(crm, sfera) == {"w:sfera"}
    with crm.system() as work:
        party = work.session.get(Party, sfera)
        assert party.name_key == "сфера" and party.name == "Cфepa"
        assert party.updated_at == stamp  # derived keys: the record itself did not change
    # everything is current now: a second run (or one after an interruption) changes nothing
    again = CliRunner().invoke(screening, ["rebuild"], obj=env)
    assert again.exit_code == 0, again.output
    assert "3 clients checked, keys changed for 0: 0 name keys rewritten" in again.stdout
    refused = CliRunner().invoke(screening, ["rebuild", "--batch-size", "0"], obj=env)
    assert refused.exit_code == 2 and "--batch-size" in refused.output
