"""Duplicate screening: exact keys, fuzzy names, keys kept on every write, creation refused."""

from __future__ import annotations

import pytest

from crmkit.errors import DuplicatesFound
from crmkit.identity import name_skeleton
from crmkit.services.screening import ONE_TYPO_WORDS, POSTINGS_PER_KEY, _name_score
from crmkit.testing import add_user


@pytest.fixture
def agent(crm):
    return add_user(crm, "agent", ["agent"])


@pytest.fixture
def base(crm):
    """A few organisations created through the service (keys kept on write)."""
    with crm.system() as work:
        ids = {
            name: work.parties.create(name=name, contact_points=points, confirm_duplicates=True).id
            for name, points in [
                ("ООО «Ромашка»", [{"kind": "phone", "value": "8 (916) 123-45-67"}]),
                ("ЗАО «Альфа-Строй»", [{"kind": "email", "value": "Info@Alfastroy.ru"}]),
                ("Яндекс", [{"kind": "website", "value": "https://www.yandex.ru/"}]),
                ("Автосервис 5", []),
                ("Северная звезда", [{"kind": "email", "value": "boss@gmail.com"}]),
            ]
        }
    return ids


@pytest.mark.parametrize(
    ("typed", "expected", "reason"),
    [
        ("ромашка", "ООО «Ромашка»", "name"),  # legal form and quotes
        ("Romashka LLC", "ООО «Ромашка»", "name"),  # transliteration
        ("ООО Ромащка", "ООО «Ромашка»", "name"),  # a typo
        ("OOO Ромашка", "ООО «Ромашка»", "name"),  # the form typed with Latin O's
        ("О.О.О. Ромашка", "ООО «Ромашка»", "name"),  # a dotted form
        ("Строй Альфа", "ЗАО «Альфа-Строй»", "name"),  # word order
        ("АльфаСтрой", "ЗАО «Альфа-Строй»", "name"),  # words run together
        ("Yandex", "Яндекс", "name"),
        ("+7 916 123-45-67", "ООО «Ромашка»", "phone"),
        ("916 1234567", "ООО «Ромашка»", "phone"),
        ("info@alfastroy.ru", "ЗАО «Альфа-Строй»", "email"),
        ("sales@alfastroy.ru", "ЗАО «Альфа-Строй»", "domain"),
        ("yandex.ru", "Яндекс", "website"),
    ],
)
def test_screening_finds_near_duplicates(crm, base, agent, typed, expected, reason):
    with crm.acting_as(agent) as work:
        found = work.screening.probe_text(typed)
    assert found, f"nothing found for {typed!r}"
    assert found[0].name == expected
    assert reason in found[0].reasons


def test_different_numbers_and_public_mail_are_not_duplicates(crm, base, agent):
    with crm.acting_as(agent) as work:
        assert work.screening.candidates("Автосервис 15") == []
        assert work.screening.candidates("Кто-то", emails=["other@gmail.com"]) == []
        assert work.screening.candidates("Совершенно новая фирма") == []


def test_owner_is_shown_only_to_who_may_see_the_party(crm, agent):
    other = add_user(crm, "other", ["agent"])
    with crm.acting_as(other) as work:
        mine = work.parties.create(name="ООО «Вектор»")
    with crm.acting_as(agent) as work:
        [hidden] = work.screening.candidates("Вектор")
        assert hidden.id == mine.id and not hidden.visible
        assert hidden.owner_id is None and hidden.owner_name is None
        assert hidden.stage == mine.stage
        assert hidden.as_dict()["id"] is None  # what the API and the screens are given
        with pytest.raises(DuplicatesFound) as info:
            work.parties.create(name="Вектор")
        [told] = info.value.candidates
        assert told["id"] is None and told["name"] == "ООО «Вектор»" and not told["visible"]
    with crm.acting_as(other) as work:
        [seen] = work.screening.candidates("Vektor")
        assert seen.visible and seen.owner_name == "other"


def test_creating_a_duplicate_is_refused_until_confirmed(crm, base, agent):
    with pytest.raises(DuplicatesFound) as info, crm.acting_as(agent) as work:
        work.parties.create(name="ромашка", contact_points=[{"kind": "email", "value": "a@b.ru"}])
    [told] = info.value.candidates  # the agent may not open it: its name, not its id
    assert told["name"] == "ООО «Ромашка»" and told["id"] is None
    with pytest.raises(DuplicatesFound) as info, crm.system() as work:
        work.parties.create(name="ромашка")
    assert info.value.candidates[0]["id"] == base["ООО «Ромашка»"]
    with crm.acting_as(agent) as work:
        created = work.parties.create(name="ромашка", confirm_duplicates=True)
        assert created.id not in base.values()


