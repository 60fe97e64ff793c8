"""Every hook, proven through a tiny plugin passed to ``Nexus(plugins=[...])``.

Convention (enforced by ``test_hookspecs_meta.py``): hook ``X`` has a test named ``test_hook_X``.
The plugins here are classes; pluggy takes instances as plugins just like modules.
"""

from __future__ import annotations

import json
import subprocess
import sys
import types
from typing import Any

import pluggy
import pytest
from aiohttp import web

from nexus_aio import Nexus, Setting, hookimpl
from nexus_aio.cli import build_parser
from nexus_aio.errors import ConfigurationError
from nexus_aio.plugins import Hooks
from nexus_aio.stores.executions import MemoryExecutionStore
from nexus_aio.testing import start_server
from nexus_aio.web.keys import ACTOR


def make(*plugins: Any, **settings: Any) -> Nexus:
    """An app with only the built-in plugins and ``plugins`` (installed packages left out)."""
    app = Nexus(database=":memory:", plugins=plugins, load_entry_points=False, **settings)

    @app.workflow()
    def add(a: int, b: int = 1) -> int:
        """Add two integers."""
        return a + b

    return app


async def execute(http, url: str, name: str, inputs: dict[str, Any], **kw: Any) -> Any:
    async with http.post(f"{url}/workflows/{name}/execute", json={"inputs": inputs}, **kw) as r:
        return r.status, await r.json(), r.headers


async def get(http, url: str, **kw: Any) -> tuple[int, Any, Any]:
    async with http.get(url, **kw) as r:
        text = await r.text()
        data = json.loads(text) if r.content_type == "application/json" else text
        return r.status, data, r.headers


# -- build-time hooks ------------------------------------------------------------------------------
async def test_hook_register_workflows(nexus_server, http):
    def shout(text: str) -> str:
        return text.upper()

    class Plugin:
        @hookimpl
        def register_workflows(self, nexus):
            return [("shout", shout), {"name": "shout2", "fn_or_workflow": shout}]

    app = make(Plugin())
    url = await nexus_server(app)
    status, data, _ = await execute(http, url, "shout", {"text": "hi"})
    assert (status, data["result"]) == (200, "HI")
    status, data, _ = await execute(http, url, "shout2", {"text": "yo"})
    assert (status, data["result"]) == (200, "YO")


async def test_hook_register_routes(nexus_server, http):
    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"hello": request.match_info["who"]})

    class Plugin:
        @hookimpl
        def register_routes(self, nexus):
            return [web.get("/hello/{who}", hello)]

    url = await nexus_server(make(Plugin(), api_prefix="/v1"))
    assert url.endswith("/v1")  # the route is served under api_prefix
    status, data, _ = await get(http, f"{url}/hello/ann")
    assert (status, data) == (200, {"hello": "ann"})


def test_register_routes_duplicate_route_fails_startup():
    async def handler(request: web.Request) -> web.Response:
        return web.Response()

    class One:
        @hookimpl
        def register_routes(self, nexus):
            return [web.get("/same", handler)]

    class Two:
        @hookimpl
        def register_routes(self, nexus):
            return [web.get("/same", handler)]

    app = make(One(), Two())
    with pytest.raises(ConfigurationError, match="Duplicate route GET /same"):
        app.create_app()


async def test_hook_register_middlewares(nexus_server, http):
    class Plugin:
        @hookimpl
        def register_middlewares(self, nexus):
            @web.middleware
            async def tag(request, handler):
                response = await handler(request)
                response.headers["X-Plugin"] = "tagged"
                return response

            return [tag]

    url = await nexus_server(make(Plugin()))
    status, _, headers = await execute(http, url, "add", {"a": 1})
    assert status == 200 and headers["X-Plugin"] == "tagged"


