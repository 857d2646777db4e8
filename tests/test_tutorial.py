"""The plugin tutorial works as written: its code is run here, on both databases, and so
are its commands, in order, on a deployment of their own."""

from __future__ import annotations

import datetime as dt
import io
import re
import shlex
import sys
import tomllib
import types
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from marshmallow import ValidationError

from crmkit.cli import cli, main

ROOT = Path(__file__).resolve().parents[1]
TUTORIAL = ROOT / "docs" / "tutorial" / "first-plugin.md"


def blocks(language: str) -> list[str]:
    text = TUTORIAL.read_text(encoding="utf-8")
    return re.findall(rf"```{language}\n(.*?)```", text, re.DOTALL)


def python_blocks() -> list[str]:
    return blocks("python")


def crmkit_commands() -> list[list[str]]:
    """Every ``crmkit ...`` line of the tutorial's shell blocks, in order, split into
    arguments (without the program name)."""
    return [
        shlex.split(line)[1:]
        for block in blocks("sh")
        for line in block.splitlines()
        if line.startswith("crmkit ")
    ]


@pytest.fixture(scope="module")
def tutorial_plugin():
    """The plugin module assembled from the tutorial's model and event-handler blocks.

    Built once: its model joins the shared metadata, as an installed plugin's would.
    """
    plugin_code, handler_code, _usage, _test = python_blocks()
    package = types.ModuleType("crmkit_visits")
    module = types.ModuleType("crmkit_visits.plugin")
    module.__file__ = str(TUTORIAL)
    package.plugin = module
    sys.modules.setdefault("crmkit_visits", package)
    sys.modules.setdefault("crmkit_visits.plugin", module)
    exec(compile(plugin_code + "\n" + handler_code, str(TUTORIAL), "exec"), module.__dict__)
    return module


def tutorial_tests() -> list[tuple[Any, dict[str, Any]]]:
    """Each test function of the tutorial's test block with each set of its parameters."""
    *_, test_code = python_blocks()
    namespace: dict[str, Any] = {}
    exec(compile(test_code, str(TUTORIAL), "exec"), namespace)
    cases = []
    for name, function in namespace.items():
        if not name.startswith("test_") or not callable(function):
            continue
        marks = [m for m in getattr(function, "pytestmark", []) if m.name == "parametrize"]
        if not marks:
            cases.append((function, {}))
        for mark in marks:
            argument, values = mark.args
            cases += [(function, {argument: value}) for value in values]
    return cases


def test_tutorial_tests_pass(make_crm, tutorial_plugin):
    """The tutorial's tests, its refusals of wrong input included: each on a new CRM."""
    cases = tutorial_tests()
    names = {function.__name__ for function, _ in cases}
    assert names == {
        "test_visit_lands_on_timeline_and_stays_private",
        "test_wrong_input_is_refused_naming_the_field",
    }
    assert len(cases) == 5
    for function, arguments in cases:
        function(make_crm(plugins=[tutorial_plugin]), **arguments)


def test_the_tutorials_schema_keeps_to_its_columns(tutorial_plugin):
    """Its fields are crmkit's, whose limits are the model's: a text of its column's length,
    an id of 64 bits, a moment UTC can hold."""
    schema = tutorial_plugin.VisitSchema()
    given = {"party_id": 1, "visited_at": "2026-11-20T10:00:00+03:00"}
    loaded = schema.load({**given, "outcome": "я" * 200})
    assert loaded["visited_at"] == dt.datetime(2026, 11, 20, 7, tzinfo=dt.UTC)
    assert loaded["visited_at"].tzinfo is dt.UTC
    refused = {
        "outcome": "я" * 201,
        "visited_at": "0001-01-01T00:00:00+05:00",
        "party_id": 0,
        "agent_id": 2**63,
    }
    for field, value in refused.items():
        with pytest.raises(ValidationError) as wrong:
            schema.load({**given, field: value})
        assert list(wrong.value.messages) == [field], (field, wrong.value.messages)
    with pytest.raises(ValidationError, match="party_id"):
        schema.load({**given, "party_id": None})
    assert schema.load({**given, "agent_id": None})["agent_id"] is None


def test_the_pyproject_joins_the_workspace_as_the_repositorys_plugins_do():
    """uv refuses a workspace member depending on crmkit without `workspace = true`."""
    [pyproject] = [tomllib.loads(block) for block in blocks("toml")]
    finance = tomllib.loads((ROOT / "plugins/finance/pyproject.toml").read_text())
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "plugins/*" in root["tool"]["uv"]["workspace"]["members"]
    assert pyproject["tool"]["uv"]["sources"] == finance["tool"]["uv"]["sources"]
    assert pyproject["project"]["dependencies"] == ["crmkit"]
    assert pyproject["project"]["entry-points"]["crmkit"] == {"visits": "crmkit_visits.plugin"}


def test_every_command_of_the_tutorial_exists_with_its_options(capsys):
    commands = crmkit_commands()
    names = [" ".join(args[2:4] if args[0] == "--config" else args[:2]) for args in commands]
    assert names.index("init var/demo") < names.index("db revision") < names.index("serve")
    for args in commands:
        with pytest.raises(SystemExit) as done:
            cli.main([*args, "--help"], prog_name="crmkit")
        assert done.value.code == 0, (args, capsys.readouterr().err)
    capsys.readouterr()


