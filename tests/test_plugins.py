"""Plugin manager: built-ins on the same hooks, allow-list, clear one-line failures."""

from __future__ import annotations

import importlib.metadata
import sys
import types

import pytest

from crmkit import Pipeline, Stage, Transition, hookimpl
from crmkit.errors import PluginError
from crmkit.plugins import BUILTIN_PLUGINS, make_plugin_manager


def test_builtins_register_on_public_hooks():
    pm = make_plugin_manager(load_entry_points=False)
    names = [info.name for info in pm.describe()]
    assert names[: len(BUILTIN_PLUGINS)] == list(BUILTIN_PLUGINS)
    core = pm.infos["crmkit.builtins.core"]
    assert "crmkit_register_entities" in core.hooks
    assert "crmkit_stage_move" in core.hooks
    assert core.builtin


def test_misspelled_hook_stops_startup_naming_plugin():
    class Sloppy:
        crmkit_plugin_name = "sloppy"

        @hookimpl
        def crmkit_register_pipeline(self):  # missing the final "s"
            return []

    with pytest.raises(PluginError) as info:
        make_plugin_manager(extra=[Sloppy()], load_entry_points=False)
    message = str(info.value)
    assert "sloppy" in message
    assert "crmkit_register_pipeline" in message
    assert "did you mean crmkit_register_pipelines" in message
    assert "\n" not in message


def test_undecorated_hook_function_is_also_checked():
    module = types.ModuleType("undecorated_plugin")

    def crmkit_regster_roles():
        return []

    module.crmkit_regster_roles = crmkit_regster_roles
    with pytest.raises(PluginError, match="undecorated_plugin.*crmkit_regster_roles"):
        make_plugin_manager(extra=[module], load_entry_points=False)


class _FakeDist:
    name = "crmkit-fake"


def _entry_point(name: str, value: str) -> importlib.metadata.EntryPoint:
    ep = importlib.metadata.EntryPoint(name=name, value=value, group="crmkit")
    object.__setattr__(ep, "dist", _FakeDist())
    return ep


def test_plugin_that_fails_to_import(monkeypatch):
    monkeypatch.setattr(
        "crmkit.plugins.installed_plugins",
        lambda: {"broken": _entry_point("broken", "crmkit_no_such_module_xyz")},
    )
    with pytest.raises(PluginError) as info:
        make_plugin_manager()
    assert str(info.value).startswith("plugin 'broken': failed to import crmkit_no_such_module_xyz")


def test_allow_listed_plugin_not_installed(monkeypatch):
    monkeypatch.setattr("crmkit.plugins.installed_plugins", lambda: {})
    with pytest.raises(
        PluginError, match="plugin 'mail': named in plugins.allow but not installed"
    ):
        make_plugin_manager(allow=["mail"])


def test_allow_list_limits_and_block_list_excludes(monkeypatch):
    for name in ("plug_a", "plug_b"):
        module = types.ModuleType(name)
        module.crmkit_register_roles = lambda: []
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(
        "crmkit.plugins.installed_plugins",
        lambda: {"a": _entry_point("a", "plug_a"), "b": _entry_point("b", "plug_b")},
    )
    assert "b" not in make_plugin_manager(allow=["a"]).infos
    assert "a" in make_plugin_manager(allow=["a"]).infos
    loaded = make_plugin_manager(block=["a"]).infos
    assert "a" not in loaded and "b" in loaded


def test_deployment_plugin_loads_only_when_allow_listed(monkeypatch):
    for name, deployment in (("plug_dep", True), ("plug_lib", False)):
        module = types.ModuleType(name)
        module.crmkit_register_roles = lambda: []
        if deployment:
            module.crmkit_deployment = True
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(
        "crmkit.plugins.installed_plugins",
        lambda: {"dep": _entry_point("dep", "plug_dep"), "lib": _entry_point("lib", "plug_lib")},
    )
    everything = make_plugin_manager().infos
    assert "lib" in everything and "dep" not in everything
    chosen = make_plugin_manager(allow=["dep"]).infos
    assert "dep" in chosen and "lib" not in chosen


def test_duplicate_pipeline_names_are_refused(make_crm):
    class One:
        @hookimpl
        def crmkit_register_pipelines(self):
            return [Pipeline("sales", "deal", [Stage("x")], [])]

    with pytest.raises(PluginError, match="pipeline 'sales' is already registered"):
        make_crm(plugins=[One()])


def test_pipeline_over_unknown_entity_is_refused(make_crm):
    class Bad:
        crmkit_plugin_name = "bad"

        @hookimpl
        def crmkit_register_pipelines(self):
            return [Pipeline("p", "spaceship", [Stage("a"), Stage("b")], [Transition("a", "b")])]

    with pytest.raises(PluginError, match="plugin 'bad': pipeline 'p' drives unknown entity"):
        make_crm(plugins=[Bad()])


def test_configure_is_historic_and_sees_registries(make_crm):
    seen = []

    class Watcher:
        @hookimpl
        def crmkit_configure(self, crm):
            seen.append(sorted(crm.pipelines))

    crm = make_crm(plugins=[Watcher()])
    assert seen == [["sales"]]
    late = []

    class Late:
        @hookimpl
        def crmkit_configure(self, crm):
            late.append(crm)

    crm.pm.register(Late(), name="late")
    assert late == [crm]


def test_a_plugins_permission_cell_replaces_the_builtin_one(make_crm):
    from crmkit.access.rules import grant

    class NoDeals:
        @hookimpl
        def crmkit_register_permissions(self):
            return grant("agent", "deal", ("read", "create"), "none")

    crm = make_crm(plugins=[NoDeals()])
    with crm.system() as work:
        cells = {
            (r.entity, r.action): r.scope for r in work.permissions.table() if r.role == "agent"
        }
    assert cells[("deal", "read")] == "none" and cells[("party", "read")] == "own"