async def test_hook_register_cleanup_ctx(http):
    events: list[str] = []

    class Plugin:
        @hookimpl
        def register_cleanup_ctx(self, nexus):
            async def ctx(app: web.Application):
                # the core's context ran first: the runtime is up
                events.append(f"start runtime={nexus.service is not None}")
                yield
                events.append("stop")

            return [ctx]

    server = await start_server(make(Plugin()))
    try:
        assert events == ["start runtime=True"]
        status, _, _ = await get(http, f"{server.url}/health")
        assert status == 200
    finally:
        await server.stop()
    assert events == ["start runtime=True", "stop"]


GREETER_PLUGIN = '''
"""A third-party plugin adding ``hello`` to ``python -m nexus_aio``."""
from nexus_aio import hookimpl
from nexus_aio.cli import add_source_args, load_nexus


@hookimpl
def register_commands(nexus, subparsers):
    hello = subparsers.add_parser("hello", help="greet someone with the app's workflows")
    hello.add_argument("name")
    add_source_args(hello)
    hello.set_defaults(handler=greet)


def greet(args):
    app, source = load_nexus(args)
    print(f"hello {args.name}: {sorted(app.workflows)} from {source}")
    return 3
'''

GREETER_APP = """
import greeter
from nexus_aio import Nexus

app = Nexus(plugins=[greeter])


@app.workflow()
def add(a: int, b: int = 1) -> int:
    return a + b
"""


def run_cli(*args: str, cwd: Any, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nexus_aio", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"NEXUS_DATABASE": ":memory:", "PATH": "/usr/bin:/bin", **env},
    )


def test_hook_register_commands(tmp_path):
    (tmp_path / "greeter.py").write_text(GREETER_PLUGIN)
    (tmp_path / "myapp.py").write_text(GREETER_APP)
    hello = run_cli("hello", "ann", "--app", "myapp:app", cwd=tmp_path)
    assert hello.returncode == 3, hello.stderr  # the handler's return value is the exit status
    assert hello.stdout == "hello ann: ['add'] from app myapp:app\n"
    listed = run_cli("--help", "--app", "myapp:app", cwd=tmp_path)
    assert listed.returncode == 0 and "greet someone" in listed.stdout
    # the command belongs to the app's plugin: absent without --app, or with the plugin disabled
    for args, env in (
        (["hello", "ann"], {}),
        (["hello", "ann", "--app", "myapp:app"], {"NEXUS_DISABLE_PLUGINS": "greeter"}),
    ):
        refused = run_cli(*args, cwd=tmp_path, **env)
        assert refused.returncode == 2
        assert "invalid choice: 'hello'" in refused.stderr


def test_register_commands_duplicate_command_fails_startup(tmp_path):
    class Serve:
        @hookimpl
        def register_commands(self, subparsers):
            subparsers.add_parser("serve")

    with pytest.raises(ConfigurationError, match=r"Duplicate command 'serve'.*the core already"):
        build_parser(make(Serve()))

    class Hello:
        @hookimpl
        def register_commands(self, subparsers):
            subparsers.add_parser("hello")

    # pluggy asks the later-registered plugin first
    with pytest.raises(ConfigurationError, match="'Hello-0' adds it, plugin 'Hello-1' already"):
        build_parser(make(Hello(), Hello()))

    (tmp_path / "dup.py").write_text(
        "from nexus_aio import Nexus, hookimpl\n\n"
        "class Run:\n"
        "    @hookimpl\n"
        "    def register_commands(self, subparsers):\n"
        "        subparsers.add_parser('run')\n\n"
        "app = Nexus(plugins=[Run()])\n"
    )
    result = run_cli("list", "--app", "dup:app", cwd=tmp_path)
    assert result.returncode == 2
    assert "error: Duplicate command 'run'" in result.stderr


async def test_hook_health_components(nexus_server, http):
    class Plugin:
        @hookimpl
        def health_components(self, nexus):
            async def queue():
                return {"status": "degraded", "depth": 12}

            return [("queue", queue)]

    url = await nexus_server(make(Plugin()))
    status, data, _ = await get(http, f"{url}/health/detailed")
    assert status == 200
    assert data["components"]["queue"]["status"] == "degraded"
    assert data["components"]["queue"]["depth"] == 12
    assert data["status"] == "degraded"  # the worst component decides


