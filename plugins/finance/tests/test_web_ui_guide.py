"""The web UI guide's screen example (docs/guide/web-ui.md, "Adding a screen from a plugin")
works as written: its plugin module and template, installed beside the finance plugin."""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

from crmkit_finance import finance
from crmkit_finance import plugin as finance_plugin
from finance_fixtures import build_shop
from finance_web import Client

from crmkit.testing import add_user

GUIDE = Path(__file__).resolve().parents[3] / "docs" / "guide" / "web-ui.md"


def sample(language: str, first_line: str) -> str:
    """The guide's block in ``language`` whose first line is ``first_line``."""
    blocks = re.findall(rf"```{language}\n(.*?)```", GUIDE.read_text(encoding="utf-8"), re.S)
    [block] = [b for b in blocks if b.startswith(first_line + "\n")]
    return block


def test_the_cashbox_screen_of_the_guide_lists_done_orders(make_crm, tmp_path, monkeypatch):
    package = tmp_path / "crmkit_cashbox"
    (package / "templates" / "cashbox").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "plugin.py").write_text(sample("python", "# crmkit_cashbox/plugin.py"))
    template = sample("html", "{# crmkit_cashbox/templates/cashbox/index.html #}")
    (package / "templates" / "cashbox" / "index.html").write_text(template)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("crmkit_cashbox", "crmkit_cashbox.plugin"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    cashbox = importlib.import_module("crmkit_cashbox.plugin")

    crm = make_crm(plugins=[finance_plugin, cashbox])
    shop = build_shop(crm)
    with crm.acting_as(shop.manager) as work:
        done, waiting = shop.order(work), shop.order(work)
        finance(work).orders.add_line(done, shop.oil_change.id, main=True)
        work.moves.move(done, "done")
        done_number, waiting_number = done.number, waiting.number
    add_user(crm, "anna", ["cashbox_clerk"])

    from crmkit.web.app import create_app

    clerk = Client(create_app(crm), "anna")
    start = clerk.get("/")
    assert start.status_code == 303 and start.headers["location"].endswith("/cashbox")
    page = clerk.get("/cashbox")
    assert page.status_code == 200, page.text[:500]
    assert "<h1>Cashbox</h1>" in page.text or "<h1>Касса</h1>" in page.text
    assert re.findall(r"<p>(.*?) — ", page.text) == [done_number]  # the order, not the other
    assert waiting_number != done_number
    assert "/cashbox" in clerk.menu()
