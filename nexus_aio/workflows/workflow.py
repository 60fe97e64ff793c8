"""Workflows: a Python callable or a DAG of nodes, compiled once at registration.

Compiling resolves everything a request would otherwise work out again: the input schema, which
parameter receives the ``Context``, whether the code is sync (runs in a thread), async or an async
generator (streams chunks), and for a DAG its topological order and input wiring.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import typing
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from nexus_aio.context import Context
from nexus_aio.errors import NexusError, RegistrationError, WorkflowExecutionError
from nexus_aio.workflows.describe import output_schema
from nexus_aio.workflows.hints import callable_hints
from nexus_aio.workflows.inputs import InputField, InputSchema
from nexus_aio.workflows.jsontypes import MISSING
from nexus_aio.workflows.models import involves_models, iterated_type, output_converter
from nexus_aio.workflows.retry import RetryPolicy

# Runs a sync callable off the event loop; supplied by the runtime (its thread pool).
SyncRunner = Callable[[Callable[[], Any]], Awaitable[Any]]


def _is_context(param: inspect.Parameter, annotation: Any) -> bool:
    return annotation is Context or (isinstance(annotation, str) and annotation == "Context")


@dataclass(frozen=True)
class Callable_:
    """One compiled callable: a function workflow, or one DAG node."""

    fn: Callable[..., Any]
    schema: InputSchema
    context_param: str | None
    kind: str  # "sync" | "async" | "asyncgen"

    @classmethod
    def compile(cls, fn: Callable[..., Any], where: str) -> Callable_:
        if not callable(fn):
            raise RegistrationError(f"{where}: expected a function, got {type(fn).__name__}")
        try:
            schema = InputSchema.from_callable(fn, skip=_is_context)
        except RegistrationError as exc:
            raise RegistrationError(f"{where}: {exc}") from None
        context_param = None
        try:
            hints = typing.get_type_hints(fn)
        except Exception:  # unresolvable hints were already reported by the schema
            hints = {}
        for name, param in inspect.signature(fn).parameters.items():
            if _is_context(param, hints.get(name, param.annotation)):
                context_param = name
        target = inspect.unwrap(fn)
        if inspect.isasyncgenfunction(target):
            kind = "asyncgen"
        elif inspect.isgeneratorfunction(target):
            kind = "gen"
        elif inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(
            getattr(target, "__call__", None)  # noqa: B004 - async callable objects
        ):
            kind = "async"
        else:
            kind = "sync"
        return cls(fn, schema, context_param, kind)

    def output_converter(self) -> Callable[[Any], Any] | None:
        """What turns this callable's results (a generator's chunks) that hold pydantic models
        into JSON values, from its return annotation; ``None`` when there is nothing to do."""
        returned = callable_hints(self.fn).get("return", inspect.Parameter.empty)
        if self.kind in ("asyncgen", "gen"):
            returned = iterated_type(returned)
        takes_models = any(involves_models(f.annotation) for f in self.schema.fields.values())
        return output_converter(returned, takes_models)

    def converting(self, convert: Callable[[Any], Any]) -> Callable_:
        """This callable with ``convert`` applied to its result, or to each chunk it yields (in
        the worker thread for sync code)."""
        original = self.fn
        wrapped: Callable[..., Any]
        if self.kind == "sync":

            def wrapped_sync(**kwargs: Any) -> Any:
                return convert(original(**kwargs))

            wrapped = wrapped_sync
        elif self.kind == "async":

            async def wrapped_async(**kwargs: Any) -> Any:
                return convert(await original(**kwargs))

            wrapped = wrapped_async
        elif self.kind == "asyncgen":

            async def wrapped_asyncgen(**kwargs: Any) -> AsyncIterator[Any]:
                async for item in original(**kwargs):
                    yield convert(item)

            wrapped = wrapped_asyncgen
        else:

            def wrapped_gen(**kwargs: Any) -> Iterator[Any]:
                for item in original(**kwargs):
                    yield convert(item)

            wrapped = wrapped_gen
        return dataclasses.replace(self, fn=wrapped)

    async def call(self, kwargs: dict[str, Any], ctx: Context, run_sync: SyncRunner) -> Any:
        """Run the callable; its ``BaseException``s other than cancellation (``SystemExit``,
        ``KeyboardInterrupt``...) come out as :class:`WorkflowAborted`, so that asyncio never
        sees them escape a task (it would re-raise them out of the event loop)."""
        if self.context_param is not None:
            kwargs = {**kwargs, self.context_param: ctx}
        try:
            if self.kind == "async":
                return await self.fn(**kwargs)
            if self.kind == "sync":
                fn = self.fn
                return await run_sync(lambda: fn(**kwargs))
            if self.kind == "gen":
                return await self._drain_sync(kwargs, ctx, run_sync)
            chunks = []
            async for item in self.fn(**kwargs):
                ctx._sink.push("chunk", item)
                chunks.append(item)
            return chunks
        except (Exception, asyncio.CancelledError):
            raise
        except BaseException as exc:
            raise WorkflowAborted(exc) from exc

    async def _drain_sync(self, kwargs: dict[str, Any], ctx: Context, run_sync: SyncRunner) -> Any:
        """A plain generator: each item is produced in the thread pool (its body may block)."""
        items = self.fn(**kwargs)
        chunks: list[Any] = []
        while True:
            item = await run_sync(lambda: next(items, _EXHAUSTED))
            if item is _EXHAUSTED:
                return chunks
            ctx._sink.push("chunk", item)
            chunks.append(item)


_EXHAUSTED = object()


class WorkflowAborted(Exception):
    """A workflow raised a ``BaseException`` that is not cancellation (``SystemExit``...)."""

    def __init__(self, original: BaseException) -> None:
        super().__init__(str(original) or type(original).__name__)
        self.original = original


@dataclass
class _Edge:
    src: str
    dst: str
    mapping: dict[str, str]


class Workflow:
    """A DAG of nodes. Inputs are the unconnected parameters of its nodes, matched by name.

    >>> wf = Workflow("etl")
    >>> wf.add_node("load", load)
    >>> wf.add_node("clean", clean)
    >>> wf.connect("load", "clean", {"rows": "rows"})

    One sink node: its output is the result. Several sinks: ``{sink_id: output}``.
    A mapping key selects a key of the source's output when that output is a dict;
    ``"result"`` (or ``"*"``) passes the whole output.
    """

    def __init__(self, name: str, description: str | None = None) -> None:
        self.name = name
        self.description = description
        self.nodes: dict[str, Callable[..., Any]] = {}
        self.edges: list[_Edge] = []

    def add_node(self, node_id: str, fn: Callable[..., Any]) -> Workflow:
        if not isinstance(node_id, str) or not node_id:
            raise RegistrationError("node_id must be a non-empty string")
        if node_id in self.nodes:
            raise RegistrationError(f"Workflow {self.name!r}: node {node_id!r} already exists")
        self.nodes[node_id] = fn
        return self

    def connect(
        self,
        src_id: str,
        dst_id: str,
        mapping: Mapping[str, str] | None = None,
    ) -> Workflow:
        self.edges.append(_Edge(src_id, dst_id, dict(mapping or {})))
        return self


@dataclass
class _Node:
    id: str
    call: Callable_
    # param name -> (source node id, output key)
    wired: dict[str, tuple[str, str]]
    inputs: tuple[str, ...]  # workflow inputs this node takes
    successors: list[str] = field(default_factory=list)
    indegree: int = 0


class CompiledWorkflow:
    """What the registry holds: everything a request needs, worked out once."""

    def __init__(
        self,
        name: str,
        *,
        description: str | None,
        schema: InputSchema,
        outputs: dict[str, Any],
        kind: str,
        runner: Callable[[dict[str, Any], Context, SyncRunner], Awaitable[Any]],
        timeout: float | None = None,
        rate_limit: int | None = None,
        rate_limit_burst: int | None = None,
        nodes: list[str] | None = None,
        source: Any = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.name = name
        self.description = description
        self.schema = schema
        self.outputs = outputs
        self.kind = kind  # "function" | "stream" | "dag"
        self.run = runner
        self.timeout = timeout
        self.rate_limit = rate_limit
        self.rate_limit_burst = rate_limit_burst
        self.nodes = nodes or []
        self.source = source
        self.retry = retry  # None: a failure ends the run

    def describe(self, prefix: str = "") -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "kind": self.kind,
            "inputs": self.schema.describe(),
            "outputs": self.outputs,
            "endpoints": [
                f"{prefix}/workflows/{self.name}/execute",
                f"{prefix}/workflows/{self.name}/schema",
            ],
        }


def compile_workflow(
    name: str,
    target: Callable[..., Any] | Workflow,
    *,
    description: str | None = None,
    timeout: float | None = None,
    rate_limit: int | None = None,
    rate_limit_burst: int | None = None,
    retry: RetryPolicy | None = None,
) -> CompiledWorkflow:
    if not isinstance(name, str) or not name or "/" in name or name != name.strip():
        raise RegistrationError(f"Invalid workflow name {name!r}: use a non-empty name without '/'")
    if timeout is not None and timeout <= 0:
        raise RegistrationError(f"Workflow {name!r}: timeout must be positive")
    if rate_limit is not None and rate_limit <= 0:
        raise RegistrationError(f"Workflow {name!r}: rate_limit must be positive")
    if retry is not None and not isinstance(retry, RetryPolicy):
        raise RegistrationError(
            f"Workflow {name!r}: retry must be a RetryPolicy, got {type(retry).__name__}"
        )
    extra: dict[str, Any] = {
        "timeout": timeout,
        "rate_limit": rate_limit,
        "rate_limit_burst": rate_limit_burst,
        "retry": retry,
    }
    if isinstance(target, Workflow):
        return _compile_dag(name, target, description or target.description, extra)
    compiled = Callable_.compile(target, f"Workflow {name!r}")
    convert = compiled.output_converter()  # pydantic models in the result: dumped as JSON
    if convert is not None:
        compiled = compiled.converting(convert)
    if description is None:
        description = inspect.getdoc(target)
    return CompiledWorkflow(
        name,
        description=description,
        schema=compiled.schema,
        outputs=output_schema(target),
        kind="stream" if compiled.kind in ("asyncgen", "gen") else "function",
        runner=compiled.call,
        source=target,
        **extra,
    )


def _compile_dag(
    name: str, wf: Workflow, description: str | None, extra: dict[str, Any]
) -> CompiledWorkflow:
    where = f"Workflow {name!r}"
    if not wf.nodes:
        raise RegistrationError(f"{where}: a DAG needs at least one node")
    nodes = {
        nid: _Node(nid, Callable_.compile(fn, f"{where}, node {nid!r}"), {}, ())
        for nid, fn in wf.nodes.items()
    }
    for edge in wf.edges:
        for end in (edge.src, edge.dst):
            if end not in nodes:
                known = ", ".join(sorted(nodes))
                raise RegistrationError(
                    f"{where}: connect() names unknown node {end!r} (nodes: {known})"
                )
        if edge.src == edge.dst:
            raise RegistrationError(f"{where}: node {edge.src!r} is connected to itself")
        dst = nodes[edge.dst]
        mapping = edge.mapping
        if not mapping:
            params = list(dst.call.schema.fields)
            if len(params) != 1:
                raise RegistrationError(
                    f"{where}: connect({edge.src!r}, {edge.dst!r}) needs a mapping "
                    f"{{output_key: param}}; {edge.dst!r} takes {params}"
                )
            mapping = {"result": params[0]}
        for out_key, param in mapping.items():
            if param not in dst.call.schema.fields:
                raise RegistrationError(
                    f"{where}: connect({edge.src!r}, {edge.dst!r}) maps {out_key!r} to missing "
                    f"parameter {param!r} (parameters of {edge.dst!r}: "
                    f"{list(dst.call.schema.fields)})"
                )
            if param in dst.wired:
                raise RegistrationError(
                    f"{where}: parameter {param!r} of node {edge.dst!r} is connected twice"
                )
            dst.wired[param] = (edge.src, out_key)
        if edge.dst not in nodes[edge.src].successors:
            nodes[edge.src].successors.append(edge.dst)
            dst.indegree += 1
    order = _topological_order(where, nodes)

    merged: dict[str, InputField] = {}
    for nid in order:
        node = nodes[nid]
        own = []
        for pname, fld in node.call.schema.fields.items():
            if pname in node.wired:
                continue
            own.append(pname)
            if pname in merged:
                merged[pname] = _merge_field(where, merged[pname], fld)
            else:
                merged[pname] = fld
        node.inputs = tuple(own)
    schema = InputSchema.from_fields(merged.values())
    sinks = [nid for nid in order if not nodes[nid].successors]
    runner = _DagRunner(name, nodes, order, sinks)
    for nid, node in nodes.items():  # pydantic results: as JSON in events and the DAG's result
        convert = node.call.output_converter()
        if convert is not None:
            runner.converters[nid] = convert
    return CompiledWorkflow(
        name,
        description=description,
        schema=schema,
        outputs={"result": {"type": "object"}}
        if len(sinks) > 1
        else output_schema(wf.nodes[sinks[0]]),
        kind="dag",
        runner=runner,
        nodes=order,
        source=wf,
        **extra,
    )


def _merge_field(where: str, a: InputField, b: InputField) -> InputField:
    if a.annotation != b.annotation:
        raise RegistrationError(
            f"{where}: input {a.name!r} is taken by several nodes with different types "
            f"({a.annotation!r} and {b.annotation!r})"
        )
    if a.required or b.required or a.default != b.default:
        return InputField(a.name, a.annotation, True, MISSING, a.description or b.description)
    return a


def _topological_order(where: str, nodes: dict[str, _Node]) -> list[str]:
    indegree = {nid: n.indegree for nid, n in nodes.items()}
    ready = [nid for nid, d in indegree.items() if d == 0]
    order: list[str] = []
    while ready:
        nid = ready.pop(0)
        order.append(nid)
        for succ in nodes[nid].successors:
            indegree[succ] -= 1
            if indegree[succ] == 0:
                ready.append(succ)
    if len(order) != len(nodes):
        stuck = sorted(nid for nid, d in indegree.items() if d > 0)
        raise RegistrationError(f"{where}: the graph has a cycle through nodes {stuck}")
    return order


class _DagRunner:
    """Runs a DAG: every node whose inputs are ready runs at once; a failure cancels the rest."""

    def __init__(
        self, name: str, nodes: dict[str, _Node], order: list[str], sinks: list[str]
    ) -> None:
        self.name = name
        self.nodes = nodes
        self.order = order
        self.sinks = sinks
        self.roots = [nid for nid in order if nodes[nid].indegree == 0]
        # node id -> what turns its output into JSON (nodes returning pydantic models); the next
        # nodes still receive the output as returned
        self.converters: dict[str, Callable[[Any], Any]] = {}

    async def __call__(self, inputs: dict[str, Any], ctx: Context, run_sync: SyncRunner) -> Any:
        outputs: dict[str, Any] = {}
        shown: dict[str, Any] = {}  # outputs turned into JSON (pydantic models), by node id
        waiting = {nid: n.indegree for nid, n in self.nodes.items()}
        running: dict[asyncio.Task[Any], str] = {}

        def start(nid: str) -> None:
            node = self.nodes[nid]
            kwargs = {p: inputs[p] for p in node.inputs if p in inputs}
            for param, (src, key) in node.wired.items():
                kwargs[param] = _select(self.name, src, outputs[src], key)
            node_ctx = Context(
                ctx.execution_id,
                ctx.workflow,
                session=ctx.session,
                metadata=ctx.metadata,
                actor=ctx.actor,
                request_id=ctx.request_id,
                sink=ctx._sink,
            )
            node_ctx.node = nid
            ctx._sink.push("node_start", {"node": nid})
            running[asyncio.ensure_future(node.call.call(kwargs, node_ctx, run_sync))] = nid

        try:
            for nid in self.roots:
                start(nid)
            while running:
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    nid = running.pop(task)
                    exc = task.exception()
                    if exc is not None:
                        if isinstance(exc, NexusError):
                            raise exc
                        raise WorkflowExecutionError(
                            f"Node {nid!r} failed: {exc}"
                            if str(exc)
                            else f"Node {nid!r} failed: {type(exc).__name__}",
                            details={"node": nid, "exception": type(exc).__name__},
                        ) from exc
                    output = outputs[nid] = task.result()
                    convert = self.converters.get(nid) if self.converters else None
                    if convert is not None:
                        output = shown[nid] = convert(output)
                    ctx._sink.push("node_complete", {"node": nid, "output": output})
                    for succ in self.nodes[nid].successors:
                        waiting[succ] -= 1
                        if waiting[succ] == 0:
                            start(succ)
        finally:
            for task in running:
                task.cancel()
            if running:
                await asyncio.gather(*running, return_exceptions=True)
        if shown:
            outputs = {**outputs, **shown}
        if len(self.sinks) == 1:
            return outputs[self.sinks[0]]
        return {nid: outputs[nid] for nid in self.sinks}


def _select(workflow: str, src: str, output: Any, key: str) -> Any:
    if isinstance(output, dict) and key in output:
        return output[key]
    if key in ("result", "*"):
        return output
    raise WorkflowExecutionError(
        f"Node {src!r} produced no output {key!r}",
        details={"node": src, "output_key": key},
    )