def test_the_tutorials_commands_in_order_on_a_deployment(
    empty_database, tutorial_plugin, tmp_path, capsys, monkeypatch
):
    """init, db revision, db upgrade, user add, the shell's block, plugins: as written,
    with the plugin installed (here: given to every application the commands build)."""
    import crmkit.app
    from crmkit import CRM, Config

    url_option, _ = empty_database
    source = tmp_path / "plugins" / "visits" / "src" / "crmkit_visits"
    (source / "migrations").mkdir(parents=True)
    monkeypatch.setattr(tutorial_plugin, "__file__", str(source / "plugin.py"))
    original = crmkit.app.make_plugin_manager

    def with_the_plugin(*args, extra=(), **kwargs):
        return original(*args, extra=[*extra, tutorial_plugin], **kwargs)

    monkeypatch.setattr(crmkit.app, "make_plugin_manager", with_the_plugin)
    monkeypatch.setattr(sys, "stdin", io.StringIO("correct-horse-1\n"))
    deployment = tmp_path / "var" / "demo"
    for args in crmkit_commands():
        if args[-1] in ("shell", "serve"):  # interactive, long-running: below instead
            continue
        args = [str(deployment) if arg == "var/demo" else arg for arg in args]
        if args[0] == "init":
            args += url_option
        try:
            main(args)
        except SystemExit as exc:
            pytest.fail(f"crmkit {shlex.join(args)}: {exc.code} {capsys.readouterr().err}")
        out = capsys.readouterr().out
        if args[-1] == "plugins":
            assert "crmkit_handle_event" in out and "crmkit_register_migrations" in out

    [revision] = (source / "migrations").glob("*_visits_table.py")
    assert "op.create_table('visits_visit'" in revision.read_text()
    crm = CRM(Config.load(deployment))
    try:
        with crm.engine.connect() as connection:
            assert "visits_visit" in sa.inspect(connection).get_table_names()
        _plugin, _handler, usage, _test = python_blocks()
        exec(compile(usage, str(TUTORIAL), "exec"), {"crm": crm})
        with crm.acting_as("agent1") as work:
            [client] = work.parties.list(search="Vesna").items
            [entry] = work.timeline.list(client.id, kinds=["meeting"]).items
            assert (entry.subject, entry.body) == ("Visit", "signed")
    finally:
        crm.close()


def test_the_tutorials_code_imports_what_it_uses_and_uses_what_it_imports(tmp_path):
    """A reader copies the blocks into files and runs their linter: the plugin module (the
    model and handler blocks) and the test file pass pyflakes' checks as they are."""
    import subprocess

    plugin_code, handler_code, _usage, test_code = python_blocks()
    files = {"plugin.py": plugin_code + "\n\n" + handler_code, "test_visits.py": test_code}
    for name, code in files.items():
        (tmp_path / name).write_text(code, encoding="utf-8")
    found = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--isolated", "--select", "F",
         "--output-format", "concise", *files],
        cwd=tmp_path, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert found.returncode == 0, found.stdout + found.stderr


def test_the_testing_pages_migration_test_passes_on_the_tutorials_plugin(
    tutorial_plugin, db_backend, tmp_path, monkeypatch
):
    """docs/testing.md's migration test, as written, on the tutorial's plugin with the
    revision `db revision` writes for it: the migrations make exactly the model's table."""
    from crmkit import CRM, Config

    source = tmp_path / "src" / "crmkit_visits"
    (source / "migrations").mkdir(parents=True)
    monkeypatch.setattr(tutorial_plugin, "__file__", str(source / "plugin.py"))
    url = f"sqlite:///{tmp_path / 'dev.sqlite3'}"
    config = Config.from_mapping({"database.url": url}, root=tmp_path, environ={})
    with CRM(config, plugins=[tutorial_plugin], load_entry_points=False) as crm:
        crm.migrations.upgrade()
        crm.migrations.revision("visits table", "visits")

    page = (ROOT / "docs" / "testing.md").read_text(encoding="utf-8")
    [block] = [b for b in re.findall(r"```python\n(.*?)```", page, re.S) if "migrated" in b]
    namespace: dict[str, Any] = {}
    exec(compile(block, "testing.md", "exec"), namespace)
    (tmp_path / "test").mkdir()
    fixture = namespace["migrated"].__wrapped__(db_backend, tmp_path / "test")
    migrated = next(fixture)
    try:
        assert set(migrated.migrations.current()) == {"crmkit", "visits"}
        namespace["test_the_migrations_make_the_models_tables"](migrated)
    finally:
        next(fixture, None)


def test_the_readmes_python_sample_runs_on_a_deployment_with_the_basic_demo(
    empty_database, tmp_path, capsys
):
    """The README's first Python block, as written, on a deployment `crmkit init` made and
    `crmkit demo basic` filled (its agent1): the client, the deal and the move it makes."""
    from crmkit.model import Deal, Party

    url_option, _ = empty_database
    deployment = tmp_path / "var" / "demo"
    for args in (
        ["init", str(deployment), *url_option],
        ["--config", str(deployment), "demo", "basic", "--size", "3"],
    ):
        try:
            main(args)
        except SystemExit as exc:
            pytest.fail(f"crmkit {shlex.join(args)}: {exc.code} {capsys.readouterr().err}")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    sample = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    assert 'CRM.from_directory("var/demo")' in sample
    namespace: dict[str, Any] = {}
    exec(compile(sample.replace("var/demo", str(deployment)), "README.md", "exec"), namespace)
    crm = namespace["crm"]
    try:
        with crm.system() as work:
            deal = work.session.get(Deal, namespace["deal"].id)
            client = work.session.get(Party, deal.party_id)
            assert (client.name, deal.title, deal.stage) == (
                "ООО «Ромашка»",
                "Поставка",
                "qualified",
            )
    finally:
        crm.close()
