"""The plugin manager factory: one pluggy manager per application, never a global.

Plugins are found through the ``crmkit`` entry point group (``[project.entry-points.crmkit]``
in a plugin's pyproject); the core's own features are built-in plugins registered first on
the same hooks.  ``plugins.allow`` in ``crmkit.toml`` limits which installed plugins load,
and every name in it must be installed.  Any problem (a plugin that fails to import, a
function named like a hook that matches no spec, an allow-listed plugin that is missing)
raises :class:`~crmkit.errors.PluginError` with one line naming the plugin.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
from collections.abc import Iterable, Sequence
from types import ModuleType
from typing import Any

import attrs
import pluggy

from crmkit import hookspecs
from crmkit.errors import PluginError

ENTRY_POINT_GROUP = "crmkit"

hookimpl = pluggy.HookimplMarker(hookspecs.PROJECT)

#: Modules of the core registered as plugins, in this order, before any other.
BUILTIN_PLUGINS: tuple[str, ...] = (
    "crmkit.builtins.core",
    "crmkit.builtins.notify",
    "crmkit.builtins.sales",
    "crmkit.builtins.messaging",
    "crmkit.builtins.web",
    "crmkit.builtins.background",
    "crmkit.builtins.clientbase",
)


@attrs.frozen
class PluginInfo:
    """What ``crmkit plugins`` shows about one loaded plugin."""

    name: str
    version: str
    distribution: str | None
    builtin: bool
    hooks: tuple[str, ...]


class CrmkitPluginManager(pluggy.PluginManager):
    """A plugin manager that also treats undecorated ``crmkit_*`` functions as hooks.

    Without this, a hook implementation missing its decorator would be ignored silently;
    with it, a misspelled one (``crmkit_register_pipeline``) is caught by
    :meth:`check_pending` and reported with the plugin's name.
    """

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT)
        self.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}
        #: installed plugins that plugins.allow or plugins.block (or being a deployment not
        #: named in the allow list) kept out: where a missing entity may come from
        self.left_out: list[str] = []

    def parse_hookimpl_opts(self, plugin: Any, name: str) -> pluggy.HookimplOpts | None:
        opts = super().parse_hookimpl_opts(plugin, name)
        if opts is None and name.startswith("crmkit_") and not name.startswith("crmkit_test"):
            method = getattr(plugin, name, None)
            if inspect.isroutine(method):
                return {}  # type: ignore[return-value]
        return opts

    def check(self) -> None:
        """Fail with one line naming the plugin when an implementation matches no spec."""
        for name in self.hook.__dict__:
            if name.startswith("_"):
                continue
            hook = getattr(self.hook, name)
            if hook.has_spec():
                continue
            for impl in hook.get_hookimpls():
                if impl.optionalhook:
                    continue
                plugin = self.get_name(impl.plugin) or repr(impl.plugin)
                close = _closest_spec(name)
                hint = f"; did you mean {close}?" if close else ""
                raise PluginError(plugin, f"implements unknown hook {name}{hint}")

    def register_plugin(
        self,
        plugin: Any,
        name: str,
        *,
        version: str = "",
        distribution: str | None = None,
        builtin: bool = False,
    ) -> None:
        """Register ``plugin`` under ``name`` and remember what ``crmkit plugins`` shows."""
        try:
            self.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            raise PluginError(name, str(exc)) from None
        except ValueError as exc:
            raise PluginError(name, str(exc)) from None
        hooks = tuple(sorted(impl_name for impl_name in _hook_names(self, plugin)))
        self.infos[name] = PluginInfo(name, version, distribution, builtin, hooks)

    def describe(self) -> list[PluginInfo]:
        """Every loaded plugin with its version and the hooks it implements."""
        return list(self.infos.values())


def _hook_names(pm: pluggy.PluginManager, plugin: Any) -> Iterable[str]:
    for caller in pm.get_hookcallers(plugin) or ():
        yield caller.name


def _closest_spec(name: str) -> str | None:
    import difflib

    matches = difflib.get_close_matches(name, list(hookspecs.iter_specs()), n=1, cutoff=0.75)
    return matches[0] if matches else None


def _import_plugin(name: str, target: str) -> ModuleType | Any:
    try:
        module_name, _, attr = target.partition(":")
        module = importlib.import_module(module_name)
        return getattr(module, attr) if attr else module
    except Exception as exc:  # any import failure must name the plugin
        raise PluginError(name, f"failed to import {target}: {type(exc).__name__}: {exc}") from exc


def installed_plugins() -> dict[str, importlib.metadata.EntryPoint]:
    """Entry points of the ``crmkit`` group, by plugin name."""
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def make_plugin_manager(
    *,
    allow: Sequence[str] = (),
    block: Sequence[str] = (),
    extra: Sequence[Any] = (),
    load_entry_points: bool = True,
) -> CrmkitPluginManager:
    """Build the plugin manager of one application.

    Built-ins are registered first, then installed plugins from the entry point group
    (only those in ``allow`` when it is not empty, never those in ``block``; a plugin
    whose module sets ``crmkit_deployment = True`` only when ``allow`` names it), then
    ``extra`` objects (modules, classes or instances, as tests and deployments pass them).
    """
    pm = CrmkitPluginManager()
    for module_name in BUILTIN_PLUGINS:
        pm.register_plugin(
            importlib.import_module(module_name),
            module_name,
            builtin=True,
            version=_version("crmkit"),
            distribution="crmkit",
        )
    if load_entry_points:
        available = installed_plugins()
        missing = [name for name in allow if name not in available]
        if missing:
            raise PluginError(
                missing[0],
                "named in plugins.allow but not installed "
                f"(installed: {', '.join(sorted(available)) or 'none'})",
            )
        for name, entry_point in sorted(available.items()):
            if (allow and name not in allow) or name in block:
                pm.left_out.append(name)
                continue
            plugin = _import_plugin(name, entry_point.value)
            if getattr(plugin, "crmkit_deployment", False) and name not in allow:
                continue  # a deployment takes over a CRM: only when named in plugins.allow
            dist = entry_point.dist.name if entry_point.dist else None
            pm.register_plugin(
                plugin, name, version=_version(dist) if dist else "", distribution=dist
            )
    for plugin in extra:
        name = getattr(plugin, "crmkit_plugin_name", None) or getattr(
            plugin, "__name__", type(plugin).__name__
        )
        if pm.has_plugin(name) or pm.is_registered(plugin):
            continue
        pm.register_plugin(plugin, name, version=getattr(plugin, "__version__", ""))
    pm.check()
    return pm


def _version(distribution: str | None) -> str:
    if not distribution:
        return ""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return ""
