"""``crmkit finance ...`` on a real deployment (the plugin installed, migrations applied)."""

from __future__ import annotations

import datetime as dt
import json

from crmkit.cli import main


def call(capsys, *args: str) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_rates_report_and_check(tmp_path, capsys):
    directory = tmp_path / "crm"
    code, _, err = call(capsys, "init", str(directory))
    assert code == 0, err
    config = str(directory)
    rates = tmp_path / "rates.csv"
    rates.write_text(
        "currency,date,rate\nUSD,2026-01-05,90.5\nEUR,2026-01-05,99.1\n", encoding="utf-8"
    )
    code, out, err = call(capsys, "--config", config, "finance", "rates", str(rates))
    assert (code, out.strip()) == (0, "2 rates imported"), err
    bad = tmp_path / "bad.csv"
    bad.write_text("currency,date,rate\nUSD,2026-01-06,ninety\n", encoding="utf-8")
    code, _, err = call(capsys, "--config", config, "finance", "rates", str(bad))
    assert code == 1 and "row 2" in err and "ninety" in err
    code, out, err = call(capsys, "--config", config, "finance", "check")
    assert (code, out.strip()) == (0, "ledger ok"), err
    code, out, err = call(
        capsys,
        "--config",
        config,
        "finance",
        "report",
        "finance.profit_loss",
        "-p",
        f"start={dt.date.today().replace(day=1).isoformat()}",
        "--format",
        "json",
    )
    assert code == 0, err
    assert json.loads(out)["totals"]["profit"] == "0.00"
    target = tmp_path / "pnl.xlsx"
    code, out, err = call(
        capsys,
        "--config",
        config,
        "finance",
        "report",
        "finance.profit_loss",
        "--format",
        "xlsx",
        "-o",
        str(target),
    )
    assert code == 0 and target.read_bytes()[:2] == b"PK", err


def test_user_mistakes_are_one_line(tmp_path, capsys):
    directory = tmp_path / "crm"
    code, _, err = call(capsys, "init", str(directory))
    assert code == 0, err
    config = str(directory)
    target = tmp_path / "missing" / "pnl.csv"
    code, _, err = call(
        capsys, "--config", config, "finance", "report", "finance.profit_loss", "-o", str(target)
    )
    assert (code, err) == (1, f"error: {target}: No such file or directory\n")
    code, _, err = call(capsys, "--config", config, "finance", "amortize", "--month", "bad")
    assert code == 2
    assert "Invalid value for '--month': 'bad' does not match the formats" in err
    code, out, err = call(capsys, "--config", config, "finance", "amortize", "--month", "2026-03")
    assert (code, out.strip()) == (0, "amortized 0 for 2026-03"), err


def test_an_unknown_report_parameter_is_refused_naming_it(tmp_path, capsys):
    directory = tmp_path / "crm"
    code, _, err = call(capsys, "init", str(directory))
    assert code == 0, err
    report = ["--config", str(directory), "finance", "report", "finance.receivables"]
    code, out, err = call(capsys, *report, "-p", "asof=2026-01-01")
    assert (code, out) == (1, "")
    assert err == "error: asof: not a parameter of finance.receivables; its parameters: as_of\n"
    code, out, err = call(capsys, *report, "-p", "as_of")
    assert (code, out) == (1, "")
    assert err == "error: -p as_of: give a report parameter as KEY=VALUE\n"
    code, out, err = call(capsys, *report, "-p", "as_of=2026-01-01", "--format", "json")
    assert code == 0, err


def test_the_order_margin_report_takes_a_limit_and_checks_it(tmp_path, capsys):
    directory = tmp_path / "crm"
    code, _, err = call(capsys, "init", str(directory))
    assert code == 0, err
    report = ["--config", str(directory), "finance", "report", "finance.order_margin"]
    code, out, err = call(capsys, *report, "-p", "limit=20", "--format", "json")
    assert code == 0, err
    assert json.loads(out)["rows"] == []
    for bad in ("0", "5001", "many"):
        code, out, err = call(capsys, *report, "-p", f"limit={bad}")
        assert (code, out) == (1, "")
        assert err == f"error: limit: '{bad}' is not a whole number from 1 to 5000\n"