class _BrokenConfigure:
    crmkit_plugin_name = "licensing"

    @hookimpl
    def crmkit_configure(self, crm):
        raise RuntimeError("no licence server at 10.0.0.9")


def test_a_failing_configure_hook_is_one_line_naming_the_plugin(make_crm):
    with pytest.raises(PluginError) as info:
        make_crm(plugins=[_BrokenConfigure()])
    assert str(info.value) == (
        "plugin 'licensing': crmkit_configure failed: RuntimeError: no licence server at 10.0.0.9"
    )


def test_a_refusal_raised_by_configure_keeps_its_words_and_names_the_plugin(make_crm):
    from crmkit.errors import ConfigError

    class NeedsBaseUrl:
        crmkit_plugin_name = "mailings"

        @hookimpl
        def crmkit_configure(self, crm):
            raise ConfigError("set web.base_url: unsubscribe links need it")

    with pytest.raises(PluginError) as info:
        make_crm(plugins=[NeedsBaseUrl()])
    assert str(info.value) == "plugin 'mailings': set web.base_url: unsubscribe links need it"


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"party_attr": "client_id"}, "party_attr 'client_id'"),
        ({"owner_attrs": ("agent",)}, "owner_attrs 'agent'"),
        ({"sort_attrs": ("visit_at",)}, "sort_attrs 'visit_at'"),
        ({"default_sort": ("-visit_at",)}, "default_sort 'visit_at'"),
        ({"filter_attrs": ("status",)}, "filter_attrs 'status'"),
        ({"title_attr": "title"}, "title_attr 'title'"),
    ],
)
def test_an_entity_naming_an_attribute_its_model_lacks_stops_the_start(make_crm, options, named):
    """A typo in an entity type (``party_attr="client_id"``) is one line at start-up naming
    the plugin, the entity, the option and the attribute, not an AttributeError from the
    first list or create that reads it."""
    from crmkit import EntityType
    from crmkit.model import Tag

    class Typo:
        crmkit_plugin_name = "typo"

        @hookimpl
        def crmkit_register_entities(self):
            return [EntityType("typo_tag", Tag, **options)]

    with pytest.raises(PluginError) as info:
        make_crm(plugins=[Typo()])
    assert str(info.value).startswith("plugin 'typo': entity 'typo_tag' names ")
    assert f"{named}, but Tag has no such attribute" in str(info.value)


def test_a_pipeline_over_an_entity_of_a_plugin_left_out_names_what_is_not_loaded(
    monkeypatch, tmp_path
):
    """``crmkit init DIR --plugin carservice`` without ``--plugin finance``: the refusal
    says which installed plugins plugins.allow leaves out, where the entity may come from."""
    from crmkit import CRM, Config

    class Orders:
        @hookimpl
        def crmkit_register_pipelines(self):
            stages = [Stage("a"), Stage("b")]
            return [Pipeline("orders", "shop_order", stages, [Transition("a", "b")])]

    orders = types.ModuleType("plug_orders")
    orders.crmkit_register_pipelines = Orders().crmkit_register_pipelines
    shop = types.ModuleType("plug_shop")
    shop.crmkit_register_roles = lambda: []
    monkeypatch.setitem(sys.modules, "plug_orders", orders)
    monkeypatch.setitem(sys.modules, "plug_shop", shop)
    monkeypatch.setattr(
        "crmkit.plugins.installed_plugins",
        lambda: {"orders": _entry_point("orders", "plug_orders"),
                 "shop": _entry_point("shop", "plug_shop")},
    )  # fmt: skip
    config = Config.from_mapping(
        {"database": {"url": f"sqlite:///{tmp_path / 'x.db'}"}, "plugins": {"allow": ["orders"]}}
    )
    with pytest.raises(PluginError) as info:
        CRM(config)
    assert str(info.value) == (
        "plugin 'orders': pipeline 'orders' drives unknown entity 'shop_order' "
        "(installed but not loaded, by plugins.allow or plugins.block: shop)"
    )


class _Typos:
    crmkit_plugin_name = "typos"

    @hookimpl
    def crmkit_register_permissions(self):
        from crmkit.access.rules import grant

        return [
            *grant("agnet", "party", "read", "own"),
            *grant("agent", "dael", "update", "own"),
            *grant("agent", ("party", "*"), "export", "own"),  # known: no warning
        ]


def test_a_cell_naming_an_unknown_role_or_entity_is_warned_about_at_start_up(make_crm, caplog):
    """A typo in a ``grant`` ("agnet", "dael") gives a cell no user ever meets: it is still
    seeded (a role or entity of an optional plugin may legitimately be absent), but start-up
    says so, naming the plugin, the unknown name and the cell."""
    with caplog.at_level("WARNING", logger="crmkit.app"):
        crm = make_crm(plugins=[_Typos()])
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    role = [w for w in warnings if "'agnet'" in w]
    entity = [w for w in warnings if "'dael'" in w]
    assert len(role) == 1 and len(entity) == 1, warnings
    assert "plugin 'typos'" in role[0] and "unknown role 'agnet'" in role[0]
    assert "agnet / party / read" in role[0]
    assert "plugin 'typos'" in entity[0] and "unknown entity 'dael'" in entity[0]
    assert "agent / dael / update" in entity[0]
    assert len(warnings) == 2, warnings  # the known cells, the core's and "*", say nothing
    with crm.system() as work:  # seeded as declared, not refused
        cells = {(r.role, r.entity, r.action) for r in work.permissions.table()}
    assert ("agent", "dael", "update") in cells