def test_keys_follow_renames_bulk_imports_and_merges(crm, base, agent):
    with crm.system() as work:
        work.parties.update(base["Северная звезда"], name="Полярная звезда")
        result = work.parties.bulk_create([{"name": "ООО «Техносила»"}, {"name": "Вымпел"}])
    with crm.acting_as(agent) as work:
        assert [c.id for c in work.screening.candidates("Полярная звезда")] == [
            base["Северная звезда"]
        ]
        assert work.screening.candidates("Северная звезда", threshold=95) == []
        assert [c.id for c in work.screening.candidates("Техносила")] == [result.ids[0]]
        assert [c.id for c in work.screening.candidates("Vympel")] == [result.ids[1]]


def test_deep_search_uses_the_trigram_index_for_words_further_apart(crm, agent):
    with crm.system() as work:
        party = work.parties.create(name="ООО «Меридиан»")
    with crm.acting_as(agent) as work:
        assert work.screening.candidates("Мередиен", threshold=70) == []  # two typos
        found = work.screening.candidates("Мередиен", threshold=70, deep=True)
        assert [c.id for c in found] == [party.id]


def test_a_typo_is_corrected_among_many_look_alike_words(crm, agent):
    """Twelve known words are closer to ``Коросек`` by ratio than the one meant (a letter
    changed), and ``Торг`` is in hundreds of names: the whole name with the corrected word
    finds the party."""
    decoys = [f"Кор{letter}осек" for letter in "бвгдзклмнпрс"]
    with crm.system() as work:
        work.parties.bulk_create(
            [{"name": f"ООО «{word}»"} for word in decoys]
            + [{"name": f"Фирма{n} Торг"} for n in range(POSTINGS_PER_KEY + 20)]
        )
        meant = work.parties.create(name="ПАО «Коросик Торг»", confirm_duplicates=True)
    with crm.acting_as(agent) as work:
        found = work.screening.candidates("Коросек Торг")
    assert found and found[0].id == meant.id
    assert found[0].name_score == 95


def test_the_name_itself_outranks_its_one_typo_neighbours(crm, agent):
    """Hundreds of namesakes and forty neighbour words (three parties each) one typo away:
    the namesakes are scored and shown first."""
    neighbours = sorted(
        {"мулос"[:i] + letter + "мулос"[i + 1 :] for i in range(5) for letter in "бвгдзклмнпрст"}
        - {"мулос"}
    )[:ONE_TYPO_WORDS]
    with crm.system() as work:
        work.parties.bulk_create(
            [{"name": word.capitalize()} for word in neighbours for _ in range(3)]
            + [{"name": "ООО «Мулос»"} for _ in range(POSTINGS_PER_KEY)]
        )
    with crm.acting_as(agent) as work:
        found = work.screening.candidates("Мулос")
    assert len(found) == 10
    assert {c.name for c in found} == {"ООО «Мулос»"}
    assert {c.score for c in found} == {100}


def test_an_interrupted_key_rebuild_keeps_its_batches_and_finishes_when_run_again(crm, agent):
    import sqlalchemy as sa

    from crmkit.model import Party, PartyMatchKey
    from crmkit.services.screening import rebuild_keys

    names = ["Cфepa", "Kocмoc", "Xoлoд"]  # Latin look-alikes: keys as older rules stored them
    with crm.system() as work:
        ids = [work.parties.create(name=n, confirm_duplicates=True).id for n in names]
        connection = work.session.connection()
        connection.execute(sa.delete(PartyMatchKey))
        connection.execute(sa.update(Party.__table__).values(name_key="stale"))

    class Interrupted(Exception):
        pass

    def stop_after_two(done):
        if done.parties == 2:
            raise Interrupted  # Ctrl-C between two batches

    with pytest.raises(Interrupted):
        rebuild_keys(crm, batch_size=1, progress=stop_after_two)
    with crm.system() as work:
        keys = dict(work.session.execute(sa.select(Party.id, Party.name_key)).all())
    assert [keys[i] for i in ids] == ["сфера", "космос", "stale"]  # two batches committed
    done = rebuild_keys(crm, batch_size=2)
    assert (done.parties, done.changed, done.name_keys, done.added) == (3, 1, 1, 1)
    with crm.acting_as(agent) as work:
        assert [work.screening.probe_text(n)[0].id for n in ("Сфера", "Космос", "Холод")] == ids
    with pytest.raises(ValueError, match="batch_size"):
        rebuild_keys(crm, batch_size=0)


# -- branches in other cities, a name with and without its qualifier -----------------------

