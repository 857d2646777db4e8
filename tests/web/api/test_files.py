"""Attachments: multipart upload within the size limit, download, deletion."""

from __future__ import annotations

import sqlalchemy as sa

from crmkit.model import Attachment
from crmkit.testing import add_user
from tests.web.api.conftest import problem


def stored_files(crm):
    return sorted(p for p in crm.config.path("storage.path").rglob("*") if p.is_file())


def test_upload_then_download_then_delete(make_crm, client_for_crm):
    crm = make_crm()
    manager = add_user(crm, "mia", ["manager"])
    api = client_for_crm(crm, manager)
    party_id = api.post("party", json={"name": "Клиент"}).json()["id"]
    content = "договор №1\n".encode() * 1000
    uploaded = api.post(
        "attachment",
        data={"party_id": str(party_id), "document_type": "contract"},
        files={"file": ("Договор.txt", content, "text/plain")},
    )
    assert uploaded.status_code == 201, uploaded.text
    body = uploaded.json()
    assert (body["filename"], body["size"], body["document_type"]) == (
        "Договор.txt",
        len(content),
        "contract",
    )
    assert "storage_key" not in body
    downloaded = api.get(f"attachment/{body['id']}/content")
    assert downloaded.content == content
    assert "filename*=UTF-8''%D0%94" in downloaded.headers["content-disposition"]
    assert downloaded.headers["x-content-type-options"] == "nosniff"
    timeline = api.get(f"party/{party_id}/timeline").json()["items"]
    assert [t["kind"] for t in timeline] == ["file"]
    assert api.delete(f"attachment/{body['id']}").status_code == 204
    problem(api.get(f"attachment/{body['id']}/content"), 404)
    assert stored_files(crm) == []


def test_uploads_beyond_the_limit_are_refused_and_leave_nothing(make_crm, client_for_crm):
    crm = make_crm(settings={"storage.max_upload_mb": 1})
    agent = add_user(crm, "ann", ["agent"])
    api = client_for_crm(crm, agent)
    party_id = api.post("party", json={"name": "Клиент"}).json()["id"]
    big = b"x" * (1024 * 1024 + 1)
    refused = api.post(
        "attachment", data={"party_id": str(party_id)}, files={"file": ("big.bin", big)}
    )
    body = problem(refused, 413)
    assert body["errors"] == {"file": ["larger than the limit of 1 MB"]}
    assert stored_files(crm) == []
    far_too_big = b"x" * (3 * 1024 * 1024)
    problem(
        api.post(
            "attachment", data={"party_id": str(party_id)}, files={"file": ("b", far_too_big)}
        ),
        413,
    )
    exactly = api.post(
        "attachment", data={"party_id": str(party_id)}, files={"file": ("ok.bin", big[:-1])}
    )
    assert exactly.status_code == 201, exactly.text


def test_an_upload_and_a_json_body_past_their_limits_get_the_same_answer(make_crm, client_for_crm):
    crm = make_crm(settings={"storage.max_upload_mb": 1, "api.max_json_bytes": 2000})
    api = client_for_crm(crm, add_user(crm, "ann", ["agent"]))
    party_id = api.post("party", json={"name": "Клиент"}).json()["id"]
    upload = api.post(
        "attachment",
        data={"party_id": str(party_id)},
        files={"file": ("big.bin", b"x" * (1024 * 1024 + 1))},
    )
    body = api.post("party", json={"name": "Клиент", "source": "x" * 2000})
    answers = [(upload, "file", "1 MB", "files", "storage.max_upload_mb", 1024 * 1024)]
    answers.append((body, "_schema", "2000 bytes", "JSON bodies", "api.max_json_bytes", 2000))
    for response, field, limit, what, setting, max_bytes in answers:
        assert problem(response, 413) == {
            "type": "/api/v1/docs#too-large",
            "title": "Content too large",
            "status": 413,
            "detail": f"{what} are limited to {limit} ({setting})",
            "errors": {field: [f"larger than the limit of {limit}"]},
            "max_bytes": max_bytes,
        }
        # refused maybe before the rest of the body was read: the connection is not kept
        assert response.headers["connection"] == "close"
    assert upload.headers.keys() == body.headers.keys()
    assert api.get("party").json()["items"][0]["source"] is None


