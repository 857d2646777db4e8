"""Docs are part of the product: every hook, CLI command and setting must be documented.

A hook is documented by a heading ``### crmkit_<name>``; a command by a heading naming its
full path (``### crmkit db upgrade``); a setting by a heading with its key
(``### database.url``).  Plugins and examples may document theirs in their own README.md.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click
import pytest

from crmkit import hookspecs
from crmkit.cli import cli
from crmkit.config import CORE_SETTINGS
from crmkit.plugins import make_plugin_manager

ROOT = Path(__file__).resolve().parents[1]


def documentation() -> str:
    files = [
        *ROOT.joinpath("docs").rglob("*.md"),
        *ROOT.glob("plugins/*/README.md"),
        *ROOT.glob("examples/*/README.md"),
    ]
    return "\n".join(f.read_text(encoding="utf-8") for f in files)


def headings() -> set[str]:
    return {
        m.group(1).strip().strip("`")
        for m in re.finditer(r"^#{2,4}\s+(.+)$", documentation(), re.MULTILINE)
    }


def command_paths(group: click.Group, prefix: str = "crmkit") -> list[str]:
    paths = []
    for name, command in sorted(group.commands.items()):
        path = f"{prefix} {name}"
        if isinstance(command, click.Group):
            paths.append(path)
            paths += command_paths(command, path)
        else:
            paths.append(path)
    return paths


@pytest.fixture(scope="module")
def installed():
    pm = make_plugin_manager()  # every installed plugin: their hooks, commands, settings
    pm.hook.crmkit_register_commands(cli=cli)
    return pm


@pytest.mark.parametrize("hook", list(hookspecs.iter_specs()))
def test_every_hook_is_documented(hook):
    assert hook in headings(), f"docs/reference/hooks.md needs a heading `### {hook}`"


def test_every_cli_command_is_documented(installed):
    missing = [p for p in command_paths(cli) if p not in headings()]
    assert not missing, f"undocumented commands (add `### <command>` to docs): {missing}"


def test_every_setting_is_documented(installed):
    settings = list(CORE_SETTINGS)
    for result in installed.hook.crmkit_register_settings():
        settings += list(result or [])
    missing = [s.name for s in settings if s.name not in headings()]
    assert not missing, f"undocumented settings (add `### <key>` to docs): {missing}"


def test_every_hook_spec_states_its_call_semantics():
    for name in hookspecs.iter_specs():
        doc = getattr(hookspecs, name).__doc__ or ""
        assert any(
            word in doc
            for word in ("Collecting", "Every implementation", "Stops at", "Historic", "wrapper")
        ), name


def test_the_background_guides_automation_rules_build_as_written():
    """The automation assistant's example imports what it uses and each rule is valid (a
    rule is checked when it is made: its trigger's hours and days, its actions)."""
    guide = ROOT.joinpath("docs", "guide", "background.md").read_text(encoding="utf-8")
    [block] = [b for b in re.findall(r"```python\n(.*?)```", guide, re.S) if "Rule(" in b]
    imports, _, rules = block.partition("\n\n")
    namespace: dict[str, Any] = {}
    exec(compile(imports, "background.md", "exec"), namespace)
    made, rule = [], namespace["Rule"]
    namespace["Rule"] = lambda *args, **kwargs: made.append(rule(*args, **kwargs))
    exec(compile(rules, "background.md", "exec"), namespace)
    assert [r.name for r in made] == [
        "order-paid", "confirm-booking", "remind-day-before", "wake-up-idle",
    ]  # fmt: skip


def _anchor(heading: str) -> str:
    """The anchor a heading gets where the docs are read (GitHub's rule)."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def test_every_relative_link_leads_to_a_file_and_heading():
    """A reader following a link lands somewhere: the file exists and, for `#part`, one of
    its headings has that anchor."""
    files = [
        *ROOT.joinpath("docs").rglob("*.md"),
        ROOT / "README.md",
        *ROOT.glob("plugins/*/README.md"),
        *ROOT.glob("examples/*/README.md"),
    ]
    anchors = {
        f.resolve(): {_anchor(h) for h in re.findall(r"^#{1,6}\s+(.+)$", f.read_text(), re.M)}
        for f in files
    }
    broken = []
    for f in files:
        for link in re.findall(r"\]\(([^)\s]+)\)", f.read_text(encoding="utf-8")):
            if link.startswith(("http:", "https:", "mailto:")):
                continue
            path, _, anchor = link.partition("#")
            target = (f.parent / path).resolve() if path else f.resolve()
            if not target.exists():
                broken.append(f"{f.relative_to(ROOT)}: {link} (no such file)")
            elif anchor and target.suffix == ".md" and anchor not in anchors.get(target, ()):
                broken.append(f"{f.relative_to(ROOT)}: {link} (no such heading)")
    assert not broken, broken