class Greeter:
    """A third-party plugin owning two settings, read by its route as ``nexus.settings.<name>``."""

    @hookimpl
    def register_settings(self, nexus):
        return [
            Setting("hello_greeting", str, "Hello", feature="hello", help="the greeting word"),
            Setting("hello_names", list[str], ["world"], feature="hello", help="who is greeted"),
        ]

    @hookimpl
    def register_routes(self, nexus):
        async def greet(request: web.Request) -> web.Response:
            s = nexus.settings
            return web.json_response([f"{s.hello_greeting} {name}" for name in s.hello_names])

        return [web.get("/greet", greet)]


async def test_hook_register_settings(nexus_server, http, monkeypatch):
    async def greetings(app: Nexus) -> Any:
        status, data, _ = await get(http, f"{await nexus_server(app)}/greet")
        assert status == 200
        return data

    assert await greetings(make(Greeter())) == ["Hello world"]
    # constructor keyword
    assert await greetings(make(Greeter(), hello_greeting="Hi")) == ["Hi world"]
    # app.api before the app is built
    app = make(Greeter())
    app.api.hello_names = ("ann",)
    assert app.api.hello_names == ["ann"]
    assert await greetings(app) == ["Hello ann"]
    # NEXUS_<NAME>, parsed like a core setting of the same type
    monkeypatch.setenv("NEXUS_HELLO_NAMES", "ann, bob")
    monkeypatch.setenv("NEXUS_HELLO_GREETING", "Hey")
    assert await greetings(make(Greeter())) == ["Hey ann", "Hey bob"]
    monkeypatch.delenv("NEXUS_HELLO_NAMES")
    monkeypatch.delenv("NEXUS_HELLO_GREETING")
    # checked like core settings: types, names, and the plugin's absence
    with pytest.raises(ConfigurationError, match="hello_greeting must be a string"):
        make(Greeter(), hello_greeting=5)
    with pytest.raises(ConfigurationError, match="did you mean 'hello_greeting'"):
        make(Greeter()).api.hello_greting = "Yo"
    with pytest.raises(ConfigurationError, match=r"'hello' plugin \(nexus-aio-hello\)"):
        make(hello_greeting="Hi")
    assert make(Greeter()).settings.features == {"hello"}


# -- request-time hooks ----------------------------------------------------------------------------
class HeaderAuth:
    """``X-User: <id>`` is the actor; ``deny`` lists (action, resource) pairs refused."""

    def __init__(self, deny: set[tuple[str, str | None]] = frozenset()) -> None:  # type: ignore[assignment]
        self.deny = deny
        self.asked: list[tuple[Any, str, str | None]] = []

    @hookimpl
    def actor_from_request(self, nexus, request):
        user = request.headers.get("X-User")
        return {"id": user} if user else None

    @hookimpl
    def permission_allowed(self, nexus, actor, action, resource):
        self.asked.append((actor, action, resource))
        return False if (action, resource) in self.deny else None

    @hookimpl
    def register_routes(self, nexus):
        async def whoami(request: web.Request) -> web.Response:
            return web.json_response({"actor": request.get(ACTOR)})

        return [web.get("/whoami", whoami)]


async def test_hook_actor_from_request(nexus_server, http):
    url = await nexus_server(make(HeaderAuth()))
    status, data, _ = await get(http, f"{url}/whoami", headers={"X-User": "ann"})
    assert (status, data) == (200, {"actor": {"id": "ann"}})
    status, data, _ = await get(http, f"{url}/whoami")
    assert (status, data) == (200, {"actor": None})