def test_bad_uploads_get_clear_answers(make_crm, client_for_crm):
    crm = make_crm()
    api = client_for_crm(crm, add_user(crm, "ann", ["agent"]))
    party_id = api.post("party", json={"name": "Клиент"}).json()["id"]
    problem(api.post("attachment", json={"party_id": party_id}), 415)
    no_file = api.post("attachment", data={"party_id": str(party_id)}, files={"other": ("a", b"x")})
    assert "file" in problem(no_file, 422)["errors"]
    nowhere = api.post("attachment", files={"file": ("a.txt", b"x")})
    assert "party_id" in problem(nowhere, 422)["errors"]
    bad_id = api.post("attachment", data={"party_id": "abc"}, files={"file": ("a.txt", b"x")})
    assert "party_id" in problem(bad_id, 422)["errors"]


def test_a_file_goes_only_on_a_record_its_uploader_may_edit(make_crm, client_for_crm):
    """An agent reads every user (to assign them work) but may not attach a file to a
    colleague's record: it was stored and put on the user's record (403 now, nothing
    stored). Their own record is theirs, as their profile is; an admin attaches to anyone."""
    crm = make_crm()
    agent = add_user(crm, "ann", ["agent"])
    boss = add_user(crm, "root", ["admin"])
    api = client_for_crm(crm, agent)
    refused = api.post(
        "attachment",
        data={"record_entity": "user", "record_id": str(boss.id)},
        files={"file": ("cv.txt", b"x")},
    )
    body = problem(refused, 403)
    assert body["detail"] == (
        f"User {boss.id}: attaching a file takes the permission to edit the record"
    )
    assert stored_files(crm) == []
    with crm.system() as work:
        assert work.session.scalars(sa.select(Attachment)).all() == []
    own = api.post(
        "attachment",
        data={"record_entity": "user", "record_id": str(agent.id)},
        files={"file": ("photo.txt", b"me")},
    )
    assert own.status_code == 201, own.text
    admin = client_for_crm(crm, boss).post(
        "attachment",
        data={"record_entity": "user", "record_id": str(agent.id)},
        files={"file": ("contract.txt", b"signed")},
    )
    assert admin.status_code == 201, admin.text


def test_a_file_on_a_client_takes_editing_the_client(make_crm, client_for_crm):
    """A role reading every client but editing only its own may read a colleague's
    client, not put files on it (nor on the client's deal)."""
    from crmkit.access.rules import Scope

    crm = make_crm()
    with crm.system() as work:
        for entity, action, scope in (
            ("party", "read", Scope.ALL),
            ("party", "update", Scope.OWN),
            ("deal", "read", Scope.ALL),
            ("attachment", "create", Scope.ALL),
            ("attachment", "read", Scope.ALL),
        ):
            work.permissions.set("agent", entity, action, scope)
    owner = add_user(crm, "mia", ["manager"])
    agent = add_user(crm, "ann", ["agent"])
    owner_api, api = client_for_crm(crm, owner), client_for_crm(crm, agent)
    party_id = owner_api.post("party", json={"name": "Клиент"}).json()["id"]
    deal_id = owner_api.post("deal", json={"title": "Сделка", "party_id": party_id}).json()["id"]
    on_party = api.post("attachment", data={"party_id": str(party_id)}, files={"file": ("a", b"x")})
    assert problem(on_party, 403)["detail"].startswith(f"Client {party_id}: attaching a file")
    on_deal = api.post(
        "attachment",
        data={"record_entity": "deal", "record_id": str(deal_id)},
        files={"file": ("a", b"x")},
    )
    assert problem(on_deal, 403)["detail"].startswith(f"Deal {deal_id}: attaching a file")
    assert stored_files(crm) == []
    assert api.get(f"party/{party_id}").status_code == 200


def test_a_nul_character_in_a_file_name_is_refused_naming_the_field(make_crm, client_for_crm):
    """The upload reads its own form: its small fields went through the schema, the file's
    name did not (a 500 on PostgreSQL, kept by SQLite)."""
    from crmkit.testing.web import multipart

    crm = make_crm()
    api = client_for_crm(crm, add_user(crm, "ann", ["agent"]))
    party_id = api.post("party", json={"name": "Клиент"}).json()["id"]
    content, headers = multipart({"party_id": str(party_id)}, [("file", "a\x00b.pdf", b"%PDF")])
    refused = api.post("attachment", content=content, headers=headers)
    assert problem(refused, 422)["errors"] == {"file": ["the file name contains a NUL character"]}
    assert stored_files(crm) == []
