"""Personal API tokens: bearer authentication, create/list/revoke, blocking, the CLI."""

from __future__ import annotations

import datetime as dt
import importlib.util
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from crmkit.cli import cli
from crmkit.errors import ValidationFailed
from crmkit.i18n import translate
from crmkit.model import ApiToken
from crmkit.services import tokens
from crmkit.testing import add_user
from tests.web.api.conftest import problem, token_for


def test_requests_without_a_valid_token_are_refused(crm, client_for):
    anonymous = client_for()
    body = problem(anonymous.get("party"), 401)
    assert body["type"].endswith("#unauthorized")
    assert anonymous.get("party").headers["www-authenticate"].startswith("Bearer")
    problem(client_for(secret="crmkit_not-a-real-token").get("party"), 401)
    basic = anonymous.get("party", headers={"Authorization": "Basic YWxhZGRpbjpvcGVu"})
    problem(basic, 401)
    assert anonymous.get("openapi.json").status_code == 200
    assert anonymous.get("docs").status_code == 200


def test_tokens_are_created_listed_and_revoked_through_the_api(crm, client_for):
    ann = add_user(crm, "ann", ["agent"])
    api = client_for(ann)
    created = api.post("tokens", json={"name": "1C sync"})
    assert created.status_code == 201, created.text
    secret = created.json()["secret"]
    assert secret.startswith("crmkit_") and created.headers["cache-control"] == "no-store"
    second = client_for(secret=secret)
    assert second.get("me").json()["username"] == "ann"

    listed = api.get("tokens").json()["items"]
    assert {t["name"] for t in listed} == {"test", "1C sync"}
    assert all("secret" not in t and "secret_hash" not in t for t in listed)
    assert secret.startswith(next(t["prefix"] for t in listed if t["name"] == "1C sync"))
    with crm.engine.connect() as connection:
        stored = connection.scalars(sa.select(ApiToken.secret_hash)).all()
    assert secret not in stored and tokens.digest(secret) in stored

    assert api.delete(f"tokens/{created.json()['id']}").status_code == 204
    problem(second.get("me"), 401)
    assert api.get("me").status_code == 200


def test_a_blocked_users_tokens_stop_at_once(crm, client_for):
    ann = add_user(crm, "ann", ["agent"])
    api = client_for(ann)
    assert api.get("party").status_code == 200
    with crm.system() as work:
        work.users.block("ann")
    problem(api.get("party"), 401)
    with crm.system() as work:
        work.users.unblock("ann")
    assert api.get("party").status_code == 200


def test_a_token_makes_no_token_outliving_it(crm, client_for):
    ann = add_user(crm, "ann", ["agent"])
    in_an_hour = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(hours=1)
    with crm.acting_as(ann) as work:
        short = work.api_tokens.create("an hour", expires_at=in_an_hour).secret
    api = client_for(secret=short)
    child = api.post("tokens", json={"name": "forever?"})
    assert child.status_code == 201, child.text
    assert dt.datetime.fromisoformat(child.json()["expires_at"]) == in_an_hour
    later = (in_an_hour + dt.timedelta(days=30)).isoformat()
    refused = problem(api.post("tokens", json={"name": "a month", "expires_at": later}), 422)
    assert "when the token making it expires" in refused["errors"]["expires_at"][0]
    sooner = (in_an_hour - dt.timedelta(minutes=30)).isoformat()
    assert api.post("tokens", json={"name": "half", "expires_at": sooner}).status_code == 201


def test_password_changes_and_signing_out_everywhere_revoke_the_users_tokens(crm, client_for):
    ann = add_user(crm, "ann", ["agent"])
    root = add_user(crm, "root", ["admin"])
    keeps = client_for(root)  # someone else's token is untouched

    def changes(how):
        api = client_for(ann)
        assert api.get("me").status_code == 200
        how()
        problem(api.get("me"), 401)
        assert keeps.get("me").status_code == 200

    def own_password():
        with crm.acting_as(ann) as work:
            work.users.set_password(ann.id, "a-new-password-1")

    def admins_password():
        with crm.acting_as(root) as work:
            work.users.set_password(ann.id, "a-new-password-2")

    def everywhere():
        with crm.system() as work:
            work.signin.end_everywhere(ann.id)

    for how in (own_password, admins_password, everywhere):
        changes(how)
    with crm.acting_as(root) as work:
        left = work.api_tokens.list(user=ann.id)
        assert left == []  # revoked, for good (kept for the record)
        assert len(work.api_tokens.list(user=ann.id, include_revoked=True)) == 3