async def test_hook_permission_allowed(nexus_server, http):
    plugin = HeaderAuth(deny={("execute", "add")})
    url = await nexus_server(make(plugin))
    status, data, _ = await execute(http, url, "add", {"a": 1}, headers={"X-User": "bob"})
    assert status == 403 and data["error"]["type"] == "Forbidden"
    status, data, headers = await execute(http, url, "add", {"a": 1})
    assert status == 401 and headers["WWW-Authenticate"] == "Bearer"
    assert ({"id": "bob"}, "execute", "add") in plugin.asked
    status, _, _ = await get(http, f"{url}/workflows/add/schema", headers={"X-User": "bob"})
    assert status == 200  # no opinion on "read": allowed
    assert ({"id": "bob"}, "read", "add") in plugin.asked


async def test_hook_handle_exception(nexus_server, http):
    seen: list[BaseException] = []

    class Plugin:
        @hookimpl
        def handle_exception(self, nexus, request, exception):
            seen.append(exception)
            if request.path.endswith("/teapot/schema"):
                return web.Response(status=418, text="I'm a teapot")
            return None  # let the built-in envelope answer

    url = await nexus_server(make(Plugin()))
    status, text, _ = await get(http, f"{url}/workflows/teapot/schema")
    assert (status, text) == (418, "I'm a teapot")
    status, data, _ = await get(http, f"{url}/workflows/other/schema")
    assert status == 404 and data["error"]["type"] == "WorkflowNotFound"
    assert [type(e).__name__ for e in seen] == ["WorkflowNotFound", "WorkflowNotFound"]


def monitor(app: Nexus) -> list[str]:
    """Names of every hook called through ``app``'s plugins from now on.

    pluggy's monitoring sees the hooks pluggy calls; the first-result hooks, whose
    implementations the core calls one by one, are seen at the typed facade.
    """
    called: list[str] = []
    app.pm.add_hookcall_monitoring(lambda name, impls, kw: called.append(name), lambda *a: None)
    for name in Hooks.FIRST_RESULT_HOOKS:
        facade = getattr(app.hooks, name)

        async def recorded(*args: Any, _name: str = name, _facade: Any = facade) -> Any:
            called.append(_name)
            return await _facade(*args)

        setattr(app.hooks, name, recorded)
    return called


async def exercise(http, url: str) -> None:
    for path in ("/workflows", "/workflows/add/schema", "/plugins", "/health"):
        assert (await get(http, f"{url}{path}"))[0] == 200
    assert (await execute(http, url, "add", {"a": 2}))[0] == 200
    assert (await get(http, f"{url}/workflows/none/schema"))[0] == 404


async def test_unimplemented_request_time_hooks_are_never_called(nexus_server, http):
    app = make()
    called = monitor(app)
    url = await nexus_server(app)
    await exercise(http, url)
    assert "actor_from_request" not in called
    assert "permission_allowed" not in called
    assert "handle_exception" not in called
    assert not app.hooks.implemented("permission_allowed", builtin=False)


async def test_implemented_request_time_hooks_are_called(nexus_server, http):
    app = make(HeaderAuth())
    called = monitor(app)
    url = await nexus_server(app)
    await exercise(http, url)
    assert "actor_from_request" in called and "permission_allowed" in called


def test_implemented_answer_follows_later_registration():
    app = make()
    assert not app.hooks.implemented("actor_from_request")
    plugin = HeaderAuth()
    app.pm.register(plugin, name="late")
    assert app.hooks.implemented("actor_from_request", builtin=False)
    app.pm.unregister(plugin)
    assert not app.hooks.implemented("actor_from_request", builtin=False)


# -- execution and startup hooks -------------------------------------------------------------------
async def test_hook_execution_started(nexus_server, http):
    started: list[tuple[str, str]] = []

    class Plugin:
        @hookimpl
        def execution_started(self, nexus, execution):
            started.append((execution.id, execution.workflow, execution.status))

    url = await nexus_server(make(Plugin()))
    status, data, _ = await execute(http, url, "add", {"a": 1})
    assert status == 200
    assert started == [(data["workflow_id"], "add", "running")]


