"""Stage moves: checks, history, audit, timeline, events, hooks, optimistic locking."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select

from crmkit import GuardResult, Pipeline, Stage, StageKind, Transition, hookimpl
from crmkit.access import Role, grant
from crmkit.errors import Conflict, MoveRefused, PermissionDenied, ValidationFailed
from crmkit.i18n import translate
from crmkit.model import Activity, AuditEntry, StageMove
from crmkit.testing import add_user, factories


def has_contact_person(move):
    work = move.work
    if not work.parties.contacts_of(move.record.id):
        return GuardResult.refuse("add a contact person first")
    return None


DEALER = Pipeline(
    "dealer",
    "party",
    label="Dealers",
    default=True,
    applies_to={"field": "kind", "op": "eq", "value": "organisation"},
    stages=[
        Stage("lead", "Lead"),
        Stage("firm", "Firm"),
        Stage("account", "Account", requires_documents=("contract",)),
        Stage("client", "Client", kind=StageKind.SUCCESS),
        Stage("refused", "Refused", kind=StageKind.DEAD_END),
    ],
    transitions=[
        Transition("lead", "firm", guards=(has_contact_person,)),
        Transition("firm", "account", requires_fields=("custom.inn",)),
        Transition("account", "client"),
        Transition("account", "firm", backward=True, requires_comment=True),
        Transition(("lead", "firm"), "refused", requires_comment=True),
        Transition("refused", "lead", backward=True, roles=("admin",)),
    ],
)


class DealerPlugin:
    crmkit_plugin_name = "dealer"

    @hookimpl
    def crmkit_register_pipelines(self):
        return [DEALER]


@pytest.fixture
def crm(make_crm):
    crm = make_crm(plugins=[DealerPlugin()])
    with crm.system() as work:
        work.custom_fields.define(entity="party", key="inn", label="ИНН", kind="text")
    return crm


@pytest.fixture
def agent(crm):
    return add_user(crm, "agent", ["agent"])


def make_firm(crm, agent):
    with crm.acting_as(agent) as work:
        firm = factories.organisation(work)
        factories.person(work, organisation_id=firm.id)
        work.moves.move(firm, "firm")
        return firm.id


def test_new_organisations_enter_default_pipeline_persons_do_not(crm, agent):
    with crm.acting_as(agent) as work:
        org = factories.organisation(work)
        person = factories.person(work)
        assert (org.pipeline, org.stage) == ("dealer", "lead")
        assert person.pipeline is None
        history = work.moves.history(org)
    assert [(h.from_stage, h.to_stage) for h in history] == [(None, "lead")]


def test_guard_refuses_with_its_reason(crm, agent):
    with crm.acting_as(agent) as work:
        org = factories.organisation(work)
        with pytest.raises(MoveRefused) as info:
            work.moves.move(org, "firm")
        assert info.value.reasons == ["add a contact person first"]
        assert org.stage == "lead"


def test_move_records_history_audit_timeline_and_event(crm, agent):
    seen = []

    class Listener:
        @hookimpl
        def crmkit_handle_event(self, event, work):
            if event.name == "stage.moved":
                seen.append((event.data["from"], event.data["to"], event.party_id))

    crm.pm.register(Listener())
    firm_id = make_firm(crm, agent)
    with crm.acting_as(agent) as work:
        firm = work.parties.get(firm_id)
        assert firm.stage == "firm" and firm.stage_entered_at is not None
        history = work.moves.history(firm)
        assert [(h.from_stage, h.to_stage, h.actor_id) for h in history][-1] == (
            "lead",
            "firm",
            agent.id,
        )
        timeline = work.timeline.list(firm_id, kinds=["stage_move"]).items
        assert timeline[0].subject == "Lead → Firm"
        audit = work.session.scalars(
            select(AuditEntry).where(
                AuditEntry.entity == "party",
                AuditEntry.record_id == firm_id,
                AuditEntry.action == "move",
            )
        ).all()
        assert audit[0].changes == {"stage": ["lead", "firm"]}
    assert seen == [("lead", "firm", firm_id)]


def test_missing_fields_and_documents_are_all_reported(crm, agent):
    firm_id = make_firm(crm, agent)
    with crm.acting_as(agent) as work, pytest.raises(MoveRefused) as info:
        work.moves.move(firm_id, "account", entity="party")
    assert info.value.missing_fields == ["custom.inn"]
    assert info.value.missing_documents == ["contract"]
    assert "fill in: ИНН" in str(info.value) and "attach documents: contract" in str(info.value)


def test_missing_documents_are_named_by_their_labels(make_crm):
    from crmkit.i18n import translate

    labelled = Pipeline(
        "papers",
        "party",
        documents={"contract": "Signed contract", "requisites": "Company details"},
        stages=[Stage("firm"), Stage("account", requires_documents=("contract", "requisites"))],
        transitions=[Transition("firm", "account")],
    )

    class Papers:
        @hookimpl
        def crmkit_register_pipelines(self):
            return [labelled]

    crm = make_crm(plugins=[Papers()])
    user = add_user(crm, "olga", ["agent"])
    with crm.acting_as(user) as work:
        firm = factories.organisation(work, pipeline="papers")
        work.attachments.add(
            "r.pdf", b"%PDF", record=("party", firm.id), document_type="requisites"
        )
        with pytest.raises(MoveRefused) as info:
            work.moves.move(firm, "account")
    assert info.value.missing_documents == ["contract"]
    assert "attach documents: Signed contract" in str(info.value)
    russian = {"attach documents: {documents}": "приложите документы: {documents}"}
    reason = translate(info.value.messages[0], lambda text: russian.get(text, text))
    assert reason == "приложите документы: Signed contract"
    with crm.acting_as(user) as work:  # a file uploaded on the card counts as well
        work.attachments.add("c.pdf", b"%PDF", party_id=firm.id, document_type="contract")
        assert work.moves.move(firm.id, "account", entity="party").record.stage == "account"
    assert labelled.required_documents() == ["contract", "requisites"]
    assert labelled.document_label("passport") == "passport"


def test_documents_and_fields_given_then_move_succeeds(crm, agent):
    firm_id = make_firm(crm, agent)
    with crm.acting_as(agent) as work:
        work.attachments.add(
            "contract.pdf", b"%PDF-1.4 signed", record=("party", firm_id), document_type="contract"
        )
        move = work.moves.move(
            firm_id, "account", entity="party", fields={"custom": {"inn": "7701234567"}}
        )
        assert move.record.stage == "account"
        assert move.record.custom == {"inn": "7701234567"}


def test_refused_move_discards_the_fields_it_brought(crm, agent):
    firm_id = make_firm(crm, agent)
    with crm.acting_as(agent) as work, pytest.raises(MoveRefused):
        work.moves.move(
            firm_id, "account", entity="party", fields={"custom": {"inn": "7701234567"}}
        )
    with crm.acting_as(agent) as work:
        firm = work.parties.get(firm_id)
        assert firm.stage == "firm" and not firm.custom.get("inn")


def test_transition_not_allowed_and_unknown_stage(crm, agent):
    with crm.acting_as(agent) as work:
        org = factories.organisation(work)
        with pytest.raises(MoveRefused, match="no move from “Lead” to “Client”"):
            work.moves.move(org, "client")
        with pytest.raises(MoveRefused, match="has no stage “moon”"):
            work.moves.move(org, "moon")
        with pytest.raises(MoveRefused, match="already in stage"):
            work.moves.move(org, "lead")


def test_comment_required_for_dead_end_and_backward(crm, agent):
    with crm.acting_as(agent) as work:
        org = factories.organisation(work)
        with pytest.raises(MoveRefused) as info:
            work.moves.move(org, "refused")
        assert "comment" in info.value.missing_fields
        work.moves.move(org, "refused", comment="not interested")
        assert org.stage == "refused"


def test_role_limited_transition(crm, agent):
    admin = add_user(crm, "boss", ["admin"])
    with crm.acting_as(agent) as work:
        org = factories.organisation(work)
        work.moves.move(org, "refused", comment="no")
        with pytest.raises(MoveRefused, match="only Administrator may move"):
            work.moves.move(org, "lead")
        options = {o.stage.name: o.allowed for o in work.moves.options(org)}
        assert options == {"lead": False}
    with crm.acting_as(admin) as work:
        work.moves.move(org.id, "lead", entity="party")


def test_plugin_veto_and_wrapper_order(crm, agent):
    calls = []

    class Policy:
        @hookimpl
        def crmkit_before_stage_move(self, move):
            if move.target.name == "refused" and "keep" in (move.comment or ""):
                return GuardResult.refuse("policy: this one we keep")
            return None

        @hookimpl(wrapper=True)
        def crmkit_stage_move(self, move):
            calls.append(("before", move.record.stage))
            result = yield
            calls.append(("after", move.record.stage, type(result).__name__))
            return result

        @hookimpl
        def crmkit_after_stage_move(self, move):
            calls.append(("done", move.history.to_stage))

    crm.pm.register(Policy())
    with crm.acting_as(agent) as work:
        org = factories.organisation(work)
        with pytest.raises(MoveRefused, match="policy: this one we keep"):
            work.moves.move(org, "refused", comment="keep them")
        work.moves.move(org, "refused", comment="gone")
    assert calls == [("before", "lead"), ("after", "refused", "StageMove"), ("done", "refused")]


def test_plugin_veto_by_false_names_the_plugin(crm, agent):
    class Freeze:
        crmkit_plugin_name = "year_end_freeze"

        @hookimpl
        def crmkit_before_stage_move(self, move):
            return move.target.name != "refused"

    crm.pm.register(Freeze())
    with crm.acting_as(agent) as work:
        org = factories.organisation(work)
        with pytest.raises(MoveRefused) as info:
            work.moves.move(org, "refused", comment="gone")
    assert info.value.reasons == ["refused by the plugin year_end_freeze"]


def test_wrapper_that_raises_aborts_the_whole_move(crm, agent):
    class Breaker:
        @hookimpl(wrapper=True)
        def crmkit_stage_move(self, move):
            yield
            raise RuntimeError("downstream system rejected the move")

    with crm.acting_as(agent) as work:
        org_id = factories.organisation(work).id
    crm.pm.register(Breaker())
    with pytest.raises(RuntimeError), crm.acting_as(agent) as work:
        work.moves.move(org_id, "refused", entity="party", comment="x")
    with crm.acting_as(agent) as work:
        assert work.parties.get(org_id).stage == "lead"
        moves = work.session.scalars(select(StageMove).where(StageMove.record_id == org_id)).all()
        assert [m.to_stage for m in moves] == ["lead"]


def test_stage_cannot_be_edited_directly(crm, agent):
    with crm.acting_as(agent) as work:
        org = factories.organisation(work)
        with pytest.raises(ValidationFailed, match="change the stage with a move"):
            work.parties.update(org, stage="client")


def test_expected_version_mismatch_is_a_conflict(crm, agent):
    with crm.acting_as(agent) as work:
        org = factories.organisation(work)
        version = org.version
        work.parties.update(org, description="changed by a colleague")
    with crm.acting_as(agent) as work, pytest.raises(Conflict):
        work.moves.move(org.id, "refused", entity="party", comment="x", expected_version=version)


def test_two_concurrent_moves_one_wins_other_conflicts(crm, agent):
    """Two people load the same record and move it at the same moment."""
    with crm.acting_as(agent) as work:
        org_id = factories.organisation(work).id
    barrier = threading.Barrier(2, timeout=20)
    outcomes: dict[str, str] = {}

    def mover(name: str, target: str) -> None:
        try:
            with crm.acting_as(agent) as work:
                record = work.parties.get(org_id)  # both read version N
                barrier.wait()
                work.moves.move(record, target, comment=f"by {name}")
            outcomes[name] = "moved"
        except Conflict as exc:
            outcomes[name] = f"conflict: {exc}"
        except Exception as exc:  # anything else is a bug this test must show
            outcomes[name] = f"error: {type(exc).__name__}: {exc}"

    threads = [
        threading.Thread(target=mover, args=("a", "refused")),
        threading.Thread(target=mover, args=("b", "refused")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(v.split(":")[0] for v in outcomes.values()) == ["conflict", "moved"], outcomes
    loser = next(v for v in outcomes.values() if v.startswith("conflict"))
    assert "moved or changed by someone else" in loser
    with crm.acting_as(agent) as work:
        moves = work.moves.history(org_id, entity="party")
        assert [m.to_stage for m in moves] == ["lead", "refused"]
        assert (
            work.session.scalar(
                select(Activity.id).where(
                    Activity.kind == "stage_move", Activity.party_id == org_id
                )
            )
            is not None
        )


def test_bulk_move_reports_each_refusal(crm, agent):
    with crm.acting_as(agent) as work:
        ready = factories.organisation(work)
        factories.person(work, organisation_id=ready.id)
        lonely = factories.organisation(work)
        result = work.moves.move_many([ready, lonely], "firm")
    assert result.moved == [ready.id]
    assert result.refused == {lonely.id: "add a contact person first"}


def test_refused_move_with_fields_leaves_nothing_when_the_caller_goes_on(crm, agent):
    """A refused move's fields (a new name, a phone) are not kept even though the caller
    catches the refusal and commits the rest of its work."""
    with crm.acting_as(agent) as work:
        org = factories.organisation(work, name="Старое имя", contact_points=[])
        org_id = org.id
    with crm.acting_as(agent) as work:
        with pytest.raises(MoveRefused, match="add a contact person first"):
            work.moves.move(
                org_id,
                "firm",
                entity="party",
                fields={
                    "name": "Новое имя",
                    "contact_points": [{"kind": "phone", "value": "+7 916 123-45-67"}],
                },
            )
        work.parties.update(org_id, description="called, no answer")
    with crm.acting_as(agent) as work:
        party = work.parties.get(org_id)
        assert (party.name, party.description) == ("Старое имя", "called, no answer")
        assert party.contact_points == []
        assert work.screening.candidates("Новое имя") == []


def test_bulk_move_reports_a_record_in_no_pipeline_and_moves_the_rest(crm, agent):
    with crm.acting_as(agent) as work:
        org = factories.organisation(work)
        person = factories.person(work)  # persons are in no pipeline
        result = work.moves.move_many([person.id, org.id], "refused", comment="x", entity="party")
    assert result.moved == [org.id]
    assert result.refused == {person.id: "pipeline: this record is not in a pipeline"}
    with crm.acting_as(agent) as work:
        assert work.parties.get(org.id).stage == "refused"


def test_a_new_record_starts_in_the_first_stage_unless_an_admin_places_it(crm, agent):
    """An agent cannot skip the contract the "Account" stage needs by creating a client
    there; an administrator carrying over a client from elsewhere can."""
    admin = add_user(crm, "boss", ["admin"])
    with crm.acting_as(agent) as work:
        with pytest.raises(ValidationFailed) as refused:
            work.parties.create(name="ООО «Обход»", stage="account")
        assert work.parties.create(name="ООО «Начало»", stage="lead").stage == "lead"
    (reason,) = refused.value.errors["stage"]
    assert str(reason) == (
        "a new record starts in “Lead”: create it there and move it on to “Account” "
        "(putting it straight into a later stage takes the permission “place”)"
    )
    russian = {
        reason.template: "новая запись начинается в «{first}»: создайте её там и переведите "
        "в «{stage}» (сразу в позднюю стадию ставит только право «{permission}»)",
        "Lead": "Лид",
        "Account": "Аккаунт",
        "place": "создавать в любой стадии",
    }
    assert translate(reason, lambda text: russian.get(text, text)) == (
        "новая запись начинается в «Лид»: создайте её там и переведите в «Аккаунт» "
        "(сразу в позднюю стадию ставит только право «создавать в любой стадии»)"
    )
    with crm.acting_as(admin) as work:
        carried = work.parties.create(name="ООО «Давний клиент»", stage="client")
        assert (carried.pipeline, carried.stage) == ("dealer", "client")
        assert [m.to_stage for m in work.moves.history(carried)] == ["client"]
    with crm.acting_as(agent) as work:
        assert work.parties.list(filters={"name": "ООО «Обход»"}).items == []


class ChiefRole:
    """A deployment whose senior role is not called "admin" and holds the power to place."""

    crmkit_plugin_name = "chief"

    @hookimpl
    def crmkit_register_roles(self):
        return [Role("chief", "Head of sales")]

    @hookimpl
    def crmkit_register_permissions(self):
        return grant("chief", "party", ("read", "create", "move", "place"), "all")


def test_placing_in_a_later_stage_is_a_permission_not_a_role_name(make_crm):
    """A role of any name with ``place`` may create a record in a later stage; a role
    without it may not until an admin grants it in the permission table."""
    crm = make_crm(plugins=[DealerPlugin(), ChiefRole()])
    chief = add_user(crm, "chief", ["chief"])
    manager = add_user(crm, "manager", ["manager"])
    with crm.acting_as(chief) as work:
        carried = work.parties.create(name="ООО «Перенесённый»", stage="firm")
        assert [m.to_stage for m in work.moves.history(carried)] == ["firm"]
    with crm.acting_as(manager) as work, pytest.raises(ValidationFailed, match="“Firm”"):
        work.parties.create(name="ООО «Рано»", stage="firm")
    with crm.acting_as(add_user(crm, "boss", ["admin"])) as work:
        work.permissions.set("manager", "party", "place", "all")
    with crm.acting_as(manager) as work:
        assert work.parties.create(name="ООО «Теперь можно»", stage="firm").stage == "firm"


def test_changing_the_kind_enters_or_leaves_the_pipeline(crm, agent):
    """The dealer pipeline applies to organisations: a person retyped as an organisation
    enters it as a lead (with its history row); an organisation (still a lead) retyped as a
    person leaves it and no longer shows on the board."""
    with crm.acting_as(agent) as work:
        person = factories.person(work)
        assert person.pipeline is None
        work.parties.update(person, kind="organisation")
        assert (person.pipeline, person.stage) == ("dealer", "lead")
        assert [(m.from_stage, m.to_stage) for m in work.moves.history(person)] == [(None, "lead")]
        lead_id = factories.organisation(work).id
        lead = work.parties.update(lead_id, kind="person", first_name="Пётр", last_name="Лидов")
        assert (lead.pipeline, lead.stage, lead.stage_entered_at) == (None, None, None)
    with crm.acting_as(agent) as work:
        assert work.parties.get(lead_id).stage is None
        audit = work.session.scalars(
            select(AuditEntry).where(AuditEntry.record_id == lead_id, AuditEntry.action == "update")
        ).all()
        assert audit[-1].changes["stage"] == ["lead", None]


def test_retyping_a_client_past_the_first_stage_is_refused_naming_the_field(crm, agent):
    """Leaving the pipeline from “Firm” and coming back as a lead would undo moves (and
    skip the backward transition's rules) with no history: the edit is refused instead."""
    firm_id = make_firm(crm, agent)
    with crm.acting_as(agent) as work, pytest.raises(ValidationFailed) as info:
        work.parties.update(firm_id, kind="person", first_name="Пётр", last_name="Фирмов")
    [reason] = info.value.errors["kind"]
    assert str(reason) == (
        "this change takes the record out of Dealers, but it is in “Firm”: "
        "move it back to “Lead” first"
    )
    with crm.acting_as(agent) as work:
        firm = work.parties.get(firm_id)
        assert (firm.kind, firm.pipeline, firm.stage) == ("organisation", "dealer", "firm")
        assert [m.to_stage for m in work.moves.history(firm)] == ["lead", "firm"]
    admin = add_user(crm, "boss", ["admin"])  # ``place`` skips the pipeline's checks anyway
    with crm.acting_as(admin) as work:
        firm = work.parties.update(firm_id, kind="person", first_name="Пётр", last_name="Фирмов")
        assert firm.pipeline is None


class MoverRole:
    """A role that may read and move clients but not edit them."""

    crmkit_plugin_name = "mover"

    @hookimpl
    def crmkit_register_roles(self):
        return [Role("mover", "Mover")]

    @hookimpl
    def crmkit_register_permissions(self):
        return grant("mover", "party", ("read", "move"), "all")


def test_a_move_takes_only_the_fields_it_asks_for_from_who_may_not_edit(make_crm):
    """A mover who may not edit fills in what the move requires (the firm's INN), but
    anything else given along is an edit: refused by the field's name, nothing written.
    Whoever may edit the record still gives other fields with a move."""
    crm = make_crm(plugins=[DealerPlugin(), MoverRole()])
    with crm.system() as work:
        work.custom_fields.define(entity="party", key="inn", label="ИНН", kind="text")
    agent = add_user(crm, "agent", ["agent"])
    mover = add_user(crm, "mover", ["mover"])
    firm_id, other_id = make_firm(crm, agent), make_firm(crm, agent)
    with crm.acting_as(agent) as work:
        for record_id in (firm_id, other_id):
            work.attachments.add(
                "c.pdf", b"%PDF", record=("party", record_id), document_type="contract"
            )
    with crm.acting_as(mover) as work, pytest.raises(PermissionDenied) as refused:
        work.moves.move(
            firm_id,
            "account",
            entity="party",
            fields={"custom": {"inn": "7701234567"}, "description": "a gift", "name": "X"},
        )
    assert str(refused.value) == (
        "changing description, name is an edit, not part of the move to “Account”: "
        "it takes the permission to edit the record"
    )
    with crm.acting_as(agent) as work:
        firm = work.parties.get(firm_id)
        assert (firm.stage, firm.description, firm.custom.get("inn")) == ("firm", "", None)
    with crm.acting_as(mover) as work:  # what the move asks for is the mover's to give
        work.moves.move(firm_id, "account", entity="party", fields={"custom": {"inn": "7701"}})
    with crm.acting_as(agent) as work:
        firm = work.parties.get(firm_id)
        assert (firm.stage, firm.custom["inn"]) == ("account", "7701")
        # the agent may edit their own client: other fields go along with the move
        work.moves.move(
            other_id,
            "account",
            entity="party",
            fields={"custom": {"inn": "7702"}, "description": "signed"},
        )
    # a required field already filled is no longer asked for
    with crm.acting_as(mover) as work, pytest.raises(PermissionDenied, match="changing inn"):
        work.moves.move(
            firm_id, "firm", entity="party", comment="back", fields={"custom": {"inn": "1"}}
        )
    with crm.acting_as(agent) as work:
        assert work.parties.get(other_id).description == "signed"
        assert work.parties.get(firm_id).custom["inn"] == "7701"


@pytest.mark.parametrize(
    "given", [{"pipeline": "nonexistent"}, {"pipeline": None}, {"kind": "person"}, {"stage": "x"}]
)
def test_a_move_never_takes_the_pipeline_or_the_kind_along(make_crm, given):
    """Even the owner, who may edit the record, cannot rewrite its pipeline, stage or kind
    with a move's fields: the record would be stranded outside any pipeline it can follow."""
    crm = make_crm(plugins=[DealerPlugin(), MoverRole()])
    agent = add_user(crm, "agent", ["agent"])
    firm_id = make_firm(crm, agent)
    with crm.acting_as(agent) as work:
        work.attachments.add("c.pdf", b"%PDF", record=("party", firm_id), document_type="contract")
    [key] = given
    with crm.acting_as(agent) as work, pytest.raises(ValidationFailed) as refused:
        work.moves.move(firm_id, "account", entity="party", fields=given)
    assert refused.value.errors == {key: ["cannot be changed as part of a move"]}
    with crm.acting_as(agent) as work:
        firm = work.parties.get(firm_id)
        assert (firm.pipeline, firm.stage, firm.kind) == ("dealer", "firm", "organisation")


class InnVeto:
    """A veto written to the hook's documentation: it reads the field the stage requires."""

    crmkit_plugin_name = "inn_check"

    def __init__(self):
        self.calls = 0

    @hookimpl
    def crmkit_before_stage_move(self, move):
        if move.target.name != "account":
            return None
        self.calls += 1
        if not move.record.custom["inn"].startswith("77"):
            return GuardResult.refuse("only Moscow dealers")
        return None


def test_vetoes_run_only_once_the_pipelines_own_checks_passed(crm, agent):
    veto = InnVeto()
    crm.pm.register(veto)
    firm_id = make_firm(crm, agent)
    with crm.acting_as(agent) as work:
        with pytest.raises(MoveRefused) as info:
            work.moves.move(firm_id, "account", entity="party")
        assert info.value.reasons == ["fill in: ИНН", "attach documents: contract"]
        assert veto.calls == 0
        work.attachments.add("contract.pdf", b"%PDF", party_id=firm_id, document_type="contract")
        firm = work.parties.get(firm_id)
        with pytest.raises(MoveRefused) as info:
            work.moves.move(firm, "account", fields={"custom": {"inn": "5401234567"}})
        assert info.value.reasons == ["only Moscow dealers"]
        assert veto.calls == 1


def test_a_veto_that_raises_refuses_naming_its_plugin_and_bulk_moves_go_on(crm, agent):
    class Broken:
        crmkit_plugin_name = "broken_policy"

        @hookimpl
        def crmkit_before_stage_move(self, move):
            if move.record.name == "Keep":
                raise RuntimeError("policy service is down")

    crm.pm.register(Broken())
    with crm.acting_as(agent) as work:
        keep = factories.organisation(work, name="Keep")
        gone = factories.organisation(work, name="Gone")
        with pytest.raises(MoveRefused) as info:
            work.moves.move(keep, "refused", comment="x")
        assert info.value.reasons == ["the plugin broken_policy failed while checking this move"]
        result = work.moves.move_many([keep, gone], "refused", comment="x")
        assert result.moved == [gone.id]
        assert result.refused == {
            keep.id: "the plugin broken_policy failed while checking this move"
        }
    with crm.acting_as(agent) as work:
        assert work.parties.get(keep.id).stage == "lead"
        assert work.parties.get(gone.id).stage == "refused"


def _strand(crm, entity_model, record_id, stage):
    """Put a record in a stage the pipeline does not declare (as if a release removed it)."""
    from sqlalchemy import update

    with crm.system() as work:
        work.session.execute(
            update(entity_model).where(entity_model.id == record_id).values(stage=stage)
        )


def test_a_record_in_a_removed_stage_can_go_to_any_stage(crm, agent):
    from crmkit.model import Party

    firm_id = make_firm(crm, agent)
    _strand(crm, Party, firm_id, "negotiation")
    with crm.acting_as(agent) as work:
        options = work.moves.options(firm_id, entity="party")
        assert [(o.stage.name, o.allowed) for o in options] == [
            ("lead", True),
            ("firm", True),
            ("account", True),
            ("client", True),
            ("refused", True),
        ]
        with pytest.raises(MoveRefused) as info:
            work.moves.move(firm_id, "negotiation", entity="party")
        assert info.value.reasons == ["Dealers has no stage “negotiation”"]
        with pytest.raises(MoveRefused) as info:  # the target's own requirements still apply
            work.moves.move(firm_id, "account", entity="party")
        assert info.value.missing_documents == ["contract"]
        work.moves.move(firm_id, "firm", entity="party")
        assert work.parties.get(firm_id).stage == "firm"
        history = work.moves.history(firm_id, entity="party")
        assert (history[-1].from_stage, history[-1].to_stage) == ("negotiation", "firm")
        [entry] = work.timeline.list(firm_id, kinds=["stage_move"]).items[:1]
        assert entry.subject == "negotiation → Firm"


def test_moving_every_record_out_of_a_removed_stage(crm, agent):
    from crmkit.model import Party

    with crm.acting_as(agent) as work:
        ids = [factories.organisation(work).id for _ in range(3)]
    for record_id in ids[:2]:
        _strand(crm, Party, record_id, "negotiation")
    with crm.system() as work:
        result = work.moves.move_stage_out("dealer", "negotiation", "lead", comment="stage gone")
    assert sorted(result.moved) == ids[:2] and result.refused == {}
    with crm.acting_as(agent) as work:
        assert [work.parties.get(i).stage for i in ids] == ["lead", "lead", "lead"]
        assert work.moves.history(ids[0], entity="party")[-1].comment == "stage gone"
        assert len(work.moves.history(ids[2], entity="party")) == 1
