"""Why firms refuse: a reason from the deployment's list on every way into the dead end, kept
on the record with its history, shown on the card and counted in the statistics."""

from __future__ import annotations

import datetime as dt
import html
import json
import re
from pathlib import Path

import crmkit_denaq
import pytest
from crmkit_denaq import pipeline
from crmkit_denaq.stats import refusals_by_reason
from denaq_fixtures import add_person, attach, new_lead
from denaq_web import Client

from crmkit.clock import frozen_at
from crmkit.errors import MoveRefused, ValidationFailed
from crmkit.i18n import translate
from crmkit.web import i18n
from crmkit.web.app import create_app

REASON = "refusal_reason"


def _firm(crm, agent, name="ООО «Велоград»"):
    firm = new_lead(crm, agent, name=name)
    add_person(crm, agent, firm)
    with crm.acting_as(agent) as work:
        work.moves.move(firm, "firm", entity="party")
    return firm


def _refuse(work, record, reason, comment=None):
    return work.moves.move(
        record, "refused", entity="party", comment=comment, fields={"custom": {REASON: reason}}
    )


def _russian(refused):
    locale = Path(crmkit_denaq.__file__).parent / "locale"
    catalogs = i18n.load_catalogs([i18n.LOCALE_DIR, locale])
    return [translate(m, catalogs["ru"].gettext) for m in refused.messages]


def test_the_reasons_are_the_deployments_list_in_one_place(denaq, staff):
    assert pipeline.REFUSAL_REASONS == (
        "уже работает с конкурентом",
        "не интересно",
        "дорого",
        "нет потребности",
        "не дозвонились",
        "закрылась",
        "другое",
    )
    assert pipeline.OTHER_REASON == "другое"
    with denaq.system() as work:
        field = work.custom_fields.definitions("party")[REASON]
    assert (field.kind, field.label, field.choices) == (
        "choice",
        "Причина отказа",
        list(pipeline.REFUSAL_REASONS),
    )


def test_a_firm_is_refused_only_with_a_reason_from_the_list(denaq, staff):
    firm = _firm(denaq, staff.anna)
    with denaq.acting_as(staff.anna) as work:
        with pytest.raises(MoveRefused) as refused:
            work.moves.move(firm, "refused", entity="party", comment="не берут трубку")
        assert refused.value.missing_fields == [f"custom.{REASON}"]
        assert _russian(refused.value) == ["заполните: Причина отказа"]
        with pytest.raises(ValidationFailed) as wrong:
            _refuse(work, firm, "надоели")
        assert REASON in wrong.value.errors["custom"]
        assert work.parties.get(firm).stage == "firm"
        moved = _refuse(work, firm, "дорого")  # no comment needed for a listed reason
        assert (moved.record.stage, moved.record.custom[REASON]) == ("refused", "дорого")
    # a lead refuses the same way
    lead = new_lead(denaq, staff.anna, name="ООО «Шинторг»")
    with denaq.acting_as(staff.anna) as work:
        with pytest.raises(MoveRefused):
            work.moves.move(lead, "refused", entity="party")
        assert _refuse(work, lead, "не дозвонились").record.stage == "refused"


def test_the_reason_other_needs_a_comment(denaq, staff):
    firm = _firm(denaq, staff.anna)
    with denaq.acting_as(staff.anna) as work:
        with pytest.raises(MoveRefused) as refused:
            _refuse(work, firm, "другое")
        assert refused.value.reasons == ["the refusal reason “другое” needs a comment"]
        assert work.parties.get(firm).stage == "firm"
        assert work.parties.get(firm).custom.get(REASON) is None  # nothing kept of it
        moved = _refuse(work, firm, "другое", comment="ждут нового директора")
        assert moved.record.stage == "refused"
        assert work.moves.history(moved.record)[-1].comment == "ждут нового директора"


