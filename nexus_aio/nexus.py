"""The ``Nexus`` facade: settings, the workflow registry, the plugin manager and the app."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from nexus_aio.errors import NexusError, RegistrationError, WorkflowNotFound
from nexus_aio.execution.service import ExecutionService, RunRequest
from nexus_aio.plugins import Hooks, build_plugin_manager
from nexus_aio.settings import Settings, initial_value
from nexus_aio.workflows.retry import RetryPolicy
from nexus_aio.workflows.workflow import CompiledWorkflow, Workflow, compile_workflow

if TYPE_CHECKING:
    from aiohttp import web

log = logging.getLogger("nexus_aio")
F = TypeVar("F", bound=Callable[..., Any])
_UNSET: Any = object()

HTTP_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH")


@dataclass
class EndpointSpec:
    """A custom endpoint declared with ``@app.endpoint``; routes are built at app build."""

    path: str
    methods: list[str]
    handler: Callable[..., Any]
    rate_limit: int | None = None
    name: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Nexus:
    """Registered workflows become a REST API.

    >>> app = Nexus(api_port=8000)
    >>> @app.workflow()
    ... async def greet(name: str) -> str:
    ...     return f"Hello {name}"
    >>> app.start()
    """

    def __init__(
        self,
        api_port: int = _UNSET,
        api_host: str = _UNSET,
        api_prefix: str = _UNSET,
        enable_docs: bool = _UNSET,
        enable_cors: bool = _UNSET,
        rate_limit: int | None = _UNSET,
        rate_limit_burst: int | None = _UNSET,
        *,
        plugins: Iterable[Any] = (),
        load_entry_points: bool = True,
        **more: Any,
    ) -> None:
        named = {
            "api_port": api_port,
            "api_host": api_host,
            "api_prefix": api_prefix,
            "enable_docs": enable_docs,
            "enable_cors": enable_cors,
            "rate_limit": rate_limit,
            "rate_limit_burst": rate_limit_burst,
        }
        kwargs = {k: v for k, v in named.items() if v is not _UNSET}
        kwargs.update(more)
        # The plugins come first: they declare settings, and which ones load is a setting.
        self.pm = build_plugin_manager(
            plugins,
            initial_value("disable_plugins", kwargs),
            load_entry_points=load_entry_points,
        )
        self.hooks = Hooks(self.pm, self)
        self.settings = Settings.build(kwargs, declared=self.hooks.register_settings())
        self.workflows: dict[str, CompiledWorkflow] = {}
        self.endpoints: list[EndpointSpec] = []
        # workflow name -> cron expression, from @app.workflow(schedule=...)
        self.declared_schedules: dict[str, str] = {}
        self.service: ExecutionService | None = None  # while serving (or ``async with app``)
        self._owns_service = False
        self.app: web.Application | None = None
        self.started_at: float | None = None
        self.health_components: list[tuple[str, Any]] = []
        self._plugin_workflows_loaded = False

    @property
    def api(self) -> Settings:
        """The spec's ``app.api.*`` tuning knobs: the settings object itself (checked names and
        types; writable until ``create_app()``)."""
        return self.settings

    # -- registration -------------------------------------------------------------------------
    def register(
        self,
        name: str,
        fn_or_workflow: Callable[..., Any] | Workflow,
        *,
        description: str | None = None,
        timeout: float | None = None,
        rate_limit: int | None = None,
        rate_limit_burst: int | None = None,
        schedule: str | None = None,
        retry: RetryPolicy | None = None,
    ) -> CompiledWorkflow:
        """Register a function (sync, async, async generator) or a ``Workflow`` DAG; ``retry``
        runs it again after a failure (see :class:`~nexus_aio.workflows.retry.RetryPolicy`).

        ``schedule`` (a cron expression) also runs it on that schedule, with no inputs, as the
        schedule ``sch-decl-<name>`` (see docs/schedules.md)."""
        if self.app is not None and self.app.frozen:
            raise RegistrationError("register() must be called before the app starts")
        if name in self.workflows:
            raise RegistrationError(f"A workflow named {name!r} is already registered")
        compiled = compile_workflow(
            name,
            fn_or_workflow,
            description=description,
            timeout=timeout,
            rate_limit=rate_limit,
            rate_limit_burst=rate_limit_burst,
            retry=retry,
        )
        if schedule is not None:
            self._declare_schedule(compiled, schedule)
        self.workflows[name] = compiled
        return compiled

    def _declare_schedule(self, compiled: CompiledWorkflow, cron: str) -> None:
        from nexus_aio.execution.schedules import Timing

        try:
            timing = Timing.parse(cron, None)
            compiled.schema.validate({})
        except NexusError as exc:
            raise RegistrationError(
                f"workflow {compiled.name!r}: schedule {cron!r}: {exc.message} (a declared "
                "schedule runs the workflow without inputs)"
            ) from None
        assert timing.cron is not None
        self.declared_schedules[compiled.name] = timing.cron

    def workflow(
        self,
        name: str | Callable[..., Any] | None = None,
        description: str | None = None,
        **options: Any,
    ) -> Any:
        """Decorator form of :meth:`register`: ``@app.workflow()`` or ``@app.workflow("name")``."""
        if callable(name):  # bare @app.workflow
            fn = name
            self.register(fn.__name__, fn)
            return fn

        def decorate(fn: F) -> F:
            self.register(name or fn.__name__, fn, description=description, **options)
            return fn

        return decorate

    def endpoint(
        self,
        path: str,
        methods: Iterable[str] | None = None,
        rate_limit: int | None = None,
        **extra: Any,
    ) -> Callable[[F], F]:
        """A custom REST endpoint (path and query parameters from the signature)."""
        verbs = [m.upper() for m in (methods or ["GET"])]
        for verb in verbs:
            if verb not in HTTP_METHODS:
                raise RegistrationError(f"Unsupported method {verb!r} for endpoint {path!r}")
        if not path.startswith("/"):
            raise RegistrationError(f"Endpoint path must start with '/', got {path!r}")
        if rate_limit is not None and rate_limit <= 0:
            raise RegistrationError(f"Endpoint {path!r}: rate_limit must be positive")

        def decorate(fn: F) -> F:
            if not inspect.iscoroutinefunction(fn) and not callable(fn):
                raise RegistrationError(f"Endpoint {path!r}: handler must be callable")
            self.endpoints.append(EndpointSpec(path, verbs, fn, rate_limit, fn.__name__, extra))
            return fn

        return decorate

    def load_plugin_workflows(self) -> None:
        if self._plugin_workflows_loaded:
            return
        self._plugin_workflows_loaded = True
        for item in self.hooks.register_workflows():
            if isinstance(item, dict):
                self.register(**item)
            elif isinstance(item, Workflow):
                self.register(item.name, item)
            else:
                name, target = item
                self.register(name, target)

    # -- execution ------------------------------------------------------------------------
    def get_workflow(self, name: str) -> CompiledWorkflow:
        try:
            return self.workflows[name]
        except KeyError:
            raise WorkflowNotFound(
                f"Workflow {name!r} not found", details={"workflow": name}
            ) from None

    async def execute_workflow(
        self,
        name: str,
        inputs: dict[str, Any] | None = None,
        *,
        session_id: str | None = None,
        context: dict[str, Any] | None = None,
        actor: Any = None,
    ) -> Any:
        """Run a workflow and return its result (raises a ``NexusError`` on failure).

        Inside a serving app (a custom endpoint, a plugin) it runs on the app's service; outside
        one it opens the stores for this call (or uses the service of ``async with app:``).
        """
        request = RunRequest(name, inputs, "sync", session_id, context, actor)
        service = self.service
        if service is not None and service.loop is asyncio.get_running_loop():
            envelope = await service.run(request)
        else:
            async with self.open_service() as service:
                envelope = await service.run(request)
        return envelope["result"]

    _execute_workflow = execute_workflow

    @contextlib.asynccontextmanager
    async def open_service(self, *, recover: bool = False) -> AsyncIterator[ExecutionService]:
        """An :class:`ExecutionService` on the stores ``storage_backend`` picks, closed after."""
        self.load_plugin_workflows()
        service = await ExecutionService.open(self, recover=recover)
        try:
            yield service
        finally:
            await service.close()

    async def __aenter__(self) -> Nexus:
        """``async with app:`` keeps one service open for embedded use (many calls, one store)."""
        if self.service is None:
            self.load_plugin_workflows()
            self.service = await ExecutionService.open(self)
            self._owns_service = True
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the service opened by ``async with app:`` (a serving app closes its own)."""
        if self._owns_service and self.service is not None:
            service, self.service = self.service, None
            self._owns_service = False
            await service.close()

    # -- serving ----------------------------------------------------------------------------
    def create_app(self) -> web.Application:
        """Build the aiohttp application (routes, middlewares, stores, plugins)."""
        from nexus_aio.web.app import build_app

        self.load_plugin_workflows()
        self.app = build_app(self)
        return self.app

    def start(self, host: str | None = None, port: int | None = None) -> None:
        """Serve until interrupted (SIGINT/SIGTERM drain in-flight requests)."""
        from nexus_aio.web.app import serve

        serve(self, host=host, port=port)

    def __repr__(self) -> str:
        return f"<Nexus {len(self.workflows)} workflows>"
