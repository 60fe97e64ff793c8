"""The per-app plugin manager and its typed facade.

Order of registration: built-in plugins, then entry points of group ``nexus_aio``, then plugins
passed to ``Nexus(plugins=[...])``. ``NEXUS_DISABLE_PLUGINS=a,b`` blocks plugins by name before
they load. ``check_pending()`` makes a misspelt hook fail at startup.

Request-time hooks are resolved once: :meth:`Hooks.implemented` tells the web layer whether a hook
has any implementation, so an unimplemented hook costs nothing per request.

First-result hooks (``actor_from_request``, ``handle_exception``, ``storage_backend``) are not left
to pluggy's ``firstresult``, which stops at the first awaitable even when it resolves to None:
:meth:`Hooks._first_result` awaits each result in pluggy's order and keeps the first non-None.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import importlib.metadata
import inspect
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import pluggy

from nexus_aio import hookspecs
from nexus_aio.errors import ConfigurationError

if TYPE_CHECKING:
    from nexus_aio.nexus import Nexus
    from nexus_aio.settings import Setting

log = logging.getLogger("nexus_aio.plugins")

# Internal plugins: every built-in feature, registered through the same hooks as third parties.
DEFAULT_PLUGINS = (
    "nexus_aio.builtin.errors",
    "nexus_aio.builtin.core_routes",
    "nexus_aio.builtin.permissions",
    "nexus_aio.builtin.health",
    "nexus_aio.builtin.stores",
    "nexus_aio.builtin.sessions",
    "nexus_aio.builtin.ratelimit",
    "nexus_aio.builtin.executions",
    "nexus_aio.builtin.endpoints",
    "nexus_aio.builtin.openapi",
    "nexus_aio.builtin.playground",
    "nexus_aio.builtin.webhooks",
    "nexus_aio.builtin.schedules",
)
ENTRY_POINT_GROUP = "nexus_aio"
# The per-execution arguments of the observer hooks, in the order the runtime passes them.
STARTED_ARGS = ("execution",)
FINISHED_ARGS = ("execution", "events")


async def await_me_maybe(value: Any) -> Any:
    """Hooks may return a value, a callable returning one, or an awaitable."""
    if callable(value) and not inspect.isclass(value):
        value = value()
    if inspect.isawaitable(value):
        value = await value
    return value


class PluginManager(pluggy.PluginManager):
    """pluggy's manager plus what ``GET /plugins`` shows: versions and which plugins are built in.

    ``implemented`` answers are cached for the hot path and dropped whenever a plugin is
    registered or unregistered.
    """

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT)
        self.add_hookspecs(hookspecs)
        self.versions: dict[str, str | None] = {}
        self.builtin: set[str] = set()
        self.implemented_cache: dict[tuple[str, bool], bool] = {}
        self.call_order_cache: dict[str, list[pluggy.HookImpl]] = {}
        self.observer_cache: dict[str, list[Callable[..., Any]]] = {}

    def clear_caches(self) -> None:
        self.implemented_cache.clear()
        self.call_order_cache.clear()
        self.observer_cache.clear()

    def register(self, plugin: Any, name: str | None = None) -> str | None:
        self.clear_caches()
        return super().register(plugin, name)

    def unregister(self, plugin: Any = None, name: str | None = None) -> Any:
        self.clear_caches()
        return super().unregister(plugin, name)


def build_plugin_manager(
    extra: Iterable[Any] = (), disabled: Iterable[str] = (), load_entry_points: bool = True
) -> PluginManager:
    pm = PluginManager()
    blocked = {name.strip() for name in disabled if name.strip()}
    for name in blocked:
        pm.set_blocked(name)
    for modname in DEFAULT_PLUGINS:
        if modname in blocked:
            continue
        module = importlib.import_module(modname)
        pm.register(module, name=modname)
        pm.builtin.add(modname)
    if load_entry_points:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in blocked or pm.has_plugin(ep.name) or pm.is_blocked(ep.name):
                continue
            try:
                plugin = ep.load()
            except Exception as exc:
                raise ConfigurationError(
                    f"Plugin {ep.name!r} (entry point {ep.value}) failed to load: {exc}"
                ) from exc
            pm.register(plugin, name=ep.name)
            pm.versions[ep.name] = ep.dist.version if ep.dist else None
    for i, plugin in enumerate(extra):
        name = getattr(plugin, "__name__", None) or f"{type(plugin).__name__}-{i}"
        # Already loaded through its entry point (a plugin's own tests pass it explicitly too).
        if name in blocked or pm.is_registered(plugin):
            continue
        pm.register(plugin, name=name)
        version = getattr(plugin, "__version__", None)
        pm.versions[name] = version if isinstance(version, str) else None
    pm.check_pending()
    return pm


class Hooks:
    """Typed calls into the plugin manager; the core never calls ``pm.hook.x(**untyped)``."""

    # Hooks called per request: an installed plugin that is switched off for this app (its
    # ``nexus_active(nexus)`` returns False) is left out of them, so it costs nothing.
    REQUEST_HOOKS = ("actor_from_request", "permission_allowed")
    # Hooks whose first non-None (awaited) result wins: called through ``_first_result``.
    FIRST_RESULT_HOOKS = ("actor_from_request", "handle_exception", "storage_backend", "executor")

    def __init__(self, pm: PluginManager, nexus: Nexus) -> None:
        self.pm = pm
        self.nexus = nexus
        self._request_callers: dict[str, Any] = {}

    def resolve_request_hooks(self) -> None:
        """Decide once, at app build, which plugins take part in the per-request hooks."""
        inactive = [
            plugin
            for plugin in self.pm.get_plugins()
            if callable(getattr(plugin, "nexus_active", None))
            and not plugin.nexus_active(self.nexus)
        ]
        self._request_callers = {
            name: self.pm.subset_hook_caller(name, inactive)
            if inactive
            else getattr(self.pm.hook, name)
            for name in self.REQUEST_HOOKS
        }
        self.pm.clear_caches()
        for name in self.FIRST_RESULT_HOOKS:
            self._implementations(name)  # resolved now: a wrapper fails the build, not a request

    def _caller(self, name: str) -> Any:
        caller = self._request_callers.get(name)
        return caller if caller is not None else getattr(self.pm.hook, name)

    def implemented(self, name: str, *, builtin: bool = True) -> bool:
        """Whether any (active) plugin implements ``name`` (``builtin=False``: non-built-in)."""
        key = (name, builtin)
        cache = self.pm.implemented_cache
        found = cache.get(key)
        if found is None:
            impls = self._caller(name).get_hookimpls()
            if not builtin:
                impls = [i for i in impls if i.plugin_name not in self.pm.builtin]
            found = cache[key] = bool(impls)
        return found

    def _implementations(self, name: str) -> list[pluggy.HookImpl]:
        """``name``'s (active) implementations in pluggy's call order, resolved once.

        pluggy calls ``tryfirst`` ones first, ``trylast`` ones last, and otherwise the
        later-registered first. Wrappers would need pluggy's own call loop: refused.
        """
        impls = self.pm.call_order_cache.get(name)
        if impls is None:
            impls = self._caller(name).get_hookimpls()[::-1]
            wrappers = [i.plugin_name for i in impls if i.hookwrapper or i.wrapper]
            if wrappers:
                raise ConfigurationError(
                    f"hook {name} takes no wrapper implementations ({', '.join(wrappers)})"
                )
            self.pm.call_order_cache[name] = impls
        return impls

    def _bind(self, impl: pluggy.HookImpl, per_call: tuple[str, ...]) -> Callable[..., Any]:
        """``impl`` as a callable of all ``per_call`` arguments, in that order (it gets those
        it declares, as pluggy would give them)."""
        names = impl.argnames
        fixed = (self.nexus,) if names[:1] == ("nexus",) else ()
        takes = names[len(fixed) :]
        function = impl.function
        if not impl.kwargnames and "nexus" not in takes and takes == per_call[: len(takes)]:
            first = functools.partial(function, *fixed)
            if takes == per_call:
                return first
            width = len(takes)
            return lambda *args: first(*args[:width])
        accepted = {*names, *impl.kwargnames}
        context = {"nexus": self.nexus}

        def call(*args: Any) -> Any:
            kwargs = {**context, **dict(zip(per_call, args, strict=True))}
            return function(**{k: v for k, v in kwargs.items() if k in accepted})

        return call

    @staticmethod
    def _call(impl: pluggy.HookImpl, kwargs: dict[str, Any]) -> Any:
        """Call one implementation with only the arguments it declares, as pluggy does."""
        args = [kwargs[name] for name in impl.argnames]
        if impl.kwargnames:
            extra = {name: kwargs[name] for name in impl.kwargnames if name in kwargs}
            return impl.function(*args, **extra)
        return impl.function(*args)

    async def _first_result(self, name: str, **kwargs: Any) -> Any:
        """The first non-None result of ``name``, each implementation's result awaited in turn.

        An async implementation answering None ("no opinion") passes to the next one, as a
        synchronous one does; the implementations after the first answer are never called.
        """
        for impl in self._implementations(name):
            result = await await_me_maybe(self._call(impl, kwargs))
            if result is not None:
                return result
        return None

    def _collect(self, name: str) -> list[Any]:
        results = getattr(self.pm.hook, name)(nexus=self.nexus)
        items: list[Any] = []
        for result in results:
            if result is None:
                continue
            if inspect.isawaitable(result):
                raise ConfigurationError(f"hook {name} must return its items synchronously")
            items.extend(result)
        return items

    def register_workflows(self) -> list[Any]:
        return self._collect("register_workflows")

    def register_routes(self) -> list[Any]:
        return self._collect("register_routes")

    def register_middlewares(self) -> list[Any]:
        return self._collect("register_middlewares")

    def trusted_origins(self) -> list[str]:
        return self._collect("trusted_origins")

    def register_cleanup_ctx(self) -> list[Any]:
        return self._collect("register_cleanup_ctx")

    def register_commands(self, subparsers: argparse._SubParsersAction[Any]) -> None:
        """Let each plugin add its CLI subcommands; a name already taken fails startup."""
        owners = dict.fromkeys(subparsers.choices, "the core")
        for impl in self._implementations("register_commands"):
            before = set(subparsers.choices)
            try:
                result = self._call(impl, {"nexus": self.nexus, "subparsers": subparsers})
            except argparse.ArgumentError as exc:  # "conflicting subparser: NAME"
                taken = exc.message.rpartition(": ")[2]
                raise ConfigurationError(
                    f"Duplicate command {taken!r}: plugin {impl.plugin_name!r} adds it, "
                    f"{owners.get(taken, 'another plugin')} already did"
                ) from exc
            if inspect.isawaitable(result):
                if inspect.iscoroutine(result):
                    result.close()
                raise ConfigurationError(
                    f"hook register_commands of plugin {impl.plugin_name!r} must add its "
                    "commands synchronously"
                )
            added = set(subparsers.choices) - before
            owners.update(dict.fromkeys(added, f"plugin {impl.plugin_name!r}"))

    def health_components(self) -> list[tuple[str, Any]]:
        return self._collect("health_components")

    def register_settings(self) -> list[Setting]:
        """The plugins' setting declarations, collected before the settings are built."""
        return self._collect("register_settings")

    async def actor_from_request(self, request: Any) -> Any:
        return await self._first_result("actor_from_request", nexus=self.nexus, request=request)

    async def permission_allowed(self, actor: Any, action: str, resource: str | None) -> bool:
        results = self._caller("permission_allowed")(
            nexus=self.nexus, actor=actor, action=action, resource=resource
        )
        for result in results:
            if await await_me_maybe(result) is False:
                return False
        return True

    async def handle_exception(self, request: Any, exception: BaseException) -> Any:
        return await self._first_result(
            "handle_exception", nexus=self.nexus, request=request, exception=exception
        )

    def observers(self, name: str, per_call: tuple[str, ...]) -> list[Callable[..., Any]]:
        """What to call, each with the ``per_call`` arguments positionally, to notify every
        implementation of observer hook ``name`` (empty when it has none), in pluggy's call
        order. Each is bound once to ``nexus`` and takes the arguments it declares, so a
        per-execution call skips pluggy's argument checks and any per-call dict; with a
        wrapper among them, pluggy's own loop calls them all. The runtime takes these once,
        when it starts, and loops over them per execution itself."""
        cache = self.pm.observer_cache
        bound = cache.get(name)
        if bound is not None:
            return bound
        impls = getattr(self.pm.hook, name).get_hookimpls()[::-1]
        if any(i.hookwrapper or i.wrapper for i in impls):
            caller, nexus = getattr(self.pm.hook, name), self.nexus

            def via_pluggy(*args: Any) -> None:
                caller(nexus=nexus, **dict(zip(per_call, args, strict=True)))

            bound = [via_pluggy]
        else:
            bound = [self._bind(impl, per_call) for impl in impls]
        cache[name] = bound
        return bound

    def webhook_attempted(
        self, delivery: Any, execution: Any, started_at: float, finished_at: float
    ) -> None:
        self.pm.hook.webhook_attempted(
            nexus=self.nexus,
            delivery=delivery,
            execution=execution,
            started_at=started_at,
            finished_at=finished_at,
        )

    async def storage_backend(self, kind: str) -> Any:
        return await self._first_result("storage_backend", nexus=self.nexus, kind=kind)

    async def executor(self, service: Any) -> Any:
        return await self._first_result("executor", nexus=self.nexus, service=service)

    def openapi_spec(self, spec: Any) -> None:
        self.pm.hook.openapi_spec(nexus=self.nexus, spec=spec)

    def describe(self) -> list[dict[str, Any]]:
        """Installed plugins with version and hooks, for ``GET /plugins`` and the CLI."""
        out = []
        for name, plugin in sorted(self.pm.list_name_plugin(), key=lambda np: np[0]):
            if plugin is None:  # blocked by ``disable_plugins``: not loaded
                continue
            hooks = sorted(h.name for h in self.pm.get_hookcallers(plugin) or [])
            version = self.pm.versions.get(name)
            if version is None and name in self.pm.builtin:
                from nexus_aio.version import __version__

                version = __version__
            out.append(
                {
                    "name": name,
                    "version": version,
                    "hooks": hooks,
                    "builtin": name in self.pm.builtin,
                }
            )
        return out