async def test_hook_execution_finished(nexus_server, http):
    finished: list[tuple[str, str, str]] = []

    class Plugin:
        @hookimpl
        def execution_finished(self, nexus, execution):
            finished.append((execution.id, execution.workflow, execution.status))

    app = make(Plugin())

    @app.workflow()
    def broken() -> None:
        raise RuntimeError("no")

    url = await nexus_server(app)
    _, ok, _ = await execute(http, url, "add", {"a": 1})
    status, failed, _ = await execute(http, url, "broken", {})
    assert status == 500
    assert finished == [
        (ok["workflow_id"], "add", "succeeded"),
        (failed["workflow_id"], "broken", "failed"),
    ]


async def test_execution_observer_hooks_call_every_plugin_in_pluggy_order(nexus_server, http):
    calls: list[str] = []

    def observer(label: str, **opts: Any) -> Any:
        class Plugin:
            @hookimpl(**opts)
            def execution_started(self, execution):  # a subset of the arguments, as pluggy allows
                calls.append(f"{label} started {execution.status}")

            @hookimpl(**opts)
            def execution_finished(self, nexus, execution, events):
                calls.append(f"{label} finished {execution.status} {len(events)}")

        return Plugin()

    app = make(observer("last", trylast=True), observer("first", tryfirst=True), observer("a"))
    app.pm.register(observer("b"), name="b")  # registered later: called before "a"
    url = await nexus_server(app)
    status, _, _ = await execute(http, url, "add", {"a": 1})
    assert status == 200
    assert calls == [
        "first started running",
        "b started running",
        "a started running",
        "last started running",
        "first finished succeeded 1",
        "b finished succeeded 1",
        "a finished succeeded 1",
        "last finished succeeded 1",
    ]


async def test_execution_observer_hooks_take_their_arguments_in_any_order(nexus_server, http):
    seen: list[tuple[str, ...]] = []

    class Plugin:
        @hookimpl
        def execution_finished(self, events, execution):  # order of its own
            seen.append(("reversed", execution.status, str(len(events))))

    class EventsOnly:
        @hookimpl
        def execution_finished(self, events):
            seen.append(("events only", str(len(events))))

    class NexusLast:
        @hookimpl
        def execution_started(self, execution, nexus):
            seen.append(("nexus last", type(nexus).__name__, execution.status))

    url = await nexus_server(make(Plugin(), EventsOnly(), NexusLast()))
    status, _, _ = await execute(http, url, "add", {"a": 1})
    assert status == 200
    assert sorted(seen) == [
        ("events only", "1"),
        ("nexus last", "Nexus", "running"),
        ("reversed", "succeeded", "1"),
    ]


async def test_execution_observer_hooks_keep_wrapper_implementations(nexus_server, http):
    seen: list[str] = []

    class Wrapper:
        @hookimpl(wrapper=True)
        def execution_finished(self, execution):
            seen.append("before")
            result = yield
            seen.append(f"after {execution.status}")
            return result

    class Plain:
        @hookimpl
        def execution_finished(self, execution):
            seen.append("plain")

    url = await nexus_server(make(Plain(), Wrapper()))
    status, _, _ = await execute(http, url, "add", {"a": 1})
    assert status == 200
    assert seen == ["before", "plain", "after succeeded"]


async def test_hook_storage_backend(nexus_server, http):
    class CountingStore(MemoryExecutionStore):
        opened = 0

        async def open(self) -> None:
            CountingStore.opened += 1
            await super().open()

    store = CountingStore()
    kinds: list[str] = []

    class Plugin:
        @hookimpl
        def storage_backend(self, nexus, kind):
            kinds.append(kind)
            return store if kind == "executions" else None  # sessions: the built-in answers

    app = make(Plugin())
    url = await nexus_server(app)
    assert app.service is not None and app.service.executions is store
    assert CountingStore.opened == 1
    _, data, _ = await execute(http, url, "add", {"a": 4})
    record = await store.get(data["workflow_id"])
    assert record is not None and record.result == 5
    assert {"executions", "sessions"} <= set(kinds)