def test_the_reason_has_its_history_and_is_asked_again_after_reopening(denaq, staff):
    firm = _firm(denaq, staff.anna)
    with denaq.acting_as(staff.anna) as work:
        _refuse(work, firm, "дорого")
        work.moves.move(firm, "firm", entity="party")  # reopened: the refusal no longer holds
        assert work.parties.get(firm).custom.get(REASON) is None
        with pytest.raises(MoveRefused) as refused:
            work.moves.move(firm, "refused", entity="party", comment="опять")
        assert refused.value.missing_fields == [f"custom.{REASON}"]
        _refuse(work, firm, "закрылась")
    with denaq.system() as work:
        changes = [json.dumps(e.changes, ensure_ascii=False) for e in
                   work.audit_log.for_record("party", firm)]  # fmt: skip
    said = [c for c in changes if REASON in c]
    assert len(said) == 3  # дорого, cleared on reopening, закрылась
    assert "дорого" in said[0] and "закрылась" in said[-1]


def test_an_account_that_gives_up_says_why(denaq, staff):
    account = _firm(denaq, staff.anna)
    attach(denaq, staff.anna, account, "contract", "requisites")
    with denaq.acting_as(staff.anna) as work:
        work.moves.move(account, "account", entity="party")
        with pytest.raises(MoveRefused) as refused:
            work.moves.move(account, "refused", entity="party", comment="нет спроса")
        assert refused.value.missing_fields == [f"custom.{REASON}"]
        moved = _refuse(work, account, "нет потребности", comment="нет спроса")
        assert moved.record.custom[REASON] == "нет потребности"
        assert moved.backward


def test_the_card_asks_for_the_reason_on_the_move_form_and_shows_it(denaq, staff):
    firm = _firm(denaq, staff.anna)
    anna = Client(create_app(denaq), "anna")
    card = anna.get(f"/clients/{firm}").text
    assert re.search(
        r'<form method="get" action="/records/party/\d+/move"[^>]*>\s*'
        r'<input type="hidden" name="to" value="refused">',
        card,
    ), "the refusal is not asked for on a form of its own"
    form = anna.get(f"/records/party/{firm}/move", params={"to": "refused"}).text
    select = form.split(f'name="field.custom.{REASON}"', 1)[1].split("</select>", 1)[0]
    assert re.findall(r"<option value=\"([^\"]+)\"", select) == list(pipeline.REFUSAL_REASONS)
    assert "Причина отказа" in form
    assert '<textarea name="comment"' in form  # for "другое", or a word more
    assert 'class="flash error"' not in form

    missing = anna.post(f"/records/party/{firm}/move", {"to": "refused", "comment": "нет"})
    assert missing.status_code == 409
    assert "заполните: Причина отказа" in html.unescape(missing.text)
    other = anna.post(
        f"/records/party/{firm}/move", {"to": "refused", f"field.custom.{REASON}": "другое"}
    )
    assert other.status_code == 409
    error = html.unescape(other.text).split('class="flash error"', 1)[1].split("</p>", 1)[0]
    assert "другое" in error  # the reason that needs the comment is named
    assert 'value="другое" selected' in other.text  # the choice is kept

    moved = anna.post(
        f"/records/party/{firm}/move",
        {"to": "refused", f"field.custom.{REASON}": "уже работает с конкурентом"},
    )
    assert moved.status_code == 303
    card = html.unescape(anna.get(f"/clients/{firm}").text)
    details = card.split('<dl class="details">', 1)[1].split("</dl>", 1)[0]
    assert re.search(r"<dt>Причина отказа</dt><dd>уже работает с конкурентом</dd>", details)


def test_the_board_offers_the_reasons_when_a_card_is_dropped_on_the_dead_end(denaq, staff):
    firm = _firm(denaq, staff.anna)
    anna = Client(create_app(denaq), "anna")
    with denaq.acting_as(staff.anna) as work:
        version = work.parties.get(firm).version
    dropped = anna.http.post(
        "/boards/dealer/move",
        json={"id": firm, "to": "refused", "version": version},
        headers={"X-CSRF-Token": anna.csrf},
    )
    assert dropped.status_code == 409
    body = dropped.json()
    assert body["form"] and body["missing_fields"] == [f"custom.{REASON}"]
    assert body["labels"] == {f"custom.{REASON}": "Причина отказа"}
    assert body["choices"] == {f"custom.{REASON}": list(pipeline.REFUSAL_REASONS)}
    moved = anna.http.post(
        "/boards/dealer/move",
        json={"id": firm, "to": "refused", "version": version, f"field.custom.{REASON}": "дорого"},
        headers={"X-CSRF-Token": anna.csrf},
    )
    assert moved.json()["moved"] is True


