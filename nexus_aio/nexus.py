"""The ``Nexus`` facade: settings, the workflow registry, the plugin manager and the app."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from nexus_aio.envelope import new_execution_id
from nexus_aio.errors import RegistrationError, WorkflowNotFound
from nexus_aio.execution.runtime import Runtime, Submission
from nexus_aio.plugins import Hooks, build_plugin_manager
from nexus_aio.security import SecurityLimits, check_payload
from nexus_aio.settings import Settings
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
        self.settings = Settings.build(kwargs)
        self.workflows: dict[str, CompiledWorkflow] = {}
        self.endpoints: list[EndpointSpec] = []
        self.pm = build_plugin_manager(
            plugins, self.settings.disable_plugins, load_entry_points=load_entry_points
        )
        self.hooks = Hooks(self.pm, self)
        self.runtime: Runtime | None = None
        self.app: web.Application | None = None
        self.started_at: float | None = None
        self.health_components: list[tuple[str, Any]] = []
        self._plugin_workflows_loaded = False
        self._limits: tuple[Settings, SecurityLimits] | None = None

    @property
    def api(self) -> Settings:
        """The spec's ``app.api.*`` tuning knobs: the settings object itself."""
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
    ) -> CompiledWorkflow:
        """Register a function (sync, async, async generator) or a ``Workflow`` DAG."""
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
        )
        self.workflows[name] = compiled
        return compiled

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

    def security_limits(self) -> SecurityLimits:
        """The input limits, built once per settings object (the settings freeze at build)."""
        s = self.settings
        cached = self._limits
        if cached is None or cached[0] is not s:
            limits = SecurityLimits(
                max_depth=s.max_depth, max_key_length=s.max_key_length, max_items=s.max_items
            )
            self._limits = cached = (s, limits)
        return cached[1]

    def submission(
        self,
        name: str,
        inputs: Any,
        *,
        mode: str = "sync",
        session_id: str | None = None,
        context: dict[str, Any] | None = None,
        actor: Any = None,
        request_id: str | None = None,
        execution_id: str | None = None,
        checked: bool = False,
    ) -> Submission:
        """Validate a request to run ``name``; raises ``NexusError`` subclasses (400, 404)."""
        wf = self.get_workflow(name)
        if not checked:
            check_payload(inputs, self.security_limits(), path="inputs")
            if context is not None:
                check_payload(context, self.security_limits(), path="context")
        kwargs = wf.schema.validate(inputs)
        return Submission(
            wf,
            kwargs,
            inputs,
            execution_id or new_execution_id(),
            mode,
            session_id,
            context,
            actor,
            request_id,
        )

    async def execute_workflow(
        self,
        name: str,
        inputs: dict[str, Any] | None = None,
        *,
        session_id: str | None = None,
        context: dict[str, Any] | None = None,
        actor: Any = None,
    ) -> Any:
        """Run a workflow and return its result (raises a ``NexusError`` on failure)."""
        runtime = await self._ensure_runtime()
        if session_id is not None:
            from nexus_aio.stores.sessions import validate_session_id

            validate_session_id(session_id)
        sub = self.submission(
            name,
            {} if inputs is None else inputs,
            session_id=session_id,
            context=context,
            actor=actor,
        )
        envelope = await runtime.run_sync(sub)
        return envelope["result"]

    _execute_workflow = execute_workflow

    async def _ensure_runtime(self) -> Runtime:
        """The serving app's runtime, or (outside a server) one on in-memory stores."""
        if self.runtime is None:
            from nexus_aio.stores.executions import MemoryExecutionStore
            from nexus_aio.stores.sessions import MemorySessionStore

            self.load_plugin_workflows()
            executions = MemoryExecutionStore()
            sessions = MemorySessionStore(ttl=self.settings.session_ttl)
            await executions.open()
            await sessions.open()
            self.runtime = Runtime(self.settings, self.hooks, executions, sessions)
        return self.runtime

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

    async def aclose(self) -> None:
        if self.runtime is not None and self.app is None:
            await self.runtime.close()
            await self.runtime.executions.close()
            await self.runtime.sessions.close()
            self.runtime = None

    def __repr__(self) -> str:
        return f"<Nexus {len(self.workflows)} workflows>"


def run_coroutine(coro: Any) -> Any:
    return asyncio.run(coro)