# -- first-result hooks: each answer awaited, the first non-None wins -----------------------------
async def test_async_actor_from_request_answering_none_does_not_hide_a_later_plugin(
    nexus_server, http
):
    asked: list[str] = []

    class AsyncNoOpinion:
        @hookimpl
        async def actor_from_request(self, request):  # declares only what it uses
            asked.append(request.headers.get("X-User", ""))
            return None

    # registered after HeaderAuth, so pluggy's order asks it first
    url = await nexus_server(make(HeaderAuth(), AsyncNoOpinion()))
    status, data, _ = await get(http, f"{url}/whoami", headers={"X-User": "ann"})
    assert (status, data) == (200, {"actor": {"id": "ann"}})
    assert asked == ["ann"]
    status, run, _ = await execute(http, url, "add", {"a": 1}, headers={"X-User": "ann"})
    assert status == 200
    record = f"{url}/executions/{run['workflow_id']}"
    assert (await get(http, record, headers={"X-User": "ann"}))[0] == 200
    status, data, _ = await get(http, record, headers={"X-User": "bob"})
    assert status == 403 and data["error"]["type"] == "Forbidden"  # ann's run, not bob's


async def test_async_handle_exception_answering_none_does_not_hide_a_later_plugin(
    nexus_server, http
):
    seen: list[str] = []

    class AsyncNoOpinion:
        @hookimpl(tryfirst=True)
        async def handle_exception(self, nexus, request, exception):
            seen.append(type(exception).__name__)
            return None

    class Teapot:
        @hookimpl
        def handle_exception(self, exception):
            return web.Response(status=418, text=f"teapot: {type(exception).__name__}")

    url = await nexus_server(make(AsyncNoOpinion(), Teapot()))
    status, text, _ = await get(http, f"{url}/workflows/none/schema")
    assert (status, text) == (418, "teapot: WorkflowNotFound")
    assert seen == ["WorkflowNotFound"]


async def test_async_storage_backend_answering_none_does_not_hide_a_later_plugin(
    nexus_server, http
):
    store = MemoryExecutionStore()
    asked: list[str] = []

    class AsyncNoOpinion:
        @hookimpl(tryfirst=True)
        async def storage_backend(self, kind):
            asked.append(kind)
            return None

    class AsyncStore:
        @hookimpl
        async def storage_backend(self, nexus, kind):
            return store if kind == "executions" else None

    app = make(AsyncNoOpinion(), AsyncStore())
    url = await nexus_server(app)
    assert app.service is not None and app.service.executions is store
    assert "executions" in asked
    _, data, _ = await execute(http, url, "add", {"a": 4})
    record = await store.get(data["workflow_id"])
    assert record is not None and record.result == 5


def test_first_result_hooks_refuse_wrappers_at_build():
    class Wrapper:
        @hookimpl(wrapper=True)
        def actor_from_request(self, nexus, request):
            return (yield)

    app = make(Wrapper())
    with pytest.raises(ConfigurationError, match="actor_from_request takes no wrapper"):
        app.create_app()


def test_hook_openapi_spec():
    class Plugin:
        @hookimpl
        def openapi_spec(self, nexus, spec):
            spec.tag({"name": "from-plugin", "description": "added by a plugin"})

    app = make(Plugin())
    app.create_app()
    try:
        from nexus_aio.openapi.document import build_openapi
    except ImportError:  # pragma: no cover - the OpenAPI module is part of the core
        pytest.skip("nexus_aio.openapi.document not available")
    doc = build_openapi(app)
    assert {"name": "from-plugin", "description": "added by a plugin"} in doc["tags"]


