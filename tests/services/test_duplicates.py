"""The whole-base duplicate report: exact keys and similar names grouped, run as a job."""

from __future__ import annotations

from crmkit.model import DuplicateReport, OutboxItem
from crmkit.services.duplicates import JOB_NAME, queue_report, run_report
from crmkit.testing import add_user


def test_report_groups_likely_duplicates(crm):
    with crm.system() as work:

        def make(name, *points):
            return work.parties.create(
                name=name, contact_points=list(points), confirm_duplicates=True
            ).id

        a = make("ООО «Ромашка»", {"kind": "phone", "value": "8 916 123-45-67"})
        b = make("Ромашка-Опт", {"kind": "phone", "value": "+7 916 1234567"})
        c = make("Ромащка")  # a typo
        d = make("ЗАО Альфа Строй")
        e = make("Строй Альфа LLC")  # word order, legal form
        make("Совсем другая фирма")
        make("Автосервис 5")
        make("Автосервис 15")
    report_id = run_report(crm)
    with crm.system() as work:
        report = work.session.get(DuplicateReport, report_id)
        assert report.status == "done" and report.scanned == 8
        groups = sorted(sorted(g["party_ids"]) for g in report.groups)
        assert groups == [sorted([a, b, c]), sorted([d, e])]
        by_first = {g["party_ids"][0]: g for g in report.groups}
        assert "phone" in by_first[min(a, b, c)]["reasons"]


def test_the_report_is_a_registered_job_queued_by_an_admin(crm):
    admin = add_user(crm, "boss", ["admin"])
    assert JOB_NAME in crm.jobs
    with crm.acting_as(admin) as work:
        report = queue_report(work)
        item = work.session.query(OutboxItem).one()
        assert item.payload["job"] == JOB_NAME
        assert item.payload["payload"] == {"report_id": report.id}
        report_id = report.id
    crm.jobs[JOB_NAME].func(crm, **{"report_id": report_id})
    with crm.system() as work:
        assert work.session.get(DuplicateReport, report_id).status == "done"


def test_contacts_with_nothing_left_to_compare_are_not_shared(crm):
    """A site or email typed as `http://` or `<>` is kept (never dropped) with an empty
    key: two unrelated clients with such values are not duplicates of each other."""
    with crm.system() as work:
        for name, kind, value in [
            ("Альфа", "website", "http://"),
            ("Бета", "website", "::::"),
            ("Гамма", "email", "<>"),
            ("Дельта", "email", "< >"),
        ]:
            work.parties.create(
                name=name, contact_points=[{"kind": kind, "value": value}], confirm_duplicates=True
            )
    report_id = run_report(crm)
    with crm.system() as work:
        report = work.session.get(DuplicateReport, report_id)
        assert report.status == "done" and report.groups == []