def test_expired_tokens_are_refused(crm, client_for):
    ann = add_user(crm, "ann", ["agent"])
    api = client_for(ann)
    with crm.engine.begin() as connection:
        connection.execute(
            sa.update(ApiToken).values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(1))
        )
    problem(api.get("party"), 401)


def test_only_admins_manage_other_peoples_tokens(crm, client_for):
    ann = add_user(crm, "ann", ["agent"])
    bob = add_user(crm, "bob", ["agent"])
    root = add_user(crm, "root", ["admin"])
    token_for(crm, bob, "bob's")
    agent, admin = client_for(ann), client_for(root)
    problem(agent.get("tokens", params={"user_id": bob.id}), 403)
    problem(agent.post("tokens", json={"name": "x", "user_id": bob.id}), 403)
    bobs = admin.get("tokens", params={"user_id": bob.id}).json()["items"]
    assert [t["name"] for t in bobs] == ["bob's"]
    problem(agent.delete(f"tokens/{bobs[0]['id']}"), 404)
    assert admin.delete(f"tokens/{bobs[0]['id']}").status_code == 204
    assert admin.post("tokens", json={"name": "for bob", "user_id": bob.id}).status_code == 201


def test_cli_creates_lists_and_revokes_tokens(tmp_path):
    runner = CliRunner()
    deployment = str(tmp_path / "crm")
    assert runner.invoke(cli, ["init", deployment]).exit_code == 0
    config = ["--config", deployment]
    added = runner.invoke(cli, [*config, "user", "add", "ann", "--role", "agent", "--no-password"])
    assert added.exit_code == 0, added.output
    created = runner.invoke(cli, [*config, "token", "create", "ann", "--name", "script"])
    assert created.exit_code == 0, created.output
    secret = created.stdout.strip().splitlines()[0]
    assert secret.startswith("crmkit_")

    from crmkit import CRM

    with CRM.from_directory(deployment, load_entry_points=False) as crm:
        owner = tokens.authenticate(crm.engine, secret)
        assert owner is not None
        listed = runner.invoke(cli, [*config, "token", "list", "ann"])
        assert "script" in listed.output and secret not in listed.output
        revoked = runner.invoke(cli, [*config, "token", "revoke", str(owner.token_id)])
        assert revoked.exit_code == 0, revoked.output
        assert tokens.authenticate(crm.engine, secret) is None


def test_token_refusals_are_messages_every_reader_translates(crm):
    """Each refusal of a token is a template of the catalogs (its moment a moment), so a
    Russian reader sees it in Russian and at their own hours, not an English sentence."""
    script = Path(__file__).resolve().parents[3] / "scripts/update-catalogs.py"
    spec = importlib.util.spec_from_file_location("update_catalogs", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    extracted = {m.id for m in module.extracted() if m.id}

    ann = add_user(crm, "ann", ["agent"])
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    limit = dt.datetime(2100, 1, 1, 21, 30, tzinfo=dt.UTC)
    attempts = {
        "name": [{"name": " "}, {"name": "x" * 201}],
        "expires_at": [
            {"name": "t", "expires_at": dt.datetime(2100, 1, 1)},
            {"name": "t", "expires_at": now - dt.timedelta(hours=1)},
            {"name": "t", "expires_at": limit + dt.timedelta(days=1), "not_after": limit},
        ],
    }
    texts = []
    with crm.acting_as(ann) as work:
        for field, tries in attempts.items():
            for kwargs in tries:
                with pytest.raises(ValidationFailed) as refused:
                    work.api_tokens.create(**kwargs)
                [text] = refused.value.errors[field]
                texts.append(text)
    with crm.system() as work:
        with pytest.raises(ValidationFailed) as refused:
            work.api_tokens.create("the system's")
        texts.append(refused.value.errors["user"][0])
        work.users.block("ann")
        with pytest.raises(ValidationFailed) as refused:
            work.api_tokens.create("a blocked one's", user="ann")
        texts.append(refused.value.errors["user"][0])

    def marked(template: str) -> str:
        return "«" + template + "»" if template in extracted else template

    for text in texts:
        shown = translate(text, marked)
        assert shown.startswith("«"), f"not in the catalogs: {shown}"
    moscow = translate(texts[4], marked, ZoneInfo("Europe/Moscow"))
    assert "2100-01-02 00:30" in moscow  # the limit at the reader's hours
    assert "ann" in translate(texts[-1], marked)