def test_the_statistics_count_refusals_by_reason_in_a_period(denaq, staff):
    firms = [_firm(denaq, staff.anna, name=f"ООО «Фирма {n}»") for n in range(4)]
    moments = ("2026-10-20T10:00:00+00:00", "2026-11-03T10:00:00+00:00")
    with frozen_at(dt.datetime.fromisoformat(moments[0])), denaq.acting_as(staff.anna) as work:
        _refuse(work, firms[0], "дорого")
    with frozen_at(dt.datetime.fromisoformat(moments[1])), denaq.acting_as(staff.anna) as work:
        _refuse(work, firms[1], "дорого")
        _refuse(work, firms[2], "другое", comment="переезжают")
        _refuse(work, firms[3], "не интересно")
        work.moves.move(firms[3], "firm", entity="party")  # reopened: no longer a refusal
    november = {"since": "2026-11-01", "until": "2026-12-01"}
    with denaq.acting_as(staff.admin) as work:
        result = refusals_by_reason(work, november)
        assert [(r["reason"], r["count"]) for r in result.rows] == [("дорого", 1), ("другое", 1)]
        assert result.totals == {"count": 2}
        everything = refusals_by_reason(work, {})
        assert [(r["reason"], r["count"]) for r in everything.rows] == [
            ("дорого", 2),
            ("другое", 1),
        ]
    with denaq.acting_as(staff.igor) as work:  # another agent's firms are not his to count
        assert refusals_by_reason(work, {}).rows == []
    admin = Client(create_app(denaq), "boss")
    page = html.unescape(admin.get("/denaq/stats?since=2026-11-01&until=2026-12-01").text)
    section = page.split('id="report-denaq_refusals"', 1)[1].split("</section>", 1)[0]
    assert "<canvas" in section  # refusals in November: a chart
    table = admin.get("/reports/denaq_refusals?since=2026-11-01&until=2026-12-01")
    assert table.status_code == 200 and "дорого" in table.text


def test_firms_are_refused_in_bulk_from_the_list_with_one_reason(denaq, staff):
    firms = [_firm(denaq, staff.anna, name=f"ООО «Вело {n}»") for n in range(3)]
    anna = Client(create_app(denaq), "anna")
    chosen = {"ids": [str(f) for f in firms], "action": "stage", "stage": "refused"}

    form = anna.post("/lists/party/bulk", chosen)

    assert form.status_code == 200  # asked once, not three refusals
    assert "заполните" not in html.unescape(form.text)
    select = form.text.split(f'name="field.custom.{REASON}"', 1)[1].split("</select>", 1)[0]
    assert re.findall(r"<option value=\"([^\"]+)\"", select) == list(pipeline.REFUSAL_REASONS)
    assert "Причина отказа" in form.text
    with denaq.acting_as(staff.anna) as work:
        assert {work.parties.get(f).stage for f in firms} == {"firm"}

    other = anna.post(
        "/lists/party/bulk", {**chosen, "asked": "1", f"field.custom.{REASON}": "другое"}
    )
    page = html.unescape(anna.get(other.headers["location"]).text)
    assert "Переведено: 0" in page  # "другое" needs a comment: each firm named, none moved
    assert all(f"ООО «Вело {n}»: " in page for n in range(3))

    refused = anna.post(
        "/lists/party/bulk", {**chosen, "asked": "1", f"field.custom.{REASON}": "дорого"}
    )
    assert refused.status_code == 303
    assert "Переведено: 3" in html.unescape(anna.get(refused.headers["location"]).text)
    with denaq.acting_as(staff.anna) as work:
        done = [work.parties.get(f) for f in firms]
    assert [(f.stage, f.custom[REASON]) for f in done] == [("refused", "дорого")] * 3
