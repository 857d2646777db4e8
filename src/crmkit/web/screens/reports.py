"""Reports: every registered report the user may run, as a table and a Chart.js chart.

``/reports`` lists them; ``/reports/<name>`` runs one with the query string as its
parameters (``?pipeline=sales&since=2026-01-01``) and ``?format=csv`` downloads the table.
A report runs in the user's unit of work, so its queries see only what the user may read.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from crmkit.errors import NotFound
from crmkit.reports import Report, ReportResult
from crmkit.web import i18n
from crmkit.web.pages import render, work


def may_run(unit: Any, report: Report) -> bool:
    """Whether the unit's actor may run ``report`` (its roles, its entity's read right)."""
    actor = unit.actor
    if report.roles and not actor.system and not (set(report.roles) & actor.roles):
        return False
    return report.entity is None or unit.access.can(report.entity, "read")


def run_report(unit: Any, report: Report, params: Mapping[str, Any]) -> dict[str, Any]:
    """Build ``report`` and translate what it shows: what templates' ``report.html`` takes."""
    result: ReportResult = report.build(unit, params)
    _ = i18n.gettext
    chart = None
    if result.chart:
        chart = dict(result.chart)
        chart["labels"] = [_(str(label)) for label in chart.get("labels", [])]
        chart["datasets"] = [
            {**d, "label": _(str(d.get("label", "")))} for d in chart.get("datasets", [])
        ]
    texts = [c.key for c in result.columns if c.kind == "text"]
    rows = [
        {**row, **{k: _(row[k]) for k in texts if isinstance(row.get(k), str) and row[k]}}
        for row in result.rows
    ]
    return {
        "report": report,
        "label": _(report.label),
        "columns": [(c.key, _(c.label), c.kind) for c in result.columns],
        "rows": rows,
        "totals": result.totals,
        "chart": chart,
    }


async def index(request: Request) -> Response:
    """The reports the user may run."""
    crm = request.app.state.crm
    with work(request) as unit:
        reports = [r for r in crm.reports.values() if may_run(unit, r)]
    return render(request, "reports.html", {"title": i18n.lazy("Reports"), "reports": reports})


async def report_page(request: Request) -> Response:
    """One report; ``format=csv`` gives its table as a CSV file."""
    crm = request.app.state.crm
    report = crm.reports.get(request.path_params["name"])
    params = {k: v for k, v in request.query_params.items() if k != "format"}
    with work(request) as unit:
        if report is None or not may_run(unit, report):
            raise NotFound("report", request.path_params["name"])
        with i18n.activate(request.state.locale):
            shown = run_report(unit, report, params)
    if request.query_params.get("format") == "csv":
        return csv_response(shown, f"{report.name}.csv")
    return render(
        request, "report.html", {"title": shown["label"], "shown": shown, "params": params}
    )


def csv_response(shown: Mapping[str, Any], filename: str) -> Response:
    """A report's table as CSV (UTF-8 with a BOM, so spreadsheets read Cyrillic)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([label for _, label, _ in shown["columns"]])
    for row in shown["rows"]:
        writer.writerow([row.get(key, "") for key, _, _ in shown["columns"]])
    return Response(
        "\ufeff" + buffer.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