#: (existing, typed, refused): whether creating ``typed`` is refused as a duplicate of
#: ``existing``.  Two different qualifiers (a city after a hyphen, in parentheses or after
#: a space) name two businesses; the same name with and without one is one business.
QUALIFIED_NAMES = [
    ("Спортцентр-Уфа", "Спортцентр-Тула", False),
    ("Мебельцентр-Тула", "Мебельцентр-Уфа", False),
    ("Мебельцентр (Тула)", "Мебельцентр (Уфа)", False),
    ("ООО «Автодом Казань»", "Автодом Самара", False),
    ("Мебельцентр Уфа", "Мебель-Центр Тула", False),  # the name's words run together
    ("Мебель-Центр Уфа", "Мебельцентр (Уфа)", True),
    ("Мебельсервис", "Мебельсервис-Уфа", True),
    ("Мебельсервис-Уфа", "Мебельсервис", True),
    ("ООО «Техномастер»", "ИП Техномастер Тула", True),
    ("ИП Техномастер Тула", "ООО «Техномастер»", True),
    ("Мебельцентр-Тула", "ЗАО Мебельцентр (Тула)", True),
    ("Мебельцентр-Тула", "Мебельцентр-Тулa", True),  # a Latin a: the same city
    ("Мебельцентр-Тула", "Мебелцентр Тула", True),  # a typo in the name itself
    ("Спортцентр-Уфа", "Спорцентр-Уфа", True),
]


@pytest.mark.parametrize(("existing", "typed", "refused"), QUALIFIED_NAMES)
def test_branches_in_other_cities_are_not_refused_as_duplicates(
    crm, agent, existing, typed, refused
):
    with crm.system() as work:
        work.parties.create(name=existing, confirm_duplicates=True)
    with crm.acting_as(agent) as work:
        if refused:
            with pytest.raises(DuplicatesFound) as info:
                work.parties.create(name=typed)
            assert [c["name"] for c in info.value.candidates] == [existing]
        else:
            created = work.parties.create(name=typed)
            assert created.name == typed


@pytest.mark.parametrize(("existing", "typed", "refused"), QUALIFIED_NAMES)
def test_name_score_of_qualified_names(existing, typed, refused):
    score = _name_score(name_skeleton(typed), name_skeleton(existing))
    assert (score >= 85) is refused, score


def test_a_branch_in_another_city_is_shown_without_blocking(crm, agent):
    with crm.system() as work:
        branch = work.parties.create(name="Мебельцентр-Тула").id
    with crm.acting_as(agent) as work:
        [shown] = work.screening.candidates("Мебельцентр-Уфа")
    assert shown.id == branch and shown.reasons == ("name",)
    assert shown.score < work.screening.threshold


# -- a shared company domain ----------------------------------------------------------------


def _with_email(work, name, email, **options):
    return work.parties.create(
        name=name, contact_points=[{"kind": "email", "value": email}], **options
    )


def test_a_shared_domain_is_shown_but_does_not_block_by_default(crm, agent):
    with crm.system() as work:
        _with_email(work, "Мебельсервис-Уфа", "sales@mebelservis-ufa.ru")
    with crm.acting_as(agent) as work:
        [shown] = work.screening.candidates("Диванный мир", emails=["info@mebelservis-ufa.ru"])
        assert shown.reasons == ("domain",) and shown.score < work.screening.threshold
        created = _with_email(work, "Диванный мир", "info@mebelservis-ufa.ru")
        assert created.name == "Диванный мир"


def test_a_shared_domain_blocks_when_the_setting_says_so(make_crm):
    crm = make_crm(settings={"screening.domain_blocks": True})
    agent = add_user(crm, "agent", ["agent"])
    with crm.system() as work:
        existing = _with_email(work, "Мебельсервис-Уфа", "sales@mebelservis-ufa.ru").id
        work.parties.create(
            name="Совсем другая фирма",
            contact_points=[{"kind": "website", "value": "https://www.divan-mir.ru/"}],
        )
        _with_email(work, "Северная звезда", "boss@gmail.com")
    with crm.acting_as(agent) as work:
        with pytest.raises(DuplicatesFound) as info:
            _with_email(work, "Диванный мир", "info@mebelservis-ufa.ru")
        [told] = info.value.candidates
        assert told["name"] == "Мебельсервис-Уфа" and told["reasons"] == ["domain"]
        with pytest.raises(DuplicatesFound):  # a website's domain as well as an email's
            _with_email(work, "Диваны", "zakaz@divan-mir.ru")
        # a public mail service says nothing about the company
        created = _with_email(work, "Полярная звезда", "other@gmail.com")
        assert created.name == "Полярная звезда"
        created = _with_email(
            work, "Диванный мир", "info@mebelservis-ufa.ru", confirm_duplicates=True
        )
        assert created.id != existing
