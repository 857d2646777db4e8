"""One-time form tokens: good for ``finance.form_token_days`` from when the form was shown,
and purged by the daily job once no repeat can need them."""

from __future__ import annotations

import datetime as dt

import pytest
from crmkit_finance import finance
from crmkit_finance import plugin as finance_plugin
from crmkit_finance.model import FinanceFormToken
from crmkit_finance.services.forms import new_form_token, repeated
from finance_fixtures import build_shop
from sqlalchemy import select

from crmkit.clock import frozen_at, utcnow
from crmkit.errors import ConfigError, ValidationFailed


def _shown(ago: dt.timedelta) -> str:
    """A form token as a page shown ``ago`` gave it."""
    with frozen_at(utcnow() - ago):
        return new_form_token()


def _pay(shop, token, *, at=None):
    """Send a 10.00 transfer form onto the client's account; the payments it made so far."""
    with shop.crm.acting_as(shop.cashier) as work:
        fin = finance(work)
        with frozen_at(at or utcnow()):
            fin.payments.take(
                party_id=shop.client.id, amount="10.00", method="transfer", form_token=token
            )
        return repeated(work.session)


def _paid(shop):
    with shop.crm.acting_as(shop.cashier) as work:
        return finance(work).payments.total_paid(shop.client.id)


def _kept(shop):
    with shop.crm.system() as work:
        return set(work.session.scalars(select(FinanceFormToken.token)))


def test_old_tokens_are_purged_and_fresh_ones_stay(shop):
    now = utcnow()
    old = _shown(dt.timedelta(days=8, hours=1))
    _pay(shop, old, at=now - dt.timedelta(days=8))  # a form sent eight days ago
    _pay(shop, "made-up-1", at=now - dt.timedelta(days=7, minutes=1))  # no date: by its use
    recent = _shown(dt.timedelta(days=6, hours=20))
    _pay(shop, recent, at=now - dt.timedelta(days=6))
    fresh = new_form_token()
    _pay(shop, fresh)
    assert _paid(shop) == 40
    schedule = shop.crm.schedules["finance.purge_form_tokens.daily"]
    job = shop.crm.jobs[schedule.job]
    assert job.func(shop.crm) == "purged 2 form tokens"
    assert _kept(shop) == {recent, fresh}
    # the kept ones still stop a second submission, and say so
    assert _pay(shop, recent) and _pay(shop, fresh)
    assert _paid(shop) == 40
    # the purged form is past its lifetime: refused, not taken a second time
    with pytest.raises(ValidationFailed, match="too old"):
        _pay(shop, old)
    assert _paid(shop) == 40
    # nothing left to purge: running again is harmless
    assert job.func(shop.crm) == "purged 0 form tokens"
    assert _kept(shop) == {recent, fresh}


def test_a_slow_form_works_for_its_whole_lifetime(shop):
    # filled in over almost a week (a page left open): taken once
    slow = _shown(dt.timedelta(days=6, hours=23))
    assert not _pay(shop, slow)
    assert _paid(shop) == 10
    # shown more than seven days ago and never sent: refused with a reason, nothing written
    stale = _shown(dt.timedelta(days=7, minutes=1))
    with pytest.raises(ValidationFailed, match="reload the page"):
        _pay(shop, stale)
    assert _paid(shop) == 10 and stale not in _kept(shop)


def test_the_lifetime_is_a_setting(make_crm):
    shop = build_shop(make_crm(plugins=[finance_plugin], settings={"finance.form_token_days": 30}))
    _pay(shop, _shown(dt.timedelta(days=29)))
    assert _paid(shop) == 10
    with pytest.raises(ValidationFailed, match="too old"):
        _pay(shop, _shown(dt.timedelta(days=31)))
    shop.crm.config.values["finance.form_token_days"] = 0
    with pytest.raises(ConfigError, match="finance.form_token_days"):
        _pay(shop, new_form_token())
