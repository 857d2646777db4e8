"""Private columns (``info={"private": True}``: password hashes, storage keys) never reach a
list, a record page, a filter or an order, whoever asks and however the URL is written."""

from __future__ import annotations

import html

import pytest
import sqlalchemy as sa

from crmkit.model import Attachment, User
from crmkit.schemas.output import is_private
from crmkit.testing import factories
from crmkit.web.screens.lists import column_names

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


def _stored(crm, column, record_id):
    with crm.system() as work:
        return work.session.scalar(sa.select(column).where(column.table.c.id == record_id))


def test_no_entity_offers_a_private_column_to_lists(crm):
    for entity in crm.entities:
        private = {c.key for c in entity.model.__table__.columns if is_private(c)}
        assert not private & set(column_names(entity, [])), entity.name


async def test_an_agent_never_sees_password_hashes_in_the_user_list_or_page(web, crm):
    admin = await web("admin")
    agent = await web("agent")
    stored_hash = _stored(crm, User.password_hash, admin.user.id)
    assert stored_hash.startswith("$argon2")
    chosen = await agent.get("/lists/user?cols=username,password_hash,session_epoch")
    assert 'name="cols" value="username" data-columns' in chosen.text  # the rest dropped
    for url in (
        "/lists/user?cols=username,password_hash,session_epoch",
        "/lists/user?cols=password_hash",
        "/lists/user",
        f"/records/user/{admin.user.id}",
    ):
        page = await agent.get(url)
        assert page.status_code == 200, url
        text = html.unescape(page.text)
        assert admin.user.username in text, url
        assert "$argon2" not in text and stored_hash not in text, url
        # neither offered in the column choice nor shown under its label (in Russian)
        assert 'value="password_hash" data-column' not in text, url
        assert 'value="session_epoch" data-column' not in text, url
        assert "хэш пароля" not in text and "эпоха сеанса" not in text, url


async def test_a_file_list_and_page_do_not_show_where_the_file_is_stored(web, crm):
    agent = await web("agent")
    with crm.acting_as(agent.user) as work:
        party = factories.organisation(work)
        file = work.attachments.add("contract.pdf", b"%PDF", party_id=party.id)
    key = _stored(crm, Attachment.storage_key, file.id)
    for url in (
        "/lists/attachment?cols=filename,storage_key",
        f"/records/attachment/{file.id}",
    ):
        page = await agent.get(url)
        assert page.status_code == 200, url
        assert "contract.pdf" in page.text and key not in page.text, url


async def test_filtering_or_ordering_by_a_private_column_is_refused_like_an_unknown_one(web):
    admin = await web("admin")
    agent = await web("agent")
    # the refused page is the list with the refusal and no rows (its filter bar still
    # offers the users by name, as the unfiltered list does): no row tells what matched
    admin_row = f'href="/records/user/{admin.user.id}"'
    assert admin_row in (await agent.get("/lists/user?cols=username")).text
    unknown = await agent.get("/lists/user?f.nosuch__startswith=x")
    assert unknown.status_code == 422 and "нельзя отбирать по полю" in html.unescape(unknown.text)
    for query in (
        "f.password_hash__startswith=%24argon2",
        "f.password_hash=x",
        "f.session_epoch__gte=0",
    ):
        refused = await agent.get(f"/lists/user?{query}&cols=username")
        assert refused.status_code == 422, query
        assert "нельзя отбирать по полю" in html.unescape(refused.text), query
        assert admin_row not in refused.text, query
    for order in ("password_hash", "-password_hash", "session_epoch"):
        refused = await agent.get(f"/lists/user?order={order}&cols=username")
        assert refused.status_code == 422, order
        assert admin_row not in refused.text, order


def test_an_entity_that_would_filter_by_a_private_column_is_refused_at_start(make_crm):
    from crmkit import EntityType, hookimpl
    from crmkit.errors import PluginError

    class Leaky:
        crmkit_plugin_name = "leaky"

        @hookimpl
        def crmkit_register_entities(self):
            return [EntityType("login", User, filter_attrs=("username", "password_hash"))]

    with pytest.raises(PluginError, match="private column .password_hash."):
        make_crm(plugins=[Leaky()])
