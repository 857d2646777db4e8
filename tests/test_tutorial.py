"""The plugin tutorial works as written: its code is run here, on both databases."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

TUTORIAL = Path(__file__).resolve().parents[1] / "docs" / "tutorial" / "first-plugin.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", TUTORIAL.read_text(encoding="utf-8"), re.DOTALL)


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


def test_tutorial_test_passes(make_crm, tutorial_plugin):
    *_, test_code = python_blocks()
    namespace: dict[str, object] = {}
    exec(compile(test_code, str(TUTORIAL), "exec"), namespace)
    crm = make_crm(plugins=[tutorial_plugin])
    namespace["test_visit_lands_on_timeline_and_stays_private"](crm)