# -- the plugin manager ----------------------------------------------------------------------------
def test_misspelt_hook_fails_at_startup():
    class Typo:
        @hookimpl
        def register_rotes(self, nexus):
            return []

    with pytest.raises(pluggy.PluginValidationError, match="register_rotes"):
        Nexus(database=":memory:", plugins=[Typo()], load_entry_points=False)


def plugin_module(name: str, version: str | None = "1.2.3") -> types.ModuleType:
    module = types.ModuleType(name)

    @hookimpl
    def health_components(nexus):
        async def check():
            return {"status": "healthy"}

        return [(name, check)]

    module.health_components = health_components  # type: ignore[attr-defined]
    if version is not None:
        module.__version__ = version  # type: ignore[attr-defined]
    return module


def test_explicit_plugin_passed_twice_is_registered_once():
    module = plugin_module("twice")
    app = make(module, module)
    names = [p["name"] for p in app.hooks.describe()]
    assert names.count("twice") == 1
    assert [n for n, _ in app.hooks.health_components()].count("twice") == 1


def test_disable_plugins_blocks_by_name(monkeypatch):
    monkeypatch.setenv("NEXUS_DISABLE_PLUGINS", "blocked,nexus_aio.builtin.health")
    app = make(plugin_module("blocked"), plugin_module("kept"))
    names = {p["name"] for p in app.hooks.describe()}
    assert "kept" in names
    assert "blocked" not in names and "nexus_aio.builtin.health" not in names
    assert [n for n, _ in app.hooks.health_components()] == ["kept"]


def test_order_is_builtin_then_explicit():
    seen: list[str] = []

    class Late:
        @hookimpl
        def register_workflows(self, nexus):
            seen.append("explicit")
            return []

    app = make(Late())
    names = [name for name, _ in app.pm.list_name_plugin()]
    first_explicit = names.index(next(n for n in names if n.startswith("Late")))
    assert all(n.startswith("nexus_aio.builtin.") for n in names[:first_explicit])


async def test_get_plugins_lists_builtin_and_explicit_plugins(nexus_server, http):
    url = await nexus_server(make(plugin_module("acme_plugin", "2.0.1")))
    status, data, _ = await get(http, f"{url}/plugins")
    assert status == 200
    by_name = {p["name"]: p for p in data["plugins"]}
    assert by_name["acme_plugin"] == {
        "name": "acme_plugin",
        "version": "2.0.1",
        "hooks": ["health_components"],
        "builtin": False,
    }
    core = by_name["nexus_aio.builtin.core_routes"]
    assert core["builtin"] is True and core["hooks"] == ["register_routes"]
    assert core["version"]
    assert by_name["nexus_aio.builtin.endpoints"]["hooks"] == ["register_routes"]


def test_cli_plugins_prints_plugins_with_version_and_hooks(tmp_path):
    env_cmd = [sys.executable, "-m", "nexus_aio", "plugins"]
    proc = subprocess.run(
        env_cmd, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    plugins = {p["name"]: p for p in json.loads(proc.stdout)}
    assert plugins["nexus_aio.builtin.errors"]["hooks"] == ["handle_exception"]
    assert plugins["nexus_aio.builtin.stores"]["version"]
    assert all({"name", "version", "hooks", "builtin"} <= set(p) for p in plugins.values())


async def test_inactive_plugins_are_left_out_of_request_hooks(nexus_server, http):
    calls = []

    class Switchable:
        def __init__(self, on: bool) -> None:
            self.on = on

        def nexus_active(self, nexus):
            return self.on

        @hookimpl
        def actor_from_request(self, nexus, request):
            calls.append(self.on)
            return None

    for on in (False, True):
        app = Nexus(database=":memory:", plugins=[Switchable(on)], load_entry_points=False)

        @app.workflow()
        async def ping() -> str:
            return "pong"

        url = await nexus_server(app)
        async with http.post(f"{url}/workflows/ping/execute", json={"inputs": {}}) as resp:
            assert resp.status == 200
        assert app.hooks.implemented("actor_from_request") is on
    assert calls == [True]
